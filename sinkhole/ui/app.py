"""Assembles the console: a sub-application mounted at /ui/ with its own middlewares
(gate, store errors), templates (autoescape on), static files and the rate sampler.

A sub-application because its rules are not the API's: pages want a session cookie and CSRF
tokens, the API a bearer token; neither set of middlewares then has to know the other's paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import (
    pages_alerts,
    pages_auth,
    pages_devices,
    pages_hits,
    pages_lists,
    pages_overview,
    pages_retro,
    pages_triage,
)
from .common import ADMIN_KEY, FILTERS, RING_KEY, store_errors
from .graphs import SAMPLE_EVERY, RateRing, query_totals
from .guard import SESSIONS_KEY, TOKEN_KEY, guard
from .sessions import Sessions

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
PAGES = (pages_auth, pages_overview, pages_devices, pages_triage, pages_hits, pages_alerts,
         pages_lists, pages_retro)


def build_console(admin: Any, token: str | None = None, *,
                  sample_every: float = SAMPLE_EVERY) -> web.Application:
    """The console for `admin` (the API's Admin); `token`: the api.token_file token, or None
    for an open console (loopback only: the config refuses anything else)."""
    app = web.Application(middlewares=[guard, store_errors])
    app[ADMIN_KEY] = admin
    app[SESSIONS_KEY] = Sessions()
    if token:
        app[TOKEN_KEY] = token
    app[RING_KEY] = RateRing(lambda: query_totals(admin.registry))
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    env.globals["asset"] = _assets()
    for page in PAGES:
        app.router.add_routes(page.routes)
    app.router.add_static("/static/", HERE / "static")
    app.cleanup_ctx.append(_sampler(sample_every))
    return app


def _assets() -> Any:
    """`asset("console.css")` -> its URL with a content hash: browsers may cache it, and a
    new version is fetched at once after an upgrade."""
    versions = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
                for p in (HERE / "static").iterdir() if p.is_file()}

    def asset(name: str) -> str:
        return f"/ui/static/{name}?v={versions[name]}"

    return asset


def _sampler(every: float) -> Any:
    """Sample the query counters every `every` seconds while the console runs."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        ring = app[RING_KEY]

        async def loop() -> None:
            while True:
                try:
                    ring.sample()
                except Exception:   # a collector failing must not end the graph for good
                    log.exception("console: sampling the query counters failed")
                await asyncio.sleep(every)

        task = asyncio.create_task(loop(), name="console-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
