"""One device's passive-DNS history hour by hour: what it asked around a hit.

The history keeps one row per (hour, name) with every client's count packed in a blob, so a
device's hour is found by reading that hour's rows and picking its count out of each blob.
Picking is the cost: most blobs hold only one-byte varints (small id steps, counts under 128),
and for those the ids are a C-level running sum over every other byte, searched by bisection;
only the other blobs are walked in Python, and the walk stops at the first id past ours.
"""

from __future__ import annotations

import json
import sqlite3
from bisect import bisect_left
from itertools import accumulate

from .history import reverse_name
from .queries import _client_id

MAX_HOURS = 49  # the widest range the console offers: a day either side of the hit


def count_of(blob: bytes, client_id: int) -> int:
    """The count ``client_id`` has in an encode_counts blob (0 if absent)."""
    if blob.isascii():          # every varint is one byte: (id step, count) pairs
        ids = list(accumulate(blob[0::2]))
        i = bisect_left(ids, client_id)
        return blob[2 * i + 1] if i < len(ids) and ids[i] == client_id else 0
    cid = value = shift = 0
    is_id = match = True
    for byte in blob:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        if is_id:
            cid += value
            if cid > client_id:
                return 0
            match = cid == client_id
        elif match:
            return value
        is_id = not is_id
        value = shift = 0
    return 0


def device_hours(conn: sqlite3.Connection, client_ip: str, first_hour: int,
                 last_hour: int) -> dict[int, list[tuple[str, int]]]:
    """hour number -> [(name, count)] the device asked in that hour, busiest name first."""
    cid = _client_id(conn, client_ip)
    if cid is None:
        return {}
    last_hour = min(last_hour, first_hour + MAX_HOURS - 1)
    found: dict[int, list[tuple[int, int]]] = {}
    rows = conn.execute("SELECT hour, name_id, clients FROM history WHERE hour BETWEEN ? AND ?",
                        (first_hour, last_hour))
    for hour, name_id, blob in rows:
        n = count_of(blob, cid)
        if n:
            found.setdefault(hour, []).append((name_id, n))
    ids = sorted({nid for pairs in found.values() for nid, _ in pairs})
    names = dict(conn.execute(
        "SELECT id, rname FROM names WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(ids),)).fetchall())
    return {hour: sorted(((reverse_name(names.get(nid, "?")), n) for nid, n in pairs),
                         key=lambda p: (-p[1], p[0]))
            for hour, pairs in sorted(found.items())}
