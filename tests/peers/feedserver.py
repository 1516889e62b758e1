"""A real loopback HTTP and HTTPS feed server (aiohttp) for the list fetcher, misbehaving on demand.

Like the DNS peers, it runs its own loop in a background thread: test code stays synchronous
and the fetcher under test keeps its own loop. Each path serves a `Feed` whose fields may be
changed while the server runs (they are read once per request). Every request is recorded with
its headers, so a test can assert what the client sent (If-None-Match, a key from headers_file,
nothing else). The same feeds answer on plain http and, given a TestCA, on https.

Modes: 'ok'; 'error' (HTTP `status`, an HTML error page); 'hang' (holds the request until the
server stops; sets `hung`); 'truncate' (Content-Length larger than what is sent, then close);
'bad_gzip' (Content-Encoding gzip over a corrupt stream); 'redirect' (HTTP `status` to
`location`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import socket
import threading
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self

from aiohttp import web
from multidict import CIMultiDict

from .loop import run_peer_loop
from .tlsca import TestCA

MODES = frozenset({"ok", "error", "hang", "truncate", "bad_gzip", "redirect"})
TRUNCATE_MISSING = 1000   # bytes the 'truncate' mode promises in Content-Length but never sends


@dataclass
class Feed:
    body: bytes = b""
    etag: str | None = None            # sent as ETag; a matching If-None-Match gets 304
    last_modified: str | None = None   # sent as Last-Modified; If-Modified-Since not older: 304
    gzip: bool = False                 # Content-Encoding: gzip when the client accepts it
    mode: str = "ok"
    status: int = 0                    # 'error' (default 500) and 'redirect' (default 302)
    location: str = ""                 # 'redirect': the Location header
    content_type: str = "text/plain"

    def __setattr__(self, name: str, value: object) -> None:
        # a typo'd mode would otherwise serve 'ok' and pass the wrong test
        if name == "mode" and value not in MODES:
            raise ValueError(f"unknown mode {value!r}; one of {sorted(MODES)}")
        super().__setattr__(name, value)


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    scheme: str
    path: str
    query: str
    headers: CIMultiDict[str]


class FeedServer:
    def __init__(self, ca: TestCA | None = None, host: str = "127.0.0.1") -> None:
        self.ca = ca
        self.host = host
        self.port = 0
        self.tls_port = 0
        self.feeds: dict[str, Feed] = {}
        self.requests: list[Seen] = []
        self.hung = threading.Event()    # a 'hang' request has arrived
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    # -- what tests use -------------------------------------------------------------------------

    def serve(self, path: str, body: bytes = b"", **fields: object) -> Feed:
        """Serve `body` at `path` (replacing what was there); returns the Feed to change later."""
        feed = Feed(body=body, **fields)  # type: ignore[arg-type]
        self.feeds[path] = feed
        return feed

    def url(self, path: str, *, tls: bool = False) -> str:
        if tls:
            if not self.tls_port:
                raise RuntimeError("FeedServer started without a CA serves no https")
            return f"https://{self.host}:{self.tls_port}{path}"
        return f"http://{self.host}:{self.port}{path}"

    def seen(self, path: str | None = None) -> list[Seen]:
        """The requests received so far (for `path` only, if given), oldest first."""
        with self._lock:
            return [s for s in self.requests if path in (None, s.path)]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="FeedServer",
                                        daemon=True)
        self._thread.start()
        ready.result(timeout=10)
        return self

    def stop(self) -> None:
        """Release hanging requests, close every connection and the listeners; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        run_peer_loop(self, ready)

    async def _open(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._on_request)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self.port = await self._site(None)
        if self.ca is not None:
            ctx = self.ca.server_context("feeds.test", self.host)
            ctx.set_alpn_protocols(["http/1.1"])
            self.tls_port = await self._site(ctx)

    async def _site(self, ctx: object) -> int:
        assert self._runner is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        site = web.SockSite(self._runner, sock, ssl_context=ctx)  # type: ignore[arg-type]
        await site.start()
        return int(sock.getsockname()[1])

    async def _shutdown(self) -> None:
        assert self._closing is not None and self._runner is not None
        self._closing.set()
        await self._runner.cleanup()

    # -- the feeds ------------------------------------------------------------------------------

    async def _on_request(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.requests.append(Seen(request.scheme, request.path, request.query_string,
                                      CIMultiDict(request.headers)))
        feed = self.feeds.get(request.path)
        if feed is None:
            return web.Response(status=404, text="no such feed")
        mode = feed.mode
        if mode == "hang":
            self.hung.set()
            assert self._closing is not None
            await self._closing.wait()
            return web.Response(status=503)
        if mode == "error":
            return web.Response(status=feed.status or 500, content_type="text/html",
                                text="<html><body>Service unavailable</body></html>")
        if mode == "redirect":
            return web.Response(status=feed.status or 302, headers={"Location": feed.location})
        headers = {"Content-Type": feed.content_type}
        if feed.etag:
            headers["ETag"] = feed.etag
        if feed.last_modified:
            headers["Last-Modified"] = feed.last_modified
        if _not_modified(request, feed):
            return web.Response(status=304, headers=headers)
        body = feed.body
        if mode == "bad_gzip" or (feed.gzip and "gzip" in request.headers.get("Accept-Encoding",
                                                                             "")):
            body = gzip.compress(body, compresslevel=1)
            if mode == "bad_gzip":   # keep the header, break the deflate stream after it
                body = body[:10] + bytes(b ^ 0x5A for b in body[10:])
            headers["Content-Encoding"] = "gzip"
        if mode == "truncate":
            return await self._truncated(request, body, headers)
        return web.Response(body=body, headers=headers)

    async def _truncated(self, request: web.Request, body: bytes,
                         headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers=headers)
        resp.content_length = len(body) + TRUNCATE_MISSING
        await resp.prepare(request)
        await resp.write(body)
        assert request.transport is not None
        request.transport.close()     # the connection dies before Content-Length is reached
        return resp


def _not_modified(request: web.Request, feed: Feed) -> bool:
    """RFC 9110 13.1: If-None-Match wins; If-Modified-Since only when it is absent."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        return feed.etag is not None and (inm.strip() == "*" or feed.etag in
                                          [t.strip() for t in inm.split(",")])
    ims = request.headers.get("If-Modified-Since")
    if ims is None or feed.last_modified is None:
        return False
    try:
        return parsedate_to_datetime(feed.last_modified) <= parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False
