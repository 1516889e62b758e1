"""Real loopback DNS servers (UDP+TCP, DoT, DoH) the daemon's tests forward to instead of mocks.

Each peer runs its own asyncio loop in a background thread, so test code stays synchronous.
Misbehaviour is chosen with `mode` (and `delay`), both plain attributes that may be changed while
the peer runs; the mode and delay are read once per query, when it arrives. Streams also have
`close_next` (the next N stream queries have their connection closed unanswered: the race of a
server closing an idle connection as a query arrives, made deterministic); DohUpstream has
`chunks` and `body_padding` to shape the HTTP body.
"""

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import functools
import ipaddress
import itertools
import logging
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from aiohttp import web

from .loop import run_peer_loop
from .tlsca import TestCA

log = logging.getLogger(__name__)

Answer = Callable[[dns.message.Message], dns.message.Message | None]
PeerAddr = tuple[Any, ...]

MODES = frozenset(
    {
        "ok",
        "silent",
        "garbage",
        "wrong_txid",
        "wrong_question",
        "other_port",
        "truncate",
        "servfail",
        "big",
        "refused",
        "lower_question",
    }
)
EDNS_PAYLOAD = 1232  # what we advertise, the DNS Flag Day 2020 value
IDLE_TIMEOUT = 30.0  # RFC 7766 leaves it to the server; long enough never to bite a test
SPRAY_LIMIT = 200_000  # spray_udp refuses more: a test bug must not turn into an endless flood
DOH_PATH = "/dns-query"
CHUNK_PAUSE = 0.02  # between DoH body chunks: each leaves in its own segment, like a slow server

_NX_ZONE = dns.name.from_text("nx.test.")
_CNAME_ZONE = dns.name.from_text("cname.test.")
_WRONG_NAME = dns.name.from_text("wrong-question.test.")
_BIG_COUNT = 40  # 40 A records: ~670 bytes, over 512 without EDNS, under 1232 with it


# ---------------------------------------------------------------------------- answer functions


def _response(q: dns.message.Message) -> dns.message.Message:
    """A reply skeleton like a recursive upstream's: RA set, question echoed as received."""
    return dns.message.make_response(q, recursion_available=True, our_payload=EDNS_PAYLOAD)


def _soa(zone: dns.name.Name) -> dns.rrset.RRset:
    """SOA with TTL 60 and minimum 60, so negative answers are cached for exactly 60 s."""
    rdata = "ns.test. hostmaster.test. 1 3600 600 86400 60"
    return dns.rrset.from_text(zone, 60, "IN", "SOA", rdata)


def _zone_of(qname: dns.name.Name) -> dns.name.Name:
    """A plausible enclosing zone (the TLD) to own the SOA of a NODATA answer."""
    if qname.is_subdomain(_NX_ZONE):
        return _NX_ZONE
    return qname.split(2)[1] if len(qname) > 2 else qname


def default_answer(q: dns.message.Message, ttl: int = 300) -> dns.message.Message:
    """Answer anything, so a test only writes an answer function when it cares about the data.

    A 192.0.2.1, AAAA 2001:db8::1, TXT, else NODATA+SOA; NXDOMAIN+SOA under nx.test;
    `<x>.cname.test` answers `CNAME <x>.` then `<x>. A 192.0.2.7` (a chain into any name).
    """
    r = _response(q)
    if not q.question:
        r.set_rcode(dns.rcode.FORMERR)
        return r
    qname, qtype = q.question[0].name, q.question[0].rdtype
    if qname.is_subdomain(_NX_ZONE):
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(_soa(_NX_ZONE))
    elif qname.is_subdomain(_CNAME_ZONE):
        inner = qname.relativize(_CNAME_ZONE)
        target = "target.test." if len(inner) == 0 else inner.to_text() + "."
        return cname_answer(target, ttl=ttl)(q)
    elif qtype == dns.rdatatype.A:
        r.answer.append(dns.rrset.from_text(qname, ttl, "IN", "A", "192.0.2.1"))
    elif qtype == dns.rdatatype.AAAA:
        r.answer.append(dns.rrset.from_text(qname, ttl, "IN", "AAAA", "2001:db8::1"))
    elif qtype == dns.rdatatype.TXT:
        r.answer.append(dns.rrset.from_text(qname, ttl, "IN", "TXT", '"sinkhole test peer"'))
    else:
        r.authority.append(_soa(_zone_of(qname)))
    return r


