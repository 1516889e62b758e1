"""Alert policy: which hits, retro finds and list errors become alerts, when, and for which sink.

Pure (no I/O, no asyncio, the clock injected) so every rule here is tested with a fake clock.

Rules, and why:
- Per (client, list, name) an *episode* starts with the first hit and alerts at once. Hits
  within ``cooldown`` of the last alert are counted, not sent; the count goes out in the next
  alert ("+N more since ..."): either when the client asks again after a full cooldown, or from
  ``tick`` at the end of the cooldown, so a count is never left unreported.
- A client quiet for a whole ``cooldown`` that asks again starts a NEW episode and alerts at
  once: a re-infected phone (Triangulation has no persistence; devices were re-infected, see
  REFERENCE.md) must not be hidden by dedup.
- Bursts: the first alert of a burst goes out at once; whatever else falls in the next
  ``digest_window`` is grouped into one digest (the window stays open while the burst lasts).
- Each sink takes at most ``max_per_minute`` messages; the excess is folded into a digest for
  that sink, sent when its budget frees up: bounded, but never dropped silently.
- List errors always alert (a broken list silently weakens protection), once per (list, error)
  per cooldown; ``min_severity`` applies to hits and retro finds.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sinkhole.alerts.model import (
    SEVERITY_RANK,
    Alert,
    Fold,
    Item,
    Outgoing,
    item_from_event,
    make_test_alert,
)
from sinkhole.events import Hit

__all__ = ["AlertPolicy", "Alert", "Item", "Outgoing", "make_test_alert"]

MAX_EPISODES = 100_000     # dedup keys kept; beyond, the least recently seen are reported+evicted
RATE_PERIOD = 60.0

Key = tuple[str, str, str]  # (client, list, name)


@dataclass(slots=True)
class _Episode:
    first_seen: float
    last_seen: float
    alerted_at: float
    count: int
    unreported: int
    latest: Item


@dataclass(slots=True)
class _Budget:
    """A sink's sliding one-minute message budget and what waits for it."""

    per_minute: int
    sent: deque[float] = field(default_factory=deque)
    overflow: Fold = field(default_factory=Fold)

    def free(self, now: float) -> bool:
        while self.sent and self.sent[0] <= now - RATE_PERIOD:
            self.sent.popleft()
        return len(self.sent) < self.per_minute

    def next_free(self) -> float:
        return self.sent[0] + RATE_PERIOD if self.sent else 0.0


# (client, domain) pairs remembered for the suspicion cooldown before the expired are dropped.
MAX_SUSPECTED = 10_000


