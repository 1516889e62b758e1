"""Lists: source, format, entries, last update, errors; reload; check a name (which list and
rule decides it, and where that rule is written, as `sinkhole check` says)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from sinkhole.cli_lists import _at, _rules
from sinkhole.lists.parse import normalise_name

from .common import admin_of, render

routes = web.RouteTableDef()


@routes.get("/lists")
async def lists(request: web.Request) -> web.Response:
    admin = admin_of(request)
    name = request.query.get("check", "").strip()[:300]
    checked = await asyncio.to_thread(check_name, admin, name) if name else None
    return render(request, "lists.html", _context(admin, checked, name, None))


@routes.post("/lists/reload")
async def reload(request: web.Request) -> web.Response:
    """Reload now and show the per-list report on the same page (no redirect: the report
    is the answer to the click)."""
    admin = admin_of(request)
    result = await admin.reload("console")
    return render(request, "lists.html", _context(admin, None, "", result),
                  status=200 if result.ok else 500)


def _context(admin: Any, checked: dict[str, Any] | None, name: str,
             result: Any) -> dict[str, Any]:
    last = admin.last_reload()
    return {"rows": admin.lists(), "checked": checked, "check": name, "title": "Lists",
            "report": result, "last_reload": last}


def check_name(admin: Any, raw: str) -> dict[str, Any]:
    """The live policy's verdict on a name, and the rule's place (file:line, or a feed
    object's id) found with the CLI's own helpers.  Blocking (reads list files)."""
    out: dict[str, Any] = {"name": raw, "error": "", "verdict": None, "rule": None, "where": [],
                           "list": None, "category": None, "severity": None}
    try:
        out["name"] = name = normalise_name(raw)
    except ValueError as err:
        return {**out, "error": f"not a domain name: {err}"}
    policy = admin.policy() if getattr(admin, "policy", None) is not None else None
    if policy is None:
        return {**out, "error": "the running policy is not available"}
    found = policy.match(name)
    if found is None:
        return out
    verdict, rule = found
    config = getattr(admin, "config", None)
    where: list[str] = []
    if config is not None:
        from sinkhole.lists.feeds import FeedFetcher
        fetcher = FeedFetcher(config.storage.folder)
        specs = [s for s in config.blocklists if verdict.list and s.name == verdict.list.name] \
            or [*config.allowlists, *config.blocklists]
        where = [f"{f}:{_at(at)}: {text}" for s in specs for f, at, text in
                 _rules(s, name, fetcher)]
    info = verdict.list
    return {**out, "verdict": verdict.action, "rule": rule, "where": where,
            "list": info.name if info else None, "category": info.category if info else None,
            "severity": info.severity if info else None}
