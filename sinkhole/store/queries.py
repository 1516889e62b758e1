"""Read side of the store for the CLI and the HTTP API: hits, infected devices, history,
and retro-hunt.  Plain functions over a read-only connection; no writer, no thread.

History is searched by index seeks only: a name (and its subdomains) is a range on the reversed
names index, and each matching name is looked up hour by hour on the (hour, name) primary key,
so a retro-hunt of 10,000 names never scans the table.  The start-up hunt, which has no list
diff to search for, walks the distinct names instead (``history_names``): one range scan of
the names table, bounded by the history's retention.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .history import (
    LAST_HOUR_SLACK,
    decode_counts,
    history_name,
    reverse_name,
    subdomain_range,
)
from .schema import SCHEMA_VERSION, StoreError, check_version, read_version

HIT_KEYS = ("id", "time", "client_ip", "client_name", "qname", "qtype", "list", "category",
            "severity", "rule", "action", "transport", "kind", "first_seen", "last_seen",
            "count", "sni", "host", "port")
_SEEK_CHUNK = 500  # name ids per statement: keeps each IN-list seek plan small


def open_reader(path: str) -> sqlite3.Connection:
    """A read-only connection; a clear StoreError when there is nothing usable to read."""
    if not os.path.exists(path):
        raise StoreError(f"no database at {path} (has the daemon run yet?)")
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=1.0)
        version = read_version(conn)
    except sqlite3.Error as err:
        raise StoreError(f"cannot read {path}: {err}") from err
    check_version(version)
    if version < SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"{path} has schema version {version}; start the daemon once to "
                         f"upgrade it to {SCHEMA_VERSION}")
    return conn


def query_hits(conn: sqlite3.Connection, *, since: float | None = None,
               client: str | None = None, list_name: str | None = None,
               qname: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
    """Hits newest first; ``client`` matches the IP or the name the client had at the time."""
    where, args = _filters(since=since, list_name=list_name, qname=qname)
    if client:
        where.append("(client_ip = ? OR client_name = ?)")
        args += [client, client]
    sql = (f"SELECT {', '.join(HIT_KEYS)} FROM hits {_where(where)} "
           "ORDER BY time DESC, id DESC LIMIT ? OFFSET ?")
    return [dict(zip(HIT_KEYS, row, strict=True))
            for row in conn.execute(sql, [*args, limit, offset])]


def query_clients(conn: sqlite3.Connection, *, since: float | None = None) -> list[dict]:
    """Devices with hits, most recently seen first; the name is the one of the latest hit."""
    sql = "SELECT client_ip, client_name, list, qname, first_seen, last_seen, count FROM sightings"
    args: list[Any] = []
    if since is not None:
        sql += " WHERE last_seen >= ?"
        args.append(since)
    devices: dict[str, dict[str, Any]] = {}
    for ip, name, list_name, qname, first, last, count in conn.execute(sql, args):
        dev = devices.get(ip)
        if dev is None:
            dev = devices[ip] = {"client_ip": ip, "client_name": name, "lists": set(),
                                 "qnames": set(), "first_seen": first, "last_seen": last,
                                 "count": 0}
        elif last >= dev["last_seen"]:
            dev["client_name"] = name or dev["client_name"]
        dev["lists"].add(list_name)
        dev["qnames"].add(qname)
        dev["first_seen"] = min(dev["first_seen"], first)
        dev["last_seen"] = max(dev["last_seen"], last)
        dev["count"] += count
    for dev in devices.values():
        dev["lists"] = sorted(dev["lists"])
        dev["qnames"] = sorted(dev["qnames"])
    return sorted(devices.values(), key=lambda d: (-d["last_seen"], d["client_ip"]))


def query_history(conn: sqlite3.Connection, *, name: str, since: float | None = None,
                  client: str | None = None, include_subdomains: bool = True,
                  limit: int = 100, offset: int = 0) -> list[dict]:
    """Hourly counts for a name (and its subdomains): newest hour first, then name, client.

    ``time`` is the start of the hour.  Walks back one day at a time and stops as soon as the
    page is full, so a recent page of a busy name costs a day's seeks, not a month's.
    """
    ids = _match_names(conn, [name], include_subdomains)
    bounds = _hour_bounds(conn, since)
    if not ids or bounds is None:
        return []
    client_id = _client_id(conn, client) if client else None
    if client and client_id is None:
        return []
    first_hour, hour = bounds
    rows: list[tuple[int, str, int, int]] = []
    while hour >= first_hour and len(rows) < offset + limit:
        hours = list(range(hour, max(first_hour, hour - 23) - 1, -1))
        day = [(h, ids[nid][0], cid, n) for h, nid, counts in _seek(conn, hours, list(ids))
               for cid, n in counts.items() if client_id in (None, cid)]
        day.sort(key=lambda r: (-r[0], r[1], r[2]))
        rows.extend(day)
        hour -= 24
    page = rows[offset:offset + limit]
    ips = _client_ips(conn, {r[2] for r in page})
    return [{"time": h * 3600.0, "client_ip": ips.get(cid, "?"), "qname": qname, "count": n}
            for h, qname, cid, n in page]


def retrohunt(conn: sqlite3.Connection, names: Iterable[str], *, since: float) -> list[dict]:
    """Who asked for any of ``names`` (or a subdomain of one) since ``since``.

    One row per (client, qname), ``matched`` being the most specific list entry that covers it;
    first/last seen are the starts of the first and last hour it was asked (hour resolution).
    """
    return retrohunt_ids(conn, _match_names(conn, names, include_subdomains=True), since=since)


def retrohunt_ids(conn: sqlite3.Connection, ids: Mapping[int, tuple[str, str]], *,
                  since: float) -> list[dict]:
    """``retrohunt`` for names already known by id: name id -> (qname, the entry it matched)."""
    bounds = _hour_bounds(conn, since)
    if not ids or bounds is None:
        return []
    hours = list(range(bounds[0], bounds[1] + 1))
    found: dict[tuple[int, int], list[int]] = {}
    for hour, nid, counts in _seek(conn, hours, list(ids)):
        for cid, n in counts.items():
            agg = found.setdefault((cid, nid), [hour, hour, 0])
            agg[0], agg[1], agg[2] = min(agg[0], hour), max(agg[1], hour), agg[2] + n
    ips = _client_ips(conn, {cid for cid, _ in found})
    result = [{"client_ip": ips.get(cid, "?"), "qname": ids[nid][0], "matched": ids[nid][1],
               "first_seen": first * 3600.0, "last_seen": last * 3600.0, "count": n}
              for (cid, nid), (first, last, n) in found.items()]
    return sorted(result, key=lambda r: (r["client_ip"], r["qname"]))


def history_names(conn: sqlite3.Connection, *, since: float) -> Iterator[tuple[int, str]]:
    """(name id, name) of every name asked since ``since``, streamed from one index range.

    A name's last_hour lags its last query by up to LAST_HOUR_SLACK hours, so names up to a
    day older come too: ``retrohunt_ids`` then finds no rows in the window for them."""
    first = int(since // 3600) - LAST_HOUR_SLACK
    for nid, rname in conn.execute("SELECT id, rname FROM names WHERE last_hour >= ?", (first,)):
        yield nid, reverse_name(rname)


def recorded_retro(conn: sqlite3.Connection, client_ip: str, qname: str) -> bool:
    """Was a retro hit already stored for this (client, name)? Retro alerts go out once."""
    row = conn.execute("SELECT 1 FROM hits WHERE qname = ? AND client_ip = ? AND kind = 'retro' "
                       "LIMIT 1", (qname, client_ip)).fetchone()
    return row is not None


# ------------------------------------------------------------------------- helpers
def _filters(*, since: float | None, list_name: str | None,
             qname: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for clause, value in (("time >= ?", since), ("list = ?", list_name), ("qname = ?", qname)):
        if value is not None:
            where.append(clause)
            args.append(value)
    return where, args


def _where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


def _match_names(conn: sqlite3.Connection, names: Iterable[str],
                 include_subdomains: bool) -> dict[int, tuple[str, str]]:
    """name id -> (qname, the given name it matched), the most specific given name winning."""
    ids: dict[int, tuple[str, str]] = {}
    for given in {history_name(n) for n in names if n}:
        rname = reverse_name(given)
        if include_subdomains:
            low, high = subdomain_range(rname)
            rows = conn.execute("SELECT id, rname FROM names WHERE rname = ? "
                                "OR (rname >= ? AND rname < ?)", (rname, low, high))
        else:
            rows = conn.execute("SELECT id, rname FROM names WHERE rname = ?", (rname,))
        for nid, found in rows:
            known = ids.get(nid)
            if known is None or len(given) > len(known[1]):
                ids[nid] = (reverse_name(found), given)
    return ids


def _hour_bounds(conn: sqlite3.Connection, since: float | None) -> tuple[int, int] | None:
    """(first, last) stored hour numbers within the window; min/max are O(log n) on the PK."""
    low, high = conn.execute("SELECT (SELECT min(hour) FROM history), "
                             "(SELECT max(hour) FROM history)").fetchone()
    if low is None:
        return None
    if since is not None:
        low = max(low, int(since // 3600))
    return (low, high) if low <= high else None


def _seek(conn: sqlite3.Connection, hours: list[int],
          name_ids: list[int]) -> Iterable[tuple[int, int, dict[int, int]]]:
    """Rows for every (hour, name id) pair: one primary-key seek each, no scan."""
    for i in range(0, len(name_ids), _SEEK_CHUNK):
        rows = conn.execute(
            "SELECT hour, name_id, clients FROM history "
            "WHERE hour IN (SELECT value FROM json_each(?)) "
            "AND name_id IN (SELECT value FROM json_each(?))",
            (json.dumps(hours), json.dumps(name_ids[i:i + _SEEK_CHUNK])))
        for hour, nid, blob in rows:
            yield hour, nid, decode_counts(blob)


def _client_id(conn: sqlite3.Connection, ip: str) -> int | None:
    row = conn.execute("SELECT id FROM clients WHERE ip = ?", (ip,)).fetchone()
    return row[0] if row else None


def _client_ips(conn: sqlite3.Connection, ids: set[int]) -> dict[int, str]:
    rows = conn.execute("SELECT id, ip FROM clients WHERE id IN (SELECT value FROM json_each(?))",
                        (json.dumps(sorted(ids)),))
    return dict(rows.fetchall())
