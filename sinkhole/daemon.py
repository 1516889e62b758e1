"""The composition root: builds every part from the config, in order, and runs them.

Nothing imports this module but the CLI and the tests; parts get what they need passed in.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from sinkhole import privdrop, sdnotify
from sinkhole.alerts import AlertManager, AlertSetupError
from sinkhole.api import Admin, build_app
from sinkhole.cache import Cache
from sinkhole.capture import CaptureListener, capture_addresses
from sinkhole.clients.access import AccessList
from sinkhole.clients.names import ClientNames
from sinkhole.config import Config
from sinkhole.config.values import HostPort
from sinkhole.dns.block import BlockAnswers
from sinkhole.dns.svcb import ddr_answer, ddr_endpoints
from sinkhole.errors import StartupError
from sinkhole.hits import HitRecorder, hit_from_mapping
from sinkhole.huntloop import HuntLoop
from sinkhole.lists.feeds import FeedFetcher
from sinkhole.lists.manager import ListManager, ReloadResult
from sinkhole.lists.matcher import Policy
from sinkhole.lists.names import suffix_rules
from sinkhole.lists.refresh import FeedRefresher
from sinkhole.metrics import Metrics
from sinkhole.pipeline import build_pipeline
from sinkhole.ratelimit import RateLimiter
from sinkhole.retro import hunt, hunt_policy, log_find
from sinkhole.server import Listeners
from sinkhole.store import Store, StoreError
from sinkhole.store.queries import open_reader, query_hits
from sinkhole.tlscert import CertStore
from sinkhole.upstream.pool import UpstreamPool, default_upstreams

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """Move everything loaded at start (lists, config, modules) out of the collector's sight
    and collect less often: with large caches the cyclic GC caused 40-65 ms tail spikes
    (measured, see the performance issue); this cut the worst case to ~17 ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class Clock:
    """The daemon's two clocks, injectable as one object so tests never sleep for a TTL:
    `monotonic()` for TTLs, deadlines and rate limits; `time()` for timestamps users see."""

    monotonic: Callable[[], float] = staticmethod(time.monotonic)
    time: Callable[[], float] = staticmethod(time.time)


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
    """One running sinkhole: listeners, pipeline, HTTP; `start()` then `stop()`.

    Everything `start()` opens is pushed on one AsyncExitStack in the order it was opened, so a
    start that fails half-way (a port taken, a store that cannot open) closes exactly what it
    had opened, and `stop()` is the same unwinding: listeners drain before the store closes.
    """

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None,
                 clock: Any = None) -> None:
        self.config = config
        self.clock = clock if clock is not None else Clock()
        self.metrics = Metrics(registry)
        self.serving = False
        self.ready = False
        self.http_bound: HostPort | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stack: AsyncExitStack | None = None
        self.retro_task: asyncio.Task | None = None   # the latest retro-hunt (tests await it)
        self._loaded_at: dict[str, float] = {}
        self._retro_lock = asyncio.Lock()
        self._last_error: dict[str, str | None] = {}

    @property
    def dns_bound(self) -> list[HostPort]:
        return self.listeners.bound

    async def start(self) -> None:
        async with AsyncExitStack() as stack:
            await self._open(stack)
            self._stack = stack.pop_all()   # started: stop() unwinds it, not this block

    async def _open(self, stack: AsyncExitStack) -> None:
        cfg = self.config
        clock = self.clock
        # Everything that can refuse the config is checked before anything binds.
        self._token = read_token(cfg.api.token_file) if cfg.api.token_file else None
        own = [(h.host, h.port) for h in cfg.listen.dns]
        self.upstreams = cfg.upstreams or tuple(default_upstreams(own))
        c = cfg.cache
        self.cache = Cache(max_entries=c.max_entries, max_bytes=c.max_bytes,
                           serve_stale=c.serve_stale, max_ttl=c.max_ttl,
                           max_negative_ttl=c.max_negative_ttl) if c.enabled else None
        if self.cache is not None:
            self.metrics.watch_cache(self.cache)
        self.pool = UpstreamPool(self.upstreams, cfg.upstream_timeout,
                                 ca_file=cfg.upstream_ca_file, on_result=self.metrics.upstream,
                                 on_forged=lambda _why: self.metrics.forged.inc())
        stack.push_async_callback(self.pool.close)
        self._open_store()
        stack.push_async_callback(asyncio.to_thread, self.store.close)
        self.client_names = ClientNames(cfg.clients.names, cfg.clients.leases)
        try:
            self.alerts = AlertManager(cfg.alerts, self.store, self.metrics,
                                       list_meta=self._list_meta, clock=clock.time)
        except AlertSetupError as err:
            raise StartupError(str(err)) from None
        await self.alerts.start()
        stack.push_async_callback(self.alerts.stop)
        self.hits = HitRecorder(self.metrics, names=self.client_names.name_for,
                                detail_rate=cfg.storage.hit_detail_rate,
                                detail_burst=cfg.storage.hit_detail_burst,
                                store=self.store.record_hit, alert=self.alerts.on_hit,
                                alert_retro=self.alerts.on_retro, clock=clock.time)
        stack.callback(self.hits.flush_floods)   # before alerts and store close
        self._seed_recent()
        self.metrics.prime((), [s.name or s.type for s in cfg.alerts.sinks])
        self.hunt: HuntLoop | None = None
        if cfg.hunt.enabled:
            self.hunt = HuntLoop(cfg.hunt, cfg.storage.hunt_path, names=self.client_names.name_for,
                                 on_suspicion=self._on_suspicion, clock=clock.time)
            self.hunt.start()
            stack.push_async_callback(self.hunt.stop)
            self.metrics.watch_hunt(self.hunt)
        sh = cfg.sinkhole
        rl = cfg.ratelimit
        self.pipeline = build_pipeline(
            cfg, access=AccessList(cfg.access.allow), refusals=outsider_limiter(),
            ratelimiter=RateLimiter(rl.qps, rl.burst, rl.network_qps, rl.network_burst,
                                    rl.ipv4_prefix, rl.ipv6_prefix,
                                    AccessList(rl.exempt) if rl.exempt else None)
            if rl.enabled else None,
            cache=self.cache, pool=self.pool,
            blocker=BlockAnswers(sh.ipv4, sh.ipv6, int(sh.ttl)), metrics=self.metrics,
            on_hit=self.hits.on_hit,
            record_query=self.store.record_query if cfg.history.retention > 0 else None,
            hunt=self.hunt.observer() if self.hunt is not None else None,
            clock=None if clock.monotonic is time.monotonic else clock.monotonic)
        feeds = [b for b in cfg.blocklists if b.url]
        self.fetcher = FeedFetcher(cfg.storage.folder,
                                   default_ca_file=cfg.upstream_ca_file, clock=clock.time) \
            if feeds else None
        if self.fetcher is not None:
            stack.push_async_callback(self.fetcher.close)
        # The Public Suffix List (from its package's folder) before any drop of privileges:
        # feed parsing and hunting consult it later, from threads.
        await asyncio.to_thread(suffix_rules)
        self.lists = ListManager(cfg.blocklists, cfg.allowlists, self._on_policy,
                                 feed_copy=self._feed_copy)
        await self.lists.reload("startup")    # feeds from their last good copy: no waiting
        self.feeds = FeedRefresher(feeds, self.fetcher, self.lists, self.metrics,
                                   on_outage=self.alerts.on_list_error, clock=clock.time) \
            if self.fetcher is not None else None
        if self.feeds is not None:
            self.metrics.prime_feeds((f.name, self.fetcher.state(f).last_success) for f in feeds)
        s = cfg.server
        self.listeners = Listeners(self.pipeline.handle, self.metrics,
                                   tcp_idle=s.tcp_idle_timeout, tcp_max=s.tcp_max_connections,
                                   tcp_inflight=s.tcp_max_queries_in_flight,
                                   tcp_max_per_client=s.tcp_max_connections_per_client)
        self.metrics.watch_listeners(self.listeners)
        stack.push_async_callback(self.listeners.drain, s.drain_timeout)
        await self.listeners.start(cfg.listen.dns)
        await self._start_encrypted()
        self.capture: CaptureListener | None = None
        if cfg.sinkhole.listen:
            self.capture = CaptureListener(self.hits.on_connect, clock=clock.time)
            stack.push_async_callback(self.capture.close)
            await self.capture.start(capture_addresses(cfg.sinkhole.ipv4, cfg.sinkhole.ipv6,
                                                       cfg.sinkhole.ports))
            self.metrics.watch_capture(self.capture)
        if cfg.listen.http is not None:
            await self._start_http(stack, cfg.listen.http)
        stack.push_async_callback(self._cancel_tasks)   # first to run at stop
        tune_gc()
        self.serving = self.ready = True
        if cfg.clients.leases:
            self._spawn(self._refresh_names(cfg.clients.refresh_interval))
        if cfg.storage.hit_detail_rate:
            self._spawn(self._flush_floods())
        if cfg.reload.watch and any(b.path for b in (*cfg.blocklists, *cfg.allowlists)):
            self._spawn(self.lists.watch(cfg.reload.poll_interval, cfg.reload.debounce))
        if self.feeds is not None:
            for f in self.feeds.specs:
                self._spawn(self.feeds.run(f))
        if self.certs is not None and cfg.reload.watch:
            self._spawn(self.certs.watch(cfg.reload.poll_interval))
        if cfg.history.retention > 0 and self.lists.policy.lists:
            # Names listed while the daemon was down: asked before we knew they were bad.
            self.retro_task = self._spawn(self._retrohunt_startup())
        log.info("sinkhole serving DNS on %s, HTTP on %s, upstreams %s",
                 ", ".join(h.display() for h in self.dns_bound),
                 self.http_bound.display() if self.http_bound else "off",
                 ", ".join(u.url for u in self.upstreams),
                 extra={"event": "started",
                        "dns": [h.display() for h in self.dns_bound],
                        "http": self.http_bound.display() if self.http_bound else None})

    async def _start_encrypted(self) -> None:
        """DoT and DoH listeners on our certificate, and DDR answers naming them (RFC 9462),
        so devices that discover encrypted DNS upgrade to this resolver, not around it. The
        listeners close with the plain ones (Listeners.drain)."""
        cfg = self.config
        self.certs: CertStore | None = None
        if not (cfg.listen.dot or cfg.listen.doh):
            return
        self.certs = CertStore(cfg.tls.cert_file or "", cfg.tls.key_file or "", cfg.tls.name)
        self.metrics.watch_tls(self.certs)
        await self.listeners.start_dot(cfg.listen.dot, self.certs)
        await self.listeners.start_doh(cfg.listen.doh, self.certs)
        builtins = self.pipeline.builtins
        if cfg.policy.ddr and builtins is not None and self.certs.name:
            endpoints = ddr_endpoints(self.certs.name, self.listeners.dot_bound,
                                      self.listeners.doh_bound)
            builtins.answers["_dns.resolver.arpa"] = \
                lambda q, limit: ddr_answer(q, endpoints, limit)

    def _open_store(self) -> None:
        st = self.config.storage
        self.store = Store(st.path, commit_interval=st.commit_interval,
                           synchronous=st.synchronous.upper(), retention=st.retention,
                           history_retention=self.config.history.retention,
                           queue_max=st.queue_max, on_error=self._on_store_error,
                           clock=self.clock.time)
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

    def _seed_recent(self) -> None:
        """The clients-with-hits gauge survives a restart: seed it from the last 24 h."""
        try:
            conn = open_reader(self.config.storage.path)
            try:
                rows = query_hits(conn, since=self.clock.time() - 86400, limit=100_000)
            finally:
                conn.close()
        except Exception as err:   # a read problem must not stop DNS from starting
            log.warning("could not read recent hits: %s", err)
            return
        for r in reversed(rows):   # newest first from the store; the gauge wants oldest first
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

    async def _retrohunt(self, added: dict[str, set[str]] | None) -> None:
        """Who asked for these names before they were listed? `added`: the names a reload
        added per list; None: the whole policy against the whole history (start-up).

        One hunt at a time, and its finds committed before the next starts: the dedup
        (a (client, name) is reported once) reads committed retro hits, so a start-up hunt and
        a feed refresh racing would otherwise report the same device twice."""
        async with self._retro_lock:
            await self._hunt(added)

    async def _hunt(self, added: dict[str, set[str]] | None) -> None:
        infos = {i.name: i for i in self.lists.policy.lists}
        since = self.clock.time() - max(self.config.history.retention, 1.0)
        names = self.client_names.name_for
        path = self.config.storage.path
        try:
            # The history's newest counts are still in the writer's memory: write them first.
            await asyncio.to_thread(self.store.flush_history)
            if added is None:
                finds = await asyncio.to_thread(hunt_policy, path, self.lists.policy, since,
                                                names)
            else:
                finds = await asyncio.to_thread(hunt, path, added, infos, since, names)
        except Exception:
            log.exception("retro-hunt failed")
            return
        found = [hit_from_mapping(f) for f in finds]
        for find in finds:
            log_find(find)
        self.hits.on_retro(found)
        if found:
            await asyncio.to_thread(self.store.flush)
        searched = "the whole policy" if added is None else \
            f"{sum(map(len, added.values()))} new names"
        log.info("retro-hunt over %s: %d finds", searched, len(found),
                 extra={"event": "retrohunt", "finds": len(found)})

    async def _retrohunt_startup(self) -> None:
        await self._retrohunt(None)

    def _on_suspicion(self, s: Any) -> None:
        """On the loop, for each suspicion the hunter created or raised: count it by signal,
        and alert once it reaches hunt.alert_score (the alert policy keeps it to one per
        (device, domain) per cooldown)."""
        for name in {sig["signal"] for sig in s.signals}:
            self.metrics.suspicions.labels(name).inc()
        if s.score >= self.config.hunt.alert_score:
            reasons = "; ".join(sig.get("reason", sig["signal"]) for sig in s.signals)
            self.metrics.suspicion_alerts.inc()
            self.alerts.on_suspicion(s.client_ip, s.client_name, s.domain, s.score, reasons,
                                     s.first_seen, s.last_seen, s.count)

    def _on_policy(self, policy: Policy, result: ReloadResult) -> None:
        """Swap the new policy into the pipeline: one synchronous step on the loop."""
        self.pipeline.set_policy(policy)
        now = self.clock.time()
        for rep in result.reports:
            self._last_error[rep.name] = rep.error
            if not rep.error:
                self._loaded_at[rep.name] = now
        self.metrics.on_reload(result)
        self.metrics.prime(policy.lists)
        self.hits.set_lists(policy.lists)
        self.alerts.on_reload(result)
        if result.reason != "startup" and result.added and self.config.history.retention > 0:
            self.retro_task = self._spawn(self._retrohunt(result.added))
        if self.hunt is not None and result.reason == "startup":
            # Suspicions from before the restart that a list now names: the policy is asked
            # per suspected domain, not walked name by name (a million at start-up).
            self.hunt.submit(lambda h, p=policy: h.mark_listed_by_policy(p))
        elif self.hunt is not None and result.added:
            # A list now names a suspected domain: the suspicion records it (and the
            # retro-hunt above turns the device's queries into hits).
            for list_name, names in result.added.items():
                # (the reload's own new set, never changed after: no copy on the loop)
                self.hunt.submit(lambda h, n=names, ln=list_name: h.mark_listed(n, ln))

    def _feed_copy(self, spec: Any) -> Any:
        """Where a feed's last good download is (None: never downloaded)."""
        f = self.fetcher
        return f.good_path(spec) if f is not None and f.has_good(spec) else None

    async def reload(self, reason: str) -> ReloadResult:
        """Every list now: feeds are fetched first (conditional GET), then one reload parses
        whatever changed. A feed that failed shows its error in the result."""
        sdnotify.reloading()
        try:
            if self.certs is not None:   # the DoT/DoH pair too; a bad one keeps the old
                await asyncio.to_thread(self.certs.reload)
            result, errors = (None, {}) if self.feeds is None else \
                await self.feeds.refresh(None, reason)
            if result is None:
                result = await self.lists.reload(reason)
            for rep in result.reports:
                if rep.name in errors and not rep.error:
                    rep.error = errors[rep.name]
            return result
        finally:
            sdnotify.ready()

    def list_rows(self) -> list[dict[str, Any]]:
        """One row per list for `sinkhole lists` and GET /api/v1/lists: name, source, format,
        entries, last_success, last_error, next_refresh (times Unix seconds, None if never)."""
        last = self.lists.last_result
        reports = {r.name: r for r in last.reports} if last is not None else {}
        rows = []
        specs = [(b.name, b) for b in self.config.blocklists] + \
            [(f"allowlist[{i}]", a) for i, a in enumerate(self.config.allowlists)]
        for name, spec in specs:
            rep = reports.get(name)
            url = getattr(spec, "url", "")
            row = {"name": name, "source": spec.source if hasattr(spec, "source") else spec.path,
                   "format": getattr(spec, "format", "auto"),
                   "entries": rep.entries if rep is not None else 0,
                   "last_success": self._loaded_at.get(name),
                   "last_error": self._last_error.get(name), "next_refresh": None}
            if url and self.fetcher is not None and self.feeds is not None:
                st = self.fetcher.state(spec)
                row["last_success"] = st.last_success
                row["last_error"] = st.last_error if st.failures else None
                row["next_refresh"] = self.feeds.next_refresh.get(name)
            rows.append(row)
        return rows

    def request_reload(self, reason: str) -> None:
        """For signal handlers: start a reload without waiting for it."""
        self._spawn(self.reload(reason))

    def _spawn(self, coro: Any) -> asyncio.Task:
        """Background work the daemon owns: kept referenced, cancelled and awaited at stop."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel_tasks(self) -> None:
        self.serving = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def admin(self) -> Admin:
        """What the HTTP API may see and do: read the store, scrape, reload. Not the daemon."""
        return Admin(db_path=self.config.storage.path, registry=self.metrics.registry,
                     reload=self.reload, last_reload=lambda: self.lists.last_result,
                     lists=self.list_rows,
                     flush_history=lambda: asyncio.to_thread(self.store.flush),
                     policy=lambda: self.lists.policy, config=self.config,
                     client_name=self.client_names.name_for, wake_alerts=self.alerts.wake,
                     serving=lambda: self.serving, ready=lambda: self.serving and self.ready)

    async def _start_http(self, stack: AsyncExitStack, hp: HostPort) -> None:
        runner = web.AppRunner(build_app(self.admin(), self._token), access_log=None,
                               handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, hp.host, hp.port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.http_bound = HostPort(hp.host, sock.getsockname()[1])

    async def stop(self) -> None:
        """Graceful: stop accepting, answer what is in flight (bounded), release everything,
        in the reverse order of start()."""
        self.serving = False
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        log.info("sinkhole stopped", extra={"event": "stopped"})


def outsider_limiter() -> RateLimiter:
    """REFUSED replies to clients outside access.allow: a few per second per address and per
    /24 (/56); past that, silence. A refusal is small, but a flood of forged sources must not
    turn us into a reflector at any size."""
    return RateLimiter(5.0, 10.0, 50.0, 100.0)


async def serve(config: Config, *, shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
                registry: CollectorRegistry | None = None,
                on_started: Callable[[Daemon], None] | None = None,
                config_path: str | None = None) -> None:
    """Run a daemon until `shutdown_trigger()` returns (default: SIGTERM or SIGINT).

    `config_path` is the file `config` came from: run as root, the daemon checks that the
    user it drops to can still read it.
    """
    daemon = Daemon(config, registry=registry)
    # Root outside systemd: check what the user will need, and note which store files exist
    # before the store opens, so that only what root creates changes owner (privdrop).
    root = privdrop.RootStart.prepare(config, config_path)
    try:
        await daemon.start()
    finally:
        if root is not None:
            root.hand_over()
    if root is not None:
        # Listeners are bound and lists loaded: give up root for good, then tell systemd.
        try:
            root.drop()
        except BaseException:
            await daemon.stop()
            raise
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
