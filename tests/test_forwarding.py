"""Forwarding: RFC 5452 reply checks, TCP on truncation, failover, SERVFAIL+EDE, stale answers,
shared in-flight queries, and encrypted upstreams (DoT, DoH) against a local test CA."""

from __future__ import annotations

import concurrent.futures
import time

import dns.flags
import dns.rcode
import pytest

from tests.conftest import DaemonThread, FakeClock
from tests.peers.dnsserver import DohUpstream, FakeUpstream, TlsUpstream
from tests.peers.tlsca import TestCA


def ede_codes(r) -> list[int]:
    return [o.code for o in r.options if o.otype == 15]


def test_fresh_source_port_and_txid_per_query(daemon: DaemonThread,
                                              upstream: FakeUpstream) -> None:
    ids, ports = [], set()
    for i in range(8):
        r = daemon.query(f"n{i}.test", "A")
        ids.append(r.id)
    upstream.wait_queries(8)
    sent = [(m.id, peer[1]) for _t, m, peer in upstream.queries]
    ports = {p for _id, p in sent}
    assert len(ports) == 8, "each upstream query uses a fresh random source port"
    assert len({i for i, _p in sent}) >= 7, "txids are random"
    assert all(i != j for (i, _p), j in zip(sent, ids, strict=True)), "client txid not reused"


@pytest.mark.parametrize("mode", ["wrong_txid", "wrong_question", "other_port", "garbage"])
def test_mismatched_upstream_replies_are_dropped(make_daemon, mode: str) -> None:
    with FakeUpstream(mode=mode) as up:
        d = make_daemon({"upstreams": [up.url()], "upstream_timeout": "400ms"})
        start = time.monotonic()
        r = d.query("victim.test", "A", use_edns=0)
        assert r.rcode() == dns.rcode.SERVFAIL and not r.answer
        assert time.monotonic() - start < 1.5
        assert 22 in ede_codes(r)          # No Reachable Authority: the upstream timed out
        if mode != "other_port":           # the kernel drops other-port datagrams itself
            assert d.metric("sinkhole_upstream_forged_replies_total") >= 1


def test_truncated_upstream_reply_retried_over_tcp(make_daemon) -> None:
    with FakeUpstream(mode="truncate") as up:
        d = make_daemon({"upstreams": [up.url()]})
        r = d.query("tc.test", "A", tcp=True)
        assert r.answer and not r.flags & dns.flags.TC
        assert up.count("udp") == 1 and up.count("tcp") == 1


def test_timeout_fails_over_to_next_upstream(make_daemon) -> None:
    with FakeUpstream(mode="silent") as dead, FakeUpstream() as alive:
        d = make_daemon({"upstreams": [dead.url(), alive.url()], "upstream_timeout": "1s"})
        start = time.monotonic()
        r = d.query("failover.test", "A")
        assert r.answer and time.monotonic() - start < 1.5
        # the failed upstream is now tried after the healthy one
        r = d.query("failover2.test", "A")
        assert r.answer and dead.count() == 1
        assert d.metric("sinkhole_upstream_requests_total",
                        {"upstream": dead.url(), "outcome": "timeout"}) == 1


def test_servfail_upstream_fails_over(make_daemon) -> None:
    with FakeUpstream(mode="servfail") as bad, FakeUpstream() as good:
        d = make_daemon({"upstreams": [bad.url(), good.url()]})
        assert d.query("sf.test", "A").answer


def test_all_upstreams_down_servfail_within_timeout(make_daemon) -> None:
    with FakeUpstream(mode="silent") as a, FakeUpstream(mode="silent") as b:
        d = make_daemon({"upstreams": [a.url(), b.url()], "upstream_timeout": "600ms"})
        start = time.monotonic()
        r = d.query("down.test", "A", use_edns=0, timeout=5)
        elapsed = time.monotonic() - start
        assert r.rcode() == dns.rcode.SERVFAIL and 22 in ede_codes(r)
        assert 0.5 < elapsed < 1.2
        assert a.count() == 1 and b.count() == 1


def test_refused_upstream_gives_network_error_ede(make_daemon) -> None:
    with FakeUpstream() as up:
        url = up.url()
    d = make_daemon({"upstreams": [url], "upstream_timeout": "500ms"})   # nothing listens now
    r = d.query("closed.test", "A", use_edns=0)
    assert r.rcode() == dns.rcode.SERVFAIL and 23 in ede_codes(r)


def test_stale_answer_served_when_upstreams_fail(make_daemon) -> None:
    clock = FakeClock()
    with FakeUpstream(ttl=1) as up:
        d = make_daemon({"upstreams": [up.url()], "upstream_timeout": "300ms"}, clock=clock)
        assert d.query("stale.test", "A").answer
        up.mode = "silent"
        clock.advance(2)                   # the 1 s TTL has run out
        r = d.query("stale.test", "A", use_edns=0)
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0].ttl == 30
        assert 3 in ede_codes(r)           # EDE Stale Answer
        assert d.metric("sinkhole_queries_total",
                        {"transport": "udp", "type": "A", "result": "stale"}) == 1


def test_identical_concurrent_questions_share_one_upstream_query(make_daemon) -> None:
    with FakeUpstream(delay=0.4) as up:
        d = make_daemon({"upstreams": [up.url()]})
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futs = [pool.submit(d.query, "Same.test" if i % 2 else "same.TEST", "A")
                    for i in range(6)]
            replies = [f.result() for f in futs]
        assert all(r.answer for r in replies)
        assert up.count() == 1
        assert {r.question[0].name.to_text() for r in replies} == {"Same.test.", "same.TEST."}


@pytest.fixture(scope="module")
def ca():
    with TestCA() as ca:
        yield ca


def test_dns_over_tls_verifies_and_reuses_connection(make_daemon, ca: TestCA) -> None:
    with TlsUpstream(ca=ca) as up:
        d = make_daemon({"upstreams": [f"tls://{up.addr}#dns.test"],
                         "upstream_ca_file": ca.ca_pem_path})
        for i in range(4):
            assert d.query(f"dot{i}.test", "A").answer
        assert up.count("tls") == 4 and up.connections == 1


def test_dns_over_tls_wrong_name_rejected(make_daemon, ca: TestCA) -> None:
    with TlsUpstream(ca=ca) as up:
        d = make_daemon({"upstreams": [f"tls://{up.addr}#evil.test"],
                         "upstream_ca_file": ca.ca_pem_path, "upstream_timeout": "1s"})
        assert d.query("dot.test", "A").rcode() == dns.rcode.SERVFAIL
        assert up.count() == 0


def test_dns_over_https_reuses_connection(make_daemon, ca: TestCA) -> None:
    with DohUpstream(ca=ca) as up:
        d = make_daemon({"upstreams": [up.url], "upstream_ca_file": ca.ca_pem_path})
        for i in range(4):
            assert d.query(f"doh{i}.test", "AAAA").answer
        assert up.count("https") == 4 and up.connections == 1


def test_dns_over_https_untrusted_ca_rejected(make_daemon) -> None:
    with DohUpstream() as up:    # its own CA, which the daemon does not trust
        d = make_daemon({"upstreams": [up.url], "upstream_timeout": "1s"})
        assert d.query("doh.test", "A").rcode() == dns.rcode.SERVFAIL
        assert up.count() == 0
