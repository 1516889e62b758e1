"""Self-tests of the loopback peers: the daemon's tests are only as true as these servers."""

import asyncio
import base64
import socket
import ssl
import threading
from collections.abc import Iterator

import aiohttp
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.peers import (
    DohUpstream,
    FakeUpstream,
    TestCA,
    TlsUpstream,
    cname_answer,
    forge_replies,
    spray_udp,
)

LOOP = "127.0.0.1"


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as peer:
        yield peer


@pytest.fixture(scope="module")
def ca() -> Iterator[TestCA]:
    with TestCA() as authority:
        yield authority


def query(name: str = "www.example.com", rdtype: str = "A", **kw: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]


def udp_raw(port: int, q: dns.message.Message, timeout: float = 1.0) -> tuple[bytes, tuple]:
    """Raw exchange: dnspython's client would drop the bad replies we want to look at."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q.to_wire(), (LOOP, port))
        return s.recvfrom(65535)


def tcp_send(s: socket.socket, q: dns.message.Message) -> None:
    wire = q.to_wire()
    s.sendall(len(wire).to_bytes(2, "big") + wire)


def tcp_recv(s: socket.socket) -> bytes:
    size = int.from_bytes(recv_exact(s, 2), "big")
    return recv_exact(s, size)


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


# ---------------------------------------------------------------- FakeUpstream: ok mode


def test_udp_and_tcp_share_the_port(up: FakeUpstream) -> None:
    q = query()
    assert dns.query.udp(q, LOOP, port=up.port, timeout=2).answer
    assert dns.query.tcp(q, LOOP, port=up.port, timeout=2).answer
    assert up.addr == f"127.0.0.1:{up.port}"
    assert up.url("tcp") == f"tcp://127.0.0.1:{up.port}"
    assert (up.count("udp"), up.count("tcp"), up.count(), up.connections) == (1, 1, 2, 1)
    transport, msg, peer = up.queries[0]
    assert transport == "udp" and msg.id == q.id and peer[0] == LOOP


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "expect"),
    [
        ("a.example.com", "A", dns.rcode.NOERROR, "192.0.2.1"),
        ("a.example.com", "AAAA", dns.rcode.NOERROR, "2001:db8::1"),
        ("a.example.com", "TXT", dns.rcode.NOERROR, '"sinkhole test peer"'),
        ("a.example.com", "MX", dns.rcode.NOERROR, None),
        ("x.nx.test", "A", dns.rcode.NXDOMAIN, None),
    ],
)
def test_default_answers(
    up: FakeUpstream, name: str, rdtype: str, rcode: int, expect: str | None
) -> None:
    r = dns.query.udp(query(name, rdtype), LOOP, port=up.port, timeout=2)
    assert r.rcode() == rcode
    if expect is not None:
        assert [rr.to_text() for rr in r.answer[0]] == [expect]
        assert r.answer[0].ttl == 300
    else:  # negative answers carry an SOA: TTL 60, minimum 60
        assert not r.answer
        soa = r.authority[0]
        assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 60 and soa[0].minimum == 60


def test_ttl_parameter_shapes_default_answers() -> None:
    with FakeUpstream(ttl=7) as peer:
        r = dns.query.udp(query(), LOOP, port=peer.port, timeout=2)
    assert r.answer[0].ttl == 7


def test_cname_chains() -> None:
    r = dns.message.make_query("c2.evil.example.cname.test", "A")
    with FakeUpstream() as peer:
        got = dns.query.udp(r, LOOP, port=peer.port, timeout=2)
        peer.answer = cname_answer(["hop.test.", "blocked.example."], final_ip="192.0.2.9")
        chain = dns.query.udp(query("start.test"), LOOP, port=peer.port, timeout=2)
        aaaa = dns.query.udp(query("start.test", "AAAA"), LOOP, port=peer.port, timeout=2)
    assert [rr.to_text() for rr in got.answer] == [
        "c2.evil.example.cname.test. 300 IN CNAME c2.evil.example.",
        "c2.evil.example. 300 IN A 192.0.2.7",
    ]
    assert [(str(rr.name), rr[0].to_text()) for rr in chain.answer] == [
        ("start.test.", "hop.test."),
        ("hop.test.", "blocked.example."),
        ("blocked.example.", "192.0.2.9"),
    ]
    assert len(aaaa.answer) == 2  # the chain, but no A record for an AAAA question


def test_question_case_txid_and_edns_are_echoed(up: FakeUpstream) -> None:
    plain = query("WwW.ExAmPlE.cOm")
    wire, _ = udp_raw(up.port, plain)
    assert b"\x03WwW\x07ExAmPlE\x03cOm\x00" in wire
    r = dns.message.from_wire(wire)
    assert r.id == plain.id and r.edns == -1
    edns = query(use_edns=0, payload=4096, want_dnssec=True)
    r = dns.query.udp(edns, LOOP, port=up.port, timeout=2)
    assert r.edns == 0 and r.payload == 1232 and r.ednsflags & dns.flags.DO


# ---------------------------------------------------------------- FakeUpstream: modes


def test_wrong_txid(up: FakeUpstream) -> None:
    up.mode = "wrong_txid"
    q = query()
    r = dns.message.from_wire(udp_raw(up.port, q)[0])
    assert r.id == (q.id + 1) & 0xFFFF and r.answer
    with pytest.raises(dns.query.BadResponse):
        dns.query.tcp(q, LOOP, port=up.port, timeout=2)


def test_wrong_question(up: FakeUpstream) -> None:
    up.mode = "wrong_question"
    q = query()
    r = dns.message.from_wire(udp_raw(up.port, q)[0])
    assert r.id == q.id
    assert str(r.question[0].name) == "wrong-question.test."
    assert str(r.answer[0].name) == "wrong-question.test."
    assert not q.is_response(r)


def test_other_port_replies_from_another_socket(up: FakeUpstream) -> None:
    up.mode = "other_port"
    q = query()
    wire, source = udp_raw(up.port, q)
    assert source[0] == LOOP and source[1] != up.port
    assert dns.message.from_wire(wire).id == q.id
    assert dns.query.tcp(q, LOOP, port=up.port, timeout=2).answer  # TCP has no other port


def test_truncate_sets_tc_on_udp_only(up: FakeUpstream) -> None:
    up.mode = "truncate"
    r = dns.query.udp(query(), LOOP, port=up.port, timeout=2)
    assert r.flags & dns.flags.TC and not r.answer and r.question
    r = dns.query.tcp(query(), LOOP, port=up.port, timeout=2)
    assert not r.flags & dns.flags.TC and r.answer


@pytest.mark.parametrize(
    ("edns", "payload", "truncated"),
    [(-1, 0, True), (0, 512, True), (0, 1232, False), (0, 4096, False)],
)
def test_big_respects_client_udp_size(
    up: FakeUpstream, edns: int, payload: int, truncated: bool
) -> None:
    up.mode = "big"
    q = query(use_edns=edns, payload=payload)
    wire, _ = udp_raw(up.port, q)
    r = dns.message.from_wire(wire)
    assert bool(r.flags & dns.flags.TC) == truncated
    if truncated:
        assert not r.answer and len(wire) <= 512
    else:
        assert len(r.answer[0]) == 40 and 512 < len(wire) <= 1232


def test_big_over_tcp_is_whole(up: FakeUpstream) -> None:
    up.mode = "big"
    r = dns.query.tcp(query(), LOOP, port=up.port, timeout=2)
    assert len(r.answer[0]) == 40 and not r.flags & dns.flags.TC


def test_servfail(up: FakeUpstream) -> None:
    up.mode = "servfail"
    assert dns.query.udp(query(), LOOP, port=up.port, timeout=2).rcode() == dns.rcode.SERVFAIL


def test_garbage_echoes_txid_then_noise(up: FakeUpstream) -> None:
    up.mode = "garbage"
    q = query()
    wire, _ = udp_raw(up.port, q)
    with socket.create_connection((LOOP, up.port), timeout=2) as s:
        tcp_send(s, q)
        tcp_wire = tcp_recv(s)
    for got in (wire, tcp_wire):
        assert got[:2] == q.to_wire()[:2]
        with pytest.raises(Exception):  # noqa: B017 - any parse error will do
            dns.message.from_wire(got)


def test_silent_records_but_never_replies(up: FakeUpstream) -> None:
    up.mode = "silent"
    with pytest.raises(TimeoutError):
        udp_raw(up.port, query(), timeout=0.2)
    up.wait_queries(1, timeout=1)
    with pytest.raises(TimeoutError, match="saw 1 of 2"):
        up.wait_queries(2, timeout=0.05)


def test_mode_can_change_while_running(up: FakeUpstream) -> None:
    up.mode = "servfail"
    assert dns.query.udp(query(), LOOP, port=up.port, timeout=2).rcode() == dns.rcode.SERVFAIL
    up.mode = "ok"
    assert dns.query.udp(query(), LOOP, port=up.port, timeout=2).rcode() == dns.rcode.NOERROR
    with pytest.raises(ValueError):
        up.mode = "sleepy"


def test_answer_returning_none_means_no_reply() -> None:
    with FakeUpstream(lambda q: None) as peer, pytest.raises(TimeoutError):
        udp_raw(peer.port, query(), timeout=0.2)


SLOW = 1.0  # far beyond a loopback round trip: the replies sent behind it finish first


def test_delayed_udp_queries_are_answered_concurrently() -> None:
    """A delayed reply holds up no later query: the first query is held for SLOW, and four
    sent after it without delay are all answered while it still waits (a peer answering one
    query at a time would answer it first). How long the delays take: bench/timings.py."""
    with FakeUpstream(delay=SLOW) as peer, socket.socket(socket.AF_INET,
                                                         socket.SOCK_DGRAM) as held:
        first = query("held.example")
        held.sendto(first.to_wire(), (LOOP, peer.port))
        peer.wait_queries(1)
        peer.delay = 0.0   # read per query on arrival: only the later ones are quick
        for i in range(4):
            q = query(f"n{i}.example")
            assert dns.message.from_wire(udp_raw(peer.port, q, timeout=5)[0]).id == q.id
        held.setblocking(False)
        with pytest.raises(BlockingIOError):
            held.recv(65535)              # the delay still holds the first reply...
        held.settimeout(5)
        assert dns.message.from_wire(held.recv(65535)).id == first.id   # ...then it comes


def test_tcp_pipelined_queries_are_answered_concurrently_on_one_connection() -> None:
    """RFC 7766 on one connection: replies in the order they finish, so three quick queries
    pipelined behind a delayed one come back before it."""
    with FakeUpstream(delay=SLOW) as peer:
        with socket.create_connection((LOOP, peer.port), timeout=5) as s:
            first = query("held.example")
            tcp_send(s, first)
            peer.wait_queries(1)
            peer.delay = 0.0
            quick = [query(f"n{i}.example") for i in range(3)]
            for q in quick:
                tcp_send(s, q)
            ids = [dns.message.from_wire(tcp_recv(s)).id for _ in range(4)]
            assert set(ids[:3]) == {q.id for q in quick} and ids[3] == first.id
            tcp_send(s, query())  # the connection stays open for more
            assert tcp_recv(s)
        assert peer.connections == 1 and peer.count("tcp") == 5


def test_wait_queries_wakes_on_arrival(up: FakeUpstream) -> None:
    """Woken by the arrival, not by its timeout: the sender forgets the query again unless
    the waiter returned within 10 s, so a waiter that only looked at its 30 s deadline would
    find 0 of 1 and raise."""
    returned = threading.Event()

    def send_then_forget() -> None:
        udp_raw(up.port, query())
        if not returned.wait(10):
            up.clear_queries()

    sender = threading.Thread(target=send_then_forget)
    sender.start()
    try:
        up.wait_queries(1, timeout=30)
    finally:
        returned.set()
        sender.join()


# ---------------------------------------------------------------- spoofing helpers


def test_spray_udp_sends_exactly_count_datagrams_cycling_payloads() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((LOOP, 0))
        sink.settimeout(1)
        sent = spray_udp(sink.getsockname(), [b"a", b"b"], 5)
        got = [sink.recv(10) for _ in range(5)]
    assert sent == 5 and got == [b"a", b"b", b"a", b"b", b"a"]
    with pytest.raises(ValueError):
        spray_udp(("192.0.2.1", 5300), [b"x"], 1)


def test_upstream_spray_comes_from_its_own_port_with_forged_txids(up: FakeUpstream) -> None:
    q = query()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((LOOP, 0))
        sink.settimeout(1)
        up.spray(sink.getsockname(), forge_replies(q, range(100, 103)), 3)
        replies = [sink.recvfrom(512) for _ in range(3)]
    assert {src for _, src in replies} == {(LOOP, up.port)}
    msgs = [dns.message.from_wire(w) for w, _ in replies]
    assert [m.id for m in msgs] == [100, 101, 102]
    assert msgs[0].answer[0][0].to_text() == "203.0.113.66"


# ---------------------------------------------------------------- DoT


def test_tls_answers_verifies_and_reuses_connections(ca: TestCA) -> None:
    ctx = ca.client_context()
    with TlsUpstream(ca=ca) as tu:
        assert tu.url() == f"tls://127.0.0.1:{tu.port}"
        r = dns.query.tls(
            query(), LOOP, port=tu.port, ssl_context=ctx, server_hostname="dns.test", timeout=2
        )
        assert r.answer and tu.connections == 1
        raw = socket.create_connection((LOOP, tu.port), timeout=2)
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:  # the IP SAN verifies too
            for _ in range(3):
                assert dns.query.tls(query(), LOOP, port=tu.port, sock=s, timeout=2).answer
        tu.wait_queries(4)
        assert tu.connections == 2 and tu.count("tls") == 4
        with pytest.raises(ssl.SSLCertVerificationError):
            dns.query.tls(query(), LOOP, port=tu.port, server_hostname="dns.test", timeout=2)


def test_tls_modes(ca: TestCA) -> None:
    ctx = ca.client_context()
    with TlsUpstream(ca=ca, mode="wrong_txid") as tu:
        with pytest.raises(dns.query.BadResponse):
            dns.query.tls(
                query(), LOOP, port=tu.port, ssl_context=ctx, server_hostname="dns.test", timeout=2
            )
        tu.mode = "truncate"  # a stream carries the whole answer
        r = dns.query.tls(
            query(), LOOP, port=tu.port, ssl_context=ctx, server_hostname="dns.test", timeout=2
        )
        assert r.answer and not r.flags & dns.flags.TC


# ---------------------------------------------------- DoH (aiohttp: dnspython needs httpx)


def doh_session(ca: TestCA) -> aiohttp.ClientSession:
    """A client trusting the test CA; cleanup_closed aborts TLS connections still closing when
    asyncio.run ends (a timed-out request), which would otherwise leak a socket on 3.11."""
    conn = aiohttp.TCPConnector(ssl=ca.client_context(), enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=conn)


async def doh_post(
    session: aiohttp.ClientSession, url: str, q: dns.message.Message, **kw: object
) -> tuple[int, bytes]:
    headers = {"content-type": "application/dns-message", "accept": "application/dns-message"}
    async with session.post(url, data=q.to_wire(), headers=headers, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.read()


def test_doh_post_get_and_connection_reuse(ca: TestCA) -> None:
    async def client(du: DohUpstream) -> None:
        async with doh_session(ca) as session:
            q = query()
            status, body = await doh_post(session, du.url, q)
            assert status == 200 and dns.message.from_wire(body).id == q.id
            dns_param = base64.urlsafe_b64encode(q.to_wire()).rstrip(b"=").decode()
            async with session.get(du.url, params={"dns": dns_param}) as resp:
                assert resp.status == 200
                assert resp.content_type == "application/dns-message"
                assert dns.message.from_wire(await resp.read()).answer
            # addressed by name: dial the IP, verify the 'dns.test' SAN
            status, _ = await doh_post(session, du.url, q, server_hostname="dns.test")
            assert status == 200
            async with session.post(du.url, data=b"x", headers={"content-type": "text/plain"}) as r:
                assert r.status == 415
            async with session.get(du.url, params={"dns": "!!"}) as resp:
                assert resp.status == 400

    with DohUpstream(ca=ca) as du:
        assert du.url == f"https://127.0.0.1:{du.port}/dns-query"
        asyncio.run(client(du))
        assert du.count("https") == 3
        assert du.connections == 2  # one per (host, server_hostname) pool key


def test_doh_modes(ca: TestCA) -> None:
    async def client(du: DohUpstream) -> None:
        async with doh_session(ca) as session:
            du.mode = "servfail"
            status, body = await doh_post(session, du.url, query())
            assert status == 200 and dns.message.from_wire(body).rcode() == dns.rcode.SERVFAIL
            du.mode = "http_error"
            assert (await doh_post(session, du.url, query()))[0] == 500
            du.mode = "wrong_txid"
            q = query()
            assert dns.message.from_wire((await doh_post(session, du.url, q))[1]).id != q.id
            du.mode = "silent"
            with pytest.raises(asyncio.TimeoutError):
                await doh_post(session, du.url, q, timeout=aiohttp.ClientTimeout(total=0.2))

    with DohUpstream(ca=ca) as du:
        asyncio.run(client(du))
    with pytest.raises(ValueError):
        FakeUpstream(mode="http_error")
