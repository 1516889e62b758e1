"""The HTTP side: /healthz, /readyz, /metrics, the JSON admin API under /api/v1/, and the
security console under /ui/ (sinkhole.ui; `/` redirects there)."""

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
from sinkhole.store.browse import HIT_KINDS, search_hits
from sinkhole.store.findings import STATES
from sinkhole.store.queries import query_clients, query_history
from sinkhole.ui import build_console
from sinkhole.ui.sources import findings as load_findings
from sinkhole.ui.sources import read_store


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
    # For the console (each optional, so an Admin without them still serves the API; the
    # console then shows less, as its pages say):
    # write the history counts still in the writer's memory (timeline, retro-hunt page);
    flush_history: Callable[[], Awaitable[Any]] | None = None
    # the live Policy (check a name, the listed names on a timeline, retro-hunt a list);
    policy: Callable[[], Any] | None = None
    # the Config: where a rule is written (list specs) and where the hunting db is;
    config: Any = None
    # the name a client has now (DHCP leases, static map), for devices without hits;
    client_name: Callable[[str], str | None] | None = None
    # wake the alert sender after a resend, so it does not wait for its next poll.
    wake_alerts: Callable[[], None] | None = None


ADMIN_KEY: web.AppKey[Admin] = web.AppKey("admin", Admin)


def build_app(admin: Admin, token: str | None = None) -> web.Application:
    """`token`: when set, every /api/ request needs `Authorization: Bearer <token>`;
    /metrics and the health checks stay open (Prometheus and probes need no secret)."""
    app = web.Application(middlewares=[_auth(token)] if token else [])
    app[ADMIN_KEY] = admin
    app.router.add_get("/", to_console)
    app.router.add_get("/ui", to_console)
    app.add_subapp("/ui/", build_console(admin, token))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/v1/reload", reload)
    app.router.add_get("/api/v1/lists", lists)
    app.router.add_get("/api/v1/hits", hits)
    app.router.add_get("/api/v1/clients", clients)
    app.router.add_get("/api/v1/history", history)
    app.router.add_get("/api/v1/findings", findings)
    app.router.add_get("/api/v1/suspicions", suspicions)
    return app


async def to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


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
    rows = await read_store(request.app[ADMIN_KEY].db_path, fn, **kw)
    return _items(rows)


def _items(rows: list[Any]) -> web.Response:
    return web.json_response({"items": rows, "count": len(rows)}, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


async def hits(request: web.Request) -> web.Response:
    """GET /api/v1/hits?since=1h&until=UNIX&client=IP|NAME&list=NAME&qname=NAME&kind=KIND
    &limit=100&offset=0 (the same search as the console's hits page)."""
    q = request.query
    limit, offset = _paging(q)
    kind = q.get("kind")
    if kind is not None and kind not in HIT_KINDS:
        raise BadRequest(f"kind must be one of {', '.join(HIT_KINDS)}")
    try:
        until = float(q["until"]) if "until" in q else None
    except ValueError:
        raise BadRequest("until must be a Unix time") from None
    return await _read(request, search_hits, since=_since(q), until=until,
                       client=q.get("client"), list_name=q.get("list"), qname=q.get("qname"),
                       kind=kind, limit=limit, offset=offset)


async def findings(request: web.Request) -> web.Response:
    """GET /api/v1/findings?state=open|reopened|investigating|cleared&client=IP&limit=&offset=:
    devices' hits per list and suspicions per domain, each with its triage state, note and
    mark time, most urgent first (state may repeat; without it, every finding). `total` is
    the number of findings before paging."""
    states = request.query.getall("state", [])
    if any(s not in STATES for s in states):
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    limit, offset = _paging(request.query)
    found = await load_findings(request.app[ADMIN_KEY], states=states or None,
                                client_ip=request.query.get("client") or None, limit=limit,
                                offset=offset)
    return web.json_response({"items": found["items"], "count": len(found["items"]),
                              "total": found["total"]}, dumps=_dumps)


async def suspicions(request: web.Request) -> web.Response:
    """GET /api/v1/suspicions?since=7d&min_score=80&limit=: what hunting found, highest score
    first (the rows of `sinkhole suspicions --json`, plus `evidence` and `listed_by`)."""
    from sinkhole.ui.sources import hunt_path, suspicions_sync
    q = request.query
    try:
        min_score = int(q.get("min_score", 0))
    except ValueError:
        raise BadRequest("min_score must be an integer") from None
    limit, _offset = _paging(q)
    rows = await asyncio.to_thread(suspicions_sync, hunt_path(request.app[ADMIN_KEY]),
                                   _since(q), limit, min_score)
    return web.json_response({"items": rows, "count": len(rows)}, dumps=_dumps)


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