def cname_answer(
    target: str | Sequence[str], final_ip: str = "192.0.2.7", ttl: int = 300
) -> Answer:
    """Answer QNAME CNAME target (or a chain through several targets), then the address record,
    so the daemon's CNAME inspection can be tested against a blocked name inside the chain.

    The address record (A, or AAAA when final_ip is IPv6) is only added when it is the type asked
    for, like a real resolver (an AAAA query for an A-only chain gets the chain and no address).
    """
    hops = [dns.name.from_text(t) for t in ([target] if isinstance(target, str) else target)]
    final_type = dns.rdatatype.AAAA if ":" in final_ip else dns.rdatatype.A

    def answer(q: dns.message.Message) -> dns.message.Message:
        r = _response(q)
        owner = q.question[0].name
        for hop in hops:
            r.answer.append(dns.rrset.from_text(owner, ttl, "IN", "CNAME", hop.to_text()))
            owner = hop
        if q.question[0].rdtype in (final_type, dns.rdatatype.ANY):
            r.answer.append(dns.rrset.from_text(owner, ttl, "IN", final_type, final_ip))
        return r

    return answer


def _big_answer(q: dns.message.Message, ttl: int) -> dns.message.Message:
    """40 address records: over 512 bytes, to exercise TC=1 and the retry over TCP."""
    r = _response(q)
    qname = q.question[0].name
    if q.question[0].rdtype == dns.rdatatype.AAAA:
        rdtype, addrs = "AAAA", [f"2001:db8::{i:x}" for i in range(1, _BIG_COUNT + 1)]
    else:
        rdtype, addrs = "A", [f"198.51.100.{i}" for i in range(1, _BIG_COUNT + 1)]
    r.answer.append(dns.rrset.from_text_list(qname, ttl, "IN", rdtype, addrs))
    return r


def forge_replies(
    query: dns.message.Message, txids: Iterable[int], ip: str = "203.0.113.66", ttl: int = 300
) -> Iterator[bytes]:
    """Replies to `query` claiming `ip`, one per guessed txid: the spoofer's payloads."""
    r = _response(query)
    qname = query.question[0].name
    r.answer.append(dns.rrset.from_text(qname, ttl, "IN", "A", ip))
    wire = bytearray(r.to_wire())
    for txid in txids:
        wire[0:2] = (txid & 0xFFFF).to_bytes(2, "big")
        yield bytes(wire)


# ---------------------------------------------------------------------------- wire helpers


def _parse(wire: bytes) -> dns.message.Message | None:
    """Parse a query; None when it is not DNS (recorded nowhere, answered only by 'garbage')."""
    try:
        return dns.message.from_wire(wire)
    except Exception:  # dnspython raises more than DNSException on hostile input
        return None


def _garbage(wire: bytes) -> bytes:
    """Echo the txid, then noise: passes a txid filter, so the client must survive the parse."""
    return (wire[:2] if len(wire) >= 2 else os.urandom(2)) + os.urandom(62)


def _to_wire(r: dns.message.Message, limit: int) -> bytes:
    """Render within `limit`; when too big, header + question (+OPT) with TC=1, as servers do."""
    try:
        return r.to_wire(max_size=limit)
    except dns.exception.TooBig:
        r.answer, r.authority, r.additional = [], [], []
        r.flags |= dns.flags.TC
        return r.to_wire()


