"""Pi-hole's long-term query database (`/etc/pihole/pihole-FTL.db`, SQLite).

Read through the `queries` relation, which is a table in older FTL and, since FTL database
version 10, a VIEW over `query_storage` that resolves `domain_by_id` / `client_by_id` (rows
migrated from before may still hold the text itself; the view handles both). Column meanings
are FTL's, from Pi-hole's documentation of the query database
(https://docs.pi-hole.net/database/query-database/, "Query Table", "Supported query types",
"Supported reply types"): `timestamp` Unix seconds; `type` FTL's own enum below, not the DNS
number (types it has no name for are stored as 100 + the DNS number, pi-hole/FTL#1013; 14
"OTHER" is the pre-v5.4 catch-all whose real type was not kept); `reply_type` FTL's reply kind,
mapped to the rcode it implies where it implies one. Every status counts (blocked queries too):
the client asked either way, and that is what hunting looks at.

A live Pi-hole must never notice the import: the file is opened read-only (`mode=ro`, so
nothing is created or written) and read in pages by id, each page its own short read
transaction, so no lock is held while the caller works through a page (in rollback-journal
mode a long-lived reader would block FTL's once-a-minute writes). Names of clients come from
`client_by_id.name` or `network_addresses.name` where FTL knows them (today's names, not the
names at the time of each query: FTL keeps no history of them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sinkhole.events import Observation
from sinkhole.importers.common import (
    BadLine,
    ClientCache,
    ImportStats,
    LogFormatError,
    LogImportError,
    check_time,
    norm_qname,
    parse_one,
    qtype_label,
)

FTL_TYPES = {1: "A", 2: "AAAA", 3: "ANY", 4: "SRV", 5: "SOA", 6: "PTR", 7: "TXT", 8: "NAPTR",
             9: "MX", 10: "DS", 11: "RRSIG", 12: "DNSKEY", 13: "NS", 14: "OTHER", 15: "SVCB",
             16: "HTTPS"}
FTL_TYPE_OFFSET = 100
# reply_type -> rcode: NODATA, CNAME, IP, DOMAIN, RRNAME, BLOB are answers (NOERROR);
# 0 unknown (no reply yet), 10 OTHER, 11 DNSSEC, 12 NONE (dropped) imply none.
REPLY_RCODES = {1: 0, 2: 3, 3: 0, 4: 0, 5: 0, 6: 0, 7: 2, 8: 5, 9: 4, 13: 0}
PAGE = 2000
MAX_NAMED_CLIENTS = 100_000
_NEEDED = ("id", "timestamp", "type", "domain", "client")


def read(path: str | Path, stats: ImportStats) -> Iterator[Observation]:
    """Observations of a Pi-hole FTL database, in id order (the order FTL stored them)."""
    conn = open_db(path)
    try:
        columns = _columns(conn, path)
        parser = FtlRowParser(_client_names(conn))
    except BaseException:
        conn.close()
        raise
    return _rows(conn, "reply_type" in columns, parser, stats, path)


def open_db(path: str | Path) -> sqlite3.Connection:
    """The database, read-only; a file that is not SQLite is refused before SQLite sees it."""
    file = Path(path)
    try:
        with open(file, "rb") as f:
            head = f.read(16)
    except FileNotFoundError as err:
        raise LogImportError(f"{path}: no such file") from err
    except OSError as err:
        raise LogImportError(f"{path}: cannot read: {err.strerror or err}") from err
    if head != b"SQLite format 3\x00":
        raise LogFormatError(f"{path}: not an SQLite database (Pi-hole's query database is "
                             f"/etc/pihole/pihole-FTL.db)")
    try:
        conn = sqlite3.connect(file.resolve().as_uri() + "?mode=ro", uri=True, timeout=30.0,
                               check_same_thread=False)
    except sqlite3.Error as err:
        raise LogImportError(f"{path}: cannot open: {err}") from err
    conn.text_factory = bytes     # names byte for byte; invalid UTF-8 must not fail a page
    return conn


def _columns(conn: sqlite3.Connection, path: str | Path) -> set[str]:
    try:
        columns = {row[1].decode() for row in conn.execute("PRAGMA table_info(queries)")}
    except sqlite3.DatabaseError as err:
        raise LogFormatError(f"{path}: unreadable as SQLite: {err}") from err
    if not columns:
        raise LogFormatError(f"{path}: no 'queries' table or view: not a Pi-hole FTL database")
    missing = [c for c in _NEEDED if c not in columns]
    if missing:
        raise LogFormatError(f"{path}: 'queries' has no {', '.join(missing)}: not FTL's")
    return columns


def _client_names(conn: sqlite3.Connection) -> dict[str, str]:
    names: dict[str, str] = {}
    for table in ("network_addresses", "client_by_id"):     # the second wins
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if {b"ip", b"name"} <= columns:
            for ip, name in conn.execute(f"SELECT ip, name FROM {table} WHERE name IS NOT "
                                         f"NULL AND name != '' LIMIT {MAX_NAMED_CLIENTS}"):
                if isinstance(ip, bytes) and isinstance(name, bytes):
                    names[ip.decode("latin-1")] = name.decode("utf-8", "replace")[:255]
    return names


def _rows(conn: sqlite3.Connection, has_reply: bool, parser: FtlRowParser, stats: ImportStats,
          path: str | Path) -> Iterator[Observation]:
    sql = (f"SELECT id, timestamp, type, domain, client{', reply_type' if has_reply else ''} "
           f"FROM queries WHERE id > ? ORDER BY id LIMIT {PAGE}")
    last = -(1 << 63)
    try:
        while True:
            try:
                page = conn.execute(sql, (last,)).fetchall()
            except sqlite3.Error as err:
                raise LogImportError(f"{path}: reading rows after id {last}: {err}") from err
            if not page:
                return
            for row in page:
                stats.lines += 1
                obs = parse_one(parser, row, row[0], stats)
                if obs is not None:
                    yield obs
            last = page[-1][0]
    finally:
        conn.close()


class FtlRowParser:
    """One row of `queries` (id, timestamp, type, domain, client[, reply_type])."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.clients = ClientCache()

    def __call__(self, row: tuple[Any, ...]) -> Observation | None:
        domain, client = row[3], row[4]
        if not isinstance(domain, bytes):
            raise BadLine("no domain (a dangling domain id?)" if domain is None else
                          "domain is not text")
        name = norm_qname(domain.decode("latin-1"))
        if not name:
            return None
        if not isinstance(client, bytes):
            raise BadLine("no client (a dangling client id?)")
        ip = client.decode("latin-1")
        if not isinstance(row[1], int | float):
            raise BadLine("timestamp is not a number")
        reply = row[5] if len(row) > 5 else None
        return Observation(check_time(float(row[1])), self.clients(ip), name,
                           _ftl_type(row[2]), self.names.get(ip), REPLY_RCODES.get(reply))


def _ftl_type(value: Any) -> str:
    if isinstance(value, int):
        if value in FTL_TYPES:
            return FTL_TYPES[value]
        if FTL_TYPE_OFFSET < value <= FTL_TYPE_OFFSET + 0xFFFF:
            return qtype_label(value - FTL_TYPE_OFFSET)
    raise BadLine(f"unknown FTL query type {str(value)[:20]!r}")
