"""The store's SQLite schema: versioned migrations, connection set-up, and the store's errors.

Every change to the schema is a new numbered step appended to ``MIGRATIONS``; a step is never
edited once released, because databases in the field were built by it. Opening a database
applies the missing steps in one transaction, so a crash mid-upgrade leaves the old version
intact; a database written by a newer sinkhole is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sinkhole.errors import SinkholeError

# Step N brings a database from version N-1 to N.  The history and outbox tables came after the
# first release of hits/sightings; keeping them as separate steps is what lets a v1 file upgrade.
MIGRATIONS: Sequence[Sequence[str]] = (
    # v1: hits and the per-(client, name) sightings behind the "infected devices" view.
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE hits (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            client_ip TEXT NOT NULL,
            client_name TEXT,
            qname TEXT NOT NULL,
            qtype TEXT NOT NULL,
            list TEXT NOT NULL,
            category TEXT,
            severity TEXT,
            rule TEXT,
            action TEXT,
            transport TEXT,
            kind TEXT NOT NULL DEFAULT 'query',
            first_seen REAL,
            last_seen REAL)""",
        "CREATE INDEX hits_time ON hits(time)",
        "CREATE INDEX hits_client ON hits(client_ip, time)",
        "CREATE INDEX hits_client_name ON hits(client_name, time)",
        "CREATE INDEX hits_list ON hits(list, time)",
        "CREATE INDEX hits_qname ON hits(qname, time)",
        """CREATE TABLE sightings (
            client_ip TEXT NOT NULL,
            qname TEXT NOT NULL,
            client_name TEXT,
            list TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (client_ip, qname)) WITHOUT ROWID""",
    ),
    # v2: passive-DNS history.  Names and clients are interned to small integers and each
    # (hour, name) row packs its per-client counts into one blob: at 1,000 q/s from 500 devices
    # one row per (client, name, hour) would not fit the 1 GB / 30 days budget (see bench/).
    # `rname` is the name reversed, so "X or any subdomain of X" is an index range scan.
    (
        "CREATE TABLE clients (id INTEGER PRIMARY KEY, ip TEXT NOT NULL UNIQUE)",
        """CREATE TABLE names (
            id INTEGER PRIMARY KEY,
            rname TEXT NOT NULL UNIQUE,
            last_hour INTEGER NOT NULL)""",
        "CREATE INDEX names_last_hour ON names(last_hour)",
        """CREATE TABLE history (
            hour INTEGER NOT NULL,
            name_id INTEGER NOT NULL,
            clients BLOB NOT NULL,
            PRIMARY KEY (hour, name_id)) WITHOUT ROWID""",
    ),
    # v3: the durable alert outbox (one row per alert and sink).
    (
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created REAL NOT NULL,
            sink TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL,
            last_error TEXT,
            delivered_at REAL)""",
        "CREATE INDEX outbox_due ON outbox(next_attempt) WHERE state = 'pending'",
        "CREATE INDEX outbox_created ON outbox(created)",
    ),
    # v4: a hit row may stand for several hits: a client over the per-client detail rate gets
    # one aggregated row (kind 'flood') per list and second, so sum(count) is every hit.
    (
        "ALTER TABLE hits ADD COLUMN count INTEGER NOT NULL DEFAULT 1",
    ),
    # v5: triage marks from the console, append-only (a finding's notes are its case file);
    # the state shown is derived at read time, so the hit path never writes here.  A finding is
    # a device's hits of one list (kind 'hit', key = list) or its suspicion of one domain
    # (kind 'suspicion', key = domain).  Covering indexes for the console's summaries
    # (bench/ui_pages.py, 1M hits): findings group the sightings by (device, list), the
    # overview groups a day of hits by device and a device page its names over time (the
    # time and client indexes grow the columns these need and replace the narrow ones, so a
    # hit still pays for the same number of index entries), and the alerts page
    # counts the outbox by (state, sink); none of them reads a table row.
    (
        """CREATE TABLE triage (
            id INTEGER PRIMARY KEY,
            client_ip TEXT NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            state TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            at REAL NOT NULL)""",
        "CREATE INDEX triage_finding ON triage(client_ip, kind, key, id)",
        "CREATE INDEX sightings_finding ON sightings(client_ip, list, last_seen, first_seen, "
        "count)",
        "CREATE INDEX outbox_state_sink ON outbox(state, sink, attempts)",
        "CREATE INDEX hits_time_devices ON hits(time, client_ip, list, severity, count)",
        "DROP INDEX IF EXISTS hits_time",
        "CREATE INDEX hits_client_names ON hits(client_ip, time, client_name, count)",
        "DROP INDEX IF EXISTS hits_client",
    ),
    # v6: a hit of kind 'connect' (a device connected to the sinkhole address) carries what it
    # sent first: the TLS server name or the HTTP Host, and the port.
    (
        "ALTER TABLE hits ADD COLUMN sni TEXT",
        "ALTER TABLE hits ADD COLUMN host TEXT",
        "ALTER TABLE hits ADD COLUMN port INTEGER",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
SYNCHRONOUS_MODES = ("FULL", "NORMAL")


class StoreError(SinkholeError):
    """The store cannot be opened or used; the message is one line an operator can act on."""


class SchemaError(StoreError):
    """The database's schema version is unknown to this code (newer, or not a sinkhole DB)."""


