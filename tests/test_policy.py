"""Blocklists end to end: formats, actions, EDE, precedence, CNAME inspection, canaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from tests.conftest import DaemonThread, dig
from tests.peers.dnsserver import FakeUpstream, cname_answer

MIXED = """\
# title: test list
# category: c2
# severity: critical
plain.test
0.0.0.0 hosts1.test hosts2.test
127.0.0.1 hosts3.test   # trailing comment
||adblock.test^
@@||ok.adblock.test^
||withoption.test^$third-party
*.wild.test
! adblock comment
; semicolon comment

rpz-nx.test CNAME .
rpz-nodata.test CNAME *.
rpz-local.test A 10.9.8.7
rpz-local.test AAAA 2001:db8::77
pass.plain.test CNAME rpz-passthru.
this is not a rule
"""


def lists_config(tmp_path: Path, up: FakeUpstream, text: str = MIXED, action: str = "nxdomain",
                 **extra: Any) -> dict[str, Any]:
    path = tmp_path / "list.txt"
    path.write_text(text)
    return {"upstreams": [up.url()], "reload": {"watch": False},
            "blocklists": [{"name": "testlist", "path": str(path), "category": "c2",
                            "severity": "critical", "action": action}], **extra}


@pytest.fixture
def listed(make_daemon, upstream: FakeUpstream, tmp_path: Path) -> DaemonThread:
    return make_daemon(lists_config(tmp_path, upstream))


def blocked(r) -> bool:
    return r.rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("name", ["plain.test", "hosts1.test", "hosts2.test", "hosts3.test",
                                  "adblock.test", "a.b.plain.test", "x.wild.test",
                                  "rpz-nx.test", "PLAIN.Test"])
def test_every_format_blocks(listed: DaemonThread, upstream: FakeUpstream, name: str) -> None:
    r = listed.query(name, "A")
    assert blocked(r), r
    assert r.authority and r.authority[0].rdtype == dns.rdatatype.SOA   # negative caching
    assert upstream.count() == 0


@pytest.mark.parametrize("name", ["wild.test", "ok.adblock.test", "withoption.test",
                                  "pass.plain.test", "x.pass.plain.test", "notplain.test"])
def test_not_blocked(listed: DaemonThread, name: str) -> None:
    r = listed.query(name, "A")
    assert r.rcode() == dns.rcode.NOERROR and r.answer, name


def test_rpz_nodata_and_local_data(listed: DaemonThread) -> None:
    r = listed.query("rpz-nodata.test", "A")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority
    r = listed.query("rpz-local.test", "A")
    assert [x.address for x in r.answer[0]] == ["10.9.8.7"]
    r = listed.query("rpz-local.test", "AAAA")
    assert [x.address for x in r.answer[0]] == ["2001:db8::77"]
    r = listed.query("rpz-local.test", "TXT")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer


def test_ede_blocked_names_the_list(listed: DaemonThread) -> None:
    r = listed.query("plain.test", "A", use_edns=0)
    ede = [o for o in r.options if o.otype == 15]
    assert ede and ede[0].code == 15 and "testlist" in ede[0].text
    r = listed.query("plain.test", "A", use_edns=False)
    assert r.edns == -1


def test_soa_owner_is_the_rule(listed: DaemonThread) -> None:
    r = listed.query("deep.sub.plain.test", "A")
    assert r.authority[0].name.to_text() == "plain.test."
    assert r.authority[0].ttl == 60


@pytest.mark.parametrize(("action", "a", "aaaa", "rcode"), [
    ("null", "0.0.0.0", "::", dns.rcode.NOERROR),
    ("sinkhole", "192.0.2.66", "2001:db8::66", dns.rcode.NOERROR),
    ("refused", None, None, dns.rcode.REFUSED),
    ("nxdomain", None, None, dns.rcode.NXDOMAIN),
])
def test_actions(make_daemon, upstream: FakeUpstream, tmp_path: Path, action: str,
                 a: str | None, aaaa: str | None, rcode: int) -> None:
    cfg = lists_config(tmp_path, upstream, "evil.test\n", action,
                       sinkhole={"ipv4": "192.0.2.66", "ipv6": "2001:db8::66", "ttl": "5m"})
    d = make_daemon(cfg)
    ra, raaaa, rmx = (d.query("www.evil.test", t) for t in ("A", "AAAA", "MX"))
    assert ra.rcode() == raaaa.rcode() == rmx.rcode() == rcode
    if a is not None:
        assert ra.answer[0][0].address == a and ra.answer[0].ttl == 300
        assert raaaa.answer[0][0].address == aaaa
        assert not rmx.answer and rmx.authority     # other types: NODATA with SOA
    out = dig(d.port, "www.evil.test")
    assert f"status: {dns.rcode.to_text(rcode)}" in out
    assert upstream.count() == 0


def test_allowlist_beats_blocklist(make_daemon, upstream: FakeUpstream, tmp_path: Path) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text("# our own CDN\ngood.evil.test\n")
    cfg = lists_config(tmp_path, upstream, "evil.test\n", allowlists=[{"path": str(allow)}])
    d = make_daemon(cfg)
    assert d.query("good.evil.test", "A").answer
    assert d.query("a.good.evil.test", "A").answer      # allow on a parent wins
    assert blocked(d.query("bad.evil.test", "A"))


def test_first_listed_list_wins(make_daemon, upstream: FakeUpstream, tmp_path: Path) -> None:
    (tmp_path / "c2.txt").write_text("dual.test\n")
    (tmp_path / "ads.txt").write_text("dual.test\n")
    d = make_daemon({"upstreams": [upstream.url()], "reload": {"watch": False}, "blocklists": [
        {"name": "c2", "path": str(tmp_path / "c2.txt"), "severity": "critical"},
        {"name": "ads", "path": str(tmp_path / "ads.txt"), "severity": "info",
         "action": "null"}]})
    r = d.query("dual.test", "A", use_edns=0)
    assert blocked(r) and "c2" in [o.text for o in r.options if o.otype == 15][0]
    assert d.metric("sinkhole_blocked_queries_total",
                    {"list": "c2", "category": "malware", "severity": "critical"}) == 1


def test_cname_chain_into_blocked_name_is_blocked(make_daemon, tmp_path: Path) -> None:
    with FakeUpstream(cname_answer("tracker.evil.test")) as up:
        d = make_daemon(lists_config(tmp_path, up, "evil.test\n"))
        r = d.query("innocent.test", "A", use_edns=0)
        assert blocked(r) and any(o.otype == 15 for o in r.options)
        assert up.count() == 1
        assert blocked(d.query("innocent.test", "A"))      # also from the cache
        assert d.metric("sinkhole_blocked_queries_total",
                        {"list": "testlist", "category": "c2", "severity": "critical"}) == 2


def test_cname_to_allowed_name_passes(make_daemon, tmp_path: Path) -> None:
    with FakeUpstream(cname_answer("cdn.fine.test")) as up:
        d = make_daemon(lists_config(tmp_path, up, "evil.test\n"))
        r = d.query("www.fine.test", "A")
        assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 2


@pytest.mark.parametrize(("name", "rdtype", "rcode"), [
    ("use-application-dns.net", "A", dns.rcode.NXDOMAIN),
    ("mask.icloud.com", "A", dns.rcode.NXDOMAIN),
    ("mask-h2.icloud.com", "AAAA", dns.rcode.NXDOMAIN),
    ("_dns.resolver.arpa", "SVCB", dns.rcode.NOERROR),
    ("resolver.arpa", "SVCB", dns.rcode.NOERROR),
])
def test_builtin_canaries(daemon: DaemonThread, upstream: FakeUpstream, name: str, rdtype: str,
                          rcode: int) -> None:
    r = daemon.query(name, rdtype)
    assert r.rcode() == rcode and not r.answer
    assert upstream.count() == 0


def test_canaries_can_be_turned_off(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon({"upstreams": [upstream.url()],
                     "policy": {"firefox_canary": False, "ddr": False}})
    assert d.query("use-application-dns.net", "A").answer
    assert d.query("_dns.resolver.arpa", "SVCB").rcode() == dns.rcode.NOERROR
    assert upstream.count() == 2
    assert d.query("mask.icloud.com", "A").rcode() == dns.rcode.NXDOMAIN


def test_shipped_triangulation_list_blocks_all_15(make_daemon, upstream: FakeUpstream) -> None:
    root = Path(__file__).resolve().parent.parent
    d = make_daemon({"upstreams": [upstream.url()], "reload": {"watch": False},
                     "blocklists": [{"name": "triangulation",
                                     "path": str(root / "blocklists/triangulation.txt"),
                                     "category": "c2", "severity": "critical"}]})
    names = ["addatamarket.net", "backuprabbit.com", "businessvideonews.com",
             "cloudsponcer.com", "datamarketplace.net", "mobilegamerstats.com",
             "snoweeanalytics.com", "tagclick-cdn.com", "topographyupdates.com",
             "unlimitedteacup.com", "virtuallaughing.com", "web-trackers.com",
             "growthtransport.com", "anstv.net", "ans7tv.net"]
    for n in names:
        assert blocked(d.query(n, "A")), n
    assert d.metric("sinkhole_list_entries", {"list": "triangulation"}) == 15
    assert upstream.count() == 0
