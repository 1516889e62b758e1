"""Serving: UDP and TCP per RFC 1035/6891/7766, malformed packets, access control."""

from __future__ import annotations

import socket
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.conftest import DaemonThread, dig
from tests.peers.dnsserver import FakeUpstream, default_answer
from tests.test_peers import tcp_recv


def raw_udp(port: int, payload: bytes, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def tcp_connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def tcp_send(s: socket.socket, wire: bytes) -> None:
    s.sendall(struct.pack("!H", len(wire)) + wire)


def test_udp_and_tcp_answer_with_dig(daemon: DaemonThread) -> None:
    out = dig(daemon.port, "example.com", "A")
    assert "status: NOERROR" in out and "192.0.2.1" in out
    out = dig(daemon.port, "+tcp", "example.com", "AAAA")
    assert "status: NOERROR" in out and "2001:db8::1" in out and "(TCP)" in out


def test_reply_echoes_question_case_and_never_sets_aa(daemon: DaemonThread) -> None:
    r = daemon.query("ExAmPlE.CoM", "A")
    assert r.question[0].name.to_text() == "ExAmPlE.CoM."
    assert not r.flags & dns.flags.AA
    assert r.flags & dns.flags.RA


def test_tcp_pipelined_queries_answered_out_of_order(daemon: DaemonThread,
                                                     upstream: FakeUpstream) -> None:
    daemon.query("fast1.test", "A")
    daemon.query("fast2.test", "A")
    upstream.delay = 0.5
    with tcp_connect(daemon.port) as s:
        slow = dns.message.make_query("slow.test", "A")
        fast = [dns.message.make_query(f"fast{i}.test", "A") for i in (1, 2)]
        for m in (slow, *fast):
            tcp_send(s, m.to_wire())
        got = [dns.message.from_wire(tcp_recv(s)) for _ in range(3)]
    assert [m.id for m in got] == [fast[0].id, fast[1].id, slow.id]
    assert all(m.rcode() == dns.rcode.NOERROR and m.answer for m in got)


def test_tcp_idle_connection_closed(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon({"upstreams": [upstream.url()], "server": {"tcp_idle_timeout": "300ms"}})
    with tcp_connect(d.port) as s:
        s.settimeout(5)
        start = time.monotonic()
        assert s.recv(1) == b""          # EOF: the server closed the idle connection
        assert time.monotonic() - start < 3


def test_tcp_connection_cap(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon({"upstreams": [upstream.url()], "server": {"tcp_max_connections": 2}})
    kept = [tcp_connect(d.port) for _ in range(2)]
    q = dns.message.make_query("cap.test", "A")
    for s in kept:                      # both admitted connections work
        tcp_send(s, q.to_wire())
        assert dns.message.from_wire(tcp_recv(s)).answer
    with tcp_connect(d.port) as extra:
        extra.settimeout(5)
        tcp_send(extra, q.to_wire())
        with pytest.raises(ConnectionError):
            tcp_recv(extra)
    assert d.metric("sinkhole_tcp_connections_rejected_total") == 1
    for s in kept:
        s.close()


def test_edns_advertises_1232_and_copies_do(daemon: DaemonThread) -> None:
    r = daemon.query("edns.test", "A", use_edns=0, payload=4096, want_dnssec=True)
    assert r.edns == 0 and r.payload == 1232
    assert r.ednsflags & dns.flags.DO
    r = daemon.query("edns.test", "A", use_edns=0, payload=4096)
    assert not r.ednsflags & dns.flags.DO


def test_no_opt_without_edns(daemon: DaemonThread) -> None:
    r = daemon.query("plain.test", "A", use_edns=False)
    assert r.edns == -1 and r.answer


def test_udp_reply_over_client_size_truncated(make_daemon) -> None:
    with FakeUpstream(mode="big") as up:
        d = make_daemon({"upstreams": [up.url()]})
        r = d.query("big.test", "A", use_edns=False)
        assert r.flags & dns.flags.TC and not r.answer
        r = d.query("big.test", "A", use_edns=0, payload=600)
        assert r.flags & dns.flags.TC
        r = d.query("big.test", "A", tcp=True)
        assert not r.flags & dns.flags.TC and len(r.answer[0]) == 40
        out = dig(d.port, "+bufsize=512", "big.test")   # dig retries over TCP by itself
        assert "Truncated, retrying in TCP mode" in out and out.count("IN\tA") >= 40


def ten_records(q: dns.message.Message) -> dns.message.Message:
    r = default_answer(q)
    rrset = r.answer[0]
    for i in range(2, 12):
        rrset.add(dns.rdata.from_text("IN", "A", f"192.0.2.{i}"))
    return r


def test_small_advertised_size_counts_as_512(make_daemon) -> None:
    import dns.rdata  # noqa: F401  (used by ten_records)
    with FakeUpstream(ten_records) as up:
        d = make_daemon({"upstreams": [up.url()]})
        r = d.query("ten.test", "A", use_edns=0, payload=100)
        assert not r.flags & dns.flags.TC and len(r.answer[0]) == 11


def test_edns_version_1_gets_badvers(daemon: DaemonThread, upstream: FakeUpstream) -> None:
    r = daemon.query("v1.test", "A", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS
    assert upstream.count() == 0


def test_unknown_edns_option_ignored(daemon: DaemonThread) -> None:
    opt = dns.edns.GenericOption(65001, b"hello")
    r = daemon.query("opt.test", "A", use_edns=0, options=[opt])
    assert r.rcode() == dns.rcode.NOERROR and r.answer


def _header(txid: int, flags: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", txid, flags, qd, an, ns, ar)


QUESTION = b"\x07example\x03com\x00\x00\x01\x00\x01"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def test_two_opt_records_formerr(daemon: DaemonThread) -> None:
    reply = raw_udp(daemon.port, _header(7, 0x0100, 1, ar=2) + QUESTION + OPT + OPT)
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize(("packet", "rcode"), [
    (_header(1, 0x0100, 1) + b"\x07exam", dns.rcode.FORMERR),                 # name truncated
    (_header(2, 0x0100, 1) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
     dns.rcode.FORMERR),                                                      # label > 63
    (_header(3, 0x0100, 2) + QUESTION + QUESTION, dns.rcode.FORMERR),          # two questions
    (_header(4, 0x0100, 0), dns.rcode.FORMERR),                                # no question
    (_header(5, 0x0100, 1, ar=1) + QUESTION + b"\x00\x00", dns.rcode.FORMERR),  # lying arcount
    (_header(6, 0x0100, 1) + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),  # pointer loop
    (_header(8, 0x1000 | 0x0100, 1) + QUESTION, dns.rcode.NOTIMP),             # opcode STATUS
    (_header(9, 0x2000, 1) + QUESTION, dns.rcode.NOTIMP),                      # opcode NOTIFY
])
def test_malformed_packets_get_error_replies(daemon: DaemonThread, upstream: FakeUpstream,
                                             packet: bytes, rcode: int) -> None:
    reply = raw_udp(daemon.port, packet)
    assert reply is not None and len(reply) >= 12
    txid, flags = struct.unpack("!HH", reply[:4])
    assert txid == struct.unpack("!H", packet[:2])[0]
    assert flags & 0x8000 and flags & 0xF == rcode
    assert upstream.count() == 0
    assert daemon.query("still.alive.test", "A").answer


@pytest.mark.parametrize("packet", [
    b"", b"\x01", b"\x00" * 11,                       # shorter than a header
    _header(10, 0x8180, 1) + QUESTION,               # a response (QR=1): never answered
])
def test_undecodable_or_response_packets_dropped_and_counted(daemon: DaemonThread,
                                                             packet: bytes) -> None:
    assert raw_udp(daemon.port, packet, timeout=0.5) is None
    assert daemon.metric("sinkhole_queries_total",
                         {"transport": "udp", "type": "other", "result": "dropped"}) == 1


def test_malformed_counted_by_reason(daemon: DaemonThread) -> None:
    raw_udp(daemon.port, _header(3, 0x0100, 2) + QUESTION + QUESTION)
    assert daemon.metric("sinkhole_malformed_packets_total",
                         {"transport": "udp", "reason": "question count is not 1"}) == 1


def test_malformed_tcp_message_answered_and_connection_kept(daemon: DaemonThread) -> None:
    with tcp_connect(daemon.port) as s:
        tcp_send(s, _header(11, 0x0100, 1) + b"\x07exam")
        assert dns.message.from_wire(tcp_recv(s)).rcode() == dns.rcode.FORMERR
        q = dns.message.make_query("after.test", "A")
        tcp_send(s, q.to_wire())
        assert dns.message.from_wire(tcp_recv(s)).answer


def test_access_list_refuses_outsiders(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon({"upstreams": [upstream.url()], "access": {"allow": ["127.0.0.2/32"]}})
    r = d.query("x.test", "A", source="127.0.0.1", use_edns=0)
    assert r.rcode() == dns.rcode.REFUSED
    assert not any(o.otype == 15 for o in r.options)   # no text for outsiders: never larger
    assert d.query("x.test", "A", source="127.0.0.2").answer
    r = d.query("x.test", "A", tcp=True, source="127.0.0.3")
    assert r.rcode() == dns.rcode.REFUSED
    assert upstream.count() == 1
    assert d.metric("sinkhole_queries_total",
                    {"transport": "udp", "type": "A", "result": "refused"}) == 1


def test_healthz(daemon: DaemonThread) -> None:
    import urllib.request
    with urllib.request.urlopen(daemon.http + "/healthz", timeout=5) as resp:
        assert resp.status == 200
