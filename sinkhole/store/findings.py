"""Findings and their triage: a device's hits of one list, or its suspicion of one domain,
marked investigating or cleared (with a note and the time) by the security team.

The state is derived when it is read, never written by the hit path: a finding without a mark
is open; one cleared before its newest hit (the phone asked again: re-infected) is reopened.
So the per-query code stays as it is, and a restore of an old backup cannot leave a stale
"cleared" flag standing over newer hits.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from sinkhole.config.schema import SEVERITIES

from .events import storable
from .schema import write_one

KINDS = ("hit", "suspicion")
MARKS = ("investigating", "cleared", "open")          # what a user may set
STATES = ("open", "reopened", "investigating", "cleared")  # what a finding may show
OPEN_STATES = frozenset({"open", "reopened", "investigating"})
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}  # info < warning < critical
NOTE_MAX = 2000
QNAMES_SHOWN = 5
_GROUP_SIGHTINGS = ("SELECT client_ip, list, min(first_seen), max(last_seen), sum(count) "
                    "FROM sightings {} GROUP BY client_ip, list")


def record_mark(path: str, *, client_ip: str, kind: str, key: str, state: str, note: str,
                at: float) -> int:
    """Append one triage mark in its own short transaction; returns its id.

    Not through the Store's queue: that queue is the hot path's, batched for throughput, and a
    mark is one human action that must be on disk before the page that shows it is drawn."""
    if kind not in KINDS or state not in MARKS:
        raise ValueError(f"kind must be one of {KINDS} and state one of {MARKS}")
    cur = write_one(path, "INSERT INTO triage(client_ip, kind, key, state, note, at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (storable(client_ip), kind, storable(key),
                                                   state, storable(note[:NOTE_MAX]), at),
                    "record the triage mark")
    return int(cur.lastrowid or 0)


def derive_state(mark: Mapping[str, Any] | None, last_seen: float) -> str:
    """open | reopened | investigating | cleared, from the newest mark and the newest hit."""
    if mark is None or mark["state"] == "open":
        return "open"
    if mark["state"] == "cleared" and last_seen > mark["at"]:
        return "reopened"
    return str(mark["state"])


def latest_marks(conn: sqlite3.Connection, client_ip: str | None = None
                 ) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(client_ip, kind, key) -> the newest mark; the table is small (one row per click)."""
    sql = ("SELECT client_ip, kind, key, state, note, at FROM triage WHERE id IN "
           "(SELECT max(id) FROM triage {} GROUP BY client_ip, kind, key)")
    args: tuple[Any, ...] = ()
    if client_ip is not None:
        sql, args = sql.format("WHERE client_ip = ?"), (client_ip,)
    else:
        sql = sql.format("")
    return {(ip, kind, key): {"state": state, "note": note, "at": at}
            for ip, kind, key, state, note, at in conn.execute(sql, args)}


def mark_history(conn: sqlite3.Connection, client_ip: str) -> list[dict[str, Any]]:
    """Every mark of one device, newest first: the case notes on the device page."""
    rows = conn.execute("SELECT kind, key, state, note, at FROM triage WHERE client_ip = ? "
                        "ORDER BY id DESC LIMIT 200", (client_ip,))
    return [dict(zip(("kind", "key", "state", "note", "at"), r, strict=True)) for r in rows]


def hit_findings(conn: sqlite3.Connection, client_ip: str | None = None) -> list[dict[str, Any]]:
    """One finding per (device, list), grouped from the sightings (one row per device and
    name) in SQLite along the sightings_finding index: no table row is read."""
    if client_ip is None:
        rows = conn.execute(_GROUP_SIGHTINGS.format("")).fetchall()
    else:
        rows = conn.execute(_GROUP_SIGHTINGS.format("WHERE client_ip = ?"),
                            (client_ip,)).fetchall()
    return _as_findings(conn, rows)


def _as_findings(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]
                 ) -> list[dict[str, Any]]:
    found = [{"client_ip": ip, "client_name": None, "kind": "hit", "key": list_name,
              "first_seen": first, "last_seen": last, "count": count, "qnames": [],
              "score": None} for ip, list_name, first, last, count in rows]
    severities = list_severities(conn, {f["key"] for f in found})
    for f in found:
        f["severity"] = severities.get(f["key"], "warning")
    return found


