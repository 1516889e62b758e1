"""The pipeline: decode, the chain of instant stages, the upstream stage, then the observers.

`build_pipeline` is the one place the chain is assembled from the config, in order, each
position commented with why it sits there; a disabled stage is not in the chain at all (no
`if enabled` per packet). `Pipeline.handle` is the hot path: bytes in, bytes out (or a
coroutine, only for the upstream stage), and every decision — whichever stage made it — is one
`Answer` that the observers (metrics, hit recording, passive-DNS history) are told about once.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from time import perf_counter
from typing import Any

from sinkhole.dns.reply import client_limit, error_reply, header_only_reply
from sinkhole.dns.wire import NOTIMP, WireError, parse_query
from sinkhole.lists.matcher import Policy
from sinkhole.pipeline.answer import DROPPED, FORMERR, RESOLVED, Answer
from sinkhole.pipeline.answer import NOTIMP as R_NOTIMP
from sinkhole.pipeline.forward import UpstreamStage
from sinkhole.pipeline.stages import (
    AccessStage,
    BuiltinStage,
    CacheStage,
    PolicyStage,
    RateLimitStage,
    special_names,
)

TCP_LIMIT = 65535

Stage = Callable[[Any, str, str, int, float], Answer | None]
Observer = Callable[[Answer, Any, str, str, float], None]
Result = bytes | None | Coroutine[Any, Any, bytes | None]


class Pipeline:
    """Turns a client packet into reply bytes (None: send nothing)."""

    def __init__(self, stages: Sequence[Stage], upstream: UpstreamStage,
                 observers: Sequence[Observer], *, allowed: Callable[[str], bool] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.stages = tuple(stages)
        self.upstream = upstream
        self.observers = tuple(observers)
        self.allowed = allowed      # access list, for packets too broken to reach the stages
        # None: the clock is perf_counter itself, so the latency start doubles as "now".
        self.clock = clock
        self.policy = Policy()
        self.builtins = next((s for s in self.stages if isinstance(s, BuiltinStage)), None)

    def set_policy(self, policy: Policy) -> None:
        """After a reload: every stage that consults the policy gets the new one, in one
        synchronous step on the loop (no query sees half of the swap)."""
        self.policy = policy
        for stage in (*self.stages, self.upstream):
            if hasattr(stage, "policy"):
                stage.policy = policy

    def handle(self, data: bytes, client: str, transport: str) -> Result:
        t0 = perf_counter()
        try:
            q = parse_query(data)
        except WireError as err:
            return self._decided(self._malformed(data, err, client), err.query, client,
                                 transport, t0)
        now = t0 if self.clock is None else self.clock()
        limit = client_limit(q) if transport == "udp" else TCP_LIMIT
        for stage in self.stages:
            answer = stage(q, client, transport, limit, now)
            if answer is not None:
                return self._decided(answer, q, client, transport, t0)
        return self._forward(q, client, transport, limit, t0)

    async def _forward(self, q: Any, client: str, transport: str, limit: int,
                       t0: float) -> bytes | None:
        answer = await self.upstream(q, client, transport, limit)
        return self._decided(answer, q, client, transport, t0)

    def _decided(self, answer: Answer, q: Any, client: str, transport: str,
                 t0: float) -> bytes | None:
        for observe in self.observers:
            observe(answer, q, client, transport, t0)
        return answer.reply

    def _malformed(self, data: bytes, err: WireError, client: str) -> Answer:
        """FORMERR/NOTIMP/BADVERS for an allowed client; outsiders never get FORMERR (access
        control comes before every answer), and responses sent to us are never answered."""
        reason = err.reason
        if err.rcode is None or (self.allowed is not None and not self.allowed(client)):
            return Answer(DROPPED, None, rule=reason)
        result = R_NOTIMP if err.rcode == NOTIMP else FORMERR
        if err.query is not None:
            return Answer(result, error_reply(err.query, err.rcode), rule=reason)
        return Answer(result, header_only_reply(data, err.rcode), rule=reason)


# --- observers: told once per decision, never change it -----------------------------------

def metrics_observer(metrics: Any) -> Observer:
    """Per-query counts and latency by outcome; malformed packets also by reason (the reason
    strings are our own fixed WireError texts, so the label set stays bounded)."""
    record = metrics.query
    bad = metrics.bad_packet
    bad_results = (FORMERR, R_NOTIMP, DROPPED)

    def observe(a: Answer, q: Any, client: str, transport: str, t0: float) -> None:
        record(transport, q.qtype if q is not None else 0, a.result, t0)
        if a.rule and a.verdict is None and a.result in bad_results:
            bad(transport, a.rule)
    return observe


def hits_observer(on_hit: Callable[..., None]) -> Observer:
    """A blocked query is a hit: the recorder logs it, stores it and alerts on it."""
    def observe(a: Answer, q: Any, client: str, transport: str, t0: float) -> None:
        if a.verdict is not None and a.verdict.list is not None:
            on_hit(q, client, transport, a.verdict, a.rule, a.kind)
    return observe


def history_observer(record_query: Callable[[str, str], None]) -> Observer:
    """Names the network resolved go to the passive-DNS history (for retro-hunt). Blocked
    queries do not: they are already hits, and the history is for names not yet known bad."""
    def observe(a: Answer, q: Any, client: str, transport: str, t0: float) -> None:
        if a.result in RESOLVED:
            record_query(client, q.qname)
    return observe


# --- assembly ------------------------------------------------------------------------------

def build_pipeline(cfg: Any, *, access: Any, refusals: Any, ratelimiter: Any, cache: Any,
                   pool: Any, blocker: Any, metrics: Any, on_hit: Callable[..., None] | None,
                   record_query: Callable[[str, str], None] | None,
                   clock: Callable[[], float] | None = None,
                   hunt: Observer | None = None) -> Pipeline:
    """The chain for `cfg`, from the parts the daemon built (each owned elsewhere)."""
    stages: list[Stage] = []
    # 1. Access control first: outsiders learn nothing and cost nothing; their REFUSED is
    #    never larger than their question. Not in the chain when everything is allowed.
    if not access.allows_everything:
        stages.append(AccessStage(access, refusals))
    # 2. Rate limit (UDP, forgeable sources) after access, so outsiders never fill buckets.
    if ratelimiter is not None:
        stages.append(RateLimitStage(ratelimiter, cfg.ratelimit.action == "drop"))
    # 3. Built-in names (canaries, DDR) before the lists: an allowlist must not undo them.
    builtins = special_names(cfg.policy)
    if builtins:
        stages.append(BuiltinStage(builtins, blocker))
    # 4. Policy before the cache: a name blocked by a reload is never served from the cache.
    #    (ANY is not a stage of its own: its minimal answer needs the upstream's word that the
    #    name exists, so it is shaped where answers are rendered, see stages.serve.)
    stages.append(PolicyStage(blocker))
    # 5. The cache: answers without awaiting, with the same CNAME inspection as fresh ones.
    if cache is not None:
        stages.append(CacheStage(cache, blocker))
    # 6. The upstreams: the only stage that awaits, so it is last and outside the loop.
    upstream = UpstreamStage(pool, cache, blocker, cfg.upstream_max_in_flight,
                             clock or perf_counter)
    observers: list[Observer] = [metrics_observer(metrics)]
    if on_hit is not None:
        observers.append(hits_observer(on_hit))
    if record_query is not None:
        observers.append(history_observer(record_query))
    if hunt is not None:             # one deque append; the signals run in their own thread
        observers.append(hunt)
    return Pipeline(stages, upstream, observers,
                    allowed=None if access.allows_everything else access.allowed, clock=clock)