class AlertPolicy:
    """Turns events into (alert, sinks) decisions; call ``tick`` by ``next_deadline``."""

    def __init__(self, *, min_severity: str, cooldown: float, digest_window: float,
                 budgets: Mapping[str, int], clock: Callable[[], float] = time.time,
                 max_episodes: int = MAX_EPISODES) -> None:
        self.min_rank = SEVERITY_RANK[min_severity]
        self.cooldown = cooldown
        self.window = digest_window
        self.clock = clock
        self.max_episodes = max_episodes
        self._budgets = {name: _Budget(n) for name, n in budgets.items()}
        # Ordered by last hit, so expiry and eviction take from the front.
        self._episodes: OrderedDict[Key, _Episode] = OrderedDict()
        self._followups: list[tuple[float, Key]] = []   # heap: when unreported counts are due
        self._errors: dict[tuple[str, str], float] = {}
        self._suspected: dict[tuple[str, str], float] = {}   # (client, domain) -> last alert
        self._window_end: float | None = None
        self._window = Fold()

    @classmethod
    def from_config(cls, cfg: Any, budgets: Mapping[str, int],
                    clock: Callable[[], float] = time.time) -> AlertPolicy:
        return cls(min_severity=cfg.min_severity, cooldown=cfg.cooldown,
                   digest_window=cfg.digest_window, budgets=budgets, clock=clock)

    @property
    def episodes(self) -> int:
        return len(self._episodes)

    # ----------------------------------------------------------------- inputs
    def on_hit(self, event: Hit) -> list[Outgoing]:
        """A blocked query (kind 'query' or 'cname'); a 'retro' event goes to on_retro."""
        if event.kind == "retro":
            return self.on_retro([event])
        # A connection to the sinkhole is its own episode: it proves the device acts on the
        # answer, which the DNS hit before it (inside its cooldown) did not.
        item = item_from_event("connect" if event.kind == "connect" else "hit", event)
        if SEVERITY_RANK[item.severity] < self.min_rank:
            return []
        now = self.clock()
        key = (item.client, item.list, item.domain, item.kind)
        out: list[Outgoing] = []
        ep = self._episodes.get(key)
        if ep is not None and now - ep.last_seen >= self.cooldown:
            out += self._close(key, now)   # quiet for a whole cooldown: this is a new episode
            ep = None
        if ep is None:
            first = replace(item, first_seen=now, last_seen=now)
            self._episodes[key] = _Episode(now, now, now, 1, 0, first)
            out += self._route(first, now)
            return out + self._evict(now)
        ep.last_seen, ep.count, ep.latest = now, ep.count + 1, item
        self._episodes.move_to_end(key)
        if now - ep.alerted_at >= self.cooldown:
            return out + self._report(ep, now, include_latest=True)
        ep.unreported += 1
        if ep.unreported == 1:
            heapq.heappush(self._followups, (ep.alerted_at + self.cooldown, key))
        return out

    def on_retro(self, finds: Iterable[Hit]) -> list[Outgoing]:
        """Retro-hunt finds: the caller sends each (client, name) once, so no dedup here."""
        now = self.clock()
        out: list[Outgoing] = []
        for find in finds:
            item = item_from_event("retro", find)
            if SEVERITY_RANK[item.severity] >= self.min_rank:
                out += self._route(item, now)
        return out

    def on_suspicion(self, client: str, client_name: str | None, domain: str, score: int,
                     reasons: str, first_seen: float, last_seen: float,
                     count: int) -> list[Outgoing]:
        """A hunting suspicion at or above hunt.alert_score: no list names the domain, so this
        is a lead to look into, not a proven hit. One alert per (client, domain) per cooldown
        (a suspicion's score rising again within it is not news)."""
        now = self.clock()
        key = (client, domain)
        last = self._suspected.get(key)
        if last is not None and now - last < self.cooldown:
            return []
        if len(self._suspected) >= MAX_SUSPECTED:   # bounded: forget what the cooldown passed
            self._suspected = {k: t for k, t in self._suspected.items()
                               if now - t < self.cooldown}
        self._suspected[key] = now
        item = Item("suspicion", "critical" if score >= 95 else "warning", client=client,
                    client_name=client_name, domain=domain, list="hunt",
                    category=f"score {score}", rule=reasons, first_seen=first_seen,
                    last_seen=last_seen, count=count)
        return self._route(item, now)

    def on_list_error(self, list_name: str, error: str) -> list[Outgoing]:
        now = self.clock()
        key = (list_name, error)
        last = self._errors.get(key)
        if last is not None and now - last < self.cooldown:
            return []   # the same broken file on every reload: once per cooldown is enough
        self._errors[key] = now
        item = Item("list-error", "warning", list=list_name, error=error,
                    first_seen=now, last_seen=now, count=1)
        return self._route(item, now)

    # ----------------------------------------------------------------- time
    def tick(self) -> list[Outgoing]:
        """Send what is due: follow-up counts, the closing digest, rate-held digests."""
        now = self.clock()
        out: list[Outgoing] = []
        while self._followups and self._followups[0][0] <= now:
            _, key = heapq.heappop(self._followups)
            ep = self._episodes.get(key)
            # Stale entries (the key was reported since, or re-created) are skipped: a fresh
            # entry was pushed when its count started again.
            if ep is not None and ep.unreported and ep.alerted_at + self.cooldown <= now:
                out += self._report(ep, now, include_latest=False)
        while self._episodes:
            key, ep = next(iter(self._episodes.items()))
            if now - ep.last_seen < self.cooldown:
                break
            out += self._close(key, now)
        self._errors = {k: t for k, t in self._errors.items() if now - t < self.cooldown}
        if self._window_end is not None and now >= self._window_end:
            out += self._flush_window(now)
        for name, budget in self._budgets.items():
            out += self._release(name, budget, now)
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work (None: nothing pending)."""
        times = [self._followups[0][0]] if self._followups else []
        if self._window_end is not None:
            times.append(self._window_end)
        if self._episodes:
            times.append(next(iter(self._episodes.values())).last_seen + self.cooldown)
        times += [b.next_free() for b in self._budgets.values() if b.overflow.items]
        return min(times, default=None)

    def drain(self) -> list[Outgoing]:
        """At shutdown: everything held (window, rate overflow) goes out now, unbounded,
        so it reaches the durable outbox instead of dying with the process."""
        now = self.clock()
        out: list[Outgoing] = []
        # Rate-held items are older than the window's, so they go first: creation order.
        for name, budget in self._budgets.items():
            held = budget.overflow.take(now, "rate")
            if held is not None:
                out.append((held, (name,)))
        alert = self._window.take(now, "burst")
        self._window_end = None
        if alert is not None:
            out.append((alert, tuple(self._budgets)))
        return out

    # ----------------------------------------------------------------- internals
    def _report(self, ep: _Episode, now: float, *, include_latest: bool) -> list[Outgoing]:
        repeats = ep.unreported
        if not include_latest and not repeats:
            return []
        item = replace(ep.latest, first_seen=ep.first_seen, last_seen=ep.last_seen,
                       count=ep.count, repeats=repeats,
                       repeats_since=ep.alerted_at if repeats else None)
        ep.alerted_at, ep.unreported = now, 0
        return self._route(item, now)

    def _close(self, key: Key, now: float) -> list[Outgoing]:
        """Forget an episode; counts not yet reported go out first (never lost silently)."""
        ep = self._episodes.pop(key)
        return self._report(ep, now, include_latest=False) if ep.unreported else []

    def _evict(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        while len(self._episodes) > self.max_episodes:
            out += self._close(next(iter(self._episodes)), now)
        return out

    def _route(self, item: Item, now: float) -> list[Outgoing]:
        """Digest window: the first alert of a burst at once, the rest grouped."""
        alert = Alert(item.kind, item.severity, now, (item,))
        if self.window <= 0:
            return self._admit(alert, now)
        out: list[Outgoing] = []
        if self._window_end is not None and now >= self._window_end:
            out += self._flush_window(now)
        if self._window_end is None:
            self._window_end = now + self.window
            return out + self._admit(alert, now)
        self._window.add(alert)
        return out

    def _flush_window(self, now: float) -> list[Outgoing]:
        alert = self._window.take(now, "burst")
        # Items came in: the burst may go on, so keep grouping; a quiet window closes.
        self._window_end = now + self.window if alert is not None else None
        return self._admit(alert, now) if alert is not None else []

    def _admit(self, alert: Alert, now: float) -> list[Outgoing]:
        """Per-sink message budget; what does not fit waits, folded, for the next free slot."""
        out: list[Outgoing] = []
        allowed: list[str] = []
        for name, budget in self._budgets.items():
            out += self._release(name, budget, now)
            if not budget.overflow.items and budget.free(now):
                budget.sent.append(now)
                allowed.append(name)
            else:
                budget.overflow.add(alert)
        if allowed:
            out.append((alert, tuple(allowed)))
        return out

    def _release(self, name: str, budget: _Budget, now: float) -> list[Outgoing]:
        if not budget.overflow.items or not budget.free(now):
            return []
        held = budget.overflow.take(now, "rate")
        assert held is not None
        budget.sent.append(now)
        return [(held, (name,))]
