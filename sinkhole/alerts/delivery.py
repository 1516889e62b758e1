"""The outbox sender: delivers stored alerts per sink, in creation order, with backoff.

Guarantees, and how:
- *Nothing lost*: a row leaves 'pending' only as delivered (after a 2xx) or expired (older
  than ``max_age``: marked, counted, logged). A crash mid-send re-sends after the restart, so
  delivery is at least once; payloads carry an ``id`` for receivers to dedupe.
- *In order per sink*: a sink's oldest pending row is its *head*. When the head fails, the sink
  is held on that row id until it is delivered or expired; the sink's later rows are not sent
  but deferred to the head's retry time (a mark, so they also stop filling the fetch window
  and cannot starve the other sinks). At start, the first fetch ignores ``next_attempt``, so
  every sink's head is found and retried at once.
- *No double send in flight*: a sink has at most one task; a fetch only dispatches sinks that
  were idle before it began, so every mark of their earlier rows was already queued, and the
  store hides rows whose marks are queued until they commit.
- *Never blocks DNS*: SQLite reads go through ``asyncio.to_thread``; HTTP is async with
  per-sink timeouts; one hanging sink holds up only itself.

Known limit: ordering after a restart is exact while the outbox holds at most ``startup_batch``
pending rows (a sink whose head lies beyond them is found on a later fetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from sinkhole.alerts.sinks import Outcome, Sink

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Hold:
    row_id: int
    retry_at: float


class OutboxSender:
    """Runs as one task (``run``); ``wake`` it when new rows are durable."""

    def __init__(self, store: Any, sinks: Mapping[str, Sink], session: aiohttp.ClientSession,
                 metrics: Any, *, max_age: float, clock: Callable[[], float] = time.time,
                 retry_min: float = 1.0, retry_max: float = 300.0, batch: int = 200,
                 startup_batch: int = 10_000, poll: float = 30.0) -> None:
        self.store, self.sinks, self.session, self.metrics = store, sinks, session, metrics
        self.max_age, self.clock = max_age, clock
        self.retry_min, self.retry_max = retry_min, retry_max
        self.batch, self.startup_batch, self.poll = batch, startup_batch, poll
        self._wake = asyncio.Event()
        self._holds: dict[str, _Hold] = {}
        self._streak: dict[str, int] = {}
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._unknown_warned: set[str] = set()
        self.stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        first = True
        failures = 0
        while not self.stopping:
            self._wake.clear()
            busy_before = set(self._busy)
            try:
                rows = await asyncio.to_thread(
                    self.store.due_alerts, math.inf if first else self.clock(),
                    self.startup_batch if first else self.batch)
            except Exception as err:   # a store fault: keep trying, never die
                failures += 1
                log.warning("alert outbox read failed (%s); retrying", err)
                await asyncio.sleep(min(self.retry_max, self.retry_min * 2 ** failures))
                continue
            first, failures = False, 0
            self.update_gauges()
            groups: dict[str, list[Any]] = {}
            for row in rows:
                groups.setdefault(row.sink, []).append(row)
            for name, sink_rows in groups.items():
                if name not in busy_before and name not in self._busy and not self.stopping:
                    self._dispatch(name, sink_rows)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait())

    async def stop(self, grace: float = 2.0) -> None:
        """Let sends in flight finish (bounded), so a delivered alert is marked, then cancel."""
        self.stopping = True
        self._wake.set()
        tasks = list(self._busy.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def update_gauges(self) -> None:
        stats = self.store.stats
        self.metrics.outbox_pending.set(stats.get("outbox_pending", 0))
        self.metrics.outbox_oldest.set(stats.get("oldest_pending_age", 0.0))

    # ----------------------------------------------------------------- per sink
    def _dispatch(self, name: str, rows: list[Any]) -> None:
        task = asyncio.create_task(self._drain(name, rows), name=f"alerts-{name}")
        self._busy[name] = task

        def done(t: asyncio.Task[None]) -> None:
            self._busy.pop(name, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("alert delivery to %s failed unexpectedly", name,
                          exc_info=t.exception())
            self._wake.set()   # rows skipped while this sink was busy may be waiting

        task.add_done_callback(done)

    async def _drain(self, name: str, rows: list[Any]) -> None:
        sink = self.sinks.get(name)
        for row in rows:
            if self.stopping:
                return
            now = self.clock()
            hold = self._holds.get(name)
            if now - row.created > self.max_age:
                self._expire(name, row, now)
                if hold is not None and hold.row_id == row.id:
                    del self._holds[name]
            elif sink is None:
                self._unknown(name, row, now)
            elif hold is not None and hold.row_id < row.id:
                until = max(hold.retry_at, now + self.retry_min)
                self.store.mark_failed(row.id, f"waiting for alert #{hold.row_id} to this sink",
                                       until)
            elif hold is not None and row.id == hold.row_id and now < hold.retry_at:
                continue
            else:
                await self._attempt(sink, row)
        self.update_gauges()

    async def _attempt(self, sink: Sink, row: Any) -> None:
        try:
            outcome = await sink.send(self.session, row.payload)
        except Exception as err:   # e.g. a stored payload this code cannot render: back off,
            log.exception("alert #%d to %s could not be sent", row.id, sink.name)  # not spin
            outcome = Outcome(False, f"internal error: {type(err).__name__}", misconfigured=True)
        name, now = sink.name, self.clock()
        if outcome.ok:
            self.store.mark_delivered(row.id)
            self.metrics.alerts.labels(name, "delivered").inc()
            self._holds.pop(name, None)
            streak = self._streak.pop(name, 0)
            if streak:
                log.info("alerts reach %s (%s) again after %d failed attempts", name,
                         sink.where, streak, extra={"event": "alert_sink_recovered",
                                                    "sink": name})
            return
        streak = self._streak[name] = self._streak.get(name, 0) + 1
        delay = self._backoff(streak, outcome.retry_after)
        self.store.mark_failed(row.id, outcome.detail, now + delay)
        self._holds[name] = _Hold(row.id, now + delay)
        self.metrics.alerts.labels(name, "failed").inc()
        if streak & (streak - 1) == 0:   # 1, 2, 4, 8...: an outage logs a few lines, not a flood
            level = logging.ERROR if outcome.misconfigured else logging.WARNING
            log.log(level, "alert to %s (%s) failed (attempt %d in a row): %s; retrying in "
                    "%.1fs", name, sink.where, streak, outcome.detail, delay,
                    extra={"event": "alert_failed", "sink": name, "alert": row.id})

    def _backoff(self, streak: int, retry_after: float | None) -> float:
        """Doubling from retry_min to retry_max, with jitter so a fleet does not retry in
        step; a receiver's Retry-After is honoured up to retry_max."""
        delay = min(self.retry_max, self.retry_min * 2 ** (streak - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_max))
        return delay

    def _expire(self, name: str, row: Any, now: float) -> None:
        self.store.mark_expired(row.id)
        self.metrics.alerts.labels(name, "expired").inc()
        summary = row.payload.get("summary", "") if isinstance(row.payload, dict) else ""
        log.warning("alert #%d to %s expired undelivered after %.0fs (%s): %s", row.id, name,
                    now - row.created, row.last_error or "never attempted", summary,
                    extra={"event": "alert_expired", "sink": name, "alert": row.id})

    def _unknown(self, name: str, row: Any, now: float) -> None:
        """A sink removed from the config: its rows wait (and expire at max_age, counted) in
        case it was renamed by mistake; never silently deleted."""
        if name not in self._unknown_warned:
            self._unknown_warned.add(name)
            log.error("the alert outbox holds alerts for sink %r, which is not configured; "
                      "they expire after alerts.max_age", name)
        self.store.mark_failed(row.id, f"sink {name!r} is not configured", now + self.retry_max)

    def _next_wait(self) -> float:
        now = self.clock()
        times = [h.retry_at - now for h in self._holds.values()]
        return max(0.05, min([self.poll, *times]))
