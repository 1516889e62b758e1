"""The pipeline's own decisions, through the real daemon on loopback with real clients.

Each test here was written against a defect found by outside testing (differential runs,
EDNS compliance, review) and fails on the code before its fix: CD in the cache key, outsiders
and their replies, NOTIMP for unknown opcodes, ANY and existence, the in-flight bound, the
clock, and a failed start that closes what it opened.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.conftest import DaemonThread, FakeClock
from tests.peers.dnsserver import FakeUpstream, default_answer

OUTSIDER = "127.0.0.1"      # not in access.allow below: an outsider we can send from
INSIDER = "127.0.0.2"


def _udp(d: DaemonThread, wire: bytes, source: str = "127.0.0.1",
         timeout: float = 3.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(wire, ("127.0.0.1", d.port))
        return s.recv(65535)


def validating_answer(q: dns.message.Message) -> dns.message.Message:
    """An upstream that validates: SERVFAIL for the bogus name unless the client set CD."""
    if q.question[0].name.to_text().lower().startswith("bogus.") and \
            not q.flags & dns.flags.CD:
        r = dns.message.make_response(q)
        r.set_rcode(dns.rcode.SERVFAIL)
        return r
    return default_answer(q)


def test_cd_answer_is_never_served_to_a_client_without_cd(make_daemon) -> None:
    with FakeUpstream(validating_answer) as up:
        d = make_daemon({"upstreams": [up.url()], "upstream_timeout": "1s"})
        assert d.query("bogus.example", "A").rcode() == dns.rcode.SERVFAIL
        cd = dns.message.make_query("bogus.example", "A", use_edns=0)
        cd.flags |= dns.flags.CD
        r = dns.message.from_wire(_udp(d, cd.to_wire()))
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        # The CD=1 answer is in the cache now; a client that did not set CD must not get it.
        assert d.query("bogus.example", "A").rcode() == dns.rcode.SERVFAIL
        again = dns.message.from_wire(_udp(d, cd.to_wire()))
        assert again.rcode() == dns.rcode.NOERROR and again.answer


@pytest.fixture
def guarded(make_daemon, upstream: FakeUpstream) -> tuple[DaemonThread, FakeClock]:
    clock = FakeClock()
    d = make_daemon({"upstreams": [upstream.url()], "access": {"allow": [f"{INSIDER}/32"]},
                     "ratelimit": {"enabled": False}}, clock=clock)
    return d, clock


def test_outsider_refused_is_no_larger_than_its_query_and_has_no_text(guarded) -> None:
    d, _clock = guarded
    plain = dns.message.make_query("example.com", "A", use_edns=False)
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    edns = dns.message.make_query("example.com", "A", use_edns=0, options=[cookie],
                                  want_dnssec=True)
    for q in (plain, edns):
        wire = q.to_wire()
        raw = _udp(d, wire, OUTSIDER)
        r = dns.message.from_wire(raw)
        assert r.rcode() == dns.rcode.REFUSED
        assert len(raw) <= len(wire), (len(raw), len(wire))
        assert not r.options or all(o.otype != dns.edns.EDE for o in r.options)
    assert d.query("example.com", "A", source=INSIDER).answer


def test_outsider_never_gets_formerr(guarded) -> None:
    """A malformed packet from an outsider is dropped; the REFUSED of its next, well-formed
    query is the first datagram back (UDP on loopback keeps order, the loop is single)."""
    d, _clock = guarded
    bad = struct.pack("!6H", 0x1111, 0x0100, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2
    good = dns.message.make_query("example.com", "A")
    good.id = 0x2222
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((OUTSIDER, 0))
        s.settimeout(3)
        s.sendto(bad, ("127.0.0.1", d.port))
        s.sendto(good.to_wire(), ("127.0.0.1", d.port))
        first = dns.message.from_wire(s.recv(65535))
    assert first.id == 0x2222 and first.rcode() == dns.rcode.REFUSED
    # an insider's malformed packet still gets its FORMERR
    raw = _udp(d, bad, INSIDER)
    assert raw[:2] == b"\x11\x11" and raw[3] & 0xF == dns.rcode.FORMERR


def test_outsider_refusals_are_rate_limited(guarded) -> None:
    """The clock stands still, so the bucket never refills: a burst of refusals, then none."""
    d, _clock = guarded
    sent = 60
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((OUTSIDER, 0))
        for i in range(sent):
            q = dns.message.make_query(f"n{i}.example", "A")
            s.sendto(q.to_wire(), ("127.0.0.1", d.port))
        wait_for(lambda: d.metric("sinkhole_queries_total",
                                  {"transport": "udp", "type": "A", "result": "refused"})
                 + d.metric("sinkhole_queries_total",
                            {"transport": "udp", "type": "A", "result": "dropped"}) >= sent)
        # Everything sent before this insider's answer has been written to the socket.
        assert d.query("example.com", "A", source=INSIDER).answer
        s.setblocking(False)
        replies = 0
        while True:
            try:
                s.recv(65535)
            except BlockingIOError:
                break
            replies += 1
    assert 1 <= replies <= 10, replies


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.02)


def test_unknown_opcode_without_question_gets_notimp(daemon: DaemonThread) -> None:
    for opcode in (dns.opcode.NOTIFY, dns.opcode.UPDATE, 3, 6):
        header = struct.pack("!6H", 0x3333, opcode << 11, 0, 0, 0, 0)
        raw = _udp(daemon, header)
        assert raw[:2] == b"\x33\x33"
        assert raw[3] & 0xF == dns.rcode.NOTIMP, opcode
        assert (raw[2] >> 3) & 0xF == opcode         # the opcode is echoed
    header = struct.pack("!6H", 0x4444, 0, 0, 0, 0, 0)  # a QUERY without a question: FORMERR
    assert _udp(daemon, header)[3] & 0xF == dns.rcode.FORMERR


def any_answer(q: dns.message.Message) -> dns.message.Message:
    """ANY for host.example: two RRsets (a real authoritative server's full answer)."""
    name = q.question[0].name
    if q.question[0].rdtype == dns.rdatatype.ANY and name.to_text().lower() == "host.example.":
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "TXT", '"x" ' * 60))
        return r
    return default_answer(q)


