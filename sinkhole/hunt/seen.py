"""The newly-seen and rare memory: every registrable domain the network resolved, when first and
last, and by how few devices — bounded, in SQLite, with a write-back cache in front.

- **newly_seen** (30): the network never resolved this registrable domain before: first seen
  after the learning period and less than a day ago, asked with an address type (A, AAAA,
  HTTPS) and answered, by a device the network has known for a day. Below the alert score
  on purpose: an office meets new domains all day.
- **rare** (15): asked by at most hunt.rare_devices devices over hunt.rare_window; only ever
  added to another signal, and dropped (with newly_seen) the moment one more device asks.
Cost: one dict probe per query (a SELECT only when the table outgrew the cache), a row write
per domain at most hourly.

Fixed memory: the table holds at most `max_domains` rows (the least recently seen go first, so a
domain unseen for months may come back as "newly seen" — the price of the bound); the cache
holds at most `cache_max` of them. A domain's askers are tracked only while it is rare (at most
`rare_devices` distinct devices over `rare_window`); the first device beyond makes it common
for good, and from then on it costs one timestamp an hour. `last_seen` is written at most
hourly: it only orders eviction.
"""

from __future__ import annotations

import sqlite3
from itertools import islice

from sinkhole.hunt import state

COARSE = 3600.0     # a domain's last_seen is rewritten at most this often
NEW_DEVICE = 1      # touch(): a new asker, still rare
BECAME_COMMON = 2   # touch(): one asker too many, now common


class Dom:
    """One registrable domain in memory. `devs`: asker -> last time while rare, None once
    common. `written`: the last_seen last written."""

    __slots__ = ("first", "last", "devs", "written")

    def __init__(self, first: float, last: float, devs: dict[str, float] | None) -> None:
        self.first = first
        self.last = last
        self.devs = devs
        self.written = last


class DomainMemory:
    def __init__(self, conn: sqlite3.Connection, *, max_domains: int, rare_window: float,
                 rare_devices: int, cache_max: int = 100_000) -> None:
        self._conn = conn
        self._max = max_domains
        self._window = rare_window
        self._rare = rare_devices
        self._cache_max = min(cache_max, max_domains)
        self._cache: dict[str, Dom] = {}
        self._dirty: dict[str, Dom] = {}
        self._rows = state.count_domains(conn)
        self._new = 0          # rows the pending batch adds
        self._evicted: list[str] = []
        # While the cache holds every row, a cache miss is a new domain without a SELECT:
        # the common case of a network smaller than the cache.
        self._complete = self._rows <= self._cache_max
        if self._complete:
            for domain, *row in state.all_domains(conn):
                self._cache[domain] = self._from_row(row)

    def __len__(self) -> int:
        return len(self._cache)

    def see(self, domain: str, ip: str, t: float) -> tuple[Dom, bool, int]:
        """Record that `ip` asked `domain`: (its record, True if never seen before, the
        rarity change from touch()). One call on the hot path instead of two."""
        dom = self._cache.get(domain)
        if dom is not None and dom.devs is None:   # the common case: a common domain
            if t > dom.last:
                dom.last = t
                if t - dom.written >= COARSE:
                    self._dirty[domain] = dom
            return dom, False, 0
        dom, created = self.lookup(domain, t)
        return dom, created, self.touch(domain, dom, ip, t)

    def lookup(self, domain: str, t: float) -> tuple[Dom, bool]:
        """The domain's record, and True if this network never saw it (now recorded)."""
        dom = self._cache.get(domain)
        if dom is not None:
            return dom, False
        row = None if self._complete else state.get_domain(self._conn, domain)
        if row is not None:
            dom = self._from_row(row)
            self._cache[domain] = dom
            return dom, False
        dom = self._cache[domain] = Dom(t, t, {})
        self._dirty[domain] = dom
        self._new += 1
        return dom, True

    def touch(self, domain: str, dom: Dom, ip: str, t: float) -> int:
        """Record an ask; NEW_DEVICE or BECAME_COMMON when the domain's rarity changed."""
        if t > dom.last:
            dom.last = t
        devs = dom.devs
        if devs is None or ip in devs:
            if devs is not None:
                devs[ip] = t
            if t - dom.written >= COARSE:
                self._dirty[domain] = dom
            return 0
        cutoff = t - self._window
        for stale in [d for d, last in devs.items() if last < cutoff]:
            del devs[stale]
        devs[ip] = t
        self._dirty[domain] = dom
        if len(devs) > self._rare:
            dom.devs = None
            return BECAME_COMMON
        return NEW_DEVICE

    def write(self, conn: sqlite3.Connection) -> None:
        """Write the pending batch (inside the caller's transaction) and evict beyond max."""
        state.put_domains(conn, (self._row(d, dom) for d, dom in self._dirty.items()))
        excess = self._rows + self._new - self._max
        self._evicted = state.evict_domains(conn, excess + self._max // 100) if excess > 0 else []

    def committed(self) -> None:
        for dom in self._dirty.values():
            dom.written = dom.last
        self._dirty.clear()
        self._rows += self._new - len(self._evicted)
        self._new = 0
        for name in self._evicted:
            self._cache.pop(name, None)
        self._evicted = []
        extra = len(self._cache) - self._cache_max
        if extra > 0:  # oldest-loaded first: hot domains come back with one SELECT
            for name in list(islice(self._cache, extra + self._cache_max // 4)):
                del self._cache[name]
            self._complete = False

    def rolled_back(self) -> bool:
        """The batch stays pending for the next flush, up to the cache's size: beyond it (a
        long database outage) it is dropped, so memory stays bounded. True if dropped."""
        self._evicted = []
        if len(self._dirty) <= self._cache_max:
            return False
        for name in self._dirty:
            self._cache.pop(name, None)
        self._dirty.clear()
        self._new = 0
        self._complete = False
        return True

    def rows(self) -> int:
        return self._rows

    def _row(self, domain: str, dom: Dom) -> tuple[str, float, float, int, str]:
        devs = dom.devs
        if devs is None:
            return domain, dom.first, dom.last, self._rare + 1, ""
        return (domain, dom.first, dom.last, len(devs),
                " ".join(f"{ip} {last:.0f}" for ip, last in devs.items()))

    def _from_row(self, row: tuple[float, float, int, str]) -> Dom:
        first, last, count, seen_by = row
        devs: dict[str, float] | None = None
        if count <= self._rare and seen_by is not None:
            parts = seen_by.split()
            devs = {parts[i]: float(parts[i + 1]) for i in range(0, len(parts) - 1, 2)}
        return Dom(first, last, devs)
