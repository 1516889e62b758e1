"""Cache lifetimes and bounds: one lifetime per cached answer (the smallest TTL of any record it
holds, the SOA's MINIMUM for negative answers), the max_ttl / max_negative_ttl caps, the byte
bound, and serve-stale measured from the expiry.

Real upstream reply wire from dnspython, fed to parse_reply and Cache with explicit `now`
values; the end-to-end tests inject a clock into the real daemon: no test waits for a TTL.
"""

from __future__ import annotations

from collections.abc import Iterable
from struct import pack

import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from sinkhole.cache import ENTRY_OVERHEAD, Cache
from sinkhole.dns.message import Reply, parse_reply, render
from sinkhole.dns.wire import parse_query
from tests.conftest import FakeClock
from tests.peers.dnsserver import FakeUpstream

TXID = 0x4242
T0 = 1000.25          # stored at a fractional time: ages are whole seconds, expiry is not
SOA = "ns.test. host.test. 1 3600 600 86400 {minimum}"
WEEK = 7 * 86400

Rec = tuple[str, int, str, str]   # owner, ttl, type, rdata


def question(qname: str, qtype: str) -> bytes:
    """The lower-cased question bytes parse_reply checks the reply against."""
    rdtype = dns.rdatatype.from_text(qtype)
    return dns.name.from_text(qname.lower()).to_wire() + pack("!HH", rdtype, 1)


def upstream_reply(qname: str, qtype: str, *, rcode: int = dns.rcode.NOERROR,
                   answer: Iterable[Rec] = (), authority: Iterable[Rec] = (),
                   additional: Iterable[Rec] = ()) -> Reply:
    """An upstream's reply (with its OPT, like any EDNS resolver) parsed as the pool does."""
    q = dns.message.make_query(qname, qtype, use_edns=0)
    q.id = TXID
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for section, recs in ((r.answer, answer), (r.authority, authority),
                          (r.additional, additional)):
        for owner, ttl, rtype, rdata in recs:
            section.append(dns.rrset.from_text(owner, ttl, "IN", rtype, rdata))
    return parse_reply(r.to_wire(max_size=65535), TXID, question(qname, qtype))


def key(qname: str, qtype: str = "A") -> bytes:
    return question(qname, qtype) + b"\x00"


def fresh_for(cache: Cache, k: bytes, stored: float = T0) -> float:
    """How long after `stored` the entry stops being served fresh, probed at 0.25 s steps (the
    answers here live whole seconds). Probing never stores, so the entry is left as it was."""
    t = stored
    while cache.get(k, t) is not None:
        t += 0.25
    return t - stored


def client_sees(reply: Reply, qname: str, qtype: str, age: int) -> dns.message.Message:
    """What a client gets for `reply` served `age` seconds after it was stored."""
    q = dns.message.make_query(qname, qtype, use_edns=0)
    return dns.message.from_wire(render(parse_query(q.to_wire()), reply, age, 65535))


def ttls(m: dns.message.Message) -> list[int]:
    return [rrset.ttl for section in (m.answer, m.authority, m.additional) for rrset in section]


def stored(reply: Reply, qname: str, qtype: str = "A", **caps: float) -> Cache:
    cache = Cache(max_entries=100, serve_stale=0, **caps)
    cache.put(key(qname, qtype), reply, T0)
    return cache


# ------------------------------------------------------------------ one lifetime per answer


def test_short_cname_in_front_of_nxdomain_expires_with_the_cname() -> None:
    r = upstream_reply("www.shop.test", "A", rcode=dns.rcode.NXDOMAIN,
                       answer=[("www.shop.test.", 4, "CNAME", "gone.cdn.test.")],
                       authority=[("cdn.test.", 300, "SOA", SOA.format(minimum=300))])
    assert fresh_for(stored(r, "www.shop.test"), key("www.shop.test")) == 4   # not 300


def test_nodata_behind_a_long_cname_keeps_the_soa_limit() -> None:
    # NOERROR with a CNAME and no A: NODATA for the target, RFC 2308 applies, not the CNAME's TTL
    r = upstream_reply("alias.test", "A",
                       answer=[("alias.test.", 3600, "CNAME", "v6only.test.")],
                       authority=[("test.", 4, "SOA", SOA.format(minimum=4))])
    assert r.negative
    assert fresh_for(stored(r, "alias.test"), key("alias.test")) == 4   # not 3600


def test_additional_record_bounds_the_lifetime() -> None:
    r = upstream_reply("mail.test", "MX", answer=[("mail.test.", 3600, "MX", "10 mx.mail.test.")],
                       additional=[("mx.mail.test.", 4, "A", "192.0.2.25")])
    assert fresh_for(stored(r, "mail.test", "MX"), key("mail.test", "MX")) == 4


