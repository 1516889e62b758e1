"""Retro-hunt on demand: paste names or pick a list, pick a range, see who asked.

Read-only: unlike the hunt a reload starts, this records no hits and sends no alerts; it
answers a question ("did anyone ask for these last month?") and leaves the evidence as it is.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from sinkhole.config.loader import parse_duration
from sinkhole.lists.parse import normalise_name
from sinkhole.store.browse import retrohunt_names

from .common import BadInput, admin_of, render
from .sources import read_store

routes = web.RouteTableDef()
RANGES = ("24h", "7d", "30d", "90d", "365d")
PASTED_MAX = 10_000
NOTHING_DONE = {"names": "", "list": "", "since": "30d", "searched": 0}
_SPLIT = re.compile(r"[\s,;]+")


@routes.get("/retro")
async def retro_form(request: web.Request) -> web.Response:
    return render(request, "retro.html", _context(request, NOTHING_DONE, None, []))


@routes.post("/retro")
async def retro(request: web.Request) -> web.Response:
    """POST only because a pasted list does not fit in a URL; it changes nothing."""
    admin = admin_of(request)
    form = await request.post()
    since_text = str(form.get("since") or "30d")
    try:
        since = time.time() - parse_duration(since_text)
    except ValueError as err:
        raise BadInput(f"range: {err}") from None
    list_name = str(form.get("list") or "")
    names, bad = _names(str(form.get("names") or ""))
    if list_name:
        policy = admin.policy() if getattr(admin, "policy", None) is not None else None
        if policy is None or list_name not in {i.name for i in policy.lists}:
            raise BadInput(f"no list named {list_name!r} is loaded")
        names |= set(policy.names(list_name))
    if not names:
        raise BadInput("paste at least one name or pick a list")
    flush = getattr(admin, "flush_history", None)
    if flush is not None:
        await flush()      # the newest minute of queries is still in the writer's memory
    rows = await read_store(admin.db_path, retrohunt_names, names=names, since=since)
    name_for = getattr(admin, "client_name", None)
    for r in rows:
        r["client_name"] = name_for(r["client_ip"]) if name_for is not None else None
    done = {"names": str(form.get("names") or ""), "list": list_name, "since": since_text,
            "searched": len(names)}
    return render(request, "retro.html", _context(request, done, rows, bad))


def _names(text: str) -> tuple[set[str], list[str]]:
    """Names pasted one per line (or separated by commas or spaces); `*.x` searches x too."""
    good, bad = set(), []
    for word in _SPLIT.split(text)[:PASTED_MAX]:
        if not word:
            continue
        try:
            good.add(normalise_name(word.removeprefix("*.")))
        except ValueError:
            bad.append(word)
    return good, bad


def _context(request: web.Request, done: dict[str, Any], rows: list[dict[str, Any]] | None,
             bad: list[str]) -> dict[str, Any]:
    admin = admin_of(request)
    policy = admin.policy() if getattr(admin, "policy", None) is not None else None
    lists = [i.name for i in policy.lists] if policy is not None else \
        [r["name"] for r in admin.lists() if not r["name"].startswith("allowlist[")]
    return {"done": done, "rows": rows, "bad": bad[:50], "lists": lists, "ranges": RANGES,
            "title": "Retro-hunt"}
