"""TCP bounds: a client that pipelines queries but never reads its replies costs us a bounded
buffer and is cut off after the idle timeout; one that reads late gets every answer; one address
cannot hold more than its share of connections. Real sockets against the real daemon."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from sinkhole.server import TCP_WRITE_HIGH
from tests.conftest import DaemonThread
from tests.peers.dnsserver import FakeUpstream, default_answer
from tests.test_peers import tcp_recv

BIG = "big.bounds.test."
BIG_NAME = dns.name.from_text(BIG)
INFLIGHT = 20


def big_txt(q: dns.message.Message) -> dns.message.Message:
    """~4 KB of TXT for BIG (TCP-sized), the default answers for anything else."""
    if not q.question or q.question[0].name != BIG_NAME:   # case-blind: upstream 0x20
        return default_answer(q)
    r = dns.message.make_response(q, recursion_available=True)
    texts = [f'"{i:02d}{"x" * 248}"' for i in range(16)]
    r.answer.append(dns.rrset.from_text_list(q.question[0].name, 300, "IN", "TXT", texts))
    return r


@pytest.fixture
def big_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(big_txt) as up:
        yield up


def bounded_daemon(make_daemon: Any, up: FakeUpstream, idle: str, **server: Any) -> DaemonThread:
    return make_daemon({"upstreams": [up.url()], "upstream_timeout": "2s",
                        "server": {"tcp_idle_timeout": idle,
                                   "tcp_max_queries_in_flight": INFLIGHT, **server}})


def pipelined(n: int) -> bytes:
    wire = dns.message.make_query(BIG, "TXT").to_wire()
    return (struct.pack("!H", len(wire)) + wire) * n


def connect(port: int, source: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:   # before connect: the window is negotiated in the handshake
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def send_in_thread(s: socket.socket, data: bytes) -> threading.Thread:
    """sendall blocks once the daemon stops reading; it ends (or fails) when we are cut off."""
    def run() -> None:
        with contextlib.suppress(OSError):
            s.sendall(data)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_closed(s: socket.socket, timeout: float) -> bool:
    """Wait for the peer to close or reset the connection without reading a byte of it."""
    p = select.poll()
    p.register(s, select.POLLRDHUP)   # POLLERR/POLLHUP are always reported
    return bool(p.poll(timeout * 1000))


def until(d: DaemonThread, check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for a condition on the daemon's own state, read on its loop (no races)."""
    async def poll() -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.01)
    d.call(poll(), timeout=timeout + 5)


def test_client_that_never_reads_is_bounded_then_cut_off(make_daemon,
                                                          big_upstream: FakeUpstream) -> None:
    d = bounded_daemon(make_daemon, big_upstream, "2s")
    reply = d.query(BIG, "TXT", tcp=True)   # now cached: the flood is answered at loop speed
    size = len(reply.to_wire())
    assert size > 4000
    lst = d.daemon.listeners
    with connect(d.port, rcvbuf=4096) as s:
        start = time.monotonic()
        sender = send_in_thread(s, pipelined(10_000))
        until(d, lambda: lst.tcp_buffered() > TCP_WRITE_HIGH)    # its replies pile up...
        # ...meanwhile everyone else is answered, over both transports
        assert d.query("other.test", "A", tcp=True, source="127.0.0.2").answer
        assert d.query("other.test", "A", source="127.0.0.2").answer
        assert lst.tcp_stalled == 0, "cut off before the idle timeout"
        assert wait_closed(s, 15), "the daemon kept a client that reads nothing"
        elapsed = time.monotonic() - start
        sender.join(10)
    assert 2.0 <= elapsed < 10
    until(d, lambda: lst.tcp_stalled == 1 and not lst.tcp_conns and lst.tcp_paused >= 1)
    # what it held when cut off: the high-water mark plus the answers already in flight
    assert 0 < lst.tcp_stalled_bytes <= TCP_WRITE_HIGH + INFLIGHT * (size + 2)
    assert d.metric("sinkhole_tcp_connections") == 0
    assert d.query(BIG, "TXT", tcp=True).answer


def test_idle_client_with_unsent_replies_is_cut_off(make_daemon,
                                                    big_upstream: FakeUpstream) -> None:
    """Under the high-water mark, but the kernel takes no more (its send buffer is at its
    maximum, pinned small here): a plain close() would keep the transport forever."""
    d = bounded_daemon(make_daemon, big_upstream, "1s")
    assert d.query(BIG, "TXT", tcp=True).answer
    lst = d.daemon.listeners
    with connect(d.port, rcvbuf=4096) as s:
        def ours(w: Any) -> bool:
            return w.get_extra_info("peername") == s.getsockname()
        until(d, lambda: any(ours(w) for w in lst.tcp_conns))
        conn = next(w for w in lst.tcp_conns if ours(w))
        d.loop.call_soon_threadsafe(conn.get_extra_info("socket").setsockopt,
                                    socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.sendall(pipelined(8))    # ~32 KB of replies: more than the kernel takes
        until(d, lambda: 0 < lst.tcp_buffered() <= TCP_WRITE_HIGH)
        assert wait_closed(s, 10), "a closed connection kept its unsent replies"
    until(d, lambda: not lst.tcp_conns)
    assert lst.tcp_paused == 0    # the reader was never paused: this is the closing path


def test_client_that_reads_late_gets_every_answer(make_daemon,
                                                  big_upstream: FakeUpstream) -> None:
    d = bounded_daemon(make_daemon, big_upstream, "10s")
    assert d.query(BIG, "TXT", tcp=True).answer
    lst = d.daemon.listeners
    n = 3_000   # ~12 MB of replies: far more than the socket buffers hold
    with connect(d.port, rcvbuf=4096) as s:
        sender = send_in_thread(s, pipelined(n))
        until(d, lambda: lst.tcp_paused >= 1)   # the daemon stopped reading us...
        got = [dns.message.from_wire(tcp_recv(s)) for _ in range(n)]   # ...until we read
        sender.join(10)
        assert all(m.rcode() == dns.rcode.NOERROR and len(m.answer[0]) == 16 for m in got)
        s.sendall(pipelined(1))   # still open
        assert dns.message.from_wire(tcp_recv(s)).answer[0].rdtype == dns.rdatatype.TXT
    assert lst.tcp_stalled == 0


def test_per_client_connection_cap(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon({"upstreams": [upstream.url()],
                     "server": {"tcp_max_connections_per_client": 2, "tcp_idle_timeout": "30s"}})
    q = dns.message.make_query("cap.test", "A").to_wire()
    framed = struct.pack("!H", len(q)) + q
    lst = d.daemon.listeners
    kept = [connect(d.port, "127.0.0.2") for _ in range(2)]
    try:
        for s in kept:
            s.sendall(framed)
            assert dns.message.from_wire(tcp_recv(s)).answer
        with connect(d.port, "127.0.0.2") as extra:    # one over: closed at once, no answer
            assert extra.recv(1) == b""
        assert d.metric("sinkhole_tcp_connections_rejected_total") == 1
        with connect(d.port, "127.0.0.3") as other:    # another device still gets in
            other.sendall(framed)
            assert dns.message.from_wire(tcp_recv(other)).answer
        kept.pop().close()                             # a slot freed is a slot reusable
        until(d, lambda: lst.tcp_per_client.get("127.0.0.2") == 1)
        kept.append(connect(d.port, "127.0.0.2"))
        kept[-1].sendall(framed)
        assert dns.message.from_wire(tcp_recv(kept[-1])).answer
        assert d.metric("sinkhole_tcp_connections_rejected_total") == 1
    finally:
        for s in kept:
            s.close()
