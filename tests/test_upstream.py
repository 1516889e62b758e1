"""The upstream layer against real loopback peers, through the real daemon: txids and source
ports from a CSPRNG, 0x20 letter-case randomisation on UDP, SERVFAIL/REFUSED as failures (so a
stale answer can be served), whole DoH bodies, and stream queries that cross an upstream close.
"""

from __future__ import annotations

import concurrent.futures
import random
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import pytest

from tests.conftest import DaemonThread, FakeClock
from tests.peers.dnsserver import DohUpstream, FakeUpstream, TlsUpstream
from tests.peers.tlsca import TestCA

# 28 letters: a reply echoing it in plain lower case matches our random mix 1 time in 2**28
LETTERS = "zeroxtwentyforgerydefence.test"


def ede_codes(r) -> list[int]:
    return [o.code for o in r.options if o.otype == 15]


def seen_names(peer: FakeUpstream, transport: str | None = None) -> list[str]:
    """The question names as the peer received them, case preserved."""
    with peer._cond:
        return [m.question[0].name.to_text() for t, m, _ in peer.queries
                if transport in (None, t)]


@pytest.fixture(scope="module")
def ca() -> Iterator[TestCA]:
    with TestCA() as ca:
        yield ca


# ---------------------------------------------------------------- txids and source ports


def _ephemeral_range() -> tuple[int, int]:
    lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(lo), int(hi)


