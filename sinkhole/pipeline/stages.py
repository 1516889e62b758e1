"""The stages that answer at once: access, rate limit, built-in names, policy, cache.

Each stage is a small object called as `stage(q, client, transport, limit, now)` and returns
an `Answer` or None (pass to the next stage). None of them awaits: a query answered here costs
one decode, a few dict probes and one reply join. They hold no per-query state; the policy they
consult is swapped whole by `Pipeline.set_policy` on every reload.

`serve()` and `block()` are the two ways any stage (or the upstream stage) turns a decision into
reply bytes, so a cached and a fresh answer can never be rendered differently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sinkhole.dns.message import Reply, render
from sinkhole.dns.reply import error_reply, minimal_any, truncated_reply
from sinkhole.dns.wire import NOERROR, TYPE_ANY, Query
from sinkhole.dns.wire import REFUSED as RCODE_REFUSED
from sinkhole.lists.matcher import Policy
from sinkhole.pipeline.answer import BLOCKED, CACHED, DROPPED, LOCAL, RATELIMITED, REFUSED, Answer


def serve(q: Query, reply: Reply, age: int, limit: int, opt: bytes = b"",
          stale: bool = False) -> bytes:
    """An upstream answer (fresh, cached or stale) rendered for client query `q`.

    ANY (RFC 8482): existence is the upstream's truth — NXDOMAIN, NODATA and a CNAME at the
    owner are relayed as they are; only where the name exists with records do we answer with
    the minimal synthesised HINFO instead of every RRset (ANY is the reflection attacker's
    favourite question).
    """
    if q.qtype == TYPE_ANY and reply.an and not reply.cnames and reply.rcode == NOERROR:
        return minimal_any(q)
    return render(q, reply, age, limit, opt, stale)


def block(blocker: Any, q: Query, limit: int, verdict: tuple[Any, str], kind: str) -> Answer:
    """The Answer for a query the policy blocked: `verdict` is (Verdict, matched rule)."""
    v, rule = verdict
    info = v.list
    reply = blocker.answer(q, v.action, info.name if info is not None else "policy", rule,
                           limit, v.local)
    return Answer(BLOCKED, reply, v, rule, kind)


def inspect(policy: Policy, reply: Reply) -> tuple[Any, str] | None:
    """Answer inspection: a CNAME chain into a blocked name is blocked too (a tracker or C2
    hidden behind a first-party CNAME is still that name). An allowed target ends the walk."""
    match = policy.match
    for target in reply.cnames:
        verdict = match(target)
        if verdict is not None:
            return None if verdict[0].action == "allow" else verdict
    return None


class AccessStage:
    """Clients outside `access.allow` get REFUSED — no EDE text, so the reply is never larger
    than their query (no amplification) — and only at a bounded rate; past it, nothing."""

    __slots__ = ("allowed", "refusals")

    def __init__(self, access: Any, refusals: Any) -> None:
        self.allowed = access.allowed
        self.refusals = refusals     # a RateLimiter for the REFUSED replies themselves

    def __call__(self, q: Query, client: str, transport: str, limit: int,
                 now: float) -> Answer | None:
        if self.allowed(client):
            return None
        if not self.refusals.allow(client, now):
            return Answer(DROPPED, None, rule="refusal rate limit")
        reply = error_reply(q, RCODE_REFUSED)
        # Header + question + our 11-byte OPT only if the client sent an OPT (>= 11 bytes):
        # never above the query's size. Checked anyway: this is the invariant that matters.
        return Answer(REFUSED, reply if len(reply) <= len(q.data) else None)


class RateLimitStage:
    """UDP only (a forgeable source): over the limit, TC=1 (no larger than the query; a real
    client retries over TCP, which cannot be spoofed) or silence."""

    __slots__ = ("allow", "drop")

    def __init__(self, limiter: Any, drop: bool) -> None:
        self.allow = limiter.allow
        self.drop = drop

    def __call__(self, q: Query, client: str, transport: str, limit: int,
                 now: float) -> Answer | None:
        if transport != "udp" or self.allow(client, now):
            return None
        return Answer(RATELIMITED, None if self.drop else truncated_reply(q))


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


class BuiltinStage:
    """Canaries and DDR, answered before the lists: an allowlist must not undo them."""

    __slots__ = ("names", "answers", "blocker")

    def __init__(self, names: dict[str, str], blocker: Any) -> None:
        self.names = names
        # A reply builder per name, tried first: DDR's SVCB records for our own DoT/DoH
        # endpoints, filled in once the listeners are bound (their ports are known only then).
        self.answers: dict[str, Callable[[Query, int], bytes]] = {}
        self.blocker = blocker

    def __call__(self, q: Query, client: str, transport: str, limit: int,
                 now: float) -> Answer | None:
        action = self.names.get(q.qname)
        if action is None:
            return None
        build = self.answers.get(q.qname)
        if build is not None:
            return Answer(LOCAL, build(q, limit))
        return Answer(LOCAL, self.blocker.answer(q, action, "", q.qname, limit))


class PolicyStage:
    """Blocklists minus allowlists, before the cache: a name blocked by a reload must not be
    served from an answer cached before it."""

    __slots__ = ("policy", "blocker")

    def __init__(self, blocker: Any) -> None:
        self.policy = Policy()
        self.blocker = blocker

    def __call__(self, q: Query, client: str, transport: str, limit: int,
                 now: float) -> Answer | None:
        verdict = self.policy.match(q.qname)
        if verdict is None or verdict[0].action == "allow":
            return None
        return block(self.blocker, q, limit, verdict, "query")


class CacheStage:
    """Stored wire bytes, TTLs counted down, the client's own question echoed; a cached CNAME
    chain is inspected again, since the policy may have changed since it was stored."""

    __slots__ = ("get", "policy", "blocker")

    def __init__(self, cache: Any, blocker: Any) -> None:
        self.get = cache.get
        self.policy = Policy()
        self.blocker = blocker

    def __call__(self, q: Query, client: str, transport: str, limit: int,
                 now: float) -> Answer | None:
        hit = self.get(q.key, now)
        if hit is None:
            return None
        reply = hit[0]
        if reply.cnames and (verdict := inspect(self.policy, reply)) is not None:
            return block(self.blocker, q, limit, verdict, "cname")
        return Answer(CACHED, serve(q, reply, hit[1], limit))
