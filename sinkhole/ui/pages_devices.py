"""Devices: search by name or address; a device's page (names and addresses over time, hits,
suspicions, triage); its timeline around a hit, from the passive-DNS history."""

from __future__ import annotations

import ipaddress
import sqlite3
import time
from typing import Any

from aiohttp import web

from sinkhole.store.browse import device_names, device_summary, known_devices, search_hits
from sinkhole.store.findings import HitFindings, mark_history, query_findings
from sinkhole.store.timeline import device_hours

from .common import BadInput, admin_of, int_arg, parse_when, render
from .sources import hit_cache, read_store, suspicions

routes = web.RouteTableDef()
SPANS = (1, 2, 3, 6, 12, 24)      # hours either side of the moment a timeline is centred on
HOUR = 3600


def device_ip(request: web.Request) -> str:
    """The address in the path, normalised (the store keeps addresses in this form)."""
    try:
        return str(ipaddress.ip_address(request.match_info["ip"]))
    except ValueError:
        raise BadInput("not an IP address") from None


@routes.get("/devices")
async def devices(request: web.Request) -> web.Response:
    admin = admin_of(request)
    text = request.query.get("q", "")[:200]
    rows = await read_store(admin.db_path, _devices, text=text,
                            name_for=getattr(admin, "client_name", None),
                            cache=hit_cache(admin.db_path))
    return render(request, "devices.html", {"devices": rows, "q": text, "title": "Devices"})


def _devices(conn: sqlite3.Connection, *, text: str, name_for: Any,
             cache: HitFindings) -> list[dict[str, Any]]:
    return known_devices(conn, text, name_for=name_for, hit_findings=cache.read(conn))


@routes.get("/devices/{ip}")
async def device(request: web.Request) -> web.Response:
    admin = admin_of(request)
    ip = device_ip(request)
    found = [s for s in await suspicions(admin) if s["client_ip"] == ip]
    data = await read_store(admin.db_path, _device, client_ip=ip, suspicions=found)
    name_for = getattr(admin, "client_name", None)
    return render(request, "device.html", {
        **data, "ip": ip, "suspicions": found, "title": f"Device {ip}",
        "current_name": name_for(ip) if name_for is not None else None})


def _device(conn: sqlite3.Connection, *, client_ip: str,
            suspicions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"names": device_names(conn, client_ip), "summary": device_summary(conn, client_ip),
            "hits": search_hits(conn, client_ip=client_ip, limit=50),
            "findings": query_findings(conn, suspicions=suspicions,
                                       client_ip=client_ip)["items"],
            "marks": mark_history(conn, client_ip)}


@routes.get("/devices/{ip}/timeline")
async def timeline(request: web.Request) -> web.Response:
    """The hour(s) before and after `at` (a hit's time): every name the device asked, per
    hour, the hits at their exact times, the listed names marked."""
    admin = admin_of(request)
    ip = device_ip(request)
    now = time.time()
    at = parse_when(request.query.get("at"), now=now) or now
    span = int_arg(request.query.get("span"), 1, 1, SPANS[-1])
    start, end = at - span * HOUR, at + span * HOUR
    flush = getattr(admin, "flush_history", None)
    if flush is not None and end >= now - HOUR:
        # The newest counts sit in the writer's memory for up to a minute: write them first,
        # or the minutes around a hit that just happened would look empty.
        await flush()
    data = await read_store(admin.db_path, _timeline, client_ip=ip, start=start, end=end)
    policy = admin.policy() if getattr(admin, "policy", None) is not None else None
    hours = [_hour_row(h, data["hours"].get(h, []), data["hits"], policy)
             for h in range(int(start // HOUR), int(end // HOUR) + 1)]
    return render(request, "timeline.html", {
        "ip": ip, "at": at, "span": span, "spans": SPANS, "hours": hours,
        "focus": request.query.get("qname", ""), "title": f"Timeline of {ip}",
        "hit_count": len(data["hits"])})


def _timeline(conn: sqlite3.Connection, *, client_ip: str, start: float,
              end: float) -> dict[str, Any]:
    return {"hours": device_hours(conn, client_ip, int(start // HOUR), int(end // HOUR)),
            "hits": search_hits(conn, client_ip=client_ip, since=start, until=end, limit=1000)}


def _hour_row(hour: int, names: list[tuple[str, int]], hits: list[dict[str, Any]],
              policy: Any) -> dict[str, Any]:
    """One hour of the timeline: its hits (exact times, oldest first) and its names."""
    in_hour = sorted((h for h in hits if int(h["time"] // HOUR) == hour),
                     key=lambda h: h["time"])
    hit_names = {h["qname"] for h in in_hour}
    rows = []
    for name, count in names:
        listed = None
        if policy is not None:
            found = policy.match(name)
            if found is not None and found[0].list is not None and found[0].action != "allow":
                listed = found[0].list.name
        rows.append({"name": name, "count": count, "listed": listed,
                     "hit": name in hit_names})
    return {"hour": hour, "start": hour * HOUR, "hits": in_hour, "names": rows,
            "queries": sum(c for _, c in names)}
