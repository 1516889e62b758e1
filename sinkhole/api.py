"""The HTTP side: /healthz, /readyz, /metrics now; the JSON admin API grows here."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

DAEMON_KEY: web.AppKey[Any] = web.AppKey("daemon", object)


def build_app(daemon: Any, token: str | None = None) -> web.Application:
    """`token`: when set, every /api/ request needs `Authorization: Bearer <token>`;
    /metrics and the health checks stay open (Prometheus and probes need no secret)."""
    app = web.Application(middlewares=[_auth(token)] if token else [])
    app[DAEMON_KEY] = daemon
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/v1/reload", reload)
    app.router.add_get("/api/v1/lists", lists)
    return app


async def reload(request: web.Request) -> web.Response:
    """Reload every list now; answers with the per-list report once the new policy is live."""
    result = await request.app[DAEMON_KEY].reload("api")
    return web.json_response(_result_json(result), status=200 if result.ok else 500)


async def lists(request: web.Request) -> web.Response:
    result = request.app[DAEMON_KEY].lists.last_result
    return web.json_response(_result_json(result) if result else {})


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
    d = request.app[DAEMON_KEY]
    if d.serving:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "stopping"}, status=503)


async def readyz(request: web.Request) -> web.Response:
    """200 once listeners are bound and lists are loaded; 503 during start-up and drain."""
    d = request.app[DAEMON_KEY]
    ok = d.serving and d.ready
    return web.json_response({"ready": ok}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    d = request.app[DAEMON_KEY]
    body = generate_latest(d.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