@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_soa_minimum_bounds_the_negative_lifetime(rcode: int) -> None:
    r = upstream_reply("none.test", "A", rcode=rcode,
                       authority=[("test.", 600, "SOA", SOA.format(minimum=30))])
    assert fresh_for(stored(r, "none.test"), key("none.test")) == 30


def test_negative_answer_without_soa_is_not_cached() -> None:
    nodata = upstream_reply("alias.test", "A",
                            answer=[("alias.test.", 3600, "CNAME", "v6only.test.")])
    nx = upstream_reply("nx.test", "A", rcode=dns.rcode.NXDOMAIN)
    assert stored(nodata, "alias.test").get(key("alias.test"), T0) is None
    assert stored(nx, "nx.test").get(key("nx.test"), T0) is None


def test_a_zero_ttl_anywhere_means_not_cached() -> None:
    r = upstream_reply("zero.test", "A", answer=[("zero.test.", 300, "A", "192.0.2.1")],
                       additional=[("ns.zero.test.", 0, "A", "192.0.2.53")])
    cache = stored(r, "zero.test")
    assert cache.get(key("zero.test"), T0) is None and len(cache) == 0


def test_no_record_reaches_ttl_zero_while_served_fresh() -> None:
    r = upstream_reply("mix.test", "A",
                       answer=[("mix.test.", 7, "CNAME", "edge.test."),
                               ("edge.test.", 3600, "A", "192.0.2.80")],
                       authority=[("test.", 86400, "NS", "ns.test.")],
                       additional=[("ns.test.", 5, "A", "192.0.2.53")])
    cache = stored(r, "mix.test")
    t, seen = T0, []
    while (hit := cache.get(key("mix.test"), t)) is not None:
        seen.append(min(ttls(client_sees(hit[0], "mix.test", "A", hit[1]))))
        t += 0.25
    assert len(seen) == 20 and min(seen) == 1   # 5 s fresh; the glue A counts down 5..1


# -------------------------------------------------------------------------------- the caps


def test_max_ttl_caps_a_week_long_ttl() -> None:
    r = upstream_reply("slow.test", "A", answer=[("slow.test.", WEEK, "A", "192.0.2.1")])
    cache = stored(r, "slow.test", max_ttl=3600)
    assert fresh_for(cache, key("slow.test")) == 3600
    # and clients are not told to keep it longer than we do
    assert ttls(client_sees(r, "slow.test", "A", 0)) == [3600]


def test_max_ttl_above_one_day_is_honoured() -> None:
    """cache.max_ttl is the only cap: parse_reply used to clamp every answer to 86400."""
    r = upstream_reply("slow.test", "A", answer=[("slow.test.", WEEK, "A", "192.0.2.1")])
    cache = stored(r, "slow.test", max_ttl=2 * 86400)
    assert cache.get(key("slow.test"), T0 + 2 * 86400 - 1) is not None
    assert cache.get(key("slow.test"), T0 + 2 * 86400) is None


def test_max_negative_ttl_caps_negative_answers_only() -> None:
    nx = upstream_reply("gone.test", "A", rcode=dns.rcode.NXDOMAIN,
                        authority=[("test.", 86400, "SOA", SOA.format(minimum=86400))])
    cache = stored(nx, "gone.test", max_negative_ttl=900)
    assert fresh_for(cache, key("gone.test")) == 900
    assert ttls(client_sees(nx, "gone.test", "A", 0)) == [900]   # the SOA says so too
    positive = upstream_reply("up.test", "A", answer=[("up.test.", 7200, "A", "192.0.2.1")])
    assert fresh_for(stored(positive, "up.test", max_negative_ttl=900), key("up.test")) == 7200


# ------------------------------------------------------------------------------ byte bound


