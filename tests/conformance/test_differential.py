"""Differential conformance: every query in a generated matrix goes to sinkhole and to Unbound,
both forwarding to the same knotd; a client must not be able to tell them apart except in the
few accepted ways compare.ACCEPTED names (each with its reason and a narrow check).

The matrix: names covering the edge cases in zones/ x their types x {UDP, TCP} x {no EDNS,
EDNS 1232, EDNS 512, DO, CD, RD=0}, plus 0x20-mixed-case spellings; each query asked twice, the
second ask served from both caches. The summary table (pytest -s shows it) is also written to
the pytest temp dir for the issue note.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update
import pytest

from tests.conformance.compare import (
    Difference,
    Tally,
    View,
    compare,
    countdown_problems,
    ttl_problems,
)
from tests.conformance.rig import ZONES, Knot, Unbound, ask

ZONE_ORIGINS = ("example.", "example.net.", "sub.example.", "signed.example.")
LONG = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 40])

# (name, types): what each owner in zones/ is there to test.
CASES: list[tuple[str, tuple[str, ...]]] = [
    ("example.", ("SOA", "NS", "CAA")),                # apex, CAA with a critical flag
    ("www.example.", ("A", "AAAA", "TXT", "MX")),     # plain data; MX: NODATA
    ("onlya.example.", ("AAAA",)),                     # NODATA, SOA MINIMUM 3 < SOA TTL 3600
    ("nothere.example.", ("A",)),                      # NXDOMAIN
    ("c1.example.", ("A", "AAAA")),                    # 3-step in-zone chain, falling TTLs
    ("cext.example.", ("A",)),                         # CNAME into example.net.
    ("cextmiss.example.", ("A",)),                     # ... to a name missing there
    ("back.example.net.", ("A",)),                     # and back from example.net.
    ("cmiss.example.", ("A",)),                        # NXDOMAIN behind a CNAME
    ("cnx1.example.", ("A",)),                         # ... behind two
    ("cnodata.example.", ("AAAA",)),                   # NODATA behind a CNAME
    ("x.wild.example.", ("A", "TXT", "AAAA")),         # wildcard; AAAA: wildcard NODATA
    ("a.b.wild.example.", ("A",)),                     # wildcard two labels deep
    ("wild.example.", ("A",)),                         # the wildcard's parent: ENT
    ("foo.wc.example.", ("A",)),                       # wildcard CNAME
    ("b.ent.example.", ("A",)), ("ent.example.", ("TXT",)),   # empty non-terminals
    ("a.b.ent.example.", ("A",)),
    ("big.example.", ("TXT",)),                        # > 1232 bytes: TC on UDP, full on TCP
    ("mid.example.", ("TXT",)),                        # > 512, < 1232 bytes
    ("mx.example.", ("MX",)),                          # MX with additional A/AAAA
    ("mxmany.example.", ("MX",)),                      # MX fits 512, its additionals do not
    ("_sip._tcp.example.", ("SRV",)),
    ("txt.example.", ("TXT",)),                        # empty, binary, 255-byte strings
    ("svc.example.", ("HTTPS", "A")), ("alias.example.", ("HTTPS",)),
    ("_8443._foo.svc.example.", ("SVCB",)),
    ("sub.example.", ("NS", "SOA")),                   # delegated, child served too
    ("host.sub.example.", ("A",)), ("nx.sub.example.", ("A",)),   # child NXDOMAIN, MINIMUM 2
    ("a\\000b.odd.example.", ("A",)),                  # odd bytes in names
    ("dot\\.in.odd.example.", ("A",)),
    ("sp\\032ace.odd.example.", ("A",)),
    ("mixed.odd.example.", ("A",)),                    # zone spells it MiXeD
    ("l" * 63 + ".odd.example.", ("A",)),
    ("\\200\\255.odd.example.", ("A",)),               # bytes over 127
    ("\\200\\254.odd.example.", ("A",)),               # ... and a miss beside them
    ("under_score.odd.example.", ("TXT",)),
    (LONG + ".odd.example.", ("A",)),                  # 246 bytes on the wire
    ("www.signed.example.", ("A", "MX")),              # signed zone: RRSIG, NSEC3 with DO
    ("nx.signed.example.", ("A",)),
    ("x.w.signed.example.", ("A",)),                   # signed wildcard (NSEC3 proof)
    ("c.signed.example.", ("A",)),
    ("signed.example.", ("DNSKEY",)),
    ("www.example.net.", ("A",)),                      # SOA TTL 600, MINIMUM 5
    ("nothere.example.net.", ("A",)),
    ("www.example.org.", ("A",)),                      # not served: knotd REFUSED
]


@dataclass(frozen=True)
class Mode:
    name: str
    edns: bool = True
    payload: int = 1232
    do: bool = False
    cd: bool = False
    rd: bool = True


# RD=0 last: Unbound answers it from its cache only, which the earlier modes have filled.
MODES = (Mode("no-edns", edns=False), Mode("edns1232"), Mode("edns512", payload=512),
         Mode("do", do=True), Mode("cd", cd=True), Mode("rd0", rd=False))
MIXED = (("udp", "no-edns"), ("udp", "do"), ("tcp", "edns1232"))   # 0x20 spellings asked


def mixed_case(name: dns.name.Name) -> dns.name.Name:
    """ExAmPlE: every other ASCII letter upper-cased (byte-wise: odd bytes stay as they are)."""
    out, i = [], 0
    for label in name.labels:
        b = bytearray(label)
        for j, c in enumerate(b):
            if 0x61 <= c <= 0x7A:
                if i % 2 == 0:
                    b[j] = c - 0x20
                i += 1
        out.append(bytes(b))
    return dns.name.Name(out)


@dataclass(frozen=True)
class Check:
    name: dns.name.Name
    rdtype: str
    transport: str
    mode: Mode
    mixed: bool

    def __str__(self) -> str:
        case = "mixed" if self.mixed else "lower"
        return f"{self.name.to_text()} {self.rdtype} | {self.transport} {self.mode.name} {case}"

    def message(self) -> dns.message.Message:
        m = self.mode
        qname = mixed_case(self.name) if self.mixed else self.name
        q = dns.message.make_query(qname, self.rdtype, use_edns=0 if m.edns else False,
                                   payload=m.payload, want_dnssec=m.do)
        if m.cd:
            q.flags |= dns.flags.CD
        if not m.rd:
            q.flags &= ~dns.flags.RD
        return q


def matrix() -> Iterator[Check]:
    for text, types in CASES:
        name = dns.name.from_text(text)
        for rdtype in types:
            for transport in ("udp", "tcp"):
                for mode in MODES:
                    yield Check(name, rdtype, transport, mode, False)
            for transport, mode_name in MIXED:
                mode = next(m for m in MODES if m.name == mode_name)
                yield Check(name, rdtype, transport, mode, True)


def send(check: Check, port: int, timeout: float = 3) -> dns.message.Message | None:
    q = check.message()
    try:
        if check.transport == "tcp":
            return dns.query.tcp(q, "127.0.0.1", port=port, timeout=timeout)
        return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)
    except (dns.exception.Timeout, OSError):
        return None


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Knot]:
    zones = {o: ZONES / f"{o}zone" for o in ZONE_ORIGINS}
    server = Knot(tmp_path_factory.mktemp("knot"), zones, signed=["signed.example."])
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def unbound(knot: Knot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    # No trust anchor: nothing validates (test_dnssec.py runs a validating one).
    server = Unbound(tmp_path_factory.mktemp("unbound"), knot.port)
    try:
        yield server.start()
    finally:
        server.stop()


def sinkhole(make_daemon: Any, knot: Knot) -> Any:
    # Ratelimit stays on: its default exempts loopback, as a real box's monitoring would be.
    return make_daemon({"upstreams": [f"udp://127.0.0.1:{knot.port}"],
                        "upstream_timeout": "2s"})


def zone_soas(knot: Knot) -> dict[str, tuple[int, int]]:
    """(SOA TTL, MINIMUM) per zone apex, as knotd serves them."""
    out = {}
    for origin in ZONE_ORIGINS:
        rrset = ask(knot.port, origin, "SOA", tcp=True).answer[0]
        out[origin] = (rrset.ttl, rrset[0].minimum)
    return out


class Authority:
    """knotd's own answer per (name, type, DO), asked over TCP once: the ground truth."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: dict[tuple[str, str, bool], View] = {}

    def view(self, check: Check) -> View:
        key = (check.name.to_text().lower(), check.rdtype, check.mode.do)
        if key not in self.seen:
            q = dns.message.make_query(check.name, check.rdtype, use_edns=0, payload=1232,
                                       want_dnssec=check.mode.do)
            self.seen[key] = View.of(dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=3))
        return self.seen[key]


