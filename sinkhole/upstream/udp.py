"""DNS over UDP to an upstream: one fresh socket (random source port) and txid per query.

RFC 5452: the kernel picks a random ephemeral port for each socket and `connect()` makes it
drop datagrams from any other address or port; parse_reply then checks txid and question. A
single shared socket would leave only the 16-bit txid between us and a forged answer.
"""

from __future__ import annotations

import asyncio
import socket

from sinkhole.dns.message import ForgedReply, Reply, parse_reply


class UpstreamError(Exception):
    """An upstream attempt failed (timeout, refused, broken connection); try the next one."""


async def udp_exchange(addr: tuple[str, int], family: int, packet: bytes, txid: int,
                       question: bytes, timeout: float, on_forged=None) -> Reply:
    """Send `packet` and wait for the first datagram that really answers it."""
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as err:   # EMFILE/ENFILE under a flood: SERVFAIL, not a lost query
        raise UpstreamError(f"udp: cannot open a socket: {err.strerror or err}") from None
    sock.setblocking(False)
    fut: asyncio.Future[Reply] = loop.create_future()

    def on_readable() -> None:
        while not fut.done():
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as err:   # ICMP port unreachable arrives as ECONNREFUSED
                fut.set_exception(UpstreamError(f"udp: {err.strerror or err}"))
                return
            try:
                fut.set_result(parse_reply(data, txid, question))
            except ForgedReply as err:
                if on_forged is not None:
                    on_forged(str(err))

    fd = sock.fileno()
    try:
        sock.connect(addr)
        loop.add_reader(fd, on_readable)
        sock.send(packet)
        timer = loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
    except OSError as err:
        raise UpstreamError(f"udp: {err.strerror or err}") from None
    finally:
        loop.remove_reader(fd)
        sock.close()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(UpstreamError("timeout"))
