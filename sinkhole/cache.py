"""The answer cache: upstream replies kept as wire bytes, bounded, LRU, TTL-aware, stale-capable.

Entries are keyed by Query.key (lower-cased name, type, class, DO bit), so 0x20-randomised
names share an entry while the client still gets its own casing back (render() echoes the
question). OrderedDict because it evicts in O(1): a plain dict's `del d[next(iter(d))]`
costs 16-78 µs at 100k entries (measured, see the performance issue).

Bounded twice: by entries and by bytes, because answers range from 40 bytes to 64 KiB (TCP) and
100k entries of the latter would be 6.4 GB.
"""

from __future__ import annotations

from collections import OrderedDict

from sinkhole.dns.message import Reply

# Python memory one entry costs besides its body and key bytes: the Reply (9 slots), the
# bytes headers of body and key, the ttl_offsets and cnames tuples, the entry tuple and its
# three floats, and the OrderedDict's hash slot and link node. Measured with tracemalloc over
# 5k-100k one-A-record answers put into a Cache: 509-539 bytes per entry on CPython 3.11.7 (the
# dict's table grows in steps); the upper figure, rounded.
ENTRY_OVERHEAD = 540

# One answer may take at most this fraction of max_bytes: a single 64 KiB TCP answer must not
# flush a small cache (16 such answers still fit).
LARGEST_SHARE = 16


class Cache:
    """LRU of (Reply, stored_at, expires, stale_until, size) by key; time is passed in
    (monotonic, the resolver's clock), so tests drive expiry with explicit `now` values.

    Lifetimes: Reply.ttl (the smallest TTL in the answer, see message._index) capped at put()
    by `max_ttl` for positive answers and `max_negative_ttl` for NXDOMAIN/NODATA (RFC 2308
    section 5 suggests 1-3 hours). `serve_stale` (RFC 8767) is measured from the expiry.
    Defaults mirror config/schema.py's CacheConfig.
    """

    __slots__ = ("_d", "max_entries", "max_bytes", "serve_stale", "max_ttl", "max_negative_ttl",
                 "_largest", "bytes", "hits", "misses", "evictions", "stale_hits")

    def __init__(self, max_entries: int = 100_000, serve_stale: float = 86400.0, *,
                 max_bytes: int = 64 << 20, max_ttl: float = 86400.0,
                 max_negative_ttl: float = 3600.0) -> None:
        self._d: OrderedDict[bytes, tuple[Reply, float, float, float, int]] = OrderedDict()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.serve_stale = serve_stale
        # Whole seconds: render() counts TTLs down in whole seconds, and with the lifetime no
        # larger than any TTL it holds a fresh answer never shows a TTL of 0.
        self.max_ttl = int(max_ttl)
        self.max_negative_ttl = int(max_negative_ttl)
        self._largest = max_bytes // LARGEST_SHARE
        self.bytes = 0   # body + key + ENTRY_OVERHEAD of every entry held
        self.hits = self.misses = self.evictions = self.stale_hits = 0

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: bytes, now: float) -> tuple[Reply, int] | None:
        """A fresh entry and its age in whole seconds, or None (a miss)."""
        e = self._d.get(key)
        if e is None or e[2] <= now:
            self.misses += 1
            if e is not None and e[3] <= now:   # past the stale window too: dead weight
                del self._d[key]
                self.bytes -= e[4]
            return None
        self._d.move_to_end(key)
        self.hits += 1
        return e[0], int(now - e[1])

    def get_stale(self, key: bytes, now: float) -> Reply | None:
        """An expired entry still inside the serve-stale window (RFC 8767), for when every
        upstream failed: a stale answer beats SERVFAIL for a name that worked an hour ago."""
        e = self._d.get(key)
        if e is None or e[3] <= now:
            return None
        self.stale_hits += 1
        return e[0]

    def put(self, key: bytes, reply: Reply, now: float) -> None:
        """Store `reply`, its lifetime capped (the reply's TTLs are clamped to the cap too, so
        the client that asked and those served later see the same), then evict least recently
        used entries until under both max_entries and max_bytes. TTL 0, uncacheable replies and
        replies over max_bytes/LARGEST_SHARE are not stored."""
        cap = self.max_negative_ttl if reply.negative else self.max_ttl
        size = len(reply.body) + len(key) + ENTRY_OVERHEAD
        if reply.ttl <= 0 or cap <= 0 or size > self._largest:
            return
        reply.clamp(cap)
        ttl = reply.ttl
        d = self._d
        old = d.pop(key, None)
        if old is not None:
            self.bytes -= old[4]
        d[key] = (reply, now, now + ttl, now + ttl + self.serve_stale, size)
        self.bytes += size
        while len(d) > self.max_entries or self.bytes > self.max_bytes:
            self.bytes -= d.popitem(last=False)[1][4]
            self.evictions += 1

    def clear(self) -> None:
        self._d.clear()
        self.bytes = 0