def _requestion(wire: bytes) -> dns.message.Message:
    """The query as if it had asked for another name (same txid, type, flags): 'wrong_question'."""
    q = dns.message.from_wire(wire)
    old = q.question[0]
    q.question = [dns.rrset.RRset(_WRONG_NAME, old.rdclass, old.rdtype)]
    return q


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_udp_tcp(host: str, attempts: int = 50) -> tuple[socket.socket, socket.socket]:
    """UDP on port 0, then TCP on the same number (retrying), so one address serves both."""
    family = _family(host)
    for _ in range(attempts):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        # A Python peer answers ~1,000 q/s; a burst from the daemon under test must queue in
        # the kernel, not overflow the default ~200 KB buffer (lost queries look like an
        # upstream timeout of the daemon's and fail tests for the wrong reason).
        with contextlib.suppress(OSError):
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        udp.bind((host, 0))
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise OSError(f"no port free for both UDP and TCP on {host} after {attempts} tries")


def _bind_tcp(host: str) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.bind((host, 0))
    return sock


def _sendto(sock: socket.socket, data: bytes, target: tuple[str, int]) -> None:
    """sendto that tolerates a non-blocking socket (an upstream's, shared with its loop)."""
    try:
        sock.sendto(data, target)
    except BlockingIOError:
        select.select([], [sock], [], 1.0)
        sock.sendto(data, target)


def spray_udp(
    target: tuple[str, int],
    payloads: Iterable[bytes],
    count: int,
    *,
    sock: socket.socket | None = None,
) -> int:
    """Send `count` datagrams to a loopback port, cycling through `payloads`; returns how many.

    Bounded (loopback only, at most SPRAY_LIMIT) because it exists to flood the daemon with
    guessed-txid replies, and a typo must not aim that anywhere else. Pass `sock` to send from
    a given address/port (FakeUpstream.spray sends from the upstream's own socket).
    """
    if not ipaddress.ip_address(target[0]).is_loopback:
        raise ValueError(f"spray_udp only targets loopback, not {target[0]}")
    if not 0 <= count <= SPRAY_LIMIT:
        raise ValueError(f"count must be 0..{SPRAY_LIMIT}, got {count}")
    own = sock is None
    out = socket.socket(_family(target[0]), socket.SOCK_DGRAM) if sock is None else sock
    sent = 0
    try:
        for data in itertools.islice(itertools.cycle(payloads), count):
            _sendto(out, data, target)
            sent += 1
    finally:
        if own:
            out.close()
    return sent


# ---------------------------------------------------------------------------- the peers


