"""Cache: case-insensitive keys with the client's case echoed, TTL countdown, negative caching,
the DO bit in the key, and the LRU bound."""

from __future__ import annotations

import dns.rcode

from tests.conftest import DaemonThread, FakeClock, dig
from tests.peers.dnsserver import FakeUpstream


def test_cache_is_case_insensitive_and_echoes_question(daemon: DaemonThread,
                                                       upstream: FakeUpstream) -> None:
    daemon.query("CaSe.test", "A")
    r = daemon.query("cAsE.TEST", "A")
    assert r.question[0].name.to_text() == "cAsE.TEST."
    assert r.answer[0].name.to_text() == "cAsE.TEST."
    assert upstream.count() == 1
    assert daemon.metric("sinkhole_cache_hits_total") == 1


def test_type_and_class_are_part_of_the_key(daemon: DaemonThread, upstream: FakeUpstream) -> None:
    daemon.query("t.test", "A")
    daemon.query("t.test", "AAAA")
    daemon.query("t.test", "HTTPS")   # 65: 'A' in ASCII, must not be lower-cased into 97
    daemon.query("t.test", "HTTPS")
    assert upstream.count() == 3


def test_ttl_counts_down(make_daemon, upstream: FakeUpstream) -> None:
    clock = FakeClock()
    d = make_daemon({"upstreams": [upstream.url()]}, clock)
    assert d.query("ttl.test", "A").answer[0].ttl == 300
    clock.advance(7.5)
    assert d.query("ttl.test", "A").answer[0].ttl == 293
    out = dig(d.port, "+noall", "+answer", "ttl.test")
    assert "ttl.test.\t\t293\tIN\tA\t192.0.2.1" in out and upstream.count() == 1


def test_negative_answers_cached_from_soa(daemon: DaemonThread, upstream: FakeUpstream) -> None:
    for _ in range(3):
        r = daemon.query("gone.nx.test", "A")
        assert r.rcode() == dns.rcode.NXDOMAIN and r.authority
    assert upstream.count() == 1


def test_do_bit_is_part_of_the_key(daemon: DaemonThread, upstream: FakeUpstream) -> None:
    daemon.query("do.test", "A", use_edns=0)
    daemon.query("do.test", "A", use_edns=0, want_dnssec=True)
    daemon.query("do.test", "A", use_edns=False)   # no EDNS == DO clear: shares the first entry
    assert upstream.count() == 2


def test_lru_bound(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon({"upstreams": [upstream.url()], "cache": {"max_entries": 2}})
    for name in ("a.test", "b.test", "a.test", "c.test"):   # c evicts b (a was used last)
        d.query(name, "A")
    assert upstream.count() == 3
    d.query("a.test", "A")
    assert upstream.count() == 3
    d.query("b.test", "A")
    assert upstream.count() == 4
    assert d.metric("sinkhole_cache_evictions_total") == 2
    assert d.metric("sinkhole_cache_entries") == 2


def test_servfail_is_not_cached(make_daemon) -> None:
    with FakeUpstream(mode="servfail") as up:
        d = make_daemon({"upstreams": [up.url()]})
        d.query("sf.test", "A")
        up.mode = "ok"
        assert d.query("sf.test", "A").answer
