"""The composition root: builds every part from the config, in order, and runs them.

Nothing imports this module but the CLI and the tests; parts get what they need passed in.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from sinkhole import privdrop, sdnotify
from sinkhole.alerts import AlertManager, AlertSetupError
from sinkhole.api import build_app
from sinkhole.cache import Cache
from sinkhole.clients.access import AccessList
from sinkhole.clients.names import ClientNames
from sinkhole.config import Config
from sinkhole.config.values import HostPort
from sinkhole.dns.block import BlockAnswers
from sinkhole.hits import HitRecorder, store_event
from sinkhole.lists.manager import ListManager, ReloadResult
from sinkhole.lists.matcher import Policy
from sinkhole.metrics import Metrics
from sinkhole.ratelimit import RateLimiter
from sinkhole.resolver import Resolver, special_names
from sinkhole.retro import hunt, log_find
from sinkhole.server import Listeners
from sinkhole.store import Store, StoreError
from sinkhole.store.queries import open_reader, query_hits
from sinkhole.upstream.pool import UpstreamPool, default_upstreams

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """Move everything loaded at start (lists, config, modules) out of the collector's sight
    and collect less often: with large caches the cyclic GC caused 40-65 ms tail spikes
    (measured, see the performance issue); this cut the worst case to ~17 ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


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
        self.retro_task: asyncio.Task | None = None   # the latest retro-hunt (tests await it)

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
        self._open_store()
        self.client_names = ClientNames(cfg.clients.names, cfg.clients.leases)
        self.hits = HitRecorder(self.metrics, names=self.client_names.name_for,
                                detail_rate=cfg.storage.hit_detail_rate,
                                detail_burst=cfg.storage.hit_detail_burst)
        self.hits.subscribe(self._store_hit, floods=True)
        self._seed_recent()
        try:
            self.alerts = AlertManager(cfg.alerts, self.store, self.metrics,
                                       list_meta=self._list_meta)
        except AlertSetupError as err:
            self.store.close()
            raise StartupError(str(err)) from None
        await self.alerts.start()
        self.hits.subscribe(self.alerts.on_hit)
        self.metrics.prime((), [s.name or s.type for s in cfg.alerts.sinks])
        sh = cfg.sinkhole
        self.resolver = Resolver(access=AccessList(cfg.access.allow), cache=self.cache,
                                 pool=self.pool, metrics=self.metrics,
                                 blocker=BlockAnswers(sh.ipv4, sh.ipv6, int(sh.ttl)),
                                 specials=special_names(cfg.policy), on_hit=self.hits.on_hit,
                                 ratelimit=self._ratelimiter(),
                                 ratelimit_drop=cfg.ratelimit.action == "drop",
                                 record_query=self.store.record_query
                                 if cfg.history.retention > 0 else None)
        self.lists = ListManager(cfg.blocklists, cfg.allowlists, self._on_policy)
        await self.lists.reload("startup")
        s = cfg.server
        self.listeners = Listeners(self.resolver.handle, self.metrics, tcp_idle=s.tcp_idle_timeout,
                                   tcp_max=s.tcp_max_connections,
                                   tcp_inflight=s.tcp_max_queries_in_flight)
        await self.listeners.start(cfg.listen.dns)
        if cfg.listen.http is not None:
            await self._start_http(cfg.listen.http)
        tune_gc()
        self.serving = self.ready = True
        if cfg.clients.leases:
            self._spawn(self._refresh_names(cfg.clients.refresh_interval))
        if cfg.storage.hit_detail_rate:
            self._spawn(self._flush_floods())
        if cfg.reload.watch and (cfg.blocklists or cfg.allowlists):
            self._spawn(self.lists.watch(cfg.reload.poll_interval, cfg.reload.debounce))
        log.info("sinkhole serving DNS on %s, HTTP on %s, upstreams %s",
                 ", ".join(h.display() for h in self.dns_bound),
                 self.http_bound.display() if self.http_bound else "off",
                 ", ".join(u.url for u in self.upstreams),
                 extra={"event": "started",
                        "dns": [h.display() for h in self.dns_bound],
                        "http": self.http_bound.display() if self.http_bound else None})

    def _open_store(self) -> None:
        st = self.config.storage
        self.store = Store(st.path, commit_interval=st.commit_interval,
                           synchronous=st.synchronous.upper(), retention=st.retention,
                           history_retention=self.config.history.retention,
                           queue_max=st.queue_max, on_error=self._on_store_error)
        try:
            self.store.open()
        except StoreError as err:
            raise StartupError(f"storage.path: {err}") from None
        self.metrics.watch_store(self.store)
        # Read at scrape time: the delivery loop's own updates only come with its next poll.
        self.metrics.outbox_pending.set_function(
            lambda: self.store.stats.get("outbox_pending", 0))
        self.metrics.outbox_oldest.set_function(
            lambda: self.store.stats.get("oldest_pending_age", 0.0))

    def _on_store_error(self, message: str) -> None:
        """Writer thread: a failed commit (disk full, read-only, locked). Nothing is lost:
        the batch is retried; DNS keeps answering."""
        log.error("store write failed, will retry: %s", message,
                  extra={"event": "store_error"})

    def _store_hit(self, ev: dict[str, Any]) -> None:
        if not self.store.record_hit(store_event(ev)):
            log.error("store queue full: hit dropped (client %s, %s)", ev["client"],
                      ev["qname"], extra={"event": "hit_dropped"})

    def _seed_recent(self) -> None:
        """The clients-with-hits gauge survives a restart: seed it from the last 24 h."""
        try:
            conn = open_reader(self.config.storage.path)
            try:
                rows = query_hits(conn, since=time.time() - 86400, limit=100_000)
            finally:
                conn.close()
        except Exception as err:   # a read problem must not stop DNS from starting
            log.warning("could not read recent hits: %s", err)
            return
        for r in rows:
            self.hits.seed(r["list"], r["severity"] or "none", r["client_ip"], r["time"])

    def _list_meta(self) -> dict[str, Any]:
        return {i.name: i.meta for i in self.lists.policy.lists}

    async def _flush_floods(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.hits.flush_floods()

    async def _refresh_names(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.client_names.refresh)
            except Exception:
                log.exception("reading DHCP leases failed")

    async def _retrohunt(self, added: dict[str, set[str]]) -> None:
        infos = {i.name: i for i in self.lists.policy.lists}
        since = time.time() - max(self.config.history.retention, 1.0)
        try:
            finds = await asyncio.to_thread(hunt, self.config.storage.path, added, infos,
                                            since, self.client_names.name_for)
        except Exception:
            log.exception("retro-hunt failed")
            return
        for find in finds:
            self.store.record_hit(store_event(find))
            log_find(find)
        if finds:
            self.alerts.on_retro(finds)
        log.info("retro-hunt over %d new names: %d finds", sum(map(len, added.values())),
                 len(finds), extra={"event": "retrohunt", "finds": len(finds)})

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
        self.alerts.on_reload(result)
        if result.reason != "startup" and result.added and self.config.history.retention > 0:
            self.retro_task = self._spawn(self._retrohunt(result.added))

    async def reload(self, reason: str) -> ReloadResult:
        sdnotify.reloading()
        try:
            return await self.lists.reload(reason)
        finally:
            sdnotify.ready()

    def request_reload(self, reason: str) -> None:
        """For signal handlers: start a reload without waiting for it."""
        self._spawn(self.reload(reason))

    def _spawn(self, coro: Any) -> asyncio.Task:
        """Background work the daemon owns: kept referenced, cancelled and awaited at stop."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        self.hits.flush_floods()
        await self.alerts.stop()
        await asyncio.to_thread(self.store.close)
        log.info("sinkhole stopped", extra={"event": "stopped"})


async def serve(config: Config, *, shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
                registry: CollectorRegistry | None = None,
                on_started: Callable[[Daemon], None] | None = None) -> None:
    """Run a daemon until `shutdown_trigger()` returns (default: SIGTERM or SIGINT)."""
    daemon = Daemon(config, registry=registry)
    await daemon.start()
    # Listeners are bound and lists loaded: give up root (outside systemd), then tell systemd.
    if privdrop.should_drop():
        target = privdrop.resolve_target()   # once: chown and drop agree, one warning at most
        privdrop.own_state_dir(os.path.dirname(config.storage.path), target=target)
        privdrop.drop_privileges(target=target)
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