def with_context(diffs: list[Difference], u: View, s: View) -> list[Difference]:
    """Failing differences carry both whole replies, so the report needs no re-run."""
    return [d if d.accepted else Difference(d.klass, f"{d.detail} || unbound: {u.brief()} || "
                                            f"sinkhole: {s.brief()}") for d in diffs]


def run_matrix(u_port: int, daemon: Any, auth: Authority,
               soa: dict[str, tuple[int, int]]) -> Tally:
    s_port = daemon.port
    tally = Tally()
    firsts: dict[tuple[str, str], tuple[int, Check, float, View, View]] = {}
    for n, check in enumerate(matrix()):
        tally.checks += 1
        tally.asks += 2
        rdtype = dns.rdatatype.from_text(check.rdtype)
        asked = time.monotonic()
        replies = []
        for _ in range(2):     # the second ask is served from both caches
            replies.append((send(check, s_port), send(check, u_port)))
        if any(r is None for pair in replies for r in pair):
            tally.add(n, str(check), [Difference("no-reply", "sinkhole (first), unbound "
                                                 f"(second): {replies}")])
            continue
        truth = auth.view(check)
        diffs: list[Difference] = []
        views = [(View.of(s), View.of(u)) for s, u in replies]
        for i, (s, u) in enumerate(views, 1):
            diffs += [Difference(d.klass, f"ask {i}: {d.detail}")
                      for d in with_context(compare(u, s, truth, check.mode.rd), u, s)]
        (s1, u1), (s2, u2) = views
        diffs += ttl_problems(s1, s2, truth, rdtype, soa)
        for d in ttl_problems(u1, u2, truth, rdtype, soa):
            tally.unbound_ttl.append((str(check), d))
        tally.add(n, str(check), diffs)
        firsts.setdefault((check.name.to_text(), check.rdtype), (n, check, asked, s1, u1))
    late_pass(tally, firsts, u_port, daemon, auth)
    return tally


