"""Alerts: the outbox per sink (delivered, pending, failing with the last error, expired)
and resend."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

from aiohttp import web

from sinkhole.store.browse import OUTBOX_STATES, outbox_rows, outbox_summary, resend_alert

from .common import PAGE, BadInput, admin_of, int_arg, render, see_other
from .sources import read_store

routes = web.RouteTableDef()


@routes.get("/alerts")
async def alerts(request: web.Request) -> web.Response:
    q = request.query
    state = q.get("state") or None
    if state is not None and state not in OUTBOX_STATES:
        raise BadInput(f"state must be one of {', '.join(OUTBOX_STATES)}")
    page = int_arg(q.get("page"), 1, 1, 100_000)
    data = await read_store(admin_of(request).db_path, _read, sink=q.get("sink") or None,
                            state=state, offset=(page - 1) * PAGE)
    return render(request, "alerts.html", {
        **data, "rows": data["rows"][:PAGE], "more": len(data["rows"]) > PAGE, "page": page,
        "sink": q.get("sink", ""), "state": state or "", "states": OUTBOX_STATES,
        "title": "Alerts"})


def _read(conn: sqlite3.Connection, *, sink: str | None, state: str | None,
          offset: int) -> dict[str, Any]:
    rows = outbox_rows(conn, sink=sink, state=state, limit=PAGE + 1, offset=offset)
    for r in rows:
        r["summary"] = summary_of(r.pop("payload"))
    return {"summary": outbox_summary(conn), "rows": rows}


def summary_of(payload: str) -> str:
    """The alert's one-line summary, as the receiver saw it (payload JSON, any shape)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return ""
    return str(body.get("summary", "")) if isinstance(body, dict) else ""


@routes.post("/alerts/{id:\\d+}/resend")
async def resend(request: web.Request) -> web.StreamResponse:
    """Back to pending, due now; the sender is woken so it does not wait for its next poll."""
    admin = admin_of(request)
    outbox_id = int(request.match_info["id"])
    if not await asyncio.to_thread(resend_alert, admin.db_path, outbox_id, time.time()):
        raise web.HTTPNotFound(text=f"no alert #{outbox_id} in the outbox")
    wake = getattr(admin, "wake_alerts", None)
    if wake is not None:
        wake()
    raise see_other(f"/ui/alerts?resent={outbox_id}")
