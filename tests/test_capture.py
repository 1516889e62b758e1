"""The sinkhole listener: a device connecting to the sinkhole address is recorded by the name
it meant (TLS SNI/ALPN, HTTP request line and Host), never answered, and bounded.

Real clients (curl, openssl s_client, Python's own TLS stack for ClientHello bytes) and raw
sockets for the hostile ones, against a CaptureListener on its own loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sinkhole.capture import CaptureListener, ConnectEvent, capture_addresses
from sinkhole.capture.hello import parse_client_hello
from sinkhole.config.values import HostPort
from tests.test_encrypted import run, tool

C2 = "backuprabbit.com"


class Capture:
    """A CaptureListener on 127.0.0.1 (port 0) run by a loop thread; events into a queue."""

    def __init__(self, on_connect: Callable[[ConnectEvent], None] | None = None,
                 hosts: tuple[str, ...] = ("127.0.0.1",), **kw: Any) -> None:
        self.events: queue.Queue[ConnectEvent] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.li = CaptureListener(on_connect or self.events.put, **kw)
        self.call(self.li.start([HostPort(h, 0) for h in hosts]))

    @property
    def port(self) -> int:
        return self.li.bound[0].port

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def event(self, timeout: float = 10) -> ConnectEvent:
        return self.events.get(timeout=timeout)

    def until(self, check: Callable[[], bool], timeout: float = 10) -> None:
        """Wait for a condition on the listener's state, read on its own loop."""
        async def poll() -> None:
            deadline = time.monotonic() + timeout
            while not check():
                assert time.monotonic() < deadline, "condition not met in time"
                await asyncio.sleep(0.01)
        self.call(poll())

    def close(self) -> None:
        self.call(self.li.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def make_capture() -> Iterator[Callable[..., Capture]]:
    made: list[Capture] = []

    def make(**kw: Any) -> Capture:
        made.append(Capture(**kw))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture
def cap(make_capture: Callable[..., Capture]) -> Capture:
    return make_capture(timeout=2.0)


def connect(port: int, source: str = "127.0.0.1", host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((source, 0))
    s.settimeout(10)
    s.connect((host, port))
    return s


def closed_by_peer(s: socket.socket, timeout: float = 10) -> bool:
    """True once the listener closed (or reset) the connection; it never sends a byte."""
    try:
        s.settimeout(timeout)
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def hello_bytes(server_hostname: str | None, alpn: list[str] | None = None) -> bytes:
    """A real ClientHello, from OpenSSL through Python's TLS stack (memory BIOs, no network)."""
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def records(handshake: bytes, *cuts: int) -> bytes:
    """The handshake message re-split into several TLS records at `cuts`."""
    out, start = [], 0
    for end in (*cuts, len(handshake)):
        part = handshake[start:end]
        out.append(b"\x16\x03\x01" + struct.pack("!H", len(part)) + part)
        start = end
    return b"".join(out)


def synthetic_hello(sni: bytes, ext_fix: int = 0) -> bytes:
    """A minimal ClientHello carrying `sni` as its host name; `ext_fix` skews the extensions
    length (a lie about the bytes that follow)."""
    name = b"\x00" + struct.pack("!H", len(sni)) + sni
    ext = struct.pack("!HH", 0, len(name) + 2) + struct.pack("!H", len(name)) + name
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(ext) + ext_fix) + ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


# --- real clients ------------------------------------------------------------------------------

def test_curl_https_gives_the_sni_and_the_device_and_no_handshake(cap: Capture) -> None:
    p = run([tool("curl"), "-sS", "-k", "--max-time", "5", "--interface", "127.0.0.2",
             "--resolve", f"{C2}:{cap.port}:127.0.0.1", f"https://{C2}:{cap.port}/"])
    assert p.returncode != 0        # no TLS server answered: nothing was served
    ev = cap.event()
    assert (ev.client_ip, ev.port, ev.proto, ev.sni) == ("127.0.0.2", cap.port, "tls", C2)
    assert "http/1.1" in ev.alpn and ev.host is None
    assert abs(ev.time - time.time()) < 30
    assert cap.li.counts["tls"] == 1


def test_curl_http_gives_the_request_line_and_host_on_the_same_port(cap: Capture) -> None:
    p = run([tool("curl"), "-sS", "--max-time", "5", f"http://127.0.0.1:{cap.port}/gate.php?id=7",
             "-H", "Host: C2.Example.NET:8080"])
    assert p.returncode == 52, p.stderr          # "Empty reply from server": nothing sent back
    ev = cap.event()
    assert ev.proto == "http" and ev.sni is None
    assert ev.request_line == "GET /gate.php?id=7 HTTP/1.1"
    assert ev.host == "c2.example.net"
    assert cap.li.counts["http"] == 1


def test_openssl_s_client_never_gets_a_certificate(cap: Capture) -> None:
    p = run([tool("openssl"), "s_client", "-connect", f"127.0.0.1:{cap.port}", "-servername",
             "implant.c2.test", "-alpn", "h2,x-custom"])
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    assert "no peer certificate available" in out, out
    ev = cap.event()
    assert ev.sni == "implant.c2.test" and ev.alpn == ("h2", "x-custom")


def test_ipv6_sinkhole_address(make_capture: Callable[..., Capture]) -> None:
    try:
        c = make_capture(hosts=("::1",))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with connect(c.port, "::1", "::1") as s:
        s.sendall(hello_bytes("v6.c2.test"))
        assert closed_by_peer(s)
    ev = c.event()
    assert (ev.client_ip, ev.sni) == ("::1", "v6.c2.test")


# --- the parser on real and split ClientHellos -------------------------------------------------

def test_real_client_hello_every_prefix_waits_and_records_join() -> None:
    hello = hello_bytes(C2, ["h2", "http/1.1"])
    assert parse_client_hello(hello) == (C2, ("h2", "http/1.1"))
    assert all(parse_client_hello(hello[:n]) is None for n in range(len(hello)))
    handshake = hello[5:]
    split = records(handshake, 3, 100, len(handshake) - 1)   # header split, body in pieces
    assert parse_client_hello(split) == (C2, ("h2", "http/1.1"))
    assert parse_client_hello(hello_bytes(None)) == (None, ())   # no SNI (an IP address)


def test_a_hello_dribbled_in_pieces_is_still_read(cap: Capture) -> None:
    hello = records(hello_bytes("slow.c2.test")[5:], 40)
    with connect(cap.port) as s:
        for i in range(0, len(hello), 64):
            s.sendall(hello[i:i + 64])
        assert closed_by_peer(s)
    assert cap.event().sni == "slow.c2.test"


# --- hostile bytes -----------------------------------------------------------------------------

HOSTILE = [
    (b"\x16\x03\x01\x00\x00", "malformed_tls", "bad TLS record length"),
    (b"\x16\x09\x01\x00\x10" + b"\0" * 16, "malformed_tls", "bad TLS record version"),
    (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "malformed_tls", "not a ClientHello"),
    (b"\x16\x03\x01\x00\x04\x01\xff\xff\xff", "malformed_tls", "ClientHello too large"),
    (synthetic_hello(b"evil\x00name\n"), "malformed_tls", "SNI is not a host name"),
    (synthetic_hello(b"ok.test", ext_fix=40), "malformed_tls", "truncated ClientHello"),
    (b"GET /\xff\xfe HTTP/1.1\r\n", "malformed_http", "bad HTTP request line"),
    (b"GET / HTTP/1.1\r\nHost: evil host\r\n", "malformed_http", "Host is not a host name"),
    (b"GET / HTTP/1.1\r\nno colon here\r\n", "malformed_http", "bad HTTP header line"),
    (b"GET /" + b"a" * 9000, "malformed_http", "HTTP request line too long"),
    (b"\x00\x01\x02binary", "other", None),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "other", None),
]


