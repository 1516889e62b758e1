"""The Hunter: observations in, suspicions out — the signals of issue 14 over one bounded state.

One thread feeds it (not thread-safe); the CLI and the API read hunt.db through
`read_suspicions` with their own connection. The path of an observation, cheapest first:

1. its name's (registrable domain, kind), cached per name; reverse/local names stop here;
2. the device's recent queries (context for the evidence);
3. allowlisted names only feed sequence rules (Triangulation starts with Apple names);
4. the newly-seen/rare memory records the ask; nothing more during the learning period;
5. only a newly seen or rare domain goes further: newly_seen, DGA bursts, the per-pair
   beacon/tunnel/TXT/entropy signals and the `newly_seen` steps of sequences.

Every dict keyed by a client or a domain has a cap (see the constants), and all of it is
written in one transaction per flush, not per observation.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

from sinkhole.config.loader import format_duration
from sinkhole.events import Observation
from sinkhole.hunt import signals as sig
from sinkhole.hunt import state
from sinkhole.hunt.cases import NEWLY, CaseBook
from sinkhole.hunt.domains import ALLOWED, SKIP, TRACK, classify, quiet_set
from sinkhole.hunt.model import Case, Suspicion
from sinkhole.hunt.seen import BECAME_COMMON, COARSE, Dom, DomainMemory
from sinkhole.hunt.sequences import Link, Matcher, describe, load_rules

log = logging.getLogger(__name__)

NEW_FOR = 86400.0        # a domain is "newly seen" for a day after its first sighting
DEVICE_LEARNING = 86400.0  # a device new to the network finds nothing new for its first day
CONTEXT = 8              # queries of a device kept as the context of a new suspicion
NAME_CACHE = 65_536      # qname -> (domain, kind)
DEVICE_CAP = 50_000      # devices with context and sequence state
PAIR_CAP = 20_000        # (device, newly seen or rare domain) pairs with signal state
# observe() flushes every FLUSH_EVERY observations or FLUSH_SPAN of observation time (the
# daemon's hunter thread also flushes every few seconds of wall time). Not on `clock`: an
# import passes the log's own clock, and a flush every few seconds of log time is a flush
# every few observations.
FLUSH_EVERY = 20_000
FLUSH_SPAN = 3600.0


class Device:
    """What the hunter keeps per device: since when it is known, its recent queries, sequence
    progress and DGA burst. `written`: the last_seen last written (hourly, like domains)."""

    __slots__ = ("first", "written", "recent", "seq", "burst")

    def __init__(self, first: float, written: float) -> None:
        self.first = first
        self.written = written
        self.recent: deque[tuple[float, str, str]] = deque(maxlen=CONTEXT)
        self.seq: dict[int, Any] = {}
        self.burst: sig.Burst | None = None


class Hunter:
    """Signals over observations (see the module docstring); all state in the SQLite file at
    `db_path` (created if missing). Not thread-safe: one thread calls every method. The
    signals run on the observations' own timestamps; `clock` only stamps each flush.
    Raises SequenceError for invalid rules, HuntStateError when the file is unusable."""

    def __init__(self, cfg_hunt: Any, db_path: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._cfg = cfg_hunt
        self._clock = clock
        self._quiet = quiet_set(cfg_hunt.ignore)
        self._matcher = Matcher(load_rules(cfg_hunt.shipped_sequences,
                                           cfg_hunt.sequences_file))
        self._seq_domains = self._matcher.by_domain
        self._conn = state.open_db(db_path)
        try:
            self._open_state(cfg_hunt)
        except sqlite3.Error as err:
            self._conn.close()
            raise state.HuntStateError(f"{db_path}: cannot read hunting state: {err}") from err

    def _open_state(self, cfg_hunt: Any) -> None:
        self._seen = DomainMemory(self._conn, max_domains=cfg_hunt.max_domains,
                                  rare_window=cfg_hunt.rare_window,
                                  rare_devices=cfg_hunt.rare_devices)
        start = state.get_meta(self._conn, "start")
        self._start: float | None = float(start) if start is not None else None
        self._learn_until = (self._start + cfg_hunt.learning) if start is not None else math.inf
        # A new device brings its vendor's domains (a meeting-room display, a guest phone):
        # what is new to the network is not yet news about the device.
        self._device_learning = min(cfg_hunt.learning, DEVICE_LEARNING)
        self._dirty_devices: dict[str, tuple[float, float]] = {}
        self._names: dict[str, tuple[str, int]] = {}
        self._devices: dict[str, Device] = {}
        self._pairs: dict[tuple[str, str], sig.Pair] = {}
        self._dirty_pairs: set[tuple[str, str]] = set()
        self._book = CaseBook(self._conn)
        self._by_domain = self._book.by_domain
        self._meta_dirty = False
        self._failing = False
        self._load_pairs()
        self._n = 0
        self._flush_t = math.inf
        self._latest = -math.inf

    # --- the hot path -------------------------------------------------------------------

    def observe(self, obs: Observation) -> list[Suspicion]:
        """Feed one answered query (in time order per source); the suspicions it created or
        whose score rose."""
        t = obs.time
        self._n += 1
        if t > self._latest:
            self._latest = t
        if self._n >= FLUSH_EVERY or t >= self._flush_t:
            self.flush()
        qname = obs.qname
        info = self._names.get(qname)
        if info is None:
            info = self._classify(qname)
        domain, kind = info
        if kind == SKIP:
            return []
        if self._start is None:
            self._begin(t)
        if self._flush_t == math.inf:
            self._flush_t = t + FLUSH_SPAN
        ip = obs.client_ip
        dev = self._devices.get(ip)
        if dev is None:
            dev = self._device(ip, t)
        elif t - dev.written >= COARSE:
            self._dirty_devices[ip] = (dev.first, t)
            dev.written = t
        dev.recent.append((t, qname, obs.qtype))
        learning = t < self._learn_until
        raised: list[Case] = []
        if kind == ALLOWED:
            if domain in self._seq_domains and not learning:
                self._sequence(obs, dev, domain, False, False, raised)
            return self._report(raised) if raised else []
        dom, created, change = self._seen.see(domain, ip, t)
        if change and not learning:
            self._rarity_changed(domain, dom, change)
        if learning:
            return []
        if dom.devs is not None:
            self._hunt(obs, dev, domain, kind, dom, created, raised)
        elif domain in self._seq_domains:
            self._sequence(obs, dev, domain, False, True, raised)
        if domain in self._by_domain:
            self._book.asked(ip, domain, obs)
        return self._report(raised) if raised else []

    def _hunt(self, obs: Observation, dev: Device, domain: str, kind: int, dom: Dom,
              created: bool, raised: list[Case]) -> None:
        """The signals of a newly seen or rare domain."""
        t, ip, qname = obs.time, obs.client_ip, obs.qname
        fresh = (kind == TRACK and obs.rcode != 3 and obs.qtype in sig.ADDRESS_TYPES
                 and dom.first >= self._learn_until and t - dom.first < NEW_FOR
                 and t - dev.first >= self._device_learning)
        if fresh:
            case = self._case(ip, domain, obs, dev)
            if "newly_seen" not in case.signals:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(dom.first))
                self._raise(case, "newly_seen", f"first seen on this network {when} UTC",
                            dom, raised)
        if created and kind == TRACK:
            self._dga(obs, dev, domain, raised)
        key = (ip, domain)
        pair = self._pair(key)
        if not pair.checked:
            pair.checked = True
            self._book.reopen(key)     # a closed suspicion of the pair counts again
        reason = pair.beacon(t)
        if pair.dirty:
            self._dirty_pairs.add(key)
        if reason:
            self._raise(self._case(ip, domain, obs, dev), "beacon", reason, dom, raised)
        sub = qname[:len(qname) - len(domain) - 1] if len(qname) > len(domain) else ""
        if sub:
            reason = pair.tunnel(t, qname, len(sub))
            if reason:
                self._raise(self._case(ip, domain, obs, dev), "tunnel", reason, dom, raised)
            case = self._book.cases.get(key)
            if case is None or "entropy" not in case.signals:
                reason = sig.entropy_reason(qname, sub)
                if reason:
                    self._raise(self._case(ip, domain, obs, dev), "entropy", reason, dom,
                                raised)
        if sig.is_odd_type(obs.qtype):
            reason = pair.txt_null(t, qname, obs.qtype)
            if reason:
                self._raise(self._case(ip, domain, obs, dev), "txt_null", reason, dom, raised)
        if (fresh and dev.seq) or domain in self._seq_domains:
            self._sequence(obs, dev, domain, fresh, kind == TRACK, raised)

    def _dga(self, obs: Observation, dev: Device, domain: str, raised: list[Case]) -> None:
        """A never-seen domain that does not exist (or, rcode unknown, looks machine-made)."""
        if obs.rcode != 3 and (obs.rcode is not None
                               or not sig.random_label(domain.partition(".")[0])):
            return
        burst = dev.burst
        if burst is None:
            burst = dev.burst = sig.Burst()
        reason = burst.add(obs.time, obs.qname)
        if reason is None:
            return
        if burst.case is None:
            burst.case = domain
        case = self._case(obs.client_ip, burst.case, obs, dev)
        self._raise(case, "dga", reason, None, raised)
        if burst.case != domain:  # the burst's later names are evidence of its one suspicion
            case.evidence.append((obs.time, obs.qname, obs.qtype))
            case.count += 1
            case.last_seen = obs.time

    def _sequence(self, obs: Observation, dev: Device, domain: str, fresh: bool,
                  suspect: bool, raised: list[Case]) -> None:
        cands = self._matcher.candidates(domain, obs.qname, fresh)
        if not cands:
            return
        link: Link = (obs.time, obs.qname, obs.qtype, domain, suspect)
        for rule, chain in self._matcher.advance(dev.seq, cands, link):
            reason = describe(rule, chain)
            steps = [{"time": x[0], "qname": x[1], "qtype": x[2]} for x in chain]
            for d in dict.fromkeys(x[3] for x in chain if x[4]):
                case = self._case(obs.client_ip, d, obs, dev)
                # The chain is the evidence; this query itself is added to its own domain's
                # suspicion at the end of observe().
                links = {x[:3] for x in chain if not (x is link and d == domain)}
                merged = sorted(links.union(case.evidence))
                case.evidence.clear()
                case.evidence.extend(merged)
                self._raise(case, f"sequence:{rule.name}", reason, None, raised,
                            signal="sequence", rule=rule.name, score=rule.score, chain=steps)

    # --- suspicions -----------------------------------------------------------------------

    def _case(self, ip: str, domain: str, obs: Observation, dev: Device) -> Case:
        return self._book.open(ip, domain, obs, islice(dev.recent, len(dev.recent) - 1))

    def _raise(self, case: Case, key: str, reason: str, dom: Dom | None,
               raised: list[Case], *, signal: str | None = None, **extra: Any) -> None:
        case.set_signal(key, signal or key, reason, **extra)
        if dom is not None and dom.devs is not None:
            case.set_signal("rare", "rare", self._rare_reason(dom))
        self._book.changed(case)
        raised.append(case)

    def _rare_reason(self, dom: Dom) -> str:
        n = len(dom.devs or ())
        return (f"asked by {n} device{'s' if n != 1 else ''} over the last "
                f"{format_duration(self._cfg.rare_window)}")

    def _rarity_changed(self, domain: str, dom: Dom, change: int) -> None:
        """A new asker: the rare reason says so; one too many: newly_seen and rare go (a new
        company-wide endpoint is rare only for its first minutes)."""
        if change == BECAME_COMMON:
            for case in self._book.of_domain(domain):
                self._book.demote(case, NEWLY)
            return
        for ip in self._by_domain.get(domain, ()):
            case = self._book.cases[(ip, domain)]
            if "rare" in case.signals:
                case.set_signal("rare", "rare", self._rare_reason(dom))
                self._book.changed(case)

    def _report(self, raised: list[Case]) -> list[Suspicion]:
        out = []
        for case in dict.fromkeys(raised):
            snap = case.report()
            if snap is not None:
                out.append(snap)
        return out

    # --- bounded state --------------------------------------------------------------------

    def _classify(self, qname: str) -> tuple[str, int]:
        if len(self._names) >= NAME_CACHE:
            self._names.clear()
        info = self._names[qname] = classify(qname, self._quiet)
        return info

    def _device(self, ip: str, t: float) -> Device:
        if len(self._devices) >= DEVICE_CAP:
            del self._devices[next(iter(self._devices))]
        first = state.get_device(self._conn, ip)
        if first is None or first > t:  # new, or an import of older logs
            first = t
        self._dirty_devices[ip] = (first, t)
        dev = self._devices[ip] = Device(first, t)
        return dev

    def _pair(self, key: tuple[str, str]) -> sig.Pair:
        pair = self._pairs.pop(key, None)
        if pair is None:
            if len(self._pairs) >= PAIR_CAP:
                del self._pairs[next(iter(self._pairs))]
            pair = sig.Pair()
        self._pairs[key] = pair  # re-inserted: the dict's order is least recently used first
        return pair

    def _begin(self, t: float) -> None:
        """The first observation ever: the learning period runs from its timestamp (an
        import's clock, not ours)."""
        self._start = t
        self._learn_until = t + self._cfg.learning
        self._meta_dirty = True

    def _load_pairs(self) -> None:
        """Re-open the most recent beacon rings after a restart."""
        for ip, domain, times, regular_since in state.load_pairs(self._conn, PAIR_CAP):
            self._pairs[(ip, domain)] = sig.Pair([float(x) for x in times.split()],
                                                 regular_since)

    # --- persistence ----------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything pending in one transaction; on a database error keep it pending
        (logged once per outage) and carry on hunting."""
        self._n = 0
        self._flush_t = math.inf
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._meta_dirty and self._start is not None:
                state.put_meta(conn, "start", repr(self._start))
            # When the state was last written, on the caller's clock (the CLI can tell a
            # stale hunt.db from a quiet network).
            state.put_meta(conn, "written", repr(self._clock()))
            self._seen.write(conn)
            state.put_devices(conn, ((ip, f, last) for ip, (f, last) in
                                     self._dirty_devices.items()))
            state.trim_devices(conn, DEVICE_CAP)
            state.put_pairs(conn, self._pair_rows())
            state.trim_pairs(conn, PAIR_CAP)
            self._book.write(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.rollback()
            if not self._failing:
                log.error("hunt: cannot write hunt.db, hunting state stays in memory: %s", err)
            self._failing = True
            self._book.rolled_back()
            if self._seen.rolled_back() or len(self._dirty_devices) > DEVICE_CAP:
                log.error("hunt: hunt.db still not writable, unwritten hunting state dropped")
                self._dirty_devices.clear()
            return
        if self._failing:
            log.warning("hunt: writing hunting state again")
        self._failing = False
        self._meta_dirty = False
        self._seen.committed()
        self._dirty_devices.clear()
        for key in self._dirty_pairs:
            pair = self._pairs.get(key)
            if pair is not None:
                pair.dirty = False
        self._dirty_pairs.clear()
        for key in self._book.committed(self._latest):   # closed: re-opened on next query
            pair = self._pairs.get(key)
            if pair is not None:
                pair.checked = False

    def _pair_rows(self) -> Iterable[tuple[str, str, float, str, Any]]:
        for key in self._dirty_pairs:
            pair = self._pairs.get(key)
            if pair is not None and pair.times:
                yield (key[0], key[1], pair.times[-1],
                       " ".join(f"{x:.3f}" for x in pair.times), pair.regular_since)

    def close(self) -> None:
        self.flush()
        self._conn.close()

    # --- reading ----------------------------------------------------------------------------

    def suspicions(self, since: float | None = None, min_score: int = 0,
                   limit: int = 1000) -> list[dict[str, Any]]:
        """Rows as `read_suspicions` gives them, pending state written first."""
        self.flush()
        return state.query_suspicions(self._conn, since=since, min_score=min_score,
                                      limit=limit)

    def mark_listed_by_policy(self, policy: Any) -> int:
        """The start-up join: each suspected domain looked up in the whole policy (a few
        thousand lookups) instead of walking every listed name (a million, racing the first
        queries for the GIL). A domain a block list covers, itself or by a parent, is marked
        with that list; an allowed one is not."""
        self.flush()
        by_list: dict[str, list[str]] = {}
        for domain in self._book.suspected_domains():
            found = policy.match(domain)
            if found is not None and found[0].action != "allow" and found[0].list is not None:
                by_list.setdefault(found[0].list.name, []).append(domain)
        marked = sum(self._book.mark_listed(domains, name) for name, domains in by_list.items())
        self.flush()
        return marked

    def mark_listed(self, domain_names: Iterable[str], list_name: str) -> int:
        """A list now names these domains: suspicions of them (or of the registrable domain
        of a listed subdomain) record `listed_by` and become hits. Returns how many
        suspicions were newly marked."""
        self.flush()
        marked = self._book.mark_listed(domain_names, list_name)
        self.flush()
        return marked