def write_one(path: str, sql: str, args: Sequence[Any], what: str) -> sqlite3.Cursor:
    """One statement in its own short transaction on its own connection, beside the writer:
    for a human action (a triage mark, a resend) that must be on disk before the page that
    shows it is drawn, not batched with the hot path's queue. StoreError says `what` failed."""
    try:
        conn = connect(path, busy_ms=2000)
    except sqlite3.Error as err:
        raise StoreError(f"cannot open {path}: {err}") from err
    try:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(sql, args)
        conn.execute("COMMIT")
        return cur
    except sqlite3.Error as err:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreError(f"cannot {what}: {err}") from err
    finally:
        conn.close()


def connect(path: str, *, synchronous: str = "FULL", busy_ms: int = 100) -> sqlite3.Connection:
    """Open a connection in WAL mode with explicit transactions.

    ``isolation_level=None`` because the writer issues BEGIN IMMEDIATE/COMMIT itself: it must
    know exactly which statements a failed commit rolled back.  A short busy timeout keeps a lock
    held by another process from stalling the writer; the writer retries with backoff instead.
    """
    if synchronous.upper() not in SYNCHRONOUS_MODES:
        raise StoreError(f"storage.synchronous must be one of {SYNCHRONOUS_MODES}: {synchronous!r}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=busy_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        # Keep the WAL from staying at its high-water mark after a burst.
        conn.execute("PRAGMA journal_size_limit = 67108864")
    except BaseException:
        conn.close()
        raise
    return conn


def read_version(conn: sqlite3.Connection) -> int:
    """Schema version of an open database; 0 for an empty file."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise SchemaError("the file holds tables but no sinkhole schema version; "
                              "it is not a sinkhole database")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row else 0
    except ValueError as err:
        raise SchemaError(f"unreadable schema_version {row[0]!r}") from err


def check_version(version: int) -> None:
    """Refuse a database from a newer sinkhole instead of writing into a schema we don't know."""
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {version} is newer than this sinkhole supports "
            f"({SCHEMA_VERSION}); upgrade sinkhole or point storage.path at another file")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION in one transaction; returns the version found."""
    found = read_version(conn)
    check_version(found)
    if found == SCHEMA_VERSION:
        # No write at all: a current database opens even from a read-only file, and the
        # writer then reports and retries its failed commits like any other write fault.
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = read_version(conn)  # another process may have migrated meanwhile
        check_version(found)
        for steps in MIGRATIONS[found:]:
            for sql in steps:
                conn.execute(sql)
        if found < SCHEMA_VERSION:
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
