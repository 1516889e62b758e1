"""The outbox as the alert sender sees it: due rows read on a connection of its own, rows whose
delivery outcome is still queued hidden, and the pending count and age for metrics.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable

from .events import OutboxRow
from .schema import StoreError

_DUE = ("SELECT id, created, sink, payload, state, attempts, next_attempt, last_error, "
        "delivered_at FROM outbox WHERE state = 'pending' AND next_attempt <= ? "
        "ORDER BY id LIMIT ?")


class OutboxView:
    """Read side of the outbox, shared by the sender's thread(s) and the writer thread.

    A mark (delivered/failed/expired) is queued like any write, so for up to a commit the table
    still says 'pending'; the row is hidden meanwhile, or the sender would deliver it twice.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._marks_lock = threading.Lock()
        self._queued: dict[int, int] = {}
        self.pending = 0
        self.oldest: float | None = None

    def mark_queued(self, outbox_id: int) -> None:
        with self._marks_lock:
            self._queued[outbox_id] = self._queued.get(outbox_id, 0) + 1

    def marks_committed(self, ids: Iterable[int]) -> None:
        """Called after the COMMIT that holds these marks: the table tells the truth now."""
        with self._marks_lock:
            for outbox_id in ids:
                left = self._queued.pop(outbox_id, 1) - 1
                if left > 0:
                    self._queued[outbox_id] = left

    def due(self, now: float, limit: int) -> list[OutboxRow]:
        # The hidden set is copied *before* the read: a mark removed from it after our copy
        # was committed before our read began, so the read already shows its outcome.
        with self._marks_lock:
            hidden = set(self._queued)
        with self._reader_lock:
            if self._reader is None:  # first use, or recycled after a write fault
                try:
                    self._reader = self._connect()
                except sqlite3.Error as err:
                    raise StoreError(f"cannot read {self._path}: {err}") from err
            rows = self._reader.execute(_DUE, (now, limit + len(hidden))).fetchall()
        due = [OutboxRow(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in rows
               if r[0] not in hidden]
        return due[:limit]

    def refresh(self, conn: sqlite3.Connection) -> None:
        """Recount pending rows (writer thread, after a commit that touched the outbox)."""
        try:
            count, oldest = conn.execute(
                "SELECT count(*), min(created) FROM outbox WHERE state = 'pending'").fetchone()
        except sqlite3.Error:
            return
        self.pending, self.oldest = count, oldest

    def close_reader(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                               timeout=1.0)
        conn.execute("PRAGMA query_only = 1")
        return conn
