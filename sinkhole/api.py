"""The HTTP side: /healthz, /readyz, /metrics, and the JSON admin API under /api/v1/."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sinkhole.config.loader import parse_duration
from sinkhole.store.queries import open_reader, query_clients, query_history, query_hits


@dataclass(frozen=True)
class Admin:
    """All the HTTP side may see of the daemon, and all it may do: read the store (its own
    read-only connections to `db_path`), scrape `registry`, start a reload, read the last
    reload's report, and ask whether DNS is serving. Not the daemon: a handler cannot reach
    the pipeline, the cache or the store's writer."""

    db_path: str
    registry: CollectorRegistry
    reload: Callable[[str], Awaitable[Any]]
    last_reload: Callable[[], Any]
    lists: Callable[[], list[dict[str, Any]]]
    serving: Callable[[], bool]
    ready: Callable[[], bool]


ADMIN_KEY: web.AppKey[Admin] = web.AppKey("admin", Admin)


def build_app(admin: Admin, token: str | None = None) -> web.Application:
    """`token`: when set, every /api/ request needs `Authorization: Bearer <token>`;
    /metrics and the health checks stay open (Prometheus and probes need no secret)."""
    app = web.Application(middlewares=[_auth(token)] if token else [])
    app[ADMIN_KEY] = admin
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/v1/reload", reload)
    app.router.add_get("/api/v1/lists", lists)
    app.router.add_get("/api/v1/hits", hits)
    app.router.add_get("/api/v1/clients", clients)
    app.router.add_get("/api/v1/history", history)
    return app


class BadRequest(web.HTTPBadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


def _paging(q: Any) -> tuple[int, int]:
    try:
        limit = min(int(q.get("limit", 100)), 1000)
        offset = int(q.get("offset", 0))
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    if limit < 1 or offset < 0:
        raise BadRequest("limit must be 1-1000 and offset >= 0")
    return limit, offset


def _since(q: Any) -> float | None:
    if "since" not in q:
        return None
    try:
        return time.time() - parse_duration(q["since"])
    except ValueError as err:
        raise BadRequest(f"since: {err}") from None


async def _read(request: web.Request, fn: Any, **kw: Any) -> web.Response:
    """Run a store query on its own read-only connection in a thread (never on the loop)."""
    path = request.app[ADMIN_KEY].db_path

    def run() -> Any:
        conn = open_reader(path)
        try:
            return fn(conn, **kw)
        finally:
            conn.close()

    rows = await asyncio.to_thread(run)
    return web.json_response({"items": rows, "count": len(rows)}, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


async def hits(request: web.Request) -> web.Response:
    """GET /api/v1/hits?since=1h&client=IP|NAME&list=NAME&qname=NAME&limit=100&offset=0"""
    q = request.query
    limit, offset = _paging(q)
    return await _read(request, query_hits, since=_since(q), client=q.get("client"),
                       list_name=q.get("list"), qname=q.get("qname"), limit=limit,
                       offset=offset)


async def clients(request: web.Request) -> web.Response:
    """GET /api/v1/clients?since=24h: devices with hits."""
    return await _read(request, query_clients, since=_since(request.query))


async def history(request: web.Request) -> web.Response:
    """GET /api/v1/history?name=NAME&client=IP&since=7d&limit=&offset=: hourly counts."""
    q = request.query
    if not q.get("name"):
        raise BadRequest("name is required")
    limit, offset = _paging(q)
    return await _read(request, query_history, name=q["name"].lower().rstrip("."),
                       since=_since(q), client=q.get("client"), limit=limit, offset=offset)


async def reload(request: web.Request) -> web.Response:
    """Reload every list now; answers with the per-list report once the new policy is live."""
    result = await request.app[ADMIN_KEY].reload("api")
    return web.json_response(_result_json(result), status=200 if result.ok else 500)


async def lists(request: web.Request) -> web.Response:
    """GET /api/v1/lists: one row per list (as `sinkhole lists --json`), and the last
    reload's report."""
    admin = request.app[ADMIN_KEY]
    result = admin.last_reload()
    rows = admin.lists()
    return web.json_response({"items": rows, "count": len(rows),
                              "last_reload": _result_json(result) if result else None})


def _result_json(result: Any) -> dict[str, Any]:
    return {"ok": result.ok, "reason": result.reason, "seconds": result.seconds,
            "lists": [r.as_dict() for r in result.reports]}


def _auth(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):   # constant time: no timing oracle
                return web.json_response({"error": "missing or wrong bearer token"},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check


async def healthz(request: web.Request) -> web.Response:
    """200 while the DNS listeners are up: what a load balancer or systemd probe wants."""
    if request.app[ADMIN_KEY].serving():
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "stopping"}, status=503)


async def readyz(request: web.Request) -> web.Response:
    """200 once listeners are bound and lists are loaded; 503 during start-up and drain."""
    ok = request.app[ADMIN_KEY].ready()
    return web.json_response({"ready": ok}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[ADMIN_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