LATE = 2.5   # seconds between a query's first ask and its late ask: TTLs must have dropped


def upstream_queries(daemon: Any) -> float:
    """sinkhole_upstream_requests_total over every label: did an ask leave the cache?"""
    return sum(s.value for m in daemon.registry.collect() if m.name == "sinkhole_upstream_requests"
               for s in m.samples if s.name.endswith("_total"))


def late_pass(tally: Tally, firsts: dict[Any, tuple[int, Check, float, View, View]],
              u_port: int, daemon: Any, auth: Authority) -> None:
    """Ask each query's first variant once more, LATE seconds or more after its first ask:
    a reply sinkhole serves from its cache must show TTLs counted down (the matrix's own
    second asks come within the same second, where a cache that never counts down looks
    right). A reply it fetched again (not cached, or expired) carries the upstream's TTLs."""
    s_port = daemon.port
    for n, check, asked, s1, u1 in firsts.values():
        wait = asked + LATE - time.monotonic()
        if wait > 0:
            time.sleep(wait)   # the subject is the passing of time itself, not a sync point
        elapsed = time.monotonic() - asked
        before = upstream_queries(daemon)
        s3, u3 = send(check, s_port), send(check, u_port)
        refetched = upstream_queries(daemon) > before
        tally.asks += 1
        if refetched:
            tally.late_refetched.append(str(check).partition(" | ")[0])
        if s3 is None or u3 is None:
            tally.add(n, str(check), [Difference("no-reply", f"ask 3: {s3} {u3}")])
            continue
        sv, uv = View.of(s3), View.of(u3)
        diffs = [Difference(d.klass, f"ask 3: {d.detail}")
                 for d in with_context(compare(uv, sv, auth.view(check), check.mode.rd), uv, sv)]
        if not refetched:
            diffs += countdown_problems(s1, sv, elapsed)
        tally.unbound_ttl += [(str(check), d) for d in countdown_problems(u1, uv, elapsed)]
        tally.add(n, str(check), diffs)


