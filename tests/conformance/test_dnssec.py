"""DNSSEC through sinkhole: a validating Unbound upstream, a good signed zone and a bogus one.

sinkhole does not validate; it must pass on what its validating upstream decided, and never
let an answer fetched with CD=1 (checking disabled: the upstream hands over bogus data as is)
reach a client that did not set CD — that client counts on the upstream's SERVFAIL to be
protected from forged data (ARCHITECTURE.md, Invariants).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.dnskeybase
import dns.zone
import pytest
from cryptography.hazmat.primitives.asymmetric import ec  # dnspython signs with it

from tests.conformance.rig import ZONES, Knot, Unbound, ask

BOGUS = dns.name.from_text("bogus.example.")
TAMPERED_ADDRESS = "192.0.2.99"      # what tampered's A says after the edit


def broken_zone() -> tuple[str, str]:
    """bogus.example. signed with a fresh key, then broken: tampered's A edited without
    re-signing, expired's RRSIG replaced by one whose validity ended a week ago. Returns the
    zone text and the trust anchor (the key's DNSKEY) for Unbound."""
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256,
                                    flags=257)
    zone = dns.zone.from_text((ZONES / "bogus.example.zone").read_text(), BOGUS,
                              relativize=False)
    now = int(time.time())
    with zone.writer() as txn:
        dns.dnssec.sign_zone(zone, txn, keys=[(key, dnskey)], inception=now - 3600,
                             expiration=now + 14 * 86400)
    with zone.writer() as txn:
        tampered = dns.name.from_text("tampered", BOGUS)
        txn.replace(tampered, dns.rdataset.from_text("IN", "A", 300, TAMPERED_ADDRESS))
        expired = dns.name.from_text("expired", BOGUS)
        rrset = (expired, txn.get(expired, dns.rdatatype.A))
        old = dns.dnssec.sign(rrset, key, BOGUS, dnskey, inception=now - 14 * 86400,
                              expiration=now - 7 * 86400)
        txn.replace(expired, dns.rdataset.from_rdata(300, old))
    return zone.to_text(relativize=False), f"{BOGUS} DNSKEY {dnskey.to_text()}"


@dataclass
class Rig:
    knot: Knot
    unbound: Unbound


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    text, bogus_anchor = broken_zone()
    knot = Knot(tmp_path_factory.mktemp("knot-dnssec"),
                {"signed.example.": ZONES / "signed.example.zone", "bogus.example.": text},
                signed=["signed.example."])
    unbound = None
    try:
        knot.start()
        keys = ask(knot.port, "signed.example.", "DNSKEY", tcp=True).answer[0]
        ksk = next(k for k in keys if k.flags & dns.rdtypes.dnskeybase.Flag.SEP)
        anchors = [f"signed.example. DNSKEY {ksk.to_text()}", bogus_anchor]
        unbound = Unbound(tmp_path_factory.mktemp("unbound-validating"), knot.port, anchors)
        unbound.start(probe=("signed.example.", "SOA"))
        yield Rig(knot, unbound)
    finally:
        if unbound is not None:
            unbound.stop()
        knot.stop()


def query(port: int, name: str, *, do: bool = False, cd: bool = False, edns: bool = True,
          rdtype: str = "A") -> dns.message.Message:
    flags = dns.flags.RD | (dns.flags.CD if cd else 0)
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns or do else False,
                               want_dnssec=do, flags=flags)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=5)


def sinkhole(make_daemon: Any, rig: Rig) -> Any:
    return make_daemon({"upstreams": [f"udp://127.0.0.1:{rig.unbound.port}"],
                        "upstream_timeout": "3s"})


def addresses(msg: dns.message.Message) -> set[str]:
    return {r.address for rrset in msg.answer if rrset.rdtype == dns.rdatatype.A for r in rrset}


def describe(msg: dns.message.Message) -> str:
    flags = dns.flags.to_text(msg.flags)
    return f"{dns.rcode.to_text(msg.rcode())} [{flags}] answer={sorted(addresses(msg))}"


BROKEN = [("tampered.bogus.example.", TAMPERED_ADDRESS), ("expired.bogus.example.", "192.0.2.82")]


def test_rig_unbound_validates(rig: Rig) -> None:
    """The reference itself: the good names validate (AD), the broken ones are bogus. Without
    this the sinkhole tests below could pass against an upstream that validates nothing."""
    port = rig.unbound.port
    for name in ("www.signed.example.", "good.bogus.example."):
        r = query(port, name, do=True)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AD, describe(r)
    for name, address in BROKEN:
        assert query(port, name).rcode() == dns.rcode.SERVFAIL, name
        assert addresses(query(port, name, cd=True)) == {address}, name


@pytest.mark.parametrize("do", [False, True], ids=["plain", "do"])
@pytest.mark.parametrize(("name", "address"), BROKEN, ids=["tampered", "expired"])
def test_bogus_answer_never_leaks_past_cd(make_daemon: Any, rig: Rig, name: str, address: str,
                                          do: bool) -> None:
    """Bogus data: SERVFAIL without CD; with CD=1 the data as the upstream got it; and after
    that CD=1 answer is cached, a client without CD still gets SERVFAIL, not the cached
    bogus answer."""
    port = sinkhole(make_daemon, rig).port
    first = query(port, name, do=do)
    assert first.rcode() == dns.rcode.SERVFAIL, f"bogus {name} without CD: {describe(first)}"
    checked_off = query(port, name, do=do, cd=True)
    assert checked_off.rcode() == dns.rcode.NOERROR, f"{name} with CD: {describe(checked_off)}"
    assert addresses(checked_off) == {address}
    assert checked_off.flags & dns.flags.CD and not checked_off.flags & dns.flags.AD
    for attempt in (1, 2):
        after = query(port, name, do=do)
        assert after.rcode() == dns.rcode.SERVFAIL, (
            f"{name} without CD after a CD=1 query (ask {attempt}): the CD=1 answer leaked "
            f"from the cache: {describe(after)}")
    again = query(port, name, do=do, cd=True)   # and CD clients still get theirs, cached
    assert addresses(again) == {address}, describe(again)


def test_secure_answer_sets_ad_only_for_clients_that_ask(make_daemon: Any, rig: Rig) -> None:
    """RFC 6840 section 5.8: AD=1 to a client that set DO (or AD), never to a plain one — in
    either order, so a cached DO answer does not hand AD to a plain client or the reverse."""
    port = sinkhole(make_daemon, rig).port
    seen = []
    for rdtype, order in (("A", ("plain", "edns", "do", "plain", "do")),
                          ("TXT", ("do", "plain", "edns", "do"))):
        for kind in order:
            r = query(port, "www.signed.example.", rdtype=rdtype, do=kind == "do",
                      edns=kind != "plain")
            seen.append((rdtype, kind, describe(r)))
            assert r.rcode() == dns.rcode.NOERROR and r.answer, seen
            assert bool(r.flags & dns.flags.AD) == (kind == "do"), seen
            if kind == "do":
                assert any(s.rdtype == dns.rdatatype.RRSIG for s in r.answer), seen
    # The same questions to Unbound directly agree (the reference, not our reading of it).
    for kind in ("plain", "edns", "do"):
        r = query(rig.unbound.port, "www.signed.example.", do=kind == "do", edns=kind != "plain")
        assert bool(r.flags & dns.flags.AD) == (kind == "do"), describe(r)