def test_source_ports_are_spread_over_the_ephemeral_range(
        daemon: DaemonThread, upstream: FakeUpstream) -> None:
    """Every upstream query leaves from its own port, drawn over the whole ephemeral range
    (not a sequence a spoofer could follow, and never below it, where services listen)."""
    lo, hi = _ephemeral_range()
    for i in range(64):
        assert daemon.query(f"port{i}.test", "A").answer
    upstream.wait_queries(64)
    ports = [peer[1] for _t, _m, peer in upstream.queries]
    assert all(lo <= p <= hi for p in ports), (lo, hi, sorted(ports))
    assert len(set(ports)) >= 60 and ports != sorted(ports), "spread, not a sequence"
    steps = [abs(b - a) for a, b in zip(ports, ports[1:], strict=False)]
    assert sorted(steps)[len(steps) // 2] > (hi - lo) // 16, "neighbours far apart"


def test_txids_are_not_predictable_from_the_random_module(daemon: DaemonThread,
                                                          upstream: FakeUpstream) -> None:
    """A Mersenne Twister's outputs are predictable once its state is known: seeding the
    process's `random` must tell an attacker nothing about our txids."""
    seed, saved = 20240611, random.getstate()
    try:
        random.seed(seed)
        for i in range(32):
            assert daemon.query(f"txid{i}.test", "A").answer
    finally:
        random.setstate(saved)
    upstream.wait_queries(32)
    twister = random.Random(seed)
    # getrandbits(16) is the top half of one 32-bit output, whoever else drew from it
    predicted = {twister.getrandbits(32) >> 16 for _ in range(1000)}
    txids = [m.id for _t, m, _p in upstream.queries]
    assert sum(t in predicted for t in txids) < 8, "txids follow the seeded random module"
    assert len(set(txids)) >= 30


# ---------------------------------------------------------------- 0x20 letter case


def test_udp_question_case_is_randomised_and_the_client_keeps_its_own(
        daemon: DaemonThread, upstream: FakeUpstream) -> None:
    r = daemon.query(LETTERS, "A")
    assert r.answer and r.question[0].name.to_text() == LETTERS + "."
    sent = seen_names(upstream)[0]
    assert sent.lower() == LETTERS + "." and sent != LETTERS + ".", sent
    # the cache key is case-insensitive; each client still gets its own case back
    shouted = LETTERS.upper()
    r = daemon.query(shouted, "A")
    assert r.answer and r.question[0].name.to_text() == shouted + "."
    assert upstream.count() == 1
    # a fresh secret mix per query, not one fixed pattern
    for i in range(6):
        assert daemon.query(f"{i}{LETTERS}", "A").answer
    patterns = {name[1:] for name in seen_names(upstream)[1:]}
    assert len(patterns) == 6, patterns


def test_reply_not_echoing_our_case_is_forged_unless_randomize_case_is_off(make_daemon) -> None:
    with FakeUpstream(mode="lower_question") as up:
        d = make_daemon({"upstreams": [up.url()], "upstream_timeout": "400ms"})
        r = d.query(LETTERS, "A", use_edns=0)
        assert r.rcode() == dns.rcode.SERVFAIL and not r.answer
        assert 22 in ede_codes(r)   # we waited for a real answer until the deadline
        assert d.metric("sinkhole_upstream_forged_replies_total") == 1
        off = make_daemon({"upstreams": [{"url": up.url(), "randomize_case": False}],
                           "upstream_timeout": "400ms"})
        r = off.query(LETTERS, "A")
        assert r.answer and r.rcode() == dns.rcode.NOERROR
        assert seen_names(up)[-1] == LETTERS + "."   # sent as asked: plain lower case
        assert off.metric("sinkhole_upstream_forged_replies_total") == 0


def test_streams_and_the_truncation_retry_ask_in_plain_case(make_daemon) -> None:
    with FakeUpstream(mode="truncate") as up, FakeUpstream() as tcp:
        d = make_daemon({"upstreams": [up.url()]})
        assert d.query(LETTERS, "A", tcp=True).answer
        (udp_name,), (tcp_name,) = seen_names(up, "udp"), seen_names(up, "tcp")
        assert udp_name != LETTERS + "." and tcp_name == LETTERS + "."
        s = make_daemon({"upstreams": [tcp.url("tcp")]})
        assert s.query(LETTERS, "A").answer
        assert seen_names(tcp) == [LETTERS + "."]


# ---------------------------------------------------------------- SERVFAIL / REFUSED


def test_servfail_and_refused_fail_over_and_are_reported(make_daemon) -> None:
    with FakeUpstream(mode="servfail") as sf, FakeUpstream(mode="refused") as rf, \
            FakeUpstream() as good:
        d = make_daemon({"upstreams": [sf.url(), rf.url(), good.url()]})
        r = d.query("failover.test", "A")
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        for url, outcome in ((sf.url(), "servfail"), (rf.url(), "refused"), (good.url(), "ok")):
            assert d.metric("sinkhole_upstream_requests_total",
                            {"upstream": url, "outcome": outcome}) == 1, url


@pytest.mark.parametrize("modes", [("servfail", "servfail"), ("refused", "servfail"),
                                   ("silent", "servfail"), ("servfail", "silent")])
def test_every_upstream_failing_is_our_servfail_not_theirs(make_daemon, modes) -> None:
    """The last upstream's SERVFAIL is not relayed as an answer: the client gets our SERVFAIL
    with an EDE, Network Error (23) since not every failure was a timeout."""
    with FakeUpstream(mode=modes[0]) as a, FakeUpstream(mode=modes[1]) as b:
        d = make_daemon({"upstreams": [a.url(), b.url()], "upstream_timeout": "600ms"})
        r = d.query("allfail.test", "A", use_edns=0)
        assert r.rcode() == dns.rcode.SERVFAIL and ede_codes(r) == [23]
        assert a.count() == 1 and b.count() == 1
        assert d.metric("sinkhole_queries_total",
                        {"transport": "udp", "type": "A", "result": "servfail"}) == 1


def test_stale_answer_served_when_every_upstream_servfails(make_daemon) -> None:
    clock = FakeClock()
    with FakeUpstream(ttl=60) as a, FakeUpstream(ttl=60) as b:
        d = make_daemon({"upstreams": [a.url(), b.url()], "upstream_timeout": "1s"}, clock)
        assert d.query("stale.test", "A").answer
        a.mode = b.mode = "servfail"
        clock.advance(61)   # past the TTL, inside the serve-stale window
        r = d.query("stale.test", "A", use_edns=0)
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0].ttl == 30
        assert 3 in ede_codes(r)   # EDE Stale Answer
        assert a.count() + b.count() == 3   # both were asked before falling back to stale
        assert d.metric("sinkhole_queries_total",
                        {"transport": "udp", "type": "A", "result": "stale"}) == 1