def report(tmp_path_factory: pytest.TempPathFactory, name: str, text: str) -> Path:
    path = tmp_path_factory.getbasetemp() / name
    path.write_text(text + "\n")
    print(f"\n{text}\n(written to {path})")
    return path


def test_matrix_matches_unbound(make_daemon: Any, knot: Knot, unbound: Unbound,
                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every query of the matrix: sinkhole's reply, first and cached, is Unbound's reply up
    to the accepted classes, and its TTLs behave (count down, never above the zone's, negative
    answers bounded by RFC 2308)."""
    daemon = sinkhole(make_daemon, knot)
    t0 = time.monotonic()
    tally = run_matrix(unbound.port, daemon, Authority(knot.port), zone_soas(knot))
    seconds = time.monotonic() - t0
    table = tally.table("sinkhole vs unbound, both forwarding to knotd", seconds)
    failures = tally.failure_report()
    report(tmp_path_factory, "conformance-summary.txt",
           table + ("\n\nfailing differences:\n" + failures if failures else ""))
    assert tally.checks >= 500, "the matrix shrank: the summary would overstate coverage"
    if tally.failures:
        pytest.fail(f"{tally.failing_checks} checks differ from Unbound:\n{failures}",
                    pytrace=False)


# Negative answers that a dynamic update fills after the first ask: (query, type, owner added,
# its type, its data). example.'s min(SOA TTL, MINIMUM) is 3 s.
EXPIRY = [
    ("expnx.example.", "A", "expnx", "A", "192.0.2.73"),          # NXDOMAIN
    ("expa.example.", "TXT", "expa", "TXT", '"now"'),             # NODATA
    ("expcname.example.", "TXT", "expb", "TXT", '"now"'),         # NODATA behind a CNAME
    ("expcnx.example.", "A", "expnx2", "A", "192.0.2.72"),        # NXDOMAIN behind a CNAME
]


def test_negative_answers_expire(make_daemon: Any, knot: Knot, unbound: Unbound) -> None:
    """A negative answer lives min(SOA TTL, MINIMUM) = 3 s (RFC 2308 section 5), whatever else
    the reply holds (a CNAME with a 300 s TTL in front of the NODATA): a record added meanwhile
    reaches sinkhole's clients when it reaches Unbound's, not when the CNAME expires."""
    daemon = sinkhole(make_daemon, knot)
    for qname, rdtype, *_ in EXPIRY:
        for port in (daemon.port, unbound.port):
            r = ask(port, qname, rdtype)
            assert View.of(r).negative(dns.rdatatype.from_text(rdtype)), (qname, r)
    cached = time.monotonic()
    update = dns.update.UpdateMessage("example.")
    for _, _, owner, rdtype, rdata in EXPIRY:
        update.add(owner, 300, rdtype, rdata)
    assert dns.query.tcp(update, "127.0.0.1", port=knot.port, timeout=3).rcode() == 0

    def unbound_sees_all() -> bool:
        for qname, rdtype, *_ in EXPIRY:
            r = ask(unbound.port, qname, rdtype)
            if View.of(r).negative(dns.rdatatype.from_text(rdtype)):
                return False
        return True

    # The reference shows the new data once its negative entries expire; wait for that, and
    # for 3 s plus a second of rounding since sinkhole cached them, then ask sinkhole.
    unbound.wait(lambda: unbound_sees_all() and time.monotonic() > cached + 4, 15,
                 "unbound to serve the updated records")
    stale = []
    for qname, rdtype, *_ in EXPIRY:
        r = ask(daemon.port, qname, rdtype)
        if View.of(r).negative(dns.rdatatype.from_text(rdtype)):
            stale.append(f"{qname} {rdtype}: {View.of(r).brief()}")
    assert not stale, ("sinkhole still serves cached negative answers past min(SOA TTL, "
                       f"MINIMUM) = 3 s while unbound serves the new records: {stale}")
