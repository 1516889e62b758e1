"""Suspicions: what the hunter reports about one (device, domain), and how its score is made.

A suspicion's score is the sum of its signals' weights, capped at 100. The weights are chosen
so that what an office does all day stays below the default alert score (80) and what an
implant does reaches it:

| signal       | weight | alone reaches 80? | why that weight |
| ------------ | -----: | ----------------- | --------------- |
| newly_seen   | 30     | no  | an office meets new domains all day |
| rare         | 15     | no  | only ever added to another signal: the long tail is rare |
| beacon       | 35     | no  | newly_seen + rare + beacon = 80: a new, private, clockwork domain |
| entropy      | 20     | no  | CDNs and trackers use hash labels too |
| txt_null     | 40     | no  | with newly_seen + rare: 85 |
| tunnel       | 85     | yes | 30+ distinct long names a minute under one rare domain is data |
| dga          | 85     | yes | 20+ never-seen domains answered NXDOMAIN in 10 min from one device |
| sequence     | rule   | the shipped Triangulation rule: 85 | a chain of events, not one query |
| listed       | 100    | yes | a list now names the domain: the suspicion became a hit |
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

WEIGHTS = {
    "newly_seen": 30,
    "rare": 15,
    "beacon": 35,
    "entropy": 20,
    "txt_null": 40,
    "tunnel": 85,
    "dga": 85,
    "listed": 100,
}
SIGNALS = (*WEIGHTS, "sequence")  # every signal name (metrics label values)
EVIDENCE_MAX = 32  # queries kept per suspicion: the context before it, then its own queries


def signal_key(sig: dict[str, Any]) -> str:
    """A suspicion holds one signal of each kind, but one per sequence rule or list."""
    if sig["signal"] == "sequence":
        return f"sequence:{sig.get('rule', '')}"
    if sig["signal"] == "listed":
        return f"listed:{sig.get('list', '')}"
    return str(sig["signal"])


def score(signals: dict[str, dict[str, Any]]) -> int:
    """Sum of weights (a sequence carries its rule's score), capped at 100."""
    total = 0
    for sig in signals.values():
        total += sig.get("score") or WEIGHTS.get(sig["signal"], 0)
    return min(total, 100)


@dataclass(frozen=True)
class Suspicion:
    """One (device, domain) the hunter suspects, as reported by `Hunter.observe`: a snapshot,
    safe to hand to another thread. `is_new`: the first report of this suspicion."""

    client_ip: str
    client_name: str | None
    domain: str
    score: int
    signals: tuple[dict[str, Any], ...]
    first_seen: float
    last_seen: float
    count: int
    is_new: bool
    evidence: tuple[dict[str, Any], ...] = ()
    listed_by: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The row shape of `Hunter.suspicions()` (JSON-ready; times in Unix seconds)."""
        return {"client_ip": self.client_ip, "client_name": self.client_name,
                "domain": self.domain, "score": self.score, "signals": list(self.signals),
                "first_seen": self.first_seen, "last_seen": self.last_seen,
                "count": self.count, "evidence": list(self.evidence),
                "listed_by": list(self.listed_by)}


@dataclass(eq=False)
class Case:
    """The hunter's mutable record of an open suspicion (one thread owns it)."""

    client_ip: str
    client_name: str | None
    domain: str
    first_seen: float
    last_seen: float
    count: int = 0
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    evidence: deque[tuple[float, str, str]] = field(
        default_factory=lambda: deque(maxlen=EVIDENCE_MAX))
    listed_by: list[str] = field(default_factory=list)
    score: int = 0
    reported: int = 0  # the highest score already reported (0: never)

    def set_signal(self, key: str, signal: str, reason: str, **extra: Any) -> None:
        self.signals[key] = {"signal": signal, "reason": reason, **extra}
        self.score = score(self.signals)

    def drop_signals(self, keys: tuple[str, ...]) -> bool:
        """Remove signals; True if any was there."""
        found = [k for k in keys if self.signals.pop(k, None) is not None]
        self.score = score(self.signals)
        return bool(found)

    def report(self) -> Suspicion | None:
        """A snapshot if the score rose above what was last reported, else None."""
        if self.score <= self.reported:
            return None
        is_new = self.reported == 0
        self.reported = self.score
        return self.snapshot(is_new)

    def snapshot(self, is_new: bool = False) -> Suspicion:
        return Suspicion(self.client_ip, self.client_name, self.domain, self.score,
                         tuple(dict(s) for s in self.signals.values()), self.first_seen,
                         self.last_seen, self.count, is_new, evidence_rows(self.evidence),
                         tuple(self.listed_by))


def evidence_rows(evidence: deque[tuple[float, str, str]]) -> tuple[dict[str, Any], ...]:
    return tuple({"time": t, "qname": q, "qtype": qt} for t, q, qt in evidence)