# ---------------------------------------------------------------- DNS over HTTPS bodies


def test_doh_body_in_several_chunks_is_read_whole(make_daemon, ca: TestCA) -> None:
    with DohUpstream(ca=ca, mode="big") as up:
        up.chunks = 5   # ~700 bytes in 5 flushed pieces, chunked transfer encoding
        d = make_daemon({"upstreams": [up.url], "upstream_ca_file": ca.ca_pem_path})
        r = d.query("chunked.test", "A", use_edns=0, payload=1232)
        assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.TC
        assert len(r.answer[0]) == 40
        assert d.metric("sinkhole_upstream_forged_replies_total") == 0


@pytest.mark.parametrize("chunks", [0, 4], ids=["content-length", "chunked"])
def test_doh_body_over_64k_is_an_upstream_error(make_daemon, ca: TestCA, chunks: int) -> None:
    with DohUpstream(ca=ca) as up:
        up.chunks, up.body_padding = chunks, 70_000   # a real reply, then 70 kB of zeros
        d = make_daemon({"upstreams": [up.url], "upstream_ca_file": ca.ca_pem_path,
                         "upstream_timeout": "2s"})
        r = d.query("oversized.test", "A", use_edns=0)
        assert r.rcode() == dns.rcode.SERVFAIL and not r.answer and ede_codes(r) == [23]
        assert d.metric("sinkhole_upstream_requests_total",
                        {"upstream": up.url, "outcome": "error"}) == 1


# ---------------------------------------------------------------- TCP and TLS streams


def _stream_daemon(make_daemon, peer: FakeUpstream | TlsUpstream, ca: TestCA,
                   timeout: str = "2s") -> DaemonThread:
    if isinstance(peer, TlsUpstream):
        return make_daemon({"upstreams": [f"tls://{peer.addr}#dns.test"],
                            "upstream_ca_file": ca.ca_pem_path, "upstream_timeout": timeout})
    return make_daemon({"upstreams": [peer.url("tcp")], "upstream_timeout": timeout})


@pytest.mark.parametrize("proto", ["tcp", "tls"])
def test_query_crossing_an_upstream_close_is_retried_once(make_daemon, ca: TestCA,
                                                          proto: str) -> None:
    """The idle-close race made deterministic: the peer reads the query and closes the
    connection without answering, as a server whose idle timer fired just then would."""
    with (TlsUpstream(ca=ca) if proto == "tls" else FakeUpstream()) as peer:
        d = _stream_daemon(make_daemon, peer, ca)
        assert d.query("warm.test", "A").answer   # the kept-open connection
        peer.close_next = 1
        r = d.query("race.test", "A")
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        assert peer.connections == 2 and peer.count() == 3
        peer.close_next = 2   # closed again on the retry: once only, then a failure
        r = d.query("closed-twice.test", "A", use_edns=0)
        assert r.rcode() == dns.rcode.SERVFAIL and ede_codes(r) == [23]
        assert peer.connections == 3 and peer.count() == 5
        assert d.query("after.test", "A").answer


def test_queries_pending_on_a_closed_connection_retry_together(make_daemon, ca: TestCA) -> None:
    """Several pipelined queries are in flight when the upstream closes their connection:
    every one of them is answered over the next connection, none is lost."""
    with FakeUpstream() as peer:
        d = _stream_daemon(make_daemon, peer, ca, timeout="4s")
        assert d.query("warm.test", "A").answer
        peer.delay = 1.0   # held unanswered on connection 1 until it closes
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            held = [pool.submit(d.query, f"held{i}.test", "A") for i in range(2)]
            peer.wait_queries(3)   # both are on connection 1, read by the peer
            peer.close_next = 1
            closer = pool.submit(d.query, "closer.test", "A")
            replies = [f.result() for f in (*held, closer)]
        assert all(r.rcode() == dns.rcode.NOERROR and r.answer for r in replies)
        assert peer.connections == 2
        # connection 2 carried the three retries; its own queries keep working
        peer.delay = 0.0
        assert d.query("later.test", "A").answer and peer.connections == 2
