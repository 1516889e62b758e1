"""UDP, TCP, DoT and DoH listeners: bytes in, bytes out, nothing raises out, graceful drain.

UDP uses a non-blocking socket drained until EAGAIN from `loop.add_reader`: asyncio's
DatagramProtocol path reads one datagram per loop iteration (~10 µs/query extra, measured).
TCP follows RFC 7766: length-prefixed messages, pipelined queries answered in any order, an
idle timeout, and caps on open connections (in all, and per client address).

TCP back-pressure: a client that pipelines queries but does not read its replies would make us
buffer replies without bound, so a connection whose unsent replies pass TCP_WRITE_HIGH stops
being read until they drain; one that does not drain within the idle timeout is cut off.
What one connection can hold is then bounded by TCP_WRITE_HIGH plus its in-flight answers.

DoT (RFC 7858) is that same TCP code over TLS, and DoH (RFC 8484, sinkhole/doh.py) shares its
connection life: plain TCP is accepted and counted against the same caps (in all and per
client) *before* TLS starts, so a flood of handshakes costs no more than one of TCP connections;
the handshake must finish within the idle timeout. The client is the TLS peer's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from functools import partial
from typing import Any

from sinkhole import doh
from sinkhole.config.values import HostPort

log = logging.getLogger(__name__)

Handler = Callable[[bytes, str, str], Any]
# Datagrams read per wake-up before yielding to the loop, so TCP and upstream replies are
# not starved by a UDP flood.
UDP_BATCH = 64
# Unsent reply bytes per TCP connection above which its queries are no longer read.  Also set as
# the transport's high-water mark, so "over it" and "the transport paused us" are one condition.
TCP_WRITE_HIGH = 64 * 1024
_LINGER_RESET = struct.pack("ii", 1, 0)   # l_onoff=1, l_linger=0: close() sends RST


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _stream_socket(hp: HostPort) -> socket.socket:
    """A listening TCP socket on `hp` (IPv6 only for an IPv6 address, as for the UDP pair)."""
    t = socket.socket(_family(hp.host), socket.SOCK_STREAM)
    try:
        if t.family == socket.AF_INET6:
            t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((hp.host, hp.port))
        t.listen(256)
        t.setblocking(False)
    except OSError:
        t.close()
        raise
    return t


def _cut_off(writer: asyncio.StreamWriter) -> None:
    """Drop a client that does not read: reset (SO_LINGER 0), not FIN, so the kernel drops
    its send queue too instead of keeping megabytes orphaned for minutes behind a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class Listeners:
    """All DNS listeners of the daemon; `tasks` holds queries still being resolved.

    ``tcp_max_per_client`` (None: no per-client cap) keeps one address from taking every one
    of the ``tcp_max`` connections; the caps count TCP, DoT and DoH connections together (one
    budget of stream connections).  ``tcp_paused`` counts the times a connection stopped being
    read because its client did not read its replies; ``tcp_stalled`` the connections cut off
    for it, and ``tcp_stalled_bytes`` the unsent reply bytes they held when cut off.
    ``tls_failed`` counts DoT/DoH connections whose handshake failed or timed out, ``doh_errors``
    the DoH requests answered with an HTTP error, by status code.
    """

    def __init__(self, handler: Handler, metrics: Any, *, tcp_idle: float, tcp_max: int,
                 tcp_inflight: int, tcp_max_per_client: int | None = None) -> None:
        self.handler = handler
        self.metrics = metrics
        self.tcp_idle, self.tcp_max, self.tcp_inflight = tcp_idle, tcp_max, tcp_inflight
        self.tcp_max_per_client = tcp_max_per_client or tcp_max
        self.tcp_per_client: dict[str, int] = {}
        self.tcp_paused = self.tcp_stalled = self.tcp_stalled_bytes = 0
        self.udp_socks: list[socket.socket] = []
        self.tcp_servers: list[asyncio.base_events.Server] = []
        self.tasks: set[asyncio.Task] = set()
        self.tcp_conns: set[asyncio.StreamWriter] = set()
        self.bound: list[HostPort] = []
        self.dot_bound: list[HostPort] = []
        self.doh_bound: list[HostPort] = []
        self.tls_failed = 0
        self.doh_errors: dict[int, int] = {}
        self.accepting = True

    async def start(self, addrs: tuple[HostPort, ...] | list[HostPort],
                    sockets: list[socket.socket] | None = None) -> None:
        """Bind UDP and TCP on each address (same port: port 0 picks one free for both)."""
        for hp in addrs:
            udp, port = self._bind_pair(hp)
            self.udp_socks.append(udp[0])
            self.bound.append(HostPort(hp.host, port))
            asyncio.get_running_loop().add_reader(udp[0].fileno(), self._on_udp, udp[0])
            server = await asyncio.start_server(self._on_tcp, sock=udp[1],
                                                limit=70000)
            self.tcp_servers.append(server)

    async def start_dot(self, addrs: tuple[HostPort, ...] | list[HostPort], certs: Any) -> None:
        """DNS over TLS on each address; `certs` is a tlscert.CertStore (read per connection,
        so its reload reaches every new connection)."""
        await self._start_tls_servers(addrs, certs, "dot", self.dot_bound)

    async def start_doh(self, addrs: tuple[HostPort, ...] | list[HostPort], certs: Any) -> None:
        """DNS over HTTPS (HTTP/2 and HTTP/1.1 by ALPN, path /dns-query) on each address."""
        await self._start_tls_servers(addrs, certs, "doh", self.doh_bound)

    async def _start_tls_servers(self, addrs: tuple[HostPort, ...] | list[HostPort], certs: Any,
                                 kind: str, bound: list[HostPort]) -> None:
        for hp in addrs:
            sock = _stream_socket(hp)
            try:
                server = await asyncio.start_server(partial(self._on_tls, kind, certs),
                                                    sock=sock, limit=70000)
            except BaseException:
                sock.close()
                raise
            self.tcp_servers.append(server)
            bound.append(HostPort(hp.host, sock.getsockname()[1]))

    def _bind_pair(self, hp: HostPort) -> tuple[tuple[socket.socket, socket.socket], int]:
        for _attempt in range(20):
            u = socket.socket(_family(hp.host), socket.SOCK_DGRAM)
            t = socket.socket(_family(hp.host), socket.SOCK_STREAM)
            try:
                for s in (u, t):
                    if s.family == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                u.bind((hp.host, hp.port))
                port = u.getsockname()[1]
                t.bind((hp.host, port))
                t.listen(256)
                u.setblocking(False)
                t.setblocking(False)
                with contextlib.suppress(OSError):
                    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                return (u, t), port
            except OSError:
                u.close()
                t.close()
                if hp.port != 0:
                    raise
        raise OSError(f"no free port pair for {hp.display()}")

    # --- UDP -------------------------------------------------------------------------------

    def _on_udp(self, sock: socket.socket) -> None:
        handler = self.handler
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:   # e.g. ICMP errors surfacing on the socket: keep serving
                log.debug("udp recv error: %s", err)
                return
            try:
                res = handler(data, addr[0], "udp")
            except Exception:   # the invariant: nothing raises out of a listener
                log.exception("bug: handler raised on a UDP packet")
                continue
            if res is None:
                continue
            if isinstance(res, bytes):
                self._send_udp(sock, res, addr)
            else:
                self.spawn(self._finish_udp(sock, res, addr))

    def _send_udp(self, sock: socket.socket, reply: bytes, addr: Any) -> None:
        try:
            sock.sendto(reply, addr)
        except OSError as err:   # full send buffer or unreachable client: drop, never block
            log.debug("udp send to %s failed: %s", addr[0], err)

    async def _finish_udp(self, sock: socket.socket, coro: Any, addr: Any) -> None:
        reply = await coro
        if reply is not None:
            self._send_udp(sock, reply, addr)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bug: query task failed", exc_info=task.exception())

    # --- TCP -------------------------------------------------------------------------------

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._on_stream(reader, writer, "tcp", None)

    async def _on_tls(self, kind: str, certs: Any, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await self._on_stream(reader, writer, kind, certs)

    async def _on_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         kind: str, certs: Any) -> None:
        """One stream connection: admitted against the caps, TLS started for DoT/DoH, then
        served by `kind` until idle, EOF or shutdown, its pending answers sent before close."""
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else "?"
        if not self._admit(client):
            self.metrics.tcp_rejected.inc()
            writer.close()
            return
        self.tcp_conns.add(writer)
        self.metrics.tcp_connections.set(len(self.tcp_conns))
        slots = asyncio.Semaphore(self.tcp_inflight)
        try:
            if certs is not None and not await self._start_tls(writer, certs.context(kind)):
                return
            writer.transport.set_write_buffer_limits(high=TCP_WRITE_HIGH)
            if kind == "doh":
                await doh.serve(self, reader, writer, client, slots)
            else:
                await self._serve_dns(reader, writer, client, slots, kind)
        finally:
            self.tcp_conns.discard(writer)
            self._release(client)
            self.metrics.tcp_connections.set(len(self.tcp_conns))
            if not writer.transport.is_closing():
                await self._close_when_idle(writer, slots)

    async def _start_tls(self, writer: asyncio.StreamWriter, ctx: Any) -> bool:
        """The server side of the handshake, within the idle timeout; False if it failed
        (asyncio has closed the connection then)."""
        try:
            await writer.start_tls(ctx, ssl_handshake_timeout=self.tcp_idle)
        except OSError as err:   # ssl.SSLError, a reset, the handshake timeout
            self.tls_failed += 1
            log.debug("tls handshake failed: %s", err)
            return False
        return True

    async def _serve_dns(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         client: str, slots: asyncio.Semaphore, kind: str) -> None:
        """RFC 7766 framing (TCP and DoT): length-prefixed queries, answered in any order."""
        while self.accepting:
            if not await self.may_read(writer):
                break
            try:
                async with asyncio.timeout(self.tcp_idle):
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    data = await reader.readexactly(size)
            except (OSError, asyncio.IncompleteReadError):   # idle timeout, reset, EOF
                break
            await slots.acquire()
            self.spawn(self._answer_tcp(data, client, writer, slots, kind))

    def _admit(self, client: str) -> bool:
        """Room for one more connection, in all and from this address? Counts it if so."""
        held = self.tcp_per_client.get(client, 0)
        if (not self.accepting or len(self.tcp_conns) >= self.tcp_max
                or held >= self.tcp_max_per_client):
            return False
        self.tcp_per_client[client] = held + 1
        return True

    def _release(self, client: str) -> None:
        held = self.tcp_per_client.pop(client, 1) - 1
        if held > 0:
            self.tcp_per_client[client] = held

    async def may_read(self, writer: asyncio.StreamWriter) -> bool:
        """Read the next query? Not while the client's unsent replies pass TCP_WRITE_HIGH:
        then wait for them to drain; False once it is cut off for not reading."""
        return (writer.transport.get_write_buffer_size() <= TCP_WRITE_HIGH
                or await self.drained(writer))

    async def drained(self, writer: asyncio.StreamWriter) -> bool:
        """Wait (reading nothing) until the client reads its replies; False once cut off.

        Not reading is the back-pressure: its queries stay in the kernel buffers and its sends
        block.  A client that reads nothing for the idle timeout is aborted, dropping what we
        buffered for it, instead of holding that memory until it goes away."""
        self.tcp_paused += 1
        try:
            async with asyncio.timeout(self.tcp_idle):
                await writer.drain()
            return True
        except TimeoutError:
            self.tcp_stalled += 1
            self.tcp_stalled_bytes += writer.transport.get_write_buffer_size()
            _cut_off(writer)
        except OSError:   # the connection went away while we waited
            pass
        return False

    async def _answer_tcp(self, data: bytes, client: str, writer: asyncio.StreamWriter,
                          slots: asyncio.Semaphore, kind: str) -> None:
        try:
            res = self.handler(data, client, kind)
            if res is not None and not isinstance(res, bytes):
                res = await res
            if res is not None and not writer.is_closing():
                writer.write(struct.pack("!H", len(res)) + res)
        except Exception:
            log.exception("bug: handler raised on a %s query", kind)
        finally:
            slots.release()

    async def _close_when_idle(self, writer: asyncio.StreamWriter,
                               slots: asyncio.Semaphore) -> None:
        """Let this connection's pending answers go out before closing it, within the idle
        timeout.  A plain close() of a client that reads nothing would keep the transport and
        its buffer alive for good, outside every connection count; handed to the kernel, the
        rest is the kernel's to bound."""
        try:
            async with asyncio.timeout(self.tcp_idle):
                for _ in range(self.tcp_inflight):
                    await slots.acquire()
                writer.transport.set_write_buffer_limits(0)   # drain() now waits for empty
                await writer.drain()
        except OSError:   # timed out (TimeoutError is an OSError) or already gone
            _cut_off(writer)
            return
        writer.close()

    def tcp_buffered(self) -> int:
        """Unsent reply bytes over all open TCP connections (for a scrape-time gauge)."""
        return sum(w.transport.get_write_buffer_size() for w in self.tcp_conns)

    # --- shutdown --------------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Stop accepting, let in-flight queries finish (bounded), then close everything."""
        self.accepting = False
        loop = asyncio.get_running_loop()
        for s in self.udp_socks:
            loop.remove_reader(s.fileno())
        for srv in self.tcp_servers:
            srv.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
        for t in list(self.tasks):
            t.cancel()
        for w in list(self.tcp_conns):
            w.close()
        for s in self.udp_socks:
            s.close()
