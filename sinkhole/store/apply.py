"""The SQL behind each queued writer op, and the batched pruning of expired rows.

Everything here runs on the writer thread inside (or, for pruning, as) short transactions.
"""

from __future__ import annotations

import sqlite3

from .events import AlertOp, HitEvent, MarkOp, storable
from .history import LAST_HOUR_SLACK

_INSERT_HIT = """INSERT INTO hits(time, client_ip, client_name, qname, qtype, list, category,
    severity, rule, action, transport, kind, first_seen, last_seen, count, sni, host, port)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""

# The latest hit decides the name and list shown for a device; a late-arriving older hit
# (or a retro hit, whose sighting lies in the past) only widens first/last seen.
_UPSERT_SIGHTING = """INSERT INTO sightings(client_ip, qname, client_name, list, first_seen,
    last_seen, count) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(client_ip, qname) DO UPDATE SET
      client_name = CASE WHEN excluded.last_seen >= sightings.last_seen
                         THEN coalesce(excluded.client_name, sightings.client_name)
                         ELSE sightings.client_name END,
      list = CASE WHEN excluded.last_seen >= sightings.last_seen
                  THEN excluded.list ELSE sightings.list END,
      first_seen = min(sightings.first_seen, excluded.first_seen),
      last_seen = max(sightings.last_seen, excluded.last_seen),
      count = sightings.count + excluded.count"""

_MARKS = {
    "delivered": "UPDATE outbox SET state = 'delivered', delivered_at = ?, "
                 "attempts = attempts + 1 WHERE id = ? AND state = 'pending'",
    "failed": "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ? "
              "WHERE id = ? AND state = 'pending'",
    "expired": "UPDATE outbox SET state = 'expired', last_error = coalesce(?, last_error) "
               "WHERE id = ? AND state = 'pending'",
}


def apply_hit(conn: sqlite3.Connection, ev: HitEvent) -> None:
    """Insert the hit and upsert its sighting (same transaction, so they never disagree)."""
    ip, qname, name = storable(ev.client_ip), storable(ev.qname), storable(ev.client_name)
    conn.execute(_INSERT_HIT, (
        ev.time, ip, name, qname, storable(ev.qtype), storable(ev.list),
        storable(ev.category), storable(ev.severity), storable(ev.rule), storable(ev.action),
        storable(ev.transport), ev.kind, ev.first_seen, ev.last_seen, ev.count,
        storable(ev.sni), storable(ev.host), ev.port))
    first = ev.first_seen if ev.first_seen is not None else ev.time
    last = ev.last_seen if ev.last_seen is not None else ev.time
    conn.execute(_UPSERT_SIGHTING, (ip, qname, name, storable(ev.list), first, last, ev.count))


def apply_alert(conn: sqlite3.Connection, op: AlertOp) -> list[int]:
    """One outbox row per sink, due at once; returns their ids in sink order."""
    ids = []
    for sink in op.sinks:
        cur = conn.execute(
            "INSERT INTO outbox(created, sink, payload, next_attempt) VALUES (?, ?, ?, ?)",
            (op.created, storable(sink), op.payload_json, op.created))
        ids.append(int(cur.lastrowid or 0))
    return ids


def apply_mark(conn: sqlite3.Connection, op: MarkOp) -> None:
    """Record a delivery outcome; only a pending row changes (a late duplicate is a no-op)."""
    sql = _MARKS[op.state]
    if op.state == "delivered":
        conn.execute(sql, (op.at, op.outbox_id))
    elif op.state == "failed":
        conn.execute(sql, (storable(op.error), op.next_attempt, op.outbox_id))
    else:
        conn.execute(sql, (storable(op.error), op.outbox_id))


def prune_batch(conn: sqlite3.Connection, *, now: float, retention: float,
                history_retention: float, batch: int) -> tuple[bool, int]:
    """Delete up to ``batch`` expired rows per table, each DELETE its own short transaction.

    Small batches keep the write lock short (a long DELETE would stall hit commits, and a
    reader's view, for seconds).  Returns (more rows left, names deleted); pending outbox rows
    are never pruned here: expiring them is the alert sender's decision, and it is counted.
    """
    cutoff = now - retention
    # History off (retention 0) means none is kept: whatever an earlier run stored goes too.
    cutoff_hour = int((now - history_retention) // 3600) if history_retention > 0 else 1 << 40
    deletes = (
        ("DELETE FROM hits WHERE id IN (SELECT id FROM hits WHERE time < ? LIMIT ?)", cutoff),
        ("DELETE FROM sightings WHERE (client_ip, qname) IN (SELECT client_ip, qname "
         "FROM sightings WHERE last_seen < ? LIMIT ?)", cutoff),
        ("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created < ? "
         "AND state != 'pending' LIMIT ?)", cutoff),
        ("DELETE FROM history WHERE (hour, name_id) IN (SELECT hour, name_id FROM history "
         "WHERE hour < ? LIMIT ?)", cutoff_hour),
    )
    more = False
    for sql, bound in deletes:
        more = conn.execute(sql, (bound, batch)).rowcount >= batch or more
    if more:
        # Names go only once their history rows are gone: a deleted id can be reused, and an
        # orphaned old row would then be attributed to the new name.
        return True, 0
    # A name's last_hour lags its true last use by up to LAST_HOUR_SLACK hours.
    names_deleted = conn.execute(
        "DELETE FROM names WHERE id IN (SELECT id FROM names WHERE last_hour < ? LIMIT ?)",
        (cutoff_hour - LAST_HOUR_SLACK, batch)).rowcount
    return names_deleted >= batch, names_deleted
