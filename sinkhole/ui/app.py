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
    # Templates and static files are read once, here: started as root, the daemon drops to
    # an unprivileged user who may not be able to read the package's folder (a venv under
    # /root), and nothing the console serves may depend on reading it later.
    templates = {p.name: p.read_text(encoding="utf-8")
                 for p in (HERE / "templates").iterdir() if p.is_file()}
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.DictLoader(templates), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    static = {p.name: p.read_bytes() for p in (HERE / "static").iterdir() if p.is_file()}
    env.globals["asset"] = _assets(static)
    for page in PAGES:
        app.router.add_routes(page.routes)
    app.router.add_get("/static/{name}", _static(static))
    app.cleanup_ctx.append(_sampler(sample_every))
    return app


_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
          ".png": "image/png", ".ico": "image/x-icon"}


def _static(files: dict[str, bytes]) -> Any:
    """The console's static files, from memory (read at start, see build_console)."""
    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = files.get(name)
        if body is None:
            raise web.HTTPNotFound()
        kind = _TYPES.get(Path(name).suffix, "application/octet-stream")
        return web.Response(body=body, content_type=kind,
                            headers={"Cache-Control": "public, max-age=86400"})
    return handler


def _assets(files: dict[str, bytes]) -> Any:
    """`asset("console.css")` -> its URL with a content hash: browsers may cache it, and a
    new version is fetched at once after an upgrade."""
    versions = {name: hashlib.sha256(body).hexdigest()[:12] for name, body in files.items()}

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