def big_reply(name: str, size: int) -> Reply:
    """An answer of about `size` body bytes (TXT strings of 255), like a large TCP answer."""
    strings = " ".join(['"' + "x" * 254 + '"'] * (size // 256))
    return upstream_reply(name, "TXT", answer=[(name + ".", 300, "TXT", strings)])


def test_bytes_stay_under_max_bytes_evicting_least_recently_used() -> None:
    limit = 256 << 10
    cache = Cache(max_entries=10_000, serve_stale=0, max_bytes=limit)
    names = [f"big{i}.test" for i in range(40)]
    for i, name in enumerate(names):
        cache.put(key(name, "TXT"), big_reply(name, 12_000), T0 + i)
        assert 0 < cache.bytes <= limit
        cache.get(key(names[0], "TXT"), T0 + i)   # the first name stays in use
    held = [n for n in names if cache.get(key(n, "TXT"), T0 + 40) is not None]
    assert len(held) < len(names) and names[0] in held
    # the others held are the most recent ones, contiguous: LRU order, not random
    assert held[1:] == names[len(names) - len(held) + 1:]
    assert cache.evictions == len(names) - len(held)
    assert cache.bytes == sum(len(cache._d[key(n, "TXT")][0].body) + len(key(n, "TXT"))
                              + ENTRY_OVERHEAD for n in held)


def test_answer_over_a_sixteenth_of_max_bytes_is_not_cached() -> None:
    cache = Cache(max_entries=100, serve_stale=0, max_bytes=128 << 10)
    cache.put(key("small.test", "TXT"), big_reply("small.test", 2000), T0)
    cache.put(key("huge.test", "TXT"), big_reply("huge.test", 9000), T0)   # > 8 KiB
    assert cache.get(key("huge.test", "TXT"), T0) is None
    assert cache.get(key("small.test", "TXT"), T0) is not None and cache.evictions == 0


def test_replacing_and_expiring_entries_keeps_the_byte_count() -> None:
    cache = Cache(max_entries=100, serve_stale=10)
    r = upstream_reply("re.test", "A", answer=[("re.test.", 5, "A", "192.0.2.1")])
    cache.put(key("re.test"), r, T0)
    one = cache.bytes
    cache.put(key("re.test"), r, T0 + 1)
    assert cache.bytes == one and len(cache) == 1
    assert cache.get(key("re.test"), T0 + 1 + 15) is None   # past expiry and stale window
    assert cache.bytes == 0 and len(cache) == 0


# ------------------------------------------------------------------------------ serve-stale


def test_serve_stale_window_is_measured_from_the_entrys_expiry() -> None:
    r = upstream_reply("www.shop.test", "A", rcode=dns.rcode.NXDOMAIN,
                       answer=[("www.shop.test.", 4, "CNAME", "gone.cdn.test.")],
                       authority=[("cdn.test.", 300, "SOA", SOA.format(minimum=300))])
    cache = Cache(max_entries=100, serve_stale=10)
    k = key("www.shop.test")
    cache.put(k, r, T0)
    assert cache.get(k, T0 + 4) is None
    assert cache.get_stale(k, T0 + 13.9) is r
    assert cache.get_stale(k, T0 + 14) is None


def test_positional_constructor_still_works() -> None:
    cache = Cache(1000, 3600)   # tests/fuzz/packets.py
    assert (cache.max_entries, cache.serve_stale, cache.max_ttl) == (1000, 3600, 86400)


# ------------------------------------------------------------------------------ end to end


def cname_to_nxdomain(q: dns.message.Message) -> dns.message.Message:
    """www.shop.test CNAME (1 s) to a name that does not exist (SOA 300/300)."""
    r = dns.message.make_response(q, recursion_available=True, our_payload=1232)
    r.set_rcode(dns.rcode.NXDOMAIN)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 1, "IN", "CNAME", "gone.cdn.test."))
    r.authority.append(dns.rrset.from_text("cdn.test.", 300, "IN", "SOA",
                                           SOA.format(minimum=300)))
    return r


def test_cname_to_nxdomain_is_asked_again_after_the_cnames_ttl(make_daemon) -> None:
    clock = FakeClock()
    with FakeUpstream(cname_to_nxdomain) as up:
        d = make_daemon({"upstreams": [up.url()]}, clock)
        assert d.query("www.shop.test", "A").rcode() == dns.rcode.NXDOMAIN
        clock.advance(0.75)
        r = d.query("www.shop.test", "A")
        assert up.count() == 1                    # cached while the CNAME is valid
        assert r.rcode() == dns.rcode.NXDOMAIN and r.answer[0].ttl == 1
        clock.advance(0.25)
        r = d.query("www.shop.test", "A")
        assert up.count() == 2, "NXDOMAIN served from cache after the CNAME in it expired"
        assert r.rcode() == dns.rcode.NXDOMAIN and r.answer[0].ttl == 1


def test_cache_max_ttl_setting_caps_what_clients_are_told(make_daemon) -> None:
    clock = FakeClock()
    with FakeUpstream(ttl=WEEK) as up:
        d = make_daemon({"upstreams": [up.url()], "cache": {"max_ttl": "1h"}}, clock)
        assert d.query("week.test", "A").answer[0].ttl == 3600
        clock.advance(3599.5)
        assert d.query("week.test", "A").answer[0].ttl == 1 and up.count() == 1
        clock.advance(0.5)
        assert d.query("week.test", "A").answer[0].ttl == 3600 and up.count() == 2
