"""DNS over UDP to an upstream: a fresh socket, source port, txid and letter case per query.

RFC 5452: what a blind spoofer must guess is the source port and the txid, so both come from
`secrets` (the `random` module's Mersenne Twister can be reconstructed from its outputs), and
`connect()` makes the kernel drop datagrams from any other address or port. The port is drawn
within the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default: ~14.8 bits)
rather than all of 1024-65535: ports below it are where services listen, which firewalls,
conntrack and NAT treat differently — measured here, 20-45 % of upstream replies to ports in
1024-32767 never arrived under load, none in the ephemeral range. 0x20 (draft-vixie-dnsext-dns0x20)
adds a secret bit per letter of the name: the reply must echo our mix of case byte for byte.
A single shared socket would leave only the 16-bit txid between us and a forged answer.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
import socket

from sinkhole.dns.message import ForgedReply, Reply, build_query, parse_reply
from sinkhole.errors import UpstreamError, UpstreamTimeout


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            lo, hi = (int(v) for v in f.read().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999            # Linux's default
    return (lo, hi) if 1024 <= lo < hi <= 65535 else (32768, 60999)


_PORT_LOW, _PORT_HIGH = _ephemeral_range()
_PORT_SPAN = _PORT_HIGH - _PORT_LOW + 1
_PORT_TRIES = 4   # a random port is busy rarely; after a few, let the kernel pick one


def mix_case(question: bytes, bits: int) -> bytes:
    """The question with each ASCII letter of the name case-flipped where `bits` says (0x20).

    Integer arithmetic instead of a per-byte loop: `name ^ swapcase(name)` has bit 0x20 set
    exactly where a letter sits (label lengths are < 64, never letters), and ANDing it with
    the secret bits picks which letters flip. qtype/qclass stay as they are (qtype 65 is 'A').
    """
    n = len(question) - 4
    name = question[:n]
    value = int.from_bytes(name, "big")
    letters = value ^ int.from_bytes(name.swapcase(), "big")
    return (value ^ (letters & bits)).to_bytes(n, "big") + question[n:]


def _open_socket(family: int, port: int) -> socket.socket:
    """A UDP socket bound to `port` (secret, in the ephemeral range), another if it is taken."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    for _ in range(_PORT_TRIES):
        try:
            sock.bind((wildcard, port))
            return sock
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                sock.close()
                raise
        port = _PORT_LOW + secrets.randbelow(_PORT_SPAN)
    return sock   # left unbound: connect() binds the kernel's own pick (port 0)


async def udp_exchange(addr: tuple[str, int], family: int, question: bytes, do: bool, cd: bool,
                       randomize_case: bool, timeout: float, on_forged=None) -> Reply:
    """Ask `question` (lower case, as in the cache key) and wait for the first datagram that
    really answers it: right txid, right question, and with 0x20 our exact mix of case (the
    case-insensitive checks are parse_reply's, the exact echo is one bytes comparison here)."""
    n = len(question) - 4
    # One draw from the OS CSPRNG per query: txid (16 bits), source port (32), 0x20 (8n).
    bits = secrets.randbits(48 + 8 * n)
    txid = bits & 0xFFFF
    echo = mix_case(question, bits >> 48) if randomize_case else None
    packet = build_query(txid, echo or question, do, cd)
    loop = asyncio.get_running_loop()
    try:   # modulo bias of a 32-bit draw over ~28k ports: under 2**-17
        sock = _open_socket(family, _PORT_LOW + (bits >> 16 & 0xFFFFFFFF) % _PORT_SPAN)
    except OSError as err:   # EMFILE/ENFILE under a flood: SERVFAIL, not a lost query
        raise UpstreamError(f"udp: cannot open a socket: {err.strerror or err}") from None
    sock.setblocking(False)
    fut: asyncio.Future[Reply] = loop.create_future()
    qend = 12 + len(question)

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
                reply = parse_reply(data, txid, question)
                if echo is not None and data[12:qend] != echo:
                    raise ForgedReply("question case differs from the one sent (0x20)")
            except ForgedReply as err:   # dropped; the real answer may still come in time
                if on_forged is not None:
                    on_forged(str(err))
                continue
            fut.set_result(reply)

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
        fut.set_exception(UpstreamTimeout())
