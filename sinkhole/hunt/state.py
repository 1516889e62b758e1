"""The hunter's SQLite file (hunt.db): schema, and every statement that reads or writes it.

A file of its own, beside the store's: the hunter writes from its worker thread in batches
(one transaction per flush), and a slow hunt can never hold the lock the hit recorder needs.
WAL with synchronous=NORMAL: a power cut may lose the last batch of hunting state (seconds of
observations), never corrupt it; readers (CLI, API) open their own read-only connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sinkhole.errors import SinkholeError
from sinkhole.hunt.model import Case, evidence_rows, signal_key

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # The newly-seen memory: bounded to hunt.max_domains rows, least recently seen evicted.
    # `devices` counts distinct askers over the rare window up to rare_devices + 1 ("common");
    # `seen_by` holds those few askers ("ip time ...") while the domain is rare.
    """CREATE TABLE domains (
        domain TEXT PRIMARY KEY,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        devices INTEGER NOT NULL,
        seen_by TEXT) WITHOUT ROWID""",
    "CREATE INDEX domains_last ON domains(last_seen)",
    # When each device was first seen: a device new to the network is still learning.
    """CREATE TABLE devices (
        client_ip TEXT PRIMARY KEY,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX devices_last ON devices(last_seen)",
    # Beacon rings of (device, newly seen or rare domain), so hours of regularity survive a
    # restart; bounded like the in-memory pairs.
    """CREATE TABLE pairs (
        client_ip TEXT NOT NULL,
        domain TEXT NOT NULL,
        last REAL NOT NULL,
        times TEXT NOT NULL,
        regular_since REAL,
        PRIMARY KEY (client_ip, domain)) WITHOUT ROWID""",
    "CREATE INDEX pairs_last ON pairs(last)",
    """CREATE TABLE suspicions (
        client_ip TEXT NOT NULL,
        domain TEXT NOT NULL,
        client_name TEXT,
        score INTEGER NOT NULL,
        signals TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        count INTEGER NOT NULL,
        evidence TEXT NOT NULL,
        listed_by TEXT NOT NULL,
        reported INTEGER NOT NULL,
        PRIMARY KEY (client_ip, domain))""",
    "CREATE INDEX suspicions_last ON suspicions(last_seen)",
    "CREATE INDEX suspicions_domain ON suspicions(domain)",
)
_CASE_COLUMNS = ("client_ip, domain, client_name, score, signals, first_seen, last_seen, count, "
                 "evidence, listed_by, reported")
_CHUNK = 500  # names per IN (...) statement


class HuntStateError(SinkholeError):
    """hunt.db cannot be opened or is not a hunting database this code knows."""