def test_any_follows_the_upstream_on_existence(make_daemon) -> None:
    with FakeUpstream(any_answer) as up:
        _any_checks(make_daemon({"upstreams": [up.url()]}))


def _any_checks(daemon: DaemonThread) -> None:
    nx = daemon.query("gone.nx.test", "ANY")
    assert nx.rcode() == dns.rcode.NXDOMAIN and not nx.answer
    assert any(rr.rdtype == dns.rdatatype.SOA for rr in nx.authority)
    alias = daemon.query("www.cname.test", "ANY")
    assert alias.rcode() == dns.rcode.NOERROR
    assert [rr.rdtype for rr in alias.answer][0] == dns.rdatatype.CNAME
    exists = daemon.query("host.example", "ANY")   # exists: the RFC 8482 minimal answer
    assert exists.rcode() == dns.rcode.NOERROR
    assert [rr.rdtype for rr in exists.answer] == [dns.rdatatype.HINFO]


def test_in_flight_bound_sheds_with_servfail_and_ede(make_daemon) -> None:
    with FakeUpstream(mode="silent") as up:
        d = make_daemon({"upstreams": [up.url()], "upstream_timeout": "2s",
                         "upstream_max_in_flight": 2})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            for i in range(3):
                q = dns.message.make_query(f"slow{i}.example", "A", use_edns=0)
                q.id = 100 + i
                s.sendto(q.to_wire(), ("127.0.0.1", d.port))
            first = dns.message.from_wire(s.recv(65535))   # the shed one comes back at once
        assert first.id == 102 and first.rcode() == dns.rcode.SERVFAIL
        assert any(o.otype == dns.edns.EDE for o in first.options)
        assert d.metric("sinkhole_queries_total",
                        {"transport": "udp", "type": "A", "result": "overloaded"}) == 1


def test_cached_answer_counts_down_and_expires_on_the_injected_clock(make_daemon) -> None:
    clock = FakeClock()
    with FakeUpstream(ttl=300) as up:
        d = make_daemon({"upstreams": [up.url()]}, clock=clock)
        assert d.query("tick.example", "A").answer[0].ttl == 300
        clock.advance(120)
        assert d.query("tick.example", "A").answer[0].ttl == 180
        assert len(up.queries) == 1
        clock.advance(181)
        assert d.query("tick.example", "A").answer[0].ttl == 300   # expired: asked again
        assert len(up.queries) == 2


def test_failed_start_closes_what_it_opened(tmp_path: Path, upstream: FakeUpstream) -> None:
    """The second listen address is taken: the first one, already bound, is released, and the
    store is closed (its writer thread gone), so a corrected restart can bind and open both."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    try:
        d = DaemonThread({"upstreams": [upstream.url()],
                          "listen": {"dns": [f"127.0.0.1:{free}", f"127.0.0.1:{port}"],
                                     "http": "127.0.0.1:0"}})
        d._thread.start()
        with pytest.raises(OSError):
            d.call(d.daemon.start())
        writer = d.daemon.store._thread
        assert writer is None or not writer.is_alive(), "the store outlived a failed start"
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as again:
                again.bind(("127.0.0.1", free))        # released by the failed start
    finally:
        taken.close()
        d.loop.call_soon_threadsafe(d.loop.stop)
        d._thread.join(10)
