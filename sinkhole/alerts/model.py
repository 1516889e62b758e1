"""The values alerting passes around: an Item (one thing to tell), an Alert (one message of
one or more items), severities, and the bounded Fold that groups items into a digest.

Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sinkhole.events import Hit

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
DIGEST_ITEMS = 50          # items listed in one digest; the rest are only counted


@dataclass(frozen=True, slots=True)
class Item:
    """One thing worth telling a human: a hit episode, a retro find or a list error."""

    kind: str                       # hit | retro | list-error | test
    severity: str
    client: str = ""
    client_name: str | None = None
    domain: str = ""
    list: str = ""
    category: str = ""
    rule: str = ""
    first_seen: float = 0.0         # episode start (retro: first seen in the history)
    last_seen: float = 0.0
    count: int = 1                  # hits in the episode so far
    repeats: int = 0                # hits since the last alert that no alert has reported yet
    repeats_since: float | None = None   # ...counted since this time (the last alert)
    error: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    """One message to deliver: a single item, or a digest of several."""

    kind: str                       # hit | retro | list-error | digest | test
    severity: str
    created: float
    items: tuple[Item, ...]
    omitted: int = 0                # digest: items beyond DIGEST_ITEMS, counted only
    omitted_hits: int = 0
    reason: str = ""                # digest: 'burst' or 'rate'


Outgoing = tuple[Alert, tuple[str, ...]]   # an alert and the sinks it goes to


def severity_of(value: Any) -> str:
    """A list whose severity we cannot read still alerts (as warning) rather than vanish."""
    return value if value in SEVERITY_RANK else "warning"


def max_severity(items: Iterable[Item]) -> str:
    return max((i.severity for i in items), key=SEVERITY_RANK.__getitem__, default="info")


def make_test_alert(now: float) -> Alert:
    """The alert `sinkhole test-alert` sends: it proves the path, it reports nothing."""
    return Alert("test", "info", now, (Item("test", "info", first_seen=now, last_seen=now),))


@dataclass(slots=True)
class Fold:
    """Items waiting to go out together; bounded (beyond DIGEST_ITEMS only counts are kept)."""

    items: list[Item] = field(default_factory=list)
    omitted: int = 0
    omitted_hits: int = 0

    def add(self, alert: Alert) -> None:
        for item in alert.items:
            if len(self.items) < DIGEST_ITEMS:
                self.items.append(item)
            else:
                self.omitted += 1
                self.omitted_hits += item.count if item.kind == "retro" else item.repeats + 1
        self.omitted += alert.omitted
        self.omitted_hits += alert.omitted_hits

    def take(self, now: float, reason: str) -> Alert | None:
        items, omitted, hits = tuple(self.items), self.omitted, self.omitted_hits
        self.items, self.omitted, self.omitted_hits = [], 0, 0
        if not items:
            return None
        if len(items) == 1 and not omitted:
            return Alert(items[0].kind, items[0].severity, now, items)
        return Alert("digest", max_severity(items), now, items, omitted, hits, reason)


def item_from_event(kind: str, hit: Hit) -> Item:
    """The alert item for one typed Hit (the same object the store took as a row)."""
    now = hit.time
    return Item(
        kind=kind, severity=severity_of(hit.severity), client=hit.client_ip,
        client_name=hit.client_name, domain=hit.qname, list=hit.list,
        category=hit.category or "", rule=hit.rule or "",
        first_seen=hit.first_seen or now, last_seen=hit.last_seen or now, count=hit.count)
