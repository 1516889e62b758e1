"""The HTTP side: /healthz, /readyz, /metrics now; the JSON admin API grows here."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

DAEMON_KEY: web.AppKey[Any] = web.AppKey("daemon", object)


def build_app(daemon: Any) -> web.Application:
    app = web.Application()
    app[DAEMON_KEY] = daemon
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


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