class HitFindings:
    """``hit_findings`` for every device, kept between reads and brought up to date from the
    hits written since (ids above the last one folded in): grouping a few hundred thousand
    sightings costs ~100 ms, the hits of the last few seconds almost nothing.

    A hit only ever adds to a finding, so folding it in is exact; pruning deletes the oldest
    hits, which moves min(id), and then the aggregate is rebuilt from the sightings.  (One
    difference with a rebuild: a name that moved to another list keeps its older hits under the
    old list until the next rebuild.)  Thread-safe: the console reads from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agg: dict[tuple[str, str], list[float]] = {}
        self._bounds: tuple[int | None, int | None] | None = None

    def read(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        with self._lock:
            conn.execute("BEGIN")      # one snapshot for the bounds and the rows
            try:
                self._update(conn)
            finally:
                conn.execute("COMMIT")
            rows = [(ip, ln, *v) for (ip, ln), v in self._agg.items()]
        return _as_findings(conn, rows)

    def _update(self, conn: sqlite3.Connection) -> None:
        # Two subqueries: min() and max() in one SELECT would scan the table for both.
        low, high = conn.execute("SELECT (SELECT min(id) FROM hits), "
                                 "(SELECT max(id) FROM hits)").fetchone()
        known = self._bounds
        if known is None or low != known[0] or (high or 0) < (known[1] or 0):
            self._agg = {(ip, ln): [first, last, n] for ip, ln, first, last, n in
                         conn.execute(_GROUP_SIGHTINGS.format(""))}
        elif high != known[1]:
            for ip, ln, when, first, last, n in conn.execute(
                    "SELECT client_ip, list, time, first_seen, last_seen, count FROM hits "
                    "WHERE id > ?", (known[1] or 0,)):
                agg = self._agg.setdefault((ip, ln), [math.inf, -math.inf, 0])
                agg[0] = min(agg[0], first if first is not None else when)
                agg[1] = max(agg[1], last if last is not None else when)
                agg[2] += n
        self._bounds = (low, high)


def add_details(conn: sqlite3.Connection, findings: Iterable[dict[str, Any]]) -> None:
    """The newest names and the device's newest name for the findings that will be shown
    (a seek each, so a page pays for its own rows, not for every finding)."""
    for f in findings:
        if f["kind"] != "hit":
            continue
        rows = conn.execute("SELECT qname, client_name FROM sightings INDEXED BY "
                            "sightings_finding WHERE client_ip = ? AND list = ? "
                            "ORDER BY last_seen DESC LIMIT ?",
                            (f["client_ip"], f["key"], QNAMES_SHOWN)).fetchall()
        f["qnames"] = [q for q, _ in rows]
        f["client_name"] = next((n for _, n in rows if n), None)


def list_severities(conn: sqlite3.Connection, lists: Iterable[str]) -> dict[str, str]:
    """The severity each list's newest hit carried (one index seek per list)."""
    out = {}
    for name in lists:
        row = conn.execute("SELECT severity FROM hits WHERE list = ? ORDER BY time DESC LIMIT 1",
                           (name,)).fetchone()
        out[name] = (row[0] if row and row[0] in SEVERITY_RANK else "warning")
    return out


def suspicion_findings(suspicions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Hunting's suspicions (rows of sinkhole.hunt.read_suspicions) as findings."""
    return [{"client_ip": s["client_ip"], "client_name": s.get("client_name"),
             "kind": "suspicion", "key": s["domain"], "first_seen": s["first_seen"],
             "last_seen": s["last_seen"], "count": s.get("count", 0), "qnames": [s["domain"]],
             "score": s.get("score"), "severity": "warning",
             "signals": [sig.get("signal", "") for sig in s.get("signals") or ()]}
            for s in suspicions]


def query_findings(conn: sqlite3.Connection, *, suspicions: Iterable[Mapping[str, Any]] = (),
                   client_ip: str | None = None, states: Iterable[str] | None = None,
                   limit: int | None = None, offset: int = 0,
                   cache: HitFindings | None = None) -> dict[str, Any]:
    """The findings with their derived state, `states` keeping only those (None: all), as
    {"total": n, "items": a page (`limit` None: all) with details, "by_client": {ip: n}}.

    Most urgent first: reopened, open, investigating, cleared; then severity, then newest."""
    marks = latest_marks(conn, client_ip)
    wanted = set(states) if states is not None else None
    out = []
    rows = cache.read(conn) if cache is not None and client_ip is None \
        else hit_findings(conn, client_ip)
    rows += [f for f in suspicion_findings(suspicions)
             if client_ip is None or f["client_ip"] == client_ip]
    for f in rows:
        mark = marks.get((f["client_ip"], f["kind"], f["key"]))
        f["state"] = derive_state(mark, f["last_seen"])
        f["note"] = mark["note"] if mark else ""
        f["marked_at"] = mark["at"] if mark else None
        if wanted is None or f["state"] in wanted:
            out.append(f)
    order = {s: i for i, s in enumerate(STATES)}
    out.sort(key=lambda f: (order[f["state"]], -SEVERITY_RANK.get(f["severity"], 1),
                            -(f["score"] or 0), -f["last_seen"], f["client_ip"]))
    page = out[offset:] if limit is None else out[offset:offset + limit]
    add_details(conn, page)
    by_client: dict[str, int] = {}
    for f in out:
        by_client[f["client_ip"]] = by_client.get(f["client_ip"], 0) + 1
    return {"total": len(out), "items": page, "by_client": by_client}
