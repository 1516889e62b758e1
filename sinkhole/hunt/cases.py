"""The open suspicions: in memory the recently active ones, every one of them in hunt.db.

Memory holds at most CASE_CAP suspicions, and only those active in the last CASE_IDLE; the
rest are closed (they stay in the table) and re-opened from it when their device asks their
domain again or a signal is raised on them. While memory holds the whole table (`complete`),
opening a new suspicion costs no SELECT.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from sinkhole.events import Observation
from sinkhole.hunt import state
from sinkhole.hunt.model import Case

CASE_CAP = 20_000        # open suspicions in memory (the table keeps more) ...
CASE_IDLE = 86400.0      # ... and only those active in the last day
SUSPICIONS_MAX = 100_000  # rows in the suspicions table (listed ones are kept)
NEWLY = ("newly_seen", "rare")

Key = tuple[str, str]    # (client_ip, domain)


class CaseBook:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.cases: dict[Key, Case] = {}
        self.by_domain: dict[str, set[str]] = {}   # domain -> ips with an open suspicion
        self._dirty: set[Key] = set()
        self._deleted: set[Key] = set()
        loaded = state.recent_cases(conn, CASE_CAP)
        for case in loaded:
            self._index((case.client_ip, case.domain), case)
        self.complete = len(loaded) < CASE_CAP  # every row of the table is in memory

    def open(self, ip: str, domain: str, obs: Observation,
             context: Iterable[tuple[float, str, str]]) -> Case:
        """The suspicion of (device, domain): open, re-opened from the table, or new (its
        evidence starting with the device's queries before this one)."""
        key = (ip, domain)
        case = self.cases.get(key)
        if case is not None:
            return case
        if not self.complete:
            case = state.get_case(self._conn, ip, domain)
        if case is None:
            case = Case(ip, obs.client_name, domain, obs.time, obs.time)
            case.evidence.extend(context)
        self.hold(key, case)
        return case

    def reopen(self, key: Key) -> None:
        """Re-open a closed suspicion, if the table has one (a new pair's first query)."""
        if not self.complete and key not in self.cases:
            closed = state.get_case(self._conn, *key)
            if closed is not None:
                self.hold(key, closed)

    def hold(self, key: Key, case: Case) -> None:
        self._index(key, case)
        self._dirty.add(key)
        self._deleted.discard(key)

    def changed(self, case: Case) -> None:
        self._dirty.add((case.client_ip, case.domain))

    def asked(self, ip: str, domain: str, obs: Observation) -> None:
        """The device asked the suspected domain again: one more query of evidence."""
        case = self.cases.get((ip, domain))
        if case is None:
            return
        case.count += 1
        case.last_seen = obs.time
        case.evidence.append((obs.time, obs.qname, obs.qtype))
        if obs.client_name:
            case.client_name = obs.client_name
        self._dirty.add((ip, domain))

    def of_domain(self, domain: str) -> list[Case]:
        """Every suspicion of a domain, the closed ones re-opened (a rarity change)."""
        if not self.complete:
            for case in state.cases_for_domains(self._conn, [domain]):
                if (case.client_ip, domain) not in self.cases:
                    self.hold((case.client_ip, domain), case)
        return [self.cases[(ip, domain)] for ip in self.by_domain.get(domain, ())]

    def demote(self, case: Case, keys: tuple[str, ...]) -> None:
        """Drop signals; a suspicion left without any is deleted."""
        if not case.drop_signals(keys):
            return
        key = (case.client_ip, case.domain)
        if case.signals:
            self._dirty.add(key)
        else:
            self._forget(key)
            self._deleted.add(key)

    def suspected_domains(self) -> list[str]:
        """Every domain some device is suspected of (the table; call after a flush)."""
        return [r[0] for r in self._conn.execute("SELECT DISTINCT domain FROM suspicions")]

    def mark_listed(self, domain_names: Iterable[str], list_name: str) -> int:
        """Suspicions of the named domains (or of the registrable domain of a named
        subdomain) record `listed_by`; how many were newly marked. Call after a flush."""
        suspected = set(self.suspected_domains())
        hits = set()
        for i, name in enumerate(domain_names):
            if not i & 0x3FF:
                # A reload can add a million names; the hunter thread runs beside the event
                # loop, so it hands the GIL back every 1,024 of them (as list parsing does).
                time.sleep(0)
            name = name.strip().lower().rstrip(".").removeprefix("*.")
            while name:      # the name and each parent: one set probe per label
                if name in suspected:
                    hits.add(name)
                name = name.partition(".")[2]
        marked = 0
        for stored in state.cases_for_domains(self._conn, hits):
            key = (stored.client_ip, stored.domain)
            case = self.cases.get(key) or stored
            if list_name in case.listed_by:
                continue
            case.listed_by.append(list_name)
            case.set_signal(f"listed:{list_name}", "listed", f"named by list {list_name!r}",
                            list=list_name)
            self.hold(key, case)
            marked += 1
        return marked

    # --- persistence ----------------------------------------------------------------------

    def write(self, conn: sqlite3.Connection) -> None:
        state.put_cases(conn, (self.cases[k] for k in self._dirty))
        state.delete_cases(conn, self._deleted)
        state.trim_cases(conn, SUSPICIONS_MAX)

    def committed(self, latest: float) -> list[Key]:
        """After a commit: close the idle suspicions and those beyond CASE_CAP; their keys."""
        self._dirty.clear()
        self._deleted.clear()
        cutoff = latest - CASE_IDLE
        idle = [k for k, c in self.cases.items() if c.last_seen < cutoff]
        extra = len(self.cases) - len(idle) - CASE_CAP
        if extra > 0:
            busy = sorted((kv for kv in self.cases.items() if kv[1].last_seen >= cutoff),
                          key=lambda kv: kv[1].last_seen)
            idle += [k for k, _ in busy[:extra + CASE_CAP // 4]]
        for key in idle:
            self._forget(key)
        if idle:
            self.complete = False
        return idle

    def rolled_back(self) -> None:
        if len(self._deleted) > CASE_CAP:  # a long outage: memory stays bounded
            self._deleted.clear()

    def _index(self, key: Key, case: Case) -> None:
        self.cases[key] = case
        self.by_domain.setdefault(key[1], set()).add(key[0])

    def _forget(self, key: Key) -> None:
        self.cases.pop(key, None)
        self._dirty.discard(key)
        ips = self.by_domain.get(key[1])
        if ips is not None:
            ips.discard(key[0])
            if not ips:
                del self.by_domain[key[1]]

