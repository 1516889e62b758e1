"""A real HTTP receiver for alert tests: an aiohttp server on 127.0.0.1:0 in its own thread.

It records every POST (path, headers, raw body, parsed JSON, arrival time) and lets a test wait
for N of them on a Condition instead of sleeping. Failure modes are queued per request:
'500' answers a server error, 'hang' never answers (the client times out), 'close' drops the
connection without a response; when the queue is empty it answers 200 (or, with
``down=True``, 500 to everything until ``recover()``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    time: float          # time.time() at arrival
    status: int          # what we answered (0: no answer)


class Receiver:
    def __init__(self) -> None:
        self.attempts: list[Received] = []      # every request, failed ones included
        self.received: list[Received] = []      # only those answered 2xx
        self.cond = threading.Condition()
        self.modes: deque[str] = deque()
        self.down = False
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    # ----------------------------------------------------------------- control (test thread)
    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, *modes: str) -> None:
        """Queue failure modes for the next requests: '500', 'hang', 'close'."""
        with self.cond:
            self.modes.extend(modes)

    def recover(self) -> None:
        with self.cond:
            self.down = False
            self.modes.clear()

    def wait_for(self, n: int, timeout: float = 10.0, path: str | None = None) -> list[Received]:
        """Block until `n` requests were answered 2xx (on `path`, if given); return them."""
        def matching() -> list[Received]:
            return [r for r in self.received if path is None or r.path == path]

        with self.cond:
            if not self.cond.wait_for(lambda: len(matching()) >= n, timeout):
                raise AssertionError(f"{len(matching())} of {n} requests arrived within "
                                     f"{timeout}s ({len(self.attempts)} attempts)")
            return matching()

    def wait_attempts(self, n: int, timeout: float = 10.0) -> list[Received]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.attempts) >= n, timeout):
                raise AssertionError(f"{len(self.attempts)} of {n} attempts within {timeout}s")
            return list(self.attempts)

    # ----------------------------------------------------------------- server (its own loop)
    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        assert self._release is not None and self._runner is not None
        self._release.set()
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        arrived = time.time()
        with self.cond:
            mode = self.modes.popleft() if self.modes else ("500" if self.down else "ok")
        status = {"ok": 200, "500": 500}.get(mode, 0)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        record = Received(request.path, dict(request.headers), body, parsed, arrived, status)
        with self.cond:
            self.attempts.append(record)
            if status == 200:
                self.received.append(record)
            self.cond.notify_all()
        if mode == "hang":   # until the test's receiver stops; the client gives up first
            assert self._release is not None
            await self._release.wait()
        if mode in ("hang", "close") and request.transport is not None:
            request.transport.abort()   # no response at all; aiohttp drops what we return
            return web.Response(status=204)
        if status == 500:
            return web.Response(status=500, text="receiver down on purpose")
        return web.json_response({"ok": True})