class _Peer:
    """What every peer shares: the loop thread, the modes, the query log and the reply logic."""

    MODES: ClassVar[frozenset[str]] = MODES
    stream_transport: ClassVar[str] = "tcp"

    def __init__(
        self,
        answer: Answer = default_answer,
        *,
        mode: str = "ok",
        delay: float = 0.0,
        host: str = "127.0.0.1",
        ttl: int = 300,
    ) -> None:
        # ttl only shapes the built-in answers; a custom answer function sets its own TTLs
        if answer is default_answer:
            answer = functools.partial(default_answer, ttl=ttl)
        self.answer: Answer = answer
        self.mode = mode
        self.delay = delay
        self.host = host
        self.ttl = ttl
        self.port = 0
        self.connections = 0
        self.close_next = 0  # stream queries still to be met by closing their connection
        self.queries: list[tuple[str, dns.message.Message, PeerAddr]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: asyncio.Event | None = None

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        # a typo'd mode would otherwise silently behave like 'ok' and pass the wrong test
        if value not in self.MODES:
            raise ValueError(f"unknown mode {value!r}; one of {sorted(self.MODES)}")
        self._mode = value

    @property
    def addr(self) -> str:
        return _hostport(self.host, self.port)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread; returns once the port is known and listening."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"{type(self).__name__}", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=10)
        except BaseException:
            self._thread.join(5)
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Close listeners and connections and cancel pending replies; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        except Exception:  # teardown goes on: the loop must stop even if closing failed
            log.exception("%s on %s: shutdown failed", type(self).__name__, self.addr)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        run_peer_loop(self, ready)

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close_listeners(self) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        assert self._closing is not None
        self._closing.set()  # delayed and silent replies give up instead of holding shutdown
        await self._close_listeners()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Keep a reference to every task, so none is garbage-collected or left running at stop."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the query log --------------------------------------------------------------------------

    def _note(self, wire: bytes, transport: str, peer: PeerAddr) -> dns.message.Message | None:
        q = _parse(wire)
        if q is not None:
            with self._cond:
                self.queries.append((transport, q, peer))
                self._cond.notify_all()
        return q

    def _take_close(self) -> bool:
        with self._cond:
            if self.close_next <= 0:
                return False
            self.close_next -= 1
            return True

    def _note_connection(self) -> None:
        with self._cond:
            self.connections += 1

    def count(self, transport: str | None = None) -> int:
        """Queries seen so far, optionally only those over one transport."""
        with self._cond:
            return sum(1 for t, _, _ in self.queries if transport in (None, t))

    def wait_queries(self, n: int, timeout: float = 5, transport: str | None = None) -> None:
        """Block until `n` queries were seen (woken by each arrival, no polling)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._count_locked(transport) >= n, timeout):
                seen = self._count_locked(transport)
                raise TimeoutError(f"{self.addr}: saw {seen} of {n} queries within {timeout}s")

    def _count_locked(self, transport: str | None) -> int:
        return sum(1 for t, _, _ in self.queries if transport in (None, t))

    def clear_queries(self) -> None:
        """Forget the queries seen so far (e.g. after a warm-up phase)."""
        with self._cond:
            self.queries.clear()

    # -- replies --------------------------------------------------------------------------------

    async def _pause(self, delay: float) -> None:
        """Sleep `delay`, but wake at shutdown so a slow peer never holds up the test teardown."""
        assert self._closing is not None
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    async def _respond(
        self, q: dns.message.Message | None, wire: bytes, mode: str, delay: float, transport: str
    ) -> bytes | None:
        """The reply bytes for one query under `mode`, or None for no reply at all."""
        assert self._closing is not None
        if mode == "silent" or (q is None and mode != "garbage"):
            return None
        await self._pause(delay)
        if self._closing.is_set():
            return None
        if mode == "garbage" or q is None:
            return _garbage(wire)
        return self._render(q, wire, mode, transport)

    def _render(
        self, q: dns.message.Message, wire: bytes, mode: str, transport: str
    ) -> bytes | None:
        r: dns.message.Message | None
        if mode in ("servfail", "refused"):
            r = _response(q)
            r.set_rcode(dns.rcode.SERVFAIL if mode == "servfail" else dns.rcode.REFUSED)
        elif mode == "truncate" and transport == "udp":
            r = _response(q)
            r.flags |= dns.flags.TC
        elif mode == "big" and q.question:
            r = _big_answer(q, self.ttl)
        elif mode == "wrong_question" and q.question:
            r = self._call_answer(_requestion(wire))
        else:
            r = self._call_answer(q)
        if r is None:
            return None
        if q.edns >= 0 and r.edns < 0:
            r.use_edns(0, 0, EDNS_PAYLOAD)
        if q.edns >= 0 and q.ednsflags & dns.flags.DO:
            r.ednsflags |= dns.flags.DO  # RFC 3225: the DO bit is copied into the response
        if mode == "wrong_txid":
            r.id = (q.id + 1) & 0xFFFF
        if mode == "lower_question":  # a server that does not preserve the case it was asked
            lowered = (dns.name.from_text(rr.name.to_text().lower()) for rr in r.question)
            r.question = [
                dns.rrset.RRset(name, rr.rdclass, rr.rdtype)
                for name, rr in zip(lowered, r.question, strict=True)
            ]
        # UDP replies respect the client's size (512 without EDNS); streams carry up to 64 KiB
        limit = (max(512, q.payload) if q.edns >= 0 else 512) if transport == "udp" else 65535
        return _to_wire(r, limit)

    def _call_answer(self, q: dns.message.Message) -> dns.message.Message | None:
        try:
            return self.answer(q)
        except Exception:
            # a broken answer function in a test shows up as SERVFAIL plus a logged traceback
            log.exception("answer function failed for %s", q.question)
            r = _response(q)
            r.set_rcode(dns.rcode.SERVFAIL)
            return r

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """RFC 7766: many length-prefixed queries per connection, answered concurrently and in
        whatever order they finish; open until the client closes or IDLE_TIMEOUT passes."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._note_connection()
        peer = writer.get_extra_info("peername")
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), IDLE_TIMEOUT)
                    size = int.from_bytes(head, "big")
                    wire = await asyncio.wait_for(reader.readexactly(size), IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, TimeoutError, OSError, ssl.SSLError):
                    break
                if self._take_close():  # read, recorded, never answered: the connection just ends
                    self._note(wire, self.stream_transport, peer)
                    writer.close()
                    break
                one = self._spawn(self._answer_stream(writer, wire, peer, self.mode, self.delay))
                pending.add(one)
                one.add_done_callback(pending.discard)
            # the client may half-close after its last query and still read the replies
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            writer.close()

    async def _answer_stream(
        self, writer: asyncio.StreamWriter, wire: bytes, peer: PeerAddr, mode: str, delay: float
    ) -> None:
        q = self._note(wire, self.stream_transport, peer)
        reply = await self._respond(q, wire, mode, delay, self.stream_transport)
        if reply is not None and not writer.is_closing():
            writer.write(len(reply).to_bytes(2, "big") + reply)  # one write: never interleaved


