"""The overview: which devices need a look (last 24 h, most severe first), what is still open,
alerts that did not get out, list and upstream health, and the query-rate graph."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from aiohttp import web

from sinkhole.store.browse import outbox_rows, outbox_summary, recent_devices
from sinkhole.store.findings import OPEN_STATES, SEVERITY_RANK, HitFindings, query_findings

from .common import RING_KEY, admin_of, render
from .graphs import build_graph
from .sources import hit_cache, read_store, suspicions

routes = web.RouteTableDef()
DAY = 86400.0
SHOWN = 25


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    admin = admin_of(request)
    now = time.time()
    found = await suspicions(admin)
    data = await read_store(admin.db_path, _read, since=now - DAY, suspicions=found,
                            cache=hit_cache(admin.db_path))
    ring = request.app[RING_KEY]
    return render(request, "overview.html", {
        **data, "lists": admin.lists(), "upstreams": upstream_health(admin.registry),
        "graph": build_graph(ring.rates()), "now": now, "title": "Overview"})


def _read(conn: sqlite3.Connection, *, since: float, suspicions: list[dict[str, Any]],
          cache: HitFindings) -> dict[str, Any]:
    """Everything the overview reads from the store, on one connection."""
    found = query_findings(conn, suspicions=suspicions, states=OPEN_STATES, limit=SHOWN,
                           cache=cache)
    return {"devices": devices_to_check(recent_devices(conn, since=since), suspicions, since,
                                        found["by_client"]),
            "findings": found["items"], "open_count": found["total"],
            "outbox": outbox_summary(conn),
            "stuck": outbox_rows(conn, state="failing", limit=10)
            + outbox_rows(conn, state="pending", limit=10)}


def devices_to_check(devices: list[dict[str, Any]], suspicions: list[dict[str, Any]],
                     since: float, open_by_ip: dict[str, int]) -> list[dict[str, Any]]:
    """Hit devices merged with suspected ones; most severe first (worst hit severity, then
    the best suspicion score, then the newest activity)."""
    by_ip = {d["client_ip"]: {**d, "score": 0, "domains": []} for d in devices}
    for s in suspicions:
        if s["last_seen"] < since:
            continue
        d = by_ip.setdefault(s["client_ip"], {
            "client_ip": s["client_ip"], "client_name": s.get("client_name"), "lists": [],
            "severity": "", "hits": 0, "first": s["first_seen"], "last": s["last_seen"],
            "score": 0, "domains": []})
        d["score"] = max(d["score"], s.get("score") or 0)
        d["domains"].append(s["domain"])
        d["last"] = max(d["last"], s["last_seen"])
        d["client_name"] = d["client_name"] or s.get("client_name")
    for d in by_ip.values():
        d["open"] = open_by_ip.get(d["client_ip"], 0)
    return sorted(by_ip.values(), key=lambda d: (-SEVERITY_RANK.get(d["severity"], -1),
                                                 -d["score"], -d["last"], d["client_ip"]))


def upstream_health(registry: Any) -> list[dict[str, Any]]:
    """Per upstream: up (last attempt succeeded), requests by outcome, from the registry."""
    rows: dict[str, dict[str, Any]] = {}
    for family in registry.collect():
        if family.name == "sinkhole_upstream_up":
            for s in family.samples:
                rows.setdefault(s.labels["upstream"], {"outcomes": {}})["up"] = s.value == 1
        elif family.name == "sinkhole_upstream_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    row = rows.setdefault(s.labels["upstream"], {"outcomes": {}})
                    row["outcomes"][s.labels["outcome"]] = int(s.value)
    out = []
    for name, row in sorted(rows.items()):
        total = sum(row["outcomes"].values())
        ok = row["outcomes"].get("ok", 0)
        out.append({"name": name, "up": row.get("up"), "total": total,
                    "failed": total - ok, "outcomes": row["outcomes"]})
    return out