def test_hostile_bytes_are_counted_by_reason_and_harmless(cap: Capture) -> None:
    for data, outcome, reason in HOSTILE:
        with connect(cap.port) as s:
            s.sendall(data)
            assert closed_by_peer(s), data
        ev = cap.event()
        assert ev.proto == outcome.removeprefix("malformed_"), data
        assert ev.sni is None and ev.host is None
        if reason is not None:
            assert cap.li.malformed[reason] >= 1, (data, dict(cap.li.malformed))
    counts = cap.li.counts
    assert counts["malformed_tls"] == 6 and counts["malformed_http"] == 4
    assert counts["other"] == 2
    with connect(cap.port) as s:                    # still listening, still parsing
        s.sendall(hello_bytes("after.c2.test"))
        assert closed_by_peer(s)
    assert cap.event().sni == "after.c2.test"
    cap.until(lambda: cap.li.open == 0)


def test_too_many_bytes_stop_at_the_read_limit(make_capture: Callable[..., Capture]) -> None:
    c = make_capture(max_bytes=1024)
    with connect(c.port) as s:
        s.sendall(b"\x16\x03\x01\x07\xd0\x01\x00\x07\xcc" + b"\x03" * 1500)   # a 2000-byte hello
        assert closed_by_peer(s)
    ev = c.event()
    assert ev.proto == "tls" and ev.sni is None
    assert c.li.counts["too_large"] == 1


