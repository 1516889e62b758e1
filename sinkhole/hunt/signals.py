"""The per-(device, domain) and per-device signals: beacon, tunnel, TXT/NULL volume, entropy,
DGA bursts (pure: no I/O, no clock but the observations' own timestamps).

The hunter keeps a `Pair` only for domains that are newly seen or rare, because those are the
only ones a signal may be raised on: the few hundred domains every device asks all day never
cost a timestamp. Each pair is small and bounded (a ring of times, two capped name sets).

- **beacon** (35): one device asks one domain like a timer: the intervals between its queries
  (queries within BEACON_MERGE folded into one) vary by less than 10 % (coefficient of
  variation) over 8+ intervals spanning an hour or more. Cost: a 16-float ring per pair and
  ~16 arithmetic steps per new query time.
- **tunnel** (85): more than 30 distinct names under one domain from one device within a
  minute, averaging 8+ characters left of the domain: data carried in names. Cost: a set of
  up to 31 name hashes per pair and minute.
- **txt_null** (40): 20 distinct TXT/NULL/ANY/unassigned-type names under one domain from one
  device in ten minutes (a mail server checks a sender with a handful). Cost: as tunnel.
- **entropy** (20): a label of 20+ characters that looks machine-made (few vowels, evenly
  spread characters): weak alone, since CDNs and trackers use hash labels. Cost: only for
  names with a long label, once per suspicion.
- **dga** (85): 20+ never-seen domains answered NXDOMAIN from one device within ten minutes
  (rcode unknown: random-looking ones); later bursts of the same run are evidence of the same
  one suspicion. Cost: a counter per device, touched only by never-seen domains.
"""

from __future__ import annotations

import math
from collections import deque

# --- beacon -------------------------------------------------------------------------------
BEACON_RING = 16          # timestamps kept per pair
BEACON_MIN_INTERVALS = 8  # at least this many intervals ...
BEACON_MIN_SPAN = 3600.0  # ... spanning at least an hour of regular queries
BEACON_MAX_CV = 0.1       # coefficient of variation of the intervals (std / mean)
BEACON_MERGE = 5.0        # queries this close are one event (A + AAAA, retries, CNAME chase)

# --- tunnel / DGA -------------------------------------------------------------------------
TUNNEL_WINDOW = 60.0      # distinct names under one domain per minute ...
TUNNEL_MIN = 30           # ... above this many ...
TUNNEL_MIN_LENGTH = 8.0   # ... averaging this many characters left of the domain
TXT_WINDOW = 600.0        # distinct TXT/NULL names under one domain in ten minutes ...
TXT_MIN = 20              # ... at least this many (a mail server's SPF/DKIM: a handful)
ODD_TYPES = frozenset({"TXT", "NULL", "ANY"})  # and unassigned "TYPEnnn" (iodine's PRIVATE)
ENTROPY_MIN_LABEL = 20    # labels at least this long that look machine-made (random_label)
ENTROPY_MIN = 3.0         # Shannon entropy (bits per character) at least this
MAX_VOWELS = 0.3          # and at most this share of vowels (English has ~0.4, hex/base32 < 0.2)
DGA_WINDOW = 600.0        # never-seen domains answered NXDOMAIN by one device in 10 min ...
DGA_MIN = 20              # ... at least this many
DGA_RANDOM_LABEL = 10     # rcode unknown: count only random-looking labels this long
DGA_KEEP = 3600.0         # a new burst this soon after the last one joins its suspicion
# The lookups that precede a connection: only these make a domain "newly seen" by a device
# (a mail server's TXT lookups of every sender domain are no contact with it).
ADDRESS_TYPES = frozenset({"A", "AAAA", "HTTPS", "SVCB", "CNAME"})


def entropy(text: str) -> float:
    """Shannon entropy of the characters of `text`, in bits per character."""
    n = len(text)
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def longest_label(sub: str) -> str:
    return max(sub.split("."), key=len) if "." in sub else sub


def is_odd_type(qtype: str) -> bool:
    return qtype in ODD_TYPES or qtype.startswith("TYPE")


def random_label(label: str, min_len: int = DGA_RANDOM_LABEL) -> bool:
    """A label that looks machine-made: long, few vowels, characters spread evenly.

    Entropy alone cannot tell: a 26-letter English label reaches 3.9 bits/char, a random hex
    one of 32 only 3.6 (16 symbols). Words need vowels; hex and base32 have few.
    """
    if len(label) < min_len:
        return False
    vowels = sum(label.count(v) for v in "aeiouy")
    return vowels <= MAX_VOWELS * len(label) and entropy(label) >= ENTROPY_MIN


