"""DNS over TCP and TLS (RFC 7766, RFC 7858): one kept-open, pipelined connection per upstream.

Queries share the connection and are matched to replies by txid (replies may come in any
order); the connection is re-opened on demand after the upstream closes it. Reusing it is what
makes TLS upstreams affordable: a handshake per query would cost more than the query.

Servers close idle connections whenever they like (RFC 7766 6.2.3), so a query may be written
just as the close is on its way: a query whose connection dies before its reply is sent once
more on a fresh connection (RFC 7766 6.2.1 lets clients retry). Each connection owns the queries
sent on it, so the end of an old connection fails only its own, never a newer one's.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl

from sinkhole.dns.message import ForgedReply, Reply, parse_reply
from sinkhole.errors import UpstreamError, UpstreamTimeout


class _Lost(EOFError):
    """The connection ended before this query's reply: worth one more try on a new one."""


class _Conn:
    """One connection and the queries in flight on it, by txid."""

    __slots__ = ("writer", "pending")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: dict[int, tuple[asyncio.Future[Reply], bytes]] = {}


class StreamUpstream:
    """A lazily opened stream to host:port, optionally TLS-wrapped with name verification."""

    def __init__(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None = None,
                 server_name: str | None = None, on_forged=None) -> None:
        self.host, self.port = host, port
        self.ssl_ctx, self.server_name = ssl_ctx, server_name
        self.proto = "tls" if ssl_ctx is not None else "tcp"
        self.on_forged = on_forged
        self._conn: _Conn | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._closed = False
        self.connects = 0

    async def exchange(self, make_packet, question: bytes, timeout: float) -> Reply:
        """`make_packet(txid)` builds the query; the txid is chosen here, unique on its
        connection, since pipelined replies are told apart by txid alone."""
        try:
            async with asyncio.timeout(timeout):
                try:
                    return await self._send(make_packet, question)
                except _Lost:   # the upstream closed as our query crossed: once more
                    return await self._send(make_packet, question)
        except TimeoutError:
            raise UpstreamTimeout() from None
        except (OSError, ssl.SSLError, EOFError) as err:
            raise UpstreamError(f"{self.proto}: {err}") from None

    async def _send(self, make_packet, question: bytes) -> Reply:
        conn = self._conn
        if conn is None or conn.writer.is_closing():
            conn = await self._connect()
        pending = conn.pending
        txid = secrets.randbits(16)
        while txid in pending:
            txid = secrets.randbits(16)
        fut = asyncio.get_running_loop().create_future()
        pending[txid] = (fut, question)
        try:
            packet = make_packet(txid)
            conn.writer.write(len(packet).to_bytes(2, "big") + packet)
            return await fut
        finally:
            pending.pop(txid, None)

    async def _connect(self) -> _Conn:
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.writer.is_closing():
                return conn   # opened by another query while this one waited for the lock
            if self._closed:
                raise UpstreamError(f"{self.proto}: upstream closed")
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_ctx,
                server_hostname=self.server_name if self.ssl_ctx else None)
            self.connects += 1
            conn = self._conn = _Conn(writer)
            task = asyncio.create_task(self._read_loop(reader, conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return conn

    async def _read_loop(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        lost: type[EOFError] = _Lost
        why = "upstream closed the connection"
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                self._deliver(conn.pending, await reader.readexactly(size))
        except asyncio.IncompleteReadError:
            pass
        except (OSError, ssl.SSLError) as err:
            why = f"connection lost: {err}"
        except asyncio.CancelledError:   # close(): no retry onto a new connection
            lost, why = EOFError, "upstream closed"
            raise
        finally:
            # One synchronous step: no query can join this connection after it is retired.
            if self._conn is conn:
                self._conn = None
            conn.writer.close()
            for fut, _q in conn.pending.values():
                if not fut.done():
                    fut.set_exception(lost(why))

    def _deliver(self, pending: dict[int, tuple[asyncio.Future[Reply], bytes]],
                 data: bytes) -> None:
        if len(data) < 2:
            return
        txid = (data[0] << 8) | data[1]
        entry = pending.get(txid)
        if entry is None:   # a late reply to a query that gave up
            return
        fut, question = entry
        try:
            reply = parse_reply(data, txid, question)
        except ForgedReply as err:
            if self.on_forged is not None:
                self.on_forged(str(err))
            return
        if not fut.done():
            fut.set_result(reply)

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