def test_a_client_that_breaks_on_connect_is_counted(make_capture: Callable[..., Capture]) -> None:
    def broken(event: ConnectEvent) -> None:
        raise RuntimeError("the daemon's side failed")
    c = make_capture(on_connect=broken)
    with connect(c.port) as s:
        s.sendall(hello_bytes("x.c2.test"))
        assert closed_by_peer(s)
    c.until(lambda: c.li.counts["callback_error"] == 1 and c.li.open == 0)
    with connect(c.port) as s, contextlib.suppress(OSError):   # and it still listens
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert closed_by_peer(s)
    c.until(lambda: c.li.counts["http"] == 1)


# --- slow clients and floods -------------------------------------------------------------------

def test_slow_drip_is_cut_at_the_deadline_not_per_read(make_capture: Callable[..., Capture]
                                                       ) -> None:
    c = make_capture(timeout=1.0)
    hello = hello_bytes("drip.c2.test")
    with connect(c.port) as s:
        start = time.monotonic()
        for byte in hello:          # one byte every 100 ms: every read is "recent"
            if select.select([s], [], [], 0.1)[0]:
                break               # readable: the listener closed it
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
        took = time.monotonic() - start
        assert closed_by_peer(s, 5)
    assert 0.9 <= took < 4.0
    ev = c.event()
    assert ev.proto == "tls" and ev.sni is None
    assert c.li.counts["timeout"] == 1


def test_a_silent_connection_is_closed_and_not_an_event(make_capture: Callable[..., Capture]
                                                        ) -> None:
    c = make_capture(timeout=0.5)
    with connect(c.port) as s:
        assert closed_by_peer(s, 5)
    c.until(lambda: c.li.counts["timeout"] == 1 and c.li.open == 0)
    with connect(c.port) as s:
        s.close()
    c.until(lambda: c.li.counts["empty"] == 1)
    assert c.events.empty()


def test_connection_caps_per_client_and_in_all(make_capture: Callable[..., Capture]) -> None:
    c = make_capture(max_per_client=3, max_connections=5, timeout=30)
    held = [connect(c.port, "127.0.0.2") for _ in range(3)]
    try:
        c.until(lambda: c.li.open == 3)
        with connect(c.port, "127.0.0.2") as extra:          # a 4th from the same device
            assert closed_by_peer(extra, 5)
        held += [connect(c.port, "127.0.0.3") for _ in range(2)]
        c.until(lambda: c.li.open == 5)
        with connect(c.port, "127.0.0.4") as extra:          # over the total
            assert closed_by_peer(extra, 5)
        assert c.li.counts["rejected_client"] == 1 and c.li.counts["rejected_total"] == 1
        held.pop().close()                                   # a freed slot is reusable
        c.until(lambda: c.li.open == 4)
        with connect(c.port, "127.0.0.4") as s:
            s.sendall(hello_bytes("late.c2.test"))
            assert closed_by_peer(s)
        assert c.event().sni == "late.c2.test"
    finally:
        for s in held:
            s.close()
    c.until(lambda: c.li.open == 0 and not c.li.per_client)


def test_a_flood_of_garbage_connections_leaves_nothing_behind(
        make_capture: Callable[..., Capture]) -> None:
    c = make_capture(max_per_client=8, timeout=5)
    n = 300
    socks = []
    for i in range(n):
        s = connect(c.port)
        s.sendall(b"\xff" * 64 if i % 2 else b"\x16\x03\x01\x00\x00")
        socks.append(s)
        if len(socks) >= 8:
            for old in socks:
                closed_by_peer(old, 5)
                old.close()
            socks.clear()
    for s in socks:
        s.close()
    counts = c.li.counts
    c.until(lambda: sum(counts.values()) == n and c.li.open == 0 and not c.li.per_client)
    assert counts["other"] + counts["malformed_tls"] + counts["rejected_client"] == n


def test_capture_addresses_leave_out_the_null_addresses() -> None:
    assert capture_addresses("10.0.0.3", "::", (80, 443)) == [HostPort("10.0.0.3", 80),
                                                              HostPort("10.0.0.3", 443)]
    assert capture_addresses("0.0.0.0", "fd00::3", (443,)) == [HostPort("fd00::3", 443)]