class Pair:
    """What one device did with one newly seen or rare domain, for the signals below."""

    __slots__ = ("times", "regular_since", "win_t", "win_names", "win_len", "txt_t",
                 "txt_names", "dirty", "checked")

    def __init__(self, times: list[float] | None = None, regular_since: float | None = None):
        self.times: deque[float] = deque(times or (), maxlen=BEACON_RING)
        self.regular_since = regular_since
        self.win_t = -math.inf
        self.win_names: set[int] = set()
        self.win_len = 0
        self.txt_t = -math.inf
        self.txt_names: set[int] = set()
        self.dirty = False
        self.checked = False  # the hunter looked for a closed suspicion of this pair

    def beacon(self, t: float) -> str | None:
        """Record a query time; the reason text when the pair is (still) a beacon.

        Regularity must hold over the whole span: one irregular interval in the ring restarts
        the clock, so a device that merely uses a domain a lot (bursts, pauses) never
        qualifies, while a timer that fires every N seconds for an hour does.
        """
        times = self.times
        if times and t - times[-1] < BEACON_MERGE:
            return None
        times.append(t)
        self.dirty = True
        if len(times) <= BEACON_MIN_INTERVALS:
            return None
        mean, cv = _regularity(times)
        if cv >= BEACON_MAX_CV:
            self.regular_since = None
            return None
        if self.regular_since is None:
            self.regular_since = times[0]
        span = t - self.regular_since
        if span < BEACON_MIN_SPAN:
            return None
        return (f"every {mean:.0f}s (jitter {cv:.1%}) for {span / 3600:.1f} h, "
                f"{len(times) - 1}+ regular intervals")

    def tunnel(self, t: float, qname: str, sub_len: int) -> str | None:
        """Count a distinct name this minute; the reason once the window's count passes
        TUNNEL_MIN with names long enough to carry data."""
        if t - self.win_t >= TUNNEL_WINDOW:
            self.win_t, self.win_len = t, 0
            self.win_names = set()
        names = self.win_names
        if len(names) > TUNNEL_MIN:
            return None
        h = hash(qname)
        if h in names:
            return None
        names.add(h)
        self.win_len += sub_len
        n = len(names)
        if n > TUNNEL_MIN and self.win_len / n >= TUNNEL_MIN_LENGTH:
            return f"{n} distinct names within {TUNNEL_WINDOW:.0f}s, e.g. {qname}"
        return None

    def txt_null(self, t: float, qname: str, qtype: str) -> str | None:
        """Count a distinct TXT/NULL/unassigned-type name; the reason at TXT_MIN."""
        if t - self.txt_t >= TXT_WINDOW:
            self.txt_t = t
            self.txt_names = set()
        names = self.txt_names
        if len(names) >= TXT_MIN:
            return None
        names.add(hash(qname))
        if len(names) >= TXT_MIN:
            return (f"{TXT_MIN} distinct {qtype}-type names within {TXT_WINDOW / 60:.0f} min, "
                    f"e.g. {qname}")
        return None


def entropy_reason(qname: str, sub: str) -> str | None:
    """The reason if the name left of the domain holds a long high-entropy label."""
    if len(sub) < ENTROPY_MIN_LABEL:
        return None
    label = longest_label(sub)
    if not random_label(label, ENTROPY_MIN_LABEL):
        return None
    return f"{len(label)}-character random-looking label ({entropy(label):.2f} bits/char): {qname}"


class Burst:
    """One device's run of never-seen domains answered NXDOMAIN (a DGA looking for its C2)."""

    __slots__ = ("start", "count", "names", "case", "last", "total")

    def __init__(self) -> None:
        self.start = self.last = -math.inf
        self.count = self.total = 0
        self.names: list[str] = []
        self.case: str | None = None  # the domain its suspicion is filed under, once found

    def add(self, t: float, qname: str) -> str | None:
        """Count one; the reason text once a window reached DGA_MIN. A DGA tries in bursts:
        once found, every later name of the run (each within DGA_KEEP of the last) is more
        evidence of the same case."""
        if t - self.last > DGA_KEEP:
            self.case, self.total = None, 0
            self.names = []
        if t - self.start > DGA_WINDOW:
            self.start, self.count = t, 0
        self.last = t
        self.count += 1
        self.total += 1
        if len(self.names) < 5:
            self.names.append(qname)
        if self.case is None and self.count < DGA_MIN:
            return None
        return (f"{self.total} never-seen domains unanswered (NXDOMAIN) by this device, "
                f"{DGA_MIN}+ within {DGA_WINDOW / 60:.0f} min, e.g. {', '.join(self.names)}")


def _regularity(times: deque[float]) -> tuple[float, float]:
    """(mean interval, coefficient of variation) of the ring's intervals."""
    it = iter(times)
    prev = next(it)
    gaps = []
    for t in it:
        gaps.append(t - prev)
        prev = t
    mean = sum(gaps) / len(gaps)
    if mean <= 0:
        return 0.0, math.inf
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    return mean, math.sqrt(var) / mean
