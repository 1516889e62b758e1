"""Hits: filter by list, client, name, kind and time; page through; export CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from sinkhole.store import escape_name
from sinkhole.store.browse import HIT_KINDS, search_hits
from sinkhole.store.queries import HIT_KEYS

from .common import PAGE, BadInput, admin_of, int_arg, parse_when, render
from .sources import read_store

routes = web.RouteTableDef()
EXPORT_MAX = 100_000
FILTER_KEYS = ("list", "client", "qname", "kind", "since", "until")


def hit_filters(q: MultiMapping[str]) -> dict[str, Any]:
    """search_hits arguments from the query string (blank fields are no filter)."""
    kind = q.get("kind") or None
    if kind is not None and kind not in HIT_KINDS:
        raise BadInput(f"kind must be one of {', '.join(HIT_KINDS)}")
    qname = (q.get("qname") or "").strip().lower().rstrip(".") or None
    return {"list_name": q.get("list") or None, "client": (q.get("client") or "").strip() or None,
            "qname": qname, "kind": kind, "since": parse_when(q.get("since")),
            "until": parse_when(q.get("until"))}


@routes.get("/hits")
async def hits(request: web.Request) -> web.Response:
    q = request.query
    page = int_arg(q.get("page"), 1, 1, 100_000)
    rows = await read_store(admin_of(request).db_path, search_hits, **hit_filters(q),
                            limit=PAGE + 1, offset=(page - 1) * PAGE)
    shown = {k: q.get(k, "") for k in FILTER_KEYS}
    lists = [r["name"] for r in admin_of(request).lists()]
    return render(request, "hits.html", {
        "hits": rows[:PAGE], "page": page, "more": len(rows) > PAGE, "filters": shown,
        "kinds": HIT_KINDS, "lists": lists, "title": "Hits",
        "query": {k: v for k, v in shown.items() if v}})


@routes.get("/hits.json")
async def hits_json(request: web.Request) -> web.Response:
    rows = await _export(request)
    body = json.dumps([{**r, "qname": escape_name(r["qname"]),
                        "client_name": escape_name(r["client_name"]) if r["client_name"]
                        else r["client_name"]} for r in rows], default=str)
    return web.Response(text=body, content_type="application/json",
                        headers={"Content-Disposition": 'attachment; filename="hits.json"'})


@routes.get("/hits.csv")
async def hits_csv(request: web.Request) -> web.Response:
    rows = await _export(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HIT_KEYS)
    for r in rows:
        writer.writerow([csv_cell(r[k], k) for k in HIT_KEYS])
    return web.Response(text=out.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="hits.csv"'})


async def _export(request: web.Request) -> list[dict[str, Any]]:
    return await read_store(admin_of(request).db_path, search_hits,
                            **hit_filters(request.query), limit=EXPORT_MAX)


def csv_cell(value: Any, key: str) -> Any:
    """Names escaped as everywhere, and a text cell that a spreadsheet would run as a formula
    (=, +, -, @ first) quoted with a leading apostrophe: a query name is attacker's text."""
    if value is None or isinstance(value, int | float):
        return value
    text = escape_name(str(value)) if key in ("qname", "client_name", "rule") else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
