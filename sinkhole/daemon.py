"""The composition root: builds every part from the config, in order, and runs them.

Nothing imports this module but the CLI and the tests; parts get what they need passed in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from sinkhole import privdrop, sdnotify
from sinkhole.api import build_app
from sinkhole.cache import Cache
from sinkhole.clients.access import AccessList
from sinkhole.config import Config
from sinkhole.config.values import HostPort
from sinkhole.dns.block import BlockAnswers
from sinkhole.hits import HitRecorder
from sinkhole.lists.manager import ListManager, ReloadResult
from sinkhole.lists.matcher import Policy
from sinkhole.metrics import Metrics
from sinkhole.ratelimit import RateLimiter
from sinkhole.resolver import Resolver, special_names
from sinkhole.server import Listeners
from sinkhole.upstream.pool import UpstreamPool, default_upstreams

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The daemon cannot start with this config and environment (exit code 2)."""


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as err:
        raise StartupError(f"api.token_file: cannot read {path}: {err.strerror}") from None
    if len(token) < 16:
        raise StartupError(f"api.token_file: the token in {path} is shorter than 16 characters")
    return token


class Daemon:
    """One running sinkhole: listeners, pipeline, HTTP; `start()` then `stop()`."""

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.metrics = Metrics(registry)
        self.serving = False
        self.ready = False
        self.http_bound: HostPort | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def dns_bound(self) -> list[HostPort]:
        return self.listeners.bound

    async def start(self) -> None:
        cfg = self.config
        # Everything that can refuse the config is checked before anything binds.
        self._token = read_token(cfg.api.token_file) if cfg.api.token_file else None
        own = [(h.host, h.port) for h in cfg.listen.dns]
        self.upstreams = cfg.upstreams or tuple(default_upstreams(own))
        self.cache = Cache(cfg.cache.max_entries, cfg.cache.serve_stale) \
            if cfg.cache.enabled else None
        if self.cache is not None:
            self.metrics.watch_cache(self.cache)
        self.pool = UpstreamPool(self.upstreams, cfg.upstream_timeout,
                                 ca_file=cfg.upstream_ca_file, on_result=self.metrics.upstream,
                                 on_forged=lambda _why: self.metrics.forged.inc())
        self.hits = HitRecorder(self.metrics)
        sh = cfg.sinkhole
        self.resolver = Resolver(access=AccessList(cfg.access.allow), cache=self.cache,
                                 pool=self.pool, metrics=self.metrics,
                                 blocker=BlockAnswers(sh.ipv4, sh.ipv6, int(sh.ttl)),
                                 specials=special_names(cfg.policy), on_hit=self.hits.on_hit,
                                 ratelimit=self._ratelimiter(),
                                 ratelimit_drop=cfg.ratelimit.action == "drop")
        self.lists = ListManager(cfg.blocklists, cfg.allowlists, self._on_policy)
        await self.lists.reload("startup")
        s = cfg.server
        self.listeners = Listeners(self.resolver.handle, self.metrics, tcp_idle=s.tcp_idle_timeout,
                                   tcp_max=s.tcp_max_connections,
                                   tcp_inflight=s.tcp_max_queries_in_flight)
        await self.listeners.start(cfg.listen.dns)
        if cfg.listen.http is not None:
            await self._start_http(cfg.listen.http)
        self.serving = self.ready = True
        if cfg.reload.watch and (cfg.blocklists or cfg.allowlists):
            self._spawn(self.lists.watch(cfg.reload.poll_interval, cfg.reload.debounce))
        log.info("sinkhole serving DNS on %s, HTTP on %s, upstreams %s",
                 ", ".join(h.display() for h in self.dns_bound),
                 self.http_bound.display() if self.http_bound else "off",
                 ", ".join(u.url for u in self.upstreams),
                 extra={"event": "started",
                        "dns": [h.display() for h in self.dns_bound],
                        "http": self.http_bound.display() if self.http_bound else None})

    def _ratelimiter(self) -> RateLimiter | None:
        rl = self.config.ratelimit
        if not rl.enabled:
            return None
        return RateLimiter(rl.qps, rl.burst, rl.network_qps, rl.network_burst, rl.ipv4_prefix,
                           rl.ipv6_prefix, AccessList(rl.exempt) if rl.exempt else None)

    def _on_policy(self, policy: Policy, result: ReloadResult) -> None:
        """Swap the new policy into the pipeline: one reference assignment, atomic."""
        self.resolver.policy = policy
        self.metrics.on_reload(result)
        self.metrics.prime(policy.lists)
        self.hits.set_lists(policy.lists)

    async def reload(self, reason: str) -> ReloadResult:
        sdnotify.reloading()
        try:
            return await self.lists.reload(reason)
        finally:
            sdnotify.ready()

    def request_reload(self, reason: str) -> None:
        """For signal handlers: start a reload without waiting for it."""
        self._spawn(self.reload(reason))

    def _spawn(self, coro: Any) -> None:
        """Background work the daemon owns: kept referenced, cancelled and awaited at stop."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_http(self, hp: HostPort) -> None:
        self._runner = web.AppRunner(build_app(self, self._token), access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, hp.host, hp.port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.http_bound = HostPort(hp.host, sock.getsockname()[1])

    async def stop(self) -> None:
        """Graceful: stop accepting, answer what is in flight (bounded), release everything."""
        self.serving = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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
    # Listeners are bound and lists loaded: give up root (outside systemd), then tell systemd.
    privdrop.own_state_dir(os.path.dirname(config.storage.path))
    privdrop.drop_privileges()
    sdnotify.ready(f"serving DNS on {', '.join(h.display() for h in daemon.dns_bound)}")
    daemon._spawn(sdnotify.watchdog_loop(lambda: daemon.serving))
    if on_started is not None:
        on_started(daemon)
    try:
        if shutdown_trigger is not None:
            await shutdown_trigger()
        else:
            await _wait_for_signal(daemon)
    finally:
        await daemon.stop()


async def _wait_for_signal(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload, "sighup")
    await stop.wait()
    sdnotify.stopping()
    log.info("signal received, draining", extra={"event": "draining"})