def open_db(path: str) -> sqlite3.Connection:
    """Open (creating if needed) hunt.db for writing: WAL, explicit transactions."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=1.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # A checkpoint (an fsync) every 40 MB of WAL instead of every 4 MB: at the default it
        # was two thirds of the flush time on a month's import; the file is trimmed after.
        conn.execute("PRAGMA wal_autocheckpoint = 10000")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        _migrate(conn, path)
    except sqlite3.Error as err:
        raise HuntStateError(f"{path}: cannot open the hunting database: {err}") from err
    return conn


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    version = _version(conn, path)
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    conn.execute("COMMIT")


def _version(conn: sqlite3.Connection, path: str) -> int:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return 0
    row = None
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        raise HuntStateError(f"{path}: not a sinkhole hunting database")
    if int(row[0]) > SCHEMA_VERSION:
        raise HuntStateError(f"{path}: hunting schema version {row[0]} is newer than this "
                             f"sinkhole supports ({SCHEMA_VERSION})")
    return int(row[0])


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def put_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


# --- domains --------------------------------------------------------------------------------

def get_domain(conn: sqlite3.Connection, domain: str) -> tuple[float, float, int, str] | None:
    return conn.execute("SELECT first_seen, last_seen, devices, seen_by FROM domains "
                        "WHERE domain = ?", (domain,)).fetchone()


def put_domains(conn: sqlite3.Connection, rows: Iterable[tuple[str, float, float, int, str]]):
    conn.executemany("INSERT INTO domains VALUES (?, ?, ?, ?, ?) ON CONFLICT (domain) DO UPDATE "
                     "SET last_seen = excluded.last_seen, devices = excluded.devices, "
                     "seen_by = excluded.seen_by", rows)


def all_domains(conn: sqlite3.Connection):
    return conn.execute("SELECT domain, first_seen, last_seen, devices, seen_by FROM domains")


def count_domains(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM domains").fetchone()[0]


def evict_domains(conn: sqlite3.Connection, n: int) -> list[str]:
    """Delete the n least recently seen domains; their names."""
    names = [r[0] for r in conn.execute(
        "SELECT domain FROM domains ORDER BY last_seen LIMIT ?", (n,))]
    for i in range(0, len(names), _CHUNK):
        chunk = names[i:i + _CHUNK]
        conn.execute(f"DELETE FROM domains WHERE domain IN ({','.join('?' * len(chunk))})",
                     chunk)
    return names


# --- devices --------------------------------------------------------------------------------

def get_device(conn: sqlite3.Connection, ip: str) -> float | None:
    row = conn.execute("SELECT first_seen FROM devices WHERE client_ip = ?", (ip,)).fetchone()
    return row[0] if row else None


def put_devices(conn: sqlite3.Connection, rows: Iterable[tuple[str, float, float]]) -> None:
    conn.executemany("INSERT INTO devices VALUES (?, ?, ?) ON CONFLICT (client_ip) DO UPDATE "
                     "SET first_seen = min(first_seen, excluded.first_seen), "
                     "last_seen = max(last_seen, excluded.last_seen)", rows)


def trim_devices(conn: sqlite3.Connection, keep: int) -> None:
    extra = conn.execute("SELECT count(*) FROM devices").fetchone()[0] - keep
    if extra > 0:
        conn.execute("DELETE FROM devices WHERE client_ip IN (SELECT client_ip FROM devices "
                     "ORDER BY last_seen LIMIT ?)", (extra,))


# --- pairs ----------------------------------------------------------------------------------

def load_pairs(conn: sqlite3.Connection, limit: int) -> list[tuple[str, str, str, Any]]:
    """The most recently active pairs, least recent first (the in-memory LRU order)."""
    rows = conn.execute("SELECT client_ip, domain, times, regular_since FROM pairs "
                        "ORDER BY last DESC LIMIT ?", (limit,)).fetchall()
    return rows[::-1]


def put_pairs(conn: sqlite3.Connection, rows: Iterable[tuple[str, str, float, str, Any]]):
    conn.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?)", rows)


def trim_pairs(conn: sqlite3.Connection, keep: int) -> None:
    extra = conn.execute("SELECT count(*) FROM pairs").fetchone()[0] - keep
    if extra > 0:
        conn.execute("DELETE FROM pairs WHERE (client_ip, domain) IN (SELECT client_ip, domain "
                     "FROM pairs ORDER BY last LIMIT ?)", (extra,))


# --- suspicions -----------------------------------------------------------------------------

def case_row(case: Case) -> tuple[Any, ...]:
    return (case.client_ip, case.domain, case.client_name, case.score,
            json.dumps(list(case.signals.values()), separators=(",", ":")),
            case.first_seen, case.last_seen, case.count,
            json.dumps(list(case.evidence), separators=(",", ":")),
            json.dumps(case.listed_by), case.reported)


def row_case(row: tuple[Any, ...]) -> Case:
    ip, domain, name, score, signals, first, last, count, evidence, listed, reported = row
    case = Case(ip, name, domain, first, last, count, score=score, reported=reported)
    case.signals = {signal_key(s): s for s in json.loads(signals)}
    case.evidence.extend(tuple(e) for e in json.loads(evidence))
    case.listed_by = json.loads(listed)
    return case


def put_cases(conn: sqlite3.Connection, cases: Iterable[Case]) -> None:
    conn.executemany(f"INSERT OR REPLACE INTO suspicions ({_CASE_COLUMNS}) "
                     f"VALUES ({','.join('?' * 11)})", (case_row(c) for c in cases))


def delete_cases(conn: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> None:
    conn.executemany("DELETE FROM suspicions WHERE client_ip = ? AND domain = ?", keys)


def get_case(conn: sqlite3.Connection, ip: str, domain: str) -> Case | None:
    row = conn.execute(f"SELECT {_CASE_COLUMNS} FROM suspicions WHERE client_ip = ? AND "
                       "domain = ?", (ip, domain)).fetchone()
    return row_case(row) if row else None


def cases_for_domains(conn: sqlite3.Connection, domains: Iterable[str]) -> list[Case]:
    names = list(domains)
    out = []
    for i in range(0, len(names), _CHUNK):
        chunk = names[i:i + _CHUNK]
        out += [row_case(r) for r in conn.execute(
            f"SELECT {_CASE_COLUMNS} FROM suspicions WHERE domain IN "
            f"({','.join('?' * len(chunk))})", chunk)]
    return out


def recent_cases(conn: sqlite3.Connection, limit: int) -> list[Case]:
    """The most recently active suspicions (re-opened in memory after a restart)."""
    return [row_case(r) for r in conn.execute(
        f"SELECT {_CASE_COLUMNS} FROM suspicions ORDER BY last_seen DESC LIMIT ?", (limit,))]


def trim_cases(conn: sqlite3.Connection, keep: int) -> None:
    """Bound the table: the least recently active suspicions beyond `keep` go (listed ones,
    the hits of a retro-hunt join, are kept)."""
    extra = conn.execute("SELECT count(*) FROM suspicions").fetchone()[0] - keep
    if extra > 0:
        conn.execute("DELETE FROM suspicions WHERE rowid IN (SELECT rowid FROM suspicions "
                     "WHERE listed_by = '[]' ORDER BY last_seen LIMIT ?)", (extra,))


def query_suspicions(conn: sqlite3.Connection, *, since: float | None = None,
                     min_score: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """Rows for the CLI/API, highest score first, then most recent."""
    rows = conn.execute(
        f"SELECT {_CASE_COLUMNS} FROM suspicions WHERE score >= ? AND last_seen >= ? "
        "ORDER BY score DESC, last_seen DESC LIMIT ?",
        (min_score, since if since is not None else float("-inf"), limit))
    return [_as_dict(row_case(r)) for r in rows]


def _as_dict(case: Case) -> dict[str, Any]:
    return {"client_ip": case.client_ip, "client_name": case.client_name,
            "domain": case.domain, "score": case.score,
            "signals": list(case.signals.values()), "first_seen": case.first_seen,
            "last_seen": case.last_seen, "count": case.count,
            "evidence": list(evidence_rows(case.evidence)), "listed_by": case.listed_by}


def read_suspicions(db_path: str, since: float | None = None, min_score: int = 0,
                    limit: int = 1000) -> list[dict[str, Any]]:
    """Suspicions from hunt.db through a read-only connection of its own (any thread or
    process); [] when the hunter has not created the file yet."""
    if not os.path.exists(db_path):
        return []
    uri = Path(db_path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=1.0)
    except sqlite3.Error as err:
        raise HuntStateError(f"cannot read {db_path}: {err}") from err
    try:
        if _version(conn, db_path) == 0:
            return []
        return query_suspicions(conn, since=since, min_score=min_score, limit=limit)
    except sqlite3.Error as err:
        raise HuntStateError(f"cannot read {db_path}: {err}") from err
    finally:
        conn.close()
