"""DNS over TCP and TLS (RFC 7766, RFC 7858): one kept-open, pipelined connection per upstream.

Queries share the connection and are matched to replies by txid (replies may come in any
order); the connection is re-opened on demand after the upstream closes it. Reusing it is what
makes TLS upstreams affordable: a handshake per query would cost more than the query.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import struct

from sinkhole.dns.message import ForgedReply, Reply, parse_reply
from sinkhole.upstream.udp import UpstreamError


class StreamUpstream:
    """A lazily opened stream to host:port, optionally TLS-wrapped with name verification."""

    def __init__(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None = None,
                 server_name: str | None = None, on_forged=None) -> None:
        self.host, self.port = host, port
        self.ssl_ctx, self.server_name = ssl_ctx, server_name
        self.on_forged = on_forged
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._pending: dict[int, tuple[asyncio.Future, bytes]] = {}
        self._lock = asyncio.Lock()
        self.connects = 0

    async def exchange(self, make_packet, question: bytes, timeout: float) -> Reply:
        """`make_packet(txid)` builds the query; the txid is chosen here, unique on this
        connection, since pipelined replies are told apart by txid alone."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                writer = await self._connect()
                txid = random.getrandbits(16)
                while txid in self._pending:
                    txid = random.getrandbits(16)
                fut = loop.create_future()
                self._pending[txid] = (fut, question)
                try:
                    packet = make_packet(txid)
                    writer.write(struct.pack("!H", len(packet)) + packet)
                    return await fut
                finally:
                    self._pending.pop(txid, None)
        except TimeoutError:
            raise UpstreamError("timeout") from None
        except (OSError, ssl.SSLError, EOFError) as err:
            self._drop()
            raise UpstreamError(f"{'tls' if self.ssl_ctx else 'tcp'}: {err}") from None

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_ctx,
                server_hostname=self.server_name if self.ssl_ctx else None)
            self.connects += 1
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_loop(reader, writer))
            return writer

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        err: BaseException = EOFError("upstream closed the connection")
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
                self._deliver(data)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            err = EOFError(f"connection lost: {e}")
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            for fut, _q in list(self._pending.values()):
                if not fut.done():
                    fut.set_exception(err)

    def _deliver(self, data: bytes) -> None:
        if len(data) < 2:
            return
        entry = self._pending.get((data[0] << 8) | data[1])
        if entry is None:
            return
        fut, question = entry
        try:
            reply = parse_reply(data, (data[0] << 8) | data[1], question)
        except ForgedReply as err:
            if self.on_forged is not None:
                self.on_forged(str(err))
            return
        if not fut.done():
            fut.set_result(reply)

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def close(self) -> None:
        self._drop()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
