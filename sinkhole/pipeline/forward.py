"""The one stage that awaits: ask the upstreams, cache what they say, inspect it, or fail well.

Identical concurrent questions share one upstream query (the in-flight table, keyed like the
cache: name, type, class, DO and CD). The table is bounded by `max_in_flight`: a flood of
distinct names (random subdomains, a DGA) cannot pile up unbounded tasks and sockets; past the
bound a query gets SERVFAIL with an Extended DNS Error at once, and is counted.
When every upstream fails, RFC 8767: a stale answer beats SERVFAIL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sinkhole.dns.reply import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_OTHER,
    EDE_STALE,
    ede_option,
    error_reply,
)
from sinkhole.dns.wire import CD, SERVFAIL, Query
from sinkhole.errors import AllUpstreamsFailed
from sinkhole.lists.matcher import Policy
from sinkhole.pipeline.answer import FORWARDED, OVERLOADED, STALE, Answer
from sinkhole.pipeline.answer import SERVFAIL as R_SERVFAIL
from sinkhole.pipeline.stages import block, inspect, serve

_EDE_BUSY = ede_option(EDE_OTHER, "resolver busy: too many questions waiting upstream")
_EDE_STALE = ede_option(EDE_STALE, "upstreams unreachable")
_EDE_TIMEOUT = ede_option(EDE_NO_REACHABLE_AUTHORITY, "all upstreams timed out")
_EDE_FAILED = ede_option(EDE_NETWORK_ERROR, "all upstreams failed")


class UpstreamStage:
    """Forward a question; `pool.resolve(question, do, cd)` returns a Reply or raises
    AllUpstreamsFailed. `clock` is the pipeline's (monotonic seconds, injectable)."""

    def __init__(self, pool: Any, cache: Any, blocker: Any, max_in_flight: int,
                 clock: Callable[[], float]) -> None:
        self.pool = pool
        self.cache = cache
        self.blocker = blocker
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.policy = Policy()
        self.inflight: dict[bytes, asyncio.Future[Any]] = {}

    async def __call__(self, q: Query, client: str, transport: str, limit: int) -> Answer:
        key = q.key
        task = self.inflight.get(key)
        if task is None:
            if len(self.inflight) >= self.max_in_flight:
                return Answer(OVERLOADED, error_reply(q, SERVFAIL, _EDE_BUSY if q.edns else b""))
            task = asyncio.ensure_future(self._resolve(key, q.do, bool(q.flags & CD)))
            self.inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self.inflight.pop(k, None))
        try:
            reply = await asyncio.shield(task)
        except AllUpstreamsFailed as err:
            return self._failed(q, limit, err)
        if reply.cnames and (verdict := inspect(self.policy, reply)) is not None:
            return block(self.blocker, q, limit, verdict, "cname")
        return Answer(FORWARDED, serve(q, reply, 0, limit))

    async def _resolve(self, key: bytes, do: bool, cd: bool) -> Any:
        reply = await self.pool.resolve(key[:-1], do, cd)
        if self.cache is not None:
            self.cache.put(key, reply, self.clock())
        return reply

    def _failed(self, q: Query, limit: int, err: AllUpstreamsFailed) -> Answer:
        if self.cache is not None:
            stale = self.cache.get_stale(q.key, self.clock())
            if stale is not None:
                return Answer(STALE, serve(q, stale, 0, limit, _EDE_STALE if q.edns else b"",
                                           stale=True))
        ede = b""
        if q.edns:
            ede = _EDE_TIMEOUT if err.timed_out else _EDE_FAILED
        return Answer(R_SERVFAIL, error_reply(q, SERVFAIL, ede))
