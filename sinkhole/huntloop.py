"""Hunting off the hot path: the pipeline appends resolved queries to a bounded deque; one
worker thread feeds them to the Hunter and reports suspicions back to the event loop.

Per answered query the pipeline pays one deque append (the observer below, ~0.3 µs); the
newly-seen, rare, beacon, sequence and tunnel signals and their SQLite state run in the
thread, so a slow disk or a burst of new names never delays an answer. A full deque (the
hunter far behind) drops observations and counts them (`sinkhole_hunt_dropped_total`): hunting
is best effort, hits and history are not affected.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sinkhole.events import Observation
from sinkhole.importers.common import qtype_label
from sinkhole.pipeline.answer import RESOLVED

log = logging.getLogger(__name__)

POLL = 0.2             # seconds between drains when the deque is quiet
FLUSH_EVERY = 5.0      # seconds of wall time between state flushes


class HuntLoop:
    """Owns the hunter thread; `observer` goes into the pipeline, `on_suspicion` runs on the
    loop for every suspicion the hunter created or raised."""

    def __init__(self, cfg: Any, db_path: str, *, names: Callable[[str], str | None],
                 on_suspicion: Callable[[Any], None], clock: Callable[[], float] = time.time,
                 hunter_factory: Callable[..., Any] | None = None) -> None:
        self.cfg = cfg
        self.db_path = db_path
        self.names = names
        self.on_suspicion = on_suspicion
        self.clock = clock
        self._factory = hunter_factory
        self.queue: deque[tuple[float, str, str, int, int | None]] = deque()
        self.dropped = 0
        self.observed = 0
        self.failed = 0
        self.hunter: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._commands: deque[Callable[[Any], None]] = deque()

    def submit(self, command: Callable[[Any], None]) -> None:
        """Run `command(hunter)` in the hunter thread (its SQLite connection lives there)."""
        self._commands.append(command)

    def observer(self) -> Callable[..., None]:
        """The pipeline observer: resolved queries only (blocked ones are hits already)."""
        queue, limit, clock = self.queue, self.cfg.queue_max, self.clock
        append = queue.append

        def observe(a: Any, q: Any, client: str, transport: str, t0: float) -> None:
            if a.result in RESOLVED:
                if len(queue) >= limit:
                    self.dropped += 1
                    return
                reply = a.reply   # the rcode tells a typo (NXDOMAIN) from a new domain
                append((clock(), client, q.qname, q.qtype, reply[3] & 0xF if reply else None))
        return observe

    def start(self) -> None:
        """Start the thread; it opens the hunting state (raises here if that fails)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="sinkhole-hunter", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            if self._factory is not None:
                self.hunter = self._factory(self.cfg, self.db_path, clock=self.clock)
            else:
                from sinkhole.hunt import Hunter
                self.hunter = Hunter(self.cfg, self.db_path, clock=self.clock)
        except BaseException as err:   # reported to start(), which raises it on the loop
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        last_flush = time.monotonic()
        try:
            while True:
                stopping = self._stop.wait(POLL)
                self._drain()
                while self._commands:
                    command = self._commands.popleft()
                    self._safe(lambda c=command: c(self.hunter))
                if time.monotonic() - last_flush >= FLUSH_EVERY or stopping:
                    self._safe(self.hunter.flush)
                    last_flush = time.monotonic()
                if stopping:
                    break
        finally:
            self._safe(self.hunter.close)

    def _drain(self) -> None:
        queue, observe, names = self.queue, self.hunter.observe, self.names
        while queue:
            when, client, qname, qtype, rcode = queue.popleft()
            obs = Observation(when, client, qname, qtype_label(qtype), names(client), rcode)
            try:
                found = observe(obs)
            except Exception:   # one bad observation must not end hunting
                self.failed += 1
                if self.failed <= 3 or not self.failed % 1000:
                    log.exception("hunting failed on an observation (%d so far)", self.failed)
                continue
            self.observed += 1
            if found and self._loop is not None:
                for suspicion in found:
                    self._loop.call_soon_threadsafe(self.on_suspicion, suspicion)

    def _safe(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            log.exception("hunting state could not be written")

    async def stop(self) -> None:
        """Drain what is queued, flush the state, close (in the thread)."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
