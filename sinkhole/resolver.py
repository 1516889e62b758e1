"""The query pipeline: the chain of stages every query passes, written once, in order.

Stages that can answer at once (decode, access, cache) never await, so `handle()` returns the
reply bytes directly for them; only a cache miss returns a coroutine that the listener runs as
a task. Observers (metrics, later hits) are told about a decision once it is made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

from sinkhole.cache import Cache
from sinkhole.dns.block import BlockAnswers
from sinkhole.dns.message import Reply, render
from sinkhole.dns.reply import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_PROHIBITED,
    EDE_STALE,
    client_limit,
    ede_option,
    error_reply,
    header_only_reply,
    minimal_any,
    truncated_reply,
)
from sinkhole.dns.wire import REFUSED, SERVFAIL, TYPE_ANY, WireError, parse_query
from sinkhole.lists.matcher import Policy, Verdict
from sinkhole.metrics import Metrics
from sinkhole.upstream.pool import AllUpstreamsFailed, UpstreamPool

log = logging.getLogger(__name__)

TCP_LIMIT = 65535
_REFUSED_EDE = ede_option(EDE_PROHIBITED, "client not in access.allow")

Result = bytes | None | Coroutine[Any, Any, bytes | None]
HitObserver = Callable[[Any, str, str, Verdict, str, str], None]


def special_names(cfg: Any) -> dict[str, str]:
    """Built-in answers that keep devices on this resolver (each switch documented in README):
    Firefox's DoH canary, Apple's iCloud Private Relay signal, and DDR discovery (RFC 9462)."""
    out: dict[str, str] = {}
    if cfg.firefox_canary:
        out["use-application-dns.net"] = "nxdomain"
    if cfg.icloud_private_relay:
        out["mask.icloud.com"] = out["mask-h2.icloud.com"] = "nxdomain"
    if cfg.ddr:
        out["resolver.arpa"] = out["_dns.resolver.arpa"] = "nodata"
    return out


class Resolver:
    """Turns a client packet into reply bytes (or None: drop)."""

    def __init__(self, *, access: Any, cache: Cache | None, pool: UpstreamPool,
                 metrics: Metrics, blocker: BlockAnswers, specials: dict[str, str] | None = None,
                 on_hit: HitObserver | None = None, ratelimit: Any = None,
                 ratelimit_drop: bool = False,
                 record_query: Callable[[str, str], None] | None = None) -> None:
        self.access = access
        self.cache = cache
        self.pool = pool
        self.metrics = metrics
        self.blocker = blocker
        self.specials = specials or {}
        self.policy = Policy()      # replaced whole by the list manager on every reload
        self.on_hit = on_hit
        self.ratelimit = ratelimit
        self.ratelimit_drop = ratelimit_drop
        self.record_query = record_query   # passive-DNS history (store), off when None
        self.inflight: dict[bytes, asyncio.Task[Reply]] = {}

    def handle(self, data: bytes, client: str, transport: str) -> Result:
        t0 = perf_counter()
        m = self.metrics
        # 1. Decode header + question by hand; anything malformed is answered here or dropped.
        try:
            q = parse_query(data)
        except WireError as err:
            return self._bad_packet(data, err, transport, t0)
        # 2. Access control before any work: outsiders learn nothing and cost nothing.
        if not self.access.allowed(client):
            m.query(transport, q.qtype, "refused", t0)
            return error_reply(q, REFUSED, _REFUSED_EDE if q.edns else b"")
        # 3. Rate limit UDP only (forgeable sources); over the limit: TC=1 (never larger than
        #    the query, so no amplification) or silence. After access: outsiders cost nothing.
        if transport == "udp":
            rl = self.ratelimit
            if rl is not None and not rl.allow(client, t0):
                m.query(transport, q.qtype, "ratelimited", t0)
                return None if self.ratelimit_drop else truncated_reply(q)
            limit = client_limit(q)
        else:
            limit = TCP_LIMIT
        # 3b. RFC 8482: ANY gets a minimal synthesised answer, never the whole zone's worth.
        if q.qtype == TYPE_ANY and self.policy.match(q.qname) is None:
            m.query(transport, q.qtype, "local", t0)
            return minimal_any(q)
        # 3c. Built-in answers (canaries, DDR) before lists: an allowlist must not undo them.
        special = self.specials.get(q.qname)
        if special is not None:
            m.query(transport, q.qtype, "local", t0)
            return self.blocker.answer(q, special, "", q.qname, limit)
        # 4. Policy before the cache: a name blocked by a reload must not be served from cache.
        verdict = self.policy.match(q.qname)
        if verdict is not None and verdict[0].action != "allow":
            return self._block(q, client, transport, limit, verdict, "query", t0)
        # 5. Cache: answered from stored wire bytes, TTLs patched, the client's question echoed.
        cache = self.cache
        if cache is not None:
            hit = cache.get(q.key, time.monotonic())
            if hit is not None:
                reply = hit[0]
                if reply.cnames and (blocked := self._inspect(reply)) is not None:
                    return self._block(q, client, transport, limit, blocked, "cname", t0)
                m.query(transport, q.qtype, "cached", t0)
                if self.record_query is not None:
                    self.record_query(client, q.qname)
                return render(q, reply, hit[1], limit)
        # 6. Upstream: the only stage that awaits.
        return self._forward(q, client, transport, limit, t0)

    def _inspect(self, reply: Reply) -> tuple[Verdict, str] | None:
        """Answer inspection: a CNAME chain into a blocked name is blocked too (a tracker
        hidden behind a first-party CNAME is still the tracker)."""
        match = self.policy.match
        for target in reply.cnames:
            verdict = match(target)
            if verdict is not None:
                return None if verdict[0].action == "allow" else verdict
        return None

    def _block(self, q: Any, client: str, transport: str, limit: int,
               verdict: tuple[Verdict, str], kind: str, t0: float) -> bytes:
        v, suffix = verdict
        info = v.list
        label = info.name if info is not None else "policy"
        self.metrics.query(transport, q.qtype, "blocked", t0)
        # Not in the passive-DNS history: a blocked query is already a hit (the history is
        # for names not yet known to be bad), and recording it twice was half the cost of
        # a blocked answer (measured, bench/results).
        if self.on_hit is not None:
            self.on_hit(q, client, transport, v, suffix, kind)
        return self.blocker.answer(q, v.action, label, suffix, limit, v.local)

    def _bad_packet(self, data: bytes, err: WireError, transport: str,
                    t0: float) -> bytes | None:
        self.metrics.bad_packet(transport, err.reason)
        if err.rcode is None:
            self.metrics.query(transport, 0, "dropped", t0)
            return None
        q = err.query
        self.metrics.query(transport, q.qtype if q else 0,
                           "notimp" if err.rcode == 4 else "formerr", t0)
        if q is not None:
            return error_reply(q, err.rcode)
        return header_only_reply(data, err.rcode)

    async def _forward(self, q: Any, client: str, transport: str, limit: int,
                       t0: float) -> bytes | None:
        key = q.key
        task = self.inflight.get(key)
        if task is None:
            # Identical concurrent questions share one upstream query.
            task = asyncio.ensure_future(self._resolve(key, q.do, bool(q.flags & 0x10)))
            self.inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self.inflight.pop(k, None))
        try:
            reply = await asyncio.shield(task)
        except AllUpstreamsFailed as err:
            return self._failed(q, transport, limit, err, t0)
        if reply.cnames and (blocked := self._inspect(reply)) is not None:
            return self._block(q, client, transport, limit, blocked, "cname", t0)
        self.metrics.query(transport, q.qtype, "forwarded", t0)
        if self.record_query is not None:
            self.record_query(client, q.qname)
        return render(q, reply, 0, limit)

    async def _resolve(self, key: bytes, do: bool, cd: bool) -> Reply:
        reply = await self.pool.resolve(key[:-1], do, cd)
        if self.cache is not None:
            self.cache.put(key, reply, time.monotonic())
        return reply

    def _failed(self, q: Any, transport: str, limit: int, err: AllUpstreamsFailed,
                t0: float) -> bytes:
        """RFC 8767: a stale answer beats SERVFAIL; else SERVFAIL with an EDE saying why."""
        if self.cache is not None:
            stale = self.cache.get_stale(q.key, time.monotonic())
            if stale is not None:
                self.metrics.query(transport, q.qtype, "stale", t0)
                ede = ede_option(EDE_STALE, "upstreams unreachable") if q.edns else b""
                return render(q, stale, 0, limit, ede, stale=True)
        self.metrics.query(transport, q.qtype, "servfail", t0)
        if not q.edns:
            return error_reply(q, SERVFAIL)
        code = EDE_NO_REACHABLE_AUTHORITY if err.timed_out else EDE_NETWORK_ERROR
        text = "all upstreams timed out" if err.timed_out else "all upstreams failed"
        return error_reply(q, SERVFAIL, ede_option(code, text))
