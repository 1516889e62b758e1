"""The alert manager: the daemon's one alerting object, joining policy, outbox and delivery.

Event-loop side: ``on_hit`` / ``on_retro`` / ``on_list_error`` decide in memory (policy.py),
render the payload and queue it in the store's outbox (a deque append; never blocking, never
raising into the caller). The store's writer thread commits it and calls back; only then is
the sender woken (``call_soon_threadsafe``), so an alert is durable before its first attempt.
``start`` runs two tasks: the policy's timer (digests, follow-up counts, rate-held alerts) and
the outbox sender (delivery.py), which first delivers whatever a previous run left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from sinkhole.alerts.delivery import OutboxSender
from sinkhole.alerts.payload import Meta, build_payload
from sinkhole.alerts.policy import AlertPolicy, Outgoing, make_test_alert
from sinkhole.alerts.sinks import USER_AGENT, Sink, build_sinks, send_all
from sinkhole.events import Hit

log = logging.getLogger(__name__)
MAX_TICK = 60.0


class AlertManager:
    """Build it before anything binds (it reads the sinks' secret files and raises
    AlertSetupError), ``await start()``, feed it events, ``await stop()`` before closing the
    store."""

    def __init__(self, cfg: Any, store: Any, metrics: Any,
                 list_meta: Callable[[], Meta] = dict, *,
                 clock: Callable[[], float] = time.time, retry_min: float = 1.0,
                 retry_max: float = 300.0, sinks: list[Sink] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.metrics = metrics
        self.list_meta = list_meta
        self.clock = clock
        self.sinks = {s.name: s for s in (sinks if sinks is not None else build_sinks(cfg))}
        self.policy = AlertPolicy.from_config(
            cfg, {s.name: s.max_per_minute for s in self.sinks.values()}, clock)
        self._retry = (retry_min, retry_max)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sender: OutboxSender | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._tick = asyncio.Event()
        self._scheduled: float | None = None

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        self._sender = OutboxSender(self.store, self.sinks, self._session, self.metrics,
                                    max_age=self.cfg.max_age, clock=self.clock,
                                    retry_min=self._retry[0], retry_max=self._retry[1])
        self._tasks = [asyncio.create_task(self._sender.run(), name="alerts-outbox"),
                       asyncio.create_task(self._ticker(), name="alerts-policy")]
        if self.sinks:
            log.info("alerts go to %s", ", ".join(f"{s.name} ({s.kind}, {s.where})"
                                                   for s in self.sinks.values()))

    async def stop(self) -> None:
        """Held alerts (digest window, rate overflow) go to the outbox first, then delivery
        stops; the lead closes the store after this, which commits them for the next run."""
        self._emit(self.policy.drain())
        if self._sender is not None:
            await self._sender.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._loop = None

    # ----------------------------------------------------------------- inputs (event loop)
    def on_hit(self, event: Hit) -> None:
        """A HitRecorder sink: called per blocked query; in-memory work and a queue append."""
        try:
            self._emit(self.policy.on_hit(event))
            self._poke()
        except Exception:   # alerting must never break hit recording or the DNS answer
            log.exception("alerting failed for a hit")

    def on_retro(self, finds: Iterable[Hit]) -> None:
        """Retro-hunt finds (Hits with kind 'retro', first_seen, last_seen, count)."""
        try:
            self._emit(self.policy.on_retro(finds))
            self._poke()
        except Exception:
            log.exception("alerting failed for retro-hunt finds")

    def on_suspicion(self, *args: Any) -> None:
        """A hunting suspicion over the alert score (see AlertPolicy.on_suspicion)."""
        try:
            self._emit(self.policy.on_suspicion(*args))
            self._poke()
        except Exception:
            log.exception("alerting failed for a suspicion")

    def wake(self) -> None:
        """Something was put back in the outbox (a resend from the console): send now, not at
        the sender's next poll."""
        if self._sender is not None:
            self._sender.wake()

    def on_list_error(self, list_name: str, error: str) -> None:
        try:
            self._emit(self.policy.on_list_error(list_name, error))
            self._poke()
        except Exception:
            log.exception("alerting failed for a list error")

    def on_reload(self, result: Any) -> None:
        """A ListManager ReloadResult: every list that failed to load raises a list-error."""
        for report in getattr(result, "reports", ()):
            if getattr(report, "error", None):
                self.on_list_error(report.name, report.error)

    async def test_alert(self) -> list[tuple[str, bool, str]]:
        """Send a `test` alert straight through every sink (not the outbox): (name, ok, why)."""
        payload = self._payload(make_test_alert(self.clock()))
        if self._session is not None:
            return await send_all(list(self.sinks.values()), self._session, payload)
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
            return await send_all(list(self.sinks.values()), session, payload)

    # ----------------------------------------------------------------- internals
    def _payload(self, alert: Any) -> dict[str, Any]:
        try:
            meta = self.list_meta()
        except Exception:   # advice is a nicety; the alert goes out without it
            log.exception("list metadata unavailable for an alert")
            meta = {}
        return build_payload(alert, instance=self.cfg.instance, meta=meta,
                             alert_id=uuid.uuid4().hex)

    def _emit(self, outgoing: list[Outgoing]) -> None:
        for alert, sinks in outgoing:
            payload = self._payload(alert)
            self.store.enqueue_alert(payload, sinks, on_durable=self._on_durable)
            log.info("alert raised (%s, %s): %s", alert.kind, alert.severity, payload["summary"],
                     extra={"event": "alert", "alert_id": payload["id"], "kind": alert.kind,
                            "sinks": list(sinks)})

    def _on_durable(self, ids: list[int]) -> None:
        """Runs on the store's writer thread, after COMMIT: hand over to the loop."""
        loop, sender = self._loop, self._sender
        if loop is None or sender is None:
            return   # not started (or stopped): the next start() finds the rows pending
        with contextlib.suppress(RuntimeError):   # the loop closed during shutdown
            loop.call_soon_threadsafe(sender.wake)

    def _poke(self) -> None:
        """Wake the timer only when the policy now needs it sooner than planned."""
        deadline = self.policy.next_deadline()
        if deadline is not None and (self._scheduled is None or deadline < self._scheduled):
            self._tick.set()

    async def _ticker(self) -> None:
        while True:
            self._tick.clear()
            try:
                self._emit(self.policy.tick())
            except Exception:
                log.exception("alert policy tick failed")
            deadline = self._scheduled = self.policy.next_deadline()
            wait = MAX_TICK if deadline is None else min(MAX_TICK, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), max(0.01, wait))
