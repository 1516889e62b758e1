"""The composition root: builds every part from the config, in order, and runs them.

Nothing imports this module but the CLI and the tests; parts get what they need passed in.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from sinkhole.api import build_app
from sinkhole.cache import Cache
from sinkhole.clients.access import AccessList
from sinkhole.config import Config
from sinkhole.config.values import HostPort
from sinkhole.metrics import Metrics
from sinkhole.resolver import Resolver
from sinkhole.server import Listeners
from sinkhole.upstream.pool import UpstreamPool, default_upstreams

log = logging.getLogger(__name__)


class Daemon:
    """One running sinkhole: listeners, pipeline, HTTP; `start()` then `stop()`."""

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.metrics = Metrics(registry)
        self.serving = False
        self.ready = False
        self.http_bound: HostPort | None = None
        self._runner: web.AppRunner | None = None

    @property
    def dns_bound(self) -> list[HostPort]:
        return self.listeners.bound

    async def start(self) -> None:
        cfg = self.config
        own = [(h.host, h.port) for h in cfg.listen.dns]
        self.upstreams = cfg.upstreams or tuple(default_upstreams(own))
        self.cache = Cache(cfg.cache.max_entries, cfg.cache.serve_stale) \
            if cfg.cache.enabled else None
        if self.cache is not None:
            self.metrics.watch_cache(self.cache)
        self.pool = UpstreamPool(self.upstreams, cfg.upstream_timeout,
                                 ca_file=cfg.upstream_ca_file, on_result=self.metrics.upstream,
                                 on_forged=lambda _why: self.metrics.forged.inc())
        self.resolver = Resolver(access=AccessList(cfg.access.allow), cache=self.cache,
                                 pool=self.pool, metrics=self.metrics)
        s = cfg.server
        self.listeners = Listeners(self.resolver.handle, self.metrics, tcp_idle=s.tcp_idle_timeout,
                                   tcp_max=s.tcp_max_connections,
                                   tcp_inflight=s.tcp_max_queries_in_flight)
        await self.listeners.start(cfg.listen.dns)
        if cfg.listen.http is not None:
            await self._start_http(cfg.listen.http)
        self.serving = self.ready = True
        log.info("sinkhole serving DNS on %s, HTTP on %s, upstreams %s",
                 ", ".join(h.display() for h in self.dns_bound),
                 self.http_bound.display() if self.http_bound else "off",
                 ", ".join(u.url for u in self.upstreams),
                 extra={"event": "started",
                        "dns": [h.display() for h in self.dns_bound],
                        "http": self.http_bound.display() if self.http_bound else None})

    async def _start_http(self, hp: HostPort) -> None:
        self._runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, hp.host, hp.port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.http_bound = HostPort(hp.host, sock.getsockname()[1])

    async def stop(self) -> None:
        """Graceful: stop accepting, answer what is in flight (bounded), release everything."""
        self.serving = False
        await self.listeners.drain(self.config.server.drain_timeout)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.pool.close()
        log.info("sinkhole stopped", extra={"event": "stopped"})


async def serve(config: Config, *, shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
                registry: CollectorRegistry | None = None,
                on_started: Callable[[Daemon], None] | None = None) -> None:
    """Run a daemon until `shutdown_trigger()` returns (default: SIGTERM or SIGINT)."""
    daemon = Daemon(config, registry=registry)
    await daemon.start()
    if on_started is not None:
        on_started(daemon)
    try:
        if shutdown_trigger is not None:
            await shutdown_trigger()
        else:
            await _wait_for_signal()
    finally:
        await daemon.stop()


async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received, draining", extra={"event": "draining"})
