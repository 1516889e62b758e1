"""Passive-DNS history: the name keys, the packed per-client counts, and the writer's upserts.

Layout (why it is not one row per (client, name, hour)): at 1,000 q/s from 500 devices there are
a few hundred thousand distinct (client, name, hour) triples per hour, and a row each would cost
~20 bytes plus indexes — over the 1 GB / 30 days budget.  So names and client IPs are interned
to small integers, and one row per (hour, name) holds a blob of (client id, count) varints:
a popular name asked by 300 devices in an hour costs ~1 KB instead of ~6 KB.  The primary key
starts with the hour, so new rows land at the end of the tree and pruning deletes from its start.
"""

from __future__ import annotations

import sqlite3

from .events import storable

# A name's last_hour is refreshed at most once a day: one UPDATE per name per day instead of one
# per name per hour.  Pruning keeps names a day longer to make up for the lag.
LAST_HOUR_SLACK = 24
CACHE_MAX = 200_000

# Keys of the writer's in-memory aggregate: (client_ip, qname, hour number).
Counts = dict[tuple[str, str, int], int]


def history_name(qname: str) -> str:
    """The form a name is kept and searched under: lower-case ASCII, no trailing dot."""
    if qname.isascii():
        qname = qname.lower()
    return qname[:-1] if qname.endswith(".") else qname


def reverse_name(name: str) -> str:
    """'a.evil.com' -> 'moc.live.a': subdomains of X then share the prefix reverse(X) + '.'."""
    return name[::-1]


def subdomain_range(rname: str) -> tuple[str, str]:
    """Index range holding every reversed subdomain of ``rname`` ('/' sorts right after '.')."""
    return rname + ".", rname + "/"


def encode_counts(counts: dict[int, int]) -> bytes:
    """Pack {client id: count} as varint pairs, ids delta-coded in ascending order."""
    out = bytearray()
    prev = 0
    for cid in sorted(counts):
        for value in (cid - prev, counts[cid]):
            while value >= 0x80:
                out.append((value & 0x7F) | 0x80)
                value >>= 7
            out.append(value)
        prev = cid
    return bytes(out)


def decode_counts(blob: bytes) -> dict[int, int]:
    """Inverse of encode_counts."""
    values: list[int] = []
    value = shift = 0
    for byte in blob:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        values.append(value)
        value = shift = 0
    counts: dict[int, int] = {}
    cid = 0
    for i in range(0, len(values) - 1, 2):
        cid += values[i]
        counts[cid] = values[i + 1]
    return counts


class HistoryWriter:
    """Writes the aggregated counts inside the writer's transaction (writer thread only).

    Name and client ids are cached; ids learned inside a transaction are *staged* and only
    cached once it commits, because a rollback would leave the cache pointing at ids that
    do not exist.
    """

    def __init__(self) -> None:
        self._names: dict[str, tuple[int, int]] = {}
        self._clients: dict[str, int] = {}
        self._staged_names: dict[str, tuple[int, int]] = {}
        self._staged_clients: dict[str, int] = {}

    def write(self, conn: sqlite3.Connection, counts: Counts) -> int:
        """Merge ``counts`` into the history rows; returns the number of rows upserted."""
        groups: dict[tuple[int, str], dict[str, int]] = {}
        for (ip, qname, hour), n in counts.items():
            per_ip = groups.setdefault((hour, reverse_name(history_name(qname))), {})
            per_ip[ip] = per_ip.get(ip, 0) + n
        for (hour, rname), per_ip in groups.items():
            name_id = self._name_id(conn, rname, hour)
            row = conn.execute("SELECT clients FROM history WHERE hour = ? AND name_id = ?",
                               (hour, name_id)).fetchone()
            merged = decode_counts(row[0]) if row else {}
            for ip, n in per_ip.items():
                cid = self._client_id(conn, ip)
                merged[cid] = merged.get(cid, 0) + n
            conn.execute("INSERT INTO history(hour, name_id, clients) VALUES (?, ?, ?) "
                         "ON CONFLICT(hour, name_id) DO UPDATE SET clients = excluded.clients",
                         (hour, name_id, encode_counts(merged)))
        return len(groups)

    def committed(self) -> None:
        """The transaction committed: staged ids are real now."""
        if len(self._names) + len(self._staged_names) > CACHE_MAX:
            self._names.clear()
        if len(self._clients) + len(self._staged_clients) > CACHE_MAX:
            self._clients.clear()
        self._names.update(self._staged_names)
        self._clients.update(self._staged_clients)
        self.rolled_back()

    def rolled_back(self) -> None:
        self._staged_names.clear()
        self._staged_clients.clear()

    def forget(self) -> None:
        """Drop the caches (after pruning deleted names whose ids may be cached)."""
        self._names.clear()
        self._clients.clear()
        self.rolled_back()

    def _name_id(self, conn: sqlite3.Connection, rname: str, hour: int) -> int:
        known = self._staged_names.get(rname) or self._names.get(rname)
        if known is None:
            row = conn.execute("SELECT id, last_hour FROM names WHERE rname = ?",
                               (storable(rname),)).fetchone()
            if row is None:
                cur = conn.execute("INSERT INTO names(rname, last_hour) VALUES (?, ?)",
                                   (storable(rname), hour))
                known = (int(cur.lastrowid or 0), hour)
            else:
                known = (row[0], row[1])
            self._staged_names[rname] = known
        if hour - known[1] >= LAST_HOUR_SLACK:
            conn.execute("UPDATE names SET last_hour = ? WHERE id = ?", (hour, known[0]))
            self._staged_names[rname] = known = (known[0], hour)
        return known[0]

    def _client_id(self, conn: sqlite3.Connection, ip: str) -> int:
        cid = self._staged_clients.get(ip) or self._clients.get(ip)
        if cid is None:
            row = conn.execute("SELECT id FROM clients WHERE ip = ?", (storable(ip),)).fetchone()
            if row is None:
                cur = conn.execute("INSERT INTO clients(ip) VALUES (?)", (storable(ip),))
                cid = int(cur.lastrowid or 0)
            else:
                cid = row[0]
            self._staged_clients[ip] = cid
        return cid
