"""The decision as a value: what the pipeline did with one query.

A stage either passes (returns None) or returns an `Answer`; the pipeline then tells every
observer about that one value. Nothing else reports a decision: metrics, hit recording and
the passive-DNS history all read the same object, once, so a new exit from the chain cannot
forget to count itself.

Per-packet object: `__slots__`, positional construction, no defaults computed per call.
"""

from __future__ import annotations

from typing import Any

# The outcomes (the `result` label of sinkhole_queries_total). Module constants, so stages and
# observers compare interned strings.
FORWARDED = "forwarded"
CACHED = "cached"
STALE = "stale"
BLOCKED = "blocked"
LOCAL = "local"          # built-in answers (canaries, DDR) and RFC 8482 minimal ANY
REFUSED = "refused"      # a client outside access.allow
RATELIMITED = "ratelimited"
SERVFAIL = "servfail"
OVERLOADED = "overloaded"   # shed: too many distinct questions already waiting upstream
FORMERR = "formerr"
NOTIMP = "notimp"
DROPPED = "dropped"      # no reply at all (responses sent to us, outsiders' garbage)

RESULTS = (FORWARDED, CACHED, STALE, BLOCKED, LOCAL, REFUSED, RATELIMITED, SERVFAIL, OVERLOADED,
           FORMERR, NOTIMP, DROPPED)
# Answers that resolved a name for the client: these go to the passive-DNS history.
RESOLVED = frozenset({FORWARDED, CACHED, STALE})


class Answer:
    """One decision: `result` (above), the `reply` bytes (None: send nothing) and, for a block,
    the policy `verdict` (its list, action), the `rule` that matched and the hit `kind`
    ('query' when the name itself is listed, 'cname' when an answer's CNAME target is)."""

    __slots__ = ("result", "reply", "verdict", "rule", "kind")

    def __init__(self, result: str, reply: bytes | None, verdict: Any = None, rule: str = "",
                 kind: str = "query") -> None:
        self.result = result
        self.reply = reply
        self.verdict = verdict
        self.rule = rule
        self.kind = kind

    def __repr__(self) -> str:
        extra = f", list={self.verdict.list.name!r}, rule={self.rule!r}" \
            if self.verdict is not None and self.verdict.list is not None else ""
        return f"Answer({self.result!r}, {len(self.reply or b'')} bytes{extra})"