class _UdpProtocol(asyncio.DatagramProtocol):
    """Hands each datagram to its own task, so a delayed reply never holds up the next query."""

    def __init__(self, peer: "FakeUpstream") -> None:
        self.peer = peer

    def datagram_received(self, data: bytes, addr: PeerAddr) -> None:
        self.peer._spawn(self.peer._answer_udp(data, addr, self.peer.mode, self.peer.delay))


class FakeUpstream(_Peer):
    """A plain DNS upstream serving UDP and TCP on the same 127.0.0.1 port."""

    def __init__(self, answer: Answer = default_answer, **kwargs: Any) -> None:
        super().__init__(answer, **kwargs)
        self._udp_sock: socket.socket | None = None
        self._other_sock: socket.socket | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def url(self, proto: str = "udp") -> str:
        return f"{proto}://{self.addr}"

    async def _open(self) -> None:
        self._closing = asyncio.Event()
        udp_sock, tcp_sock = _bind_udp_tcp(self.host)
        self.port = udp_sock.getsockname()[1]
        self._udp_sock = udp_sock
        # 'other_port' replies leave from here: a spoofer's port, not the one the client asked
        self._other_sock = socket.socket(_family(self.host), socket.SOCK_DGRAM)
        self._other_sock.bind((self.host, 0))
        self._other_sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock
        )
        self._tcp = await asyncio.start_server(self._serve_stream, sock=tcp_sock)

    async def _close_listeners(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._other_sock is not None:
            self._other_sock.close()
        if self._tcp is not None:
            self._tcp.close()

    async def _answer_udp(self, data: bytes, addr: PeerAddr, mode: str, delay: float) -> None:
        q = self._note(data, "udp", addr)
        reply = await self._respond(q, data, mode, delay, "udp")
        if reply is None:
            return
        if mode == "other_port" and self._other_sock is not None:
            _sendto(self._other_sock, reply, addr[:2])
        elif self._udp is not None:
            self._udp.sendto(reply, addr)

    def spray(self, target: tuple[str, int], payloads: Iterable[bytes], count: int) -> int:
        """spray_udp from this upstream's own address and port: the spoof a daemon must reject
        by txid/question alone, since the source looks right."""
        if self._udp_sock is None:
            raise RuntimeError("start the upstream before spraying from it")
        return spray_udp(target, payloads, count, sock=self._udp_sock)


class _TlsPeer(_Peer):
    """A peer behind TLS with a leaf from `ca` (a fresh TestCA unless one is shared)."""

    def __init__(
        self,
        answer: Answer = default_answer,
        *,
        ca: TestCA | None = None,
        hostname: str = "dns.test",
        **kwargs: Any,
    ) -> None:
        super().__init__(answer, **kwargs)
        self.ca = ca if ca is not None else TestCA()
        self.hostname = hostname
        self._server: asyncio.Server | None = None


class TlsUpstream(_TlsPeer):
    """DNS over TLS (RFC 7858) with a leaf for 'dns.test' + IP 127.0.0.1 from `ca`.

    `connections` counts completed TLS handshakes, so tests can assert connection reuse.
    Modes as FakeUpstream; 'truncate' and 'other_port' answer normally (a stream has no 512 limit
    and no second port).
    """

    stream_transport: ClassVar[str] = "tls"

    def url(self, proto: str = "tls") -> str:
        return f"{proto}://{self.addr}"

    async def _open(self) -> None:
        self._closing = asyncio.Event()
        ctx = self.ca.server_context(self.hostname, self.host)
        ctx.set_alpn_protocols(["dot"])  # RFC 7858 ALPN; clients that offer none still connect
        sock = _bind_tcp(self.host)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(
            self._serve_stream, sock=sock, ssl=ctx, ssl_handshake_timeout=5
        )

    async def _close_listeners(self) -> None:
        if self._server is not None:
            self._server.close()


def _b64url_decode(text: str) -> bytes:
    """RFC 8484 GET: base64url without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DohUpstream(_TlsPeer):
    """DNS over HTTPS (RFC 8484, HTTP/1.1) at https://127.0.0.1:PORT/dns-query, POST and GET.

    `connections` counts TCP connections accepted (before the TLS handshake). Extra mode
    'http_error' answers HTTP 500. 'silent' holds the request open until the client gives up.
    `chunks` > 1 sends the body with chunked transfer encoding in that many pieces, each flushed
    and CHUNK_PAUSE apart; `body_padding` appends that many zero bytes after the DNS message.
    """

    MODES: ClassVar[frozenset[str]] = MODES | {"http_error"}
    stream_transport: ClassVar[str] = "https"

    _runner: web.AppRunner | None = None
    chunks = 0
    body_padding = 0

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"https://{self.addr}{DOH_PATH}"

    async def _open(self) -> None:
        self._closing = asyncio.Event()
        ctx = self.ca.server_context(self.hostname, self.host)
        ctx.set_alpn_protocols(["http/1.1"])  # aiohttp serves HTTP/1.1 only
        app = web.Application()
        app.router.add_route("POST", DOH_PATH, self._on_request)
        app.router.add_route("GET", DOH_PATH, self._on_request)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        handler_factory = self._runner.server
        assert handler_factory is not None

        # aiohttp has no per-connection hook; wrapping its protocol factory sees every accept
        def counting_factory() -> asyncio.BaseProtocol:
            self._note_connection()
            return handler_factory()

        sock = _bind_tcp(self.host)
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(counting_factory, sock=sock, ssl=ctx)

    async def _close_listeners(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _on_request(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            if request.content_type != "application/dns-message":
                return web.Response(status=415, text="want application/dns-message")
            wire = await request.read()
        else:
            try:
                wire = _b64url_decode(request.query["dns"])
            except (KeyError, ValueError, binascii.Error):
                return web.Response(status=400, text="want ?dns=<base64url>")
        mode, delay = self.mode, self.delay
        peer = request.transport.get_extra_info("peername") if request.transport else ()
        q = self._note(wire, "https", peer)
        if q is None and mode != "garbage":
            return web.Response(status=400, text="not a DNS message")
        if mode == "http_error":
            await self._pause(delay)
            return web.Response(status=500, text="http_error mode")
        reply = await self._respond(q, wire, mode, delay, "https")
        if reply is None:  # silent, or the answer function declined: hang like a dead upstream
            assert self._closing is not None
            await self._closing.wait()
            return web.Response(status=503)
        body = reply + bytes(self.body_padding)
        if self.chunks > 1:
            return await self._send_chunked(request, body, self.chunks)
        return web.Response(body=body, content_type="application/dns-message")

    async def _send_chunked(
        self, request: web.Request, body: bytes, chunks: int
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "application/dns-message"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        step = -(-len(body) // chunks)
        for i in range(0, len(body), step):
            if i:
                await self._pause(CHUNK_PAUSE)
            await resp.write(body[i : i + step])  # write() drains: this piece is on the wire
        await resp.write_eof()
        return resp
