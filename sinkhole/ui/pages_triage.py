"""Triage: every finding with its state; mark one investigating, cleared or open again."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from sinkhole.store.findings import KINDS, MARKS, OPEN_STATES, record_mark

from .common import BadInput, admin_of, int_arg, render, see_other
from .guard import safe_next
from .sources import findings

routes = web.RouteTableDef()
PAGE = 100
CHOICES = (("open", "open, reopened or investigating"), ("all", "all"),
           ("reopened", "reopened"), ("investigating", "investigating"), ("cleared", "cleared"))


@routes.get("/triage")
async def triage(request: web.Request) -> web.Response:
    state = request.query.get("state", "open")
    if state not in dict(CHOICES):
        raise BadInput(f"state must be one of {', '.join(dict(CHOICES))}")
    states = None if state == "all" else OPEN_STATES if state == "open" else {state}
    page = int_arg(request.query.get("page"), 1, 1, 100_000)
    found = await findings(admin_of(request), states=states, limit=PAGE,
                           offset=(page - 1) * PAGE)
    return render(request, "triage.html", {"findings": found["items"], "total": found["total"],
                                           "page": page, "pages": -(-found["total"] // PAGE),
                                           "state": state, "choices": CHOICES,
                                           "title": "Triage"})


@routes.post("/triage")
async def mark(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    values = {k: str(form.get(k, "")) for k in ("client_ip", "kind", "key", "state", "note")}
    if values["kind"] not in KINDS or values["state"] not in MARKS:
        raise BadInput("unknown finding kind or state")
    if not values["client_ip"] or not values["key"]:
        raise BadInput("client_ip and key are required")
    await asyncio.to_thread(record_mark, admin_of(request).db_path, at=time.time(), **values)
    raise see_other(safe_next(str(form.get("next", ""))))
