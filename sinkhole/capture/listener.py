"""The sinkhole listener: who connects to the sinkhole address, and for which name.

A device that got the sinkhole address for a blocked name and then connects to it is acting on
the answer: an implant, not a mistyped link. We accept on the sinkhole address's ports, read
the first bytes only — the TLS ClientHello's SNI and ALPN, or the HTTP request line and Host —
and close: never a reply, never a handshake completed, never a proxy. TLS and HTTP are told
apart by their first byte on any port (443 may carry HTTP, 8080 TLS).

Bounds, because anyone on the network can reach it: connections in all and per client address
(over either: closed at once, counted); `timeout` seconds per connection from its accept, not
per read (a slow-drip client is cut at the same deadline); `max_bytes` read at most. An asyncio
Protocol with a timer, no task per connection: a flood costs a socket and a few objects each.
Outcomes are counted by fixed reason strings in `counts` (and malformed input by the parser's
reason in `malformed`), for metrics; nothing in here raises out of a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sinkhole.capture.hello import Malformed, parse_client_hello
from sinkhole.capture.http import is_http_start, parse_http_head
from sinkhole.config.values import HostPort

log = logging.getLogger(__name__)

_NULL_ADDRESSES = {"0.0.0.0", "::"}


@dataclass(frozen=True, slots=True)
class ConnectEvent:
    """One connection to the sinkhole address. `proto` is "tls", "http" or "other" (bytes
    that are neither); `sni`/`alpn` come from a ClientHello, `host`/`request_line` from an
    HTTP request; all None/() when the bytes were cut short, malformed or another protocol."""

    time: float
    client_ip: str
    port: int
    proto: str
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    host: str | None = None
    request_line: str | None = None


def capture_addresses(ipv4: str, ipv6: str, ports: Iterable[int]) -> list[HostPort]:
    """sinkhole.ipv4/ipv6 x sinkhole.ports; the null addresses (0.0.0.0, ::) are no address
    of ours to listen on and are left out."""
    hosts = [h for h in (ipv4, ipv6) if h not in _NULL_ADDRESSES]
    return [HostPort(h, p) for h in hosts for p in ports]


class CaptureListener:
    """TCP listeners on the sinkhole addresses; `on_connect(ConnectEvent)` for each connection
    that sent at least one byte (called on the loop: keep it cheap, e.g. a queue put)."""

    def __init__(self, on_connect: Callable[[ConnectEvent], None], *,
                 max_connections: int = 512, max_per_client: int = 16, timeout: float = 5.0,
                 max_bytes: int = 16 * 1024, clock: Callable[[], float] = time.time) -> None:
        self.on_connect = on_connect
        self.max_connections, self.max_per_client = max_connections, max_per_client
        self.timeout, self.max_bytes, self.clock = timeout, max_bytes, clock
        self.open = 0
        self.per_client: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        self.servers: list[asyncio.base_events.Server] = []
        self.bound: list[HostPort] = []

    async def start(self, addrs: Iterable[HostPort]) -> None:
        loop = asyncio.get_running_loop()
        for hp in addrs:
            server = await loop.create_server(lambda: _Peek(self), hp.host, hp.port,
                                              family=socket.AF_INET6 if ":" in hp.host
                                              else socket.AF_INET, reuse_address=True,
                                              backlog=512)
            self.servers.append(server)
            self.bound.append(HostPort(hp.host, server.sockets[0].getsockname()[1]))

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.servers.clear()

    def admit(self, client: str) -> str | None:
        """None if there is room for one more connection (counted), else the reason not."""
        if self.open >= self.max_connections:
            return "rejected_total"
        held = self.per_client.get(client, 0)
        if held >= self.max_per_client:
            return "rejected_client"
        self.per_client[client] = held + 1
        self.open += 1
        return None

    def release(self, client: str) -> None:
        self.open -= 1
        held = self.per_client.pop(client, 1) - 1
        if held > 0:
            self.per_client[client] = held

    def emit(self, event: ConnectEvent) -> None:
        try:
            self.on_connect(event)
        except Exception:
            self.counts["callback_error"] += 1
            log.exception("bug: on_connect raised")


class _Peek(asyncio.Protocol):
    """One connection: buffer the first bytes, parse them each time more arrive, then close."""

    __slots__ = ("li", "transport", "client", "port", "started", "buf", "proto", "timer",
                 "done")

    def __init__(self, li: CaptureListener) -> None:
        self.li = li
        self.buf = bytearray()
        self.proto = ""
        self.done = True        # until admitted: connection_lost must release nothing
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.client = peer[0]
        self.port = transport.get_extra_info("sockname")[1]
        refused = self.li.admit(self.client)
        if refused is not None:
            self.li.counts[refused] += 1
            transport.abort()
            return
        self.done = False
        self.started = self.li.clock()
        self.timer = asyncio.get_running_loop().call_later(self.li.timeout, self.expired)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        room = self.li.max_bytes - len(self.buf)
        self.buf += data[:room]
        try:
            self.parse()
        except Malformed as err:
            self.li.malformed[err.reason] += 1
            self.finish(f"malformed_{self.proto}")
            return
        if not self.done and len(self.buf) >= self.li.max_bytes:
            self.finish("too_large")

    def parse(self) -> None:
        buf = bytes(self.buf)
        if not self.proto:
            if buf[0] == 0x16:
                self.proto = "tls"
            else:
                http = is_http_start(buf)
                if http is None:
                    return
                self.proto = "http" if http else "other"
        if self.proto == "tls":
            hello = parse_client_hello(buf)
            if hello is not None:
                self.finish("tls", sni=hello[0], alpn=hello[1])
        elif self.proto == "http":
            head = parse_http_head(buf)
            if head is not None:
                self.finish("http", request_line=head[0], host=head[1])
        else:
            self.finish("other")

    def expired(self) -> None:
        self.timer = None
        self.finish("timeout")

    def eof_received(self) -> bool:
        self.finish("eof" if self.buf else "empty")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:          # reset by the client before we were done
            self.finish("eof" if self.buf else "empty")
        if self.timer is not None:
            self.timer.cancel()

    def finish(self, outcome: str, *, sni: str | None = None, alpn: tuple[str, ...] = (),
               host: str | None = None, request_line: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        li = self.li
        li.counts[outcome] += 1
        li.release(self.client)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.buf:
            li.emit(ConnectEvent(self.started, self.client, self.port, self.proto or "other",
                                 sni, alpn, host, request_line))
        self.transport.abort()
