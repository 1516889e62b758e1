"""Comparing one sinkhole answer with Unbound's answer to the same query.

A difference lands in exactly one named class. The few ACCEPTED classes are the ways a
forwarder may legitimately differ from a recursive resolver with a cache; each has a narrow
condition checked against what the authoritative server (knotd, asked directly) sent, so a real
bug cannot hide behind one. Everything else fails the test.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

FLAGS = (("QR", dns.flags.QR), ("AA", dns.flags.AA), ("TC", dns.flags.TC),
         ("RD", dns.flags.RD), ("RA", dns.flags.RA), ("AD", dns.flags.AD),
         ("CD", dns.flags.CD))
SECTIONS = ("answer", "authority", "additional")

# The accepted classes, with the reason printed in the summary table.
ACCEPTED = {
    "relayed-sections": (
        "authority/additional RRsets the authoritative server sent and sinkhole relays, "
        "which Unbound leaves out (minimal-responses: yes, its default). A forwarder passes "
        "the upstream's sections on (RFC 5625 section 4); checked: sinkhole's extra RRsets "
        "are exactly ones knotd sent, and sinkhole lacks none of Unbound's"),
    "cross-zone-cname": (
        "a CNAME into another zone: knotd answers only its part of the chain, Unbound (a "
        "recursive resolver) chases the rest, sinkhole (a forwarder, which counts on a "
        "recursive upstream) relays what its upstream said; checked: sinkhole's rcode and "
        "answer equal knotd's and end in a CNAME whose target is not in the answer"),
    "rd0-unbound-rd": (
        "to an RD=0 query Unbound answers from its cache with RD=1 (it replays the cached "
        "reply's flags); sinkhole copies the query's RD=0, as RFC 1035 section 4.1.1 says. "
        "Checked: only on RD=0 queries, and sinkhole's RD equals the query's"),
    "rd0-unbound-miss": (
        "to an RD=0 query Unbound answers from its cache only: SERVFAIL, or the cached start "
        "of a CNAME chain, when entries expired meanwhile (2-5 s negative TTLs on a slow "
        "run); sinkhole forwards it (its upstream query always has RD=1, so an RD=0 query "
        "cannot snoop its cache). Checked: Unbound's reply is an empty SERVFAIL or its answer "
        "a strict part of sinkhole's, and sinkhole's rcode and answer equal knotd's"),
    "tc-contents": (
        "both set TC=1 but the records in the truncated replies differ: a TC=1 reply is only a "
        "signal to retry over TCP, its partial contents are not used (RFC 2181 section 9, "
        "RFC 7766 section 5)"),
}


RRKey = tuple[str, int, int]                 # owner (lower-case text), type, covered type


@dataclass(frozen=True)
class View:
    """What a client can observe in one reply, order-free and case-free in names."""

    rcode: int
    flags: dict[str, bool]
    edns: tuple[int, bool] | None            # (version, DO) or None without OPT
    sections: tuple[dict[RRKey, frozenset[bytes]], ...]
    ttls: tuple[dict[RRKey, int], ...]

    @classmethod
    def of(cls, msg: dns.message.Message) -> View:
        sections, ttls = [], []
        for rrsets in (msg.answer, msg.authority, msg.additional):
            content: dict[RRKey, frozenset[bytes]] = {}
            ttl: dict[RRKey, int] = {}
            for rrset in rrsets:
                key = (rrset.name.to_text().lower(), rrset.rdtype, rrset.covers)
                content[key] = frozenset(r.to_digestable() for r in rrset)
                ttl[key] = rrset.ttl
            sections.append(content)
            ttls.append(ttl)
        edns = None if msg.edns < 0 else (msg.edns, bool(msg.ednsflags & dns.flags.DO))
        return cls(msg.rcode(), {n: bool(msg.flags & b) for n, b in FLAGS}, edns,
                   tuple(sections), tuple(ttls))

    def brief(self) -> str:
        flags = " ".join(n.lower() for n, on in self.flags.items() if on)
        parts = [dns.rcode.to_text(self.rcode), f"[{flags}]",
                 "no-edns" if self.edns is None else f"edns{self.edns[0]}"
                 + (" do" if self.edns[1] else "")]
        for name, sec in zip(SECTIONS, self.sections, strict=True):
            if sec:
                parts.append(f"{name}={{{', '.join(_rr(k) for k in sorted(sec))}}}")
        return " ".join(parts)

    def negative(self, qtype: int) -> bool:
        return self.rcode == dns.rcode.NXDOMAIN or (
            self.rcode == dns.rcode.NOERROR
            and not any(k[1] == qtype for k in self.sections[0]))


def _rr(key: RRKey) -> str:
    name, rdtype, covers = key
    t = dns.rdatatype.to_text(rdtype)
    if covers:
        t += f"({dns.rdatatype.to_text(covers)})"
    return f"{name}/{t}"


@dataclass
class Difference:
    klass: str
    detail: str

    @property
    def accepted(self) -> bool:
        return self.klass in ACCEPTED


def _dangling_cname(answer: dict[RRKey, frozenset[bytes]]) -> bool:
    """The answer ends in a CNAME whose target owns nothing in the answer."""
    owners = {k[0] for k in answer}
    for (_, rdtype, _), rdatas in answer.items():
        if rdtype == dns.rdatatype.CNAME:
            for wire in rdatas:
                target = dns.name.from_wire(wire, 0)[0].to_text().lower()
                if target not in owners:
                    return True
    return False


def compare(u: View, s: View, auth: View, rd: bool = True) -> list[Difference]:
    """Differences between Unbound's reply `u` and sinkhole's `s` to a query with RD=`rd`;
    `auth` is knotd's own answer (over TCP, same name, type and DO), the ground truth the
    accepted classes check."""
    out: list[Difference] = []
    both_tc = u.flags["TC"] and s.flags["TC"]
    relayed = s.sections[0] == auth.sections[0] and s.rcode == auth.rcode
    chased = (not both_tc and relayed and _dangling_cname(s.sections[0])
              and all(u.sections[0].get(k) == v for k, v in s.sections[0].items()))
    missed = not rd and relayed and (
        (u.rcode == dns.rcode.SERVFAIL and not any(u.sections))
        or (u.sections[0].keys() < s.sections[0].keys()
            and all(s.sections[0][k] == v for k, v in u.sections[0].items())))
    if missed:
        return [Difference("rd0-unbound-miss", f"unbound: {u.brief()} | sinkhole: {s.brief()}")]
    if chased:
        out.append(Difference("cross-zone-cname",
                              f"unbound: {u.brief()} | sinkhole: {s.brief()}"))
    elif u.rcode != s.rcode:
        out.append(Difference("rcode", f"unbound {dns.rcode.to_text(u.rcode)}, sinkhole "
                              f"{dns.rcode.to_text(s.rcode)}"))
    for name, _ in FLAGS:
        if u.flags[name] != s.flags[name]:
            quirk = name == "RD" and not rd and not s.flags["RD"]
            out.append(Difference("rd0-unbound-rd" if quirk else f"flag-{name}",
                                  f"unbound {name}={int(u.flags[name])}, "
                                  f"sinkhole {name}={int(s.flags[name])}"))
    if u.edns != s.edns:
        out.append(Difference("edns", f"unbound {u.edns}, sinkhole {s.edns}"))
    if chased:
        return out
    if both_tc:
        if u.sections != s.sections:
            out.append(Difference("tc-contents", f"unbound: {u.brief()} | sinkhole: {s.brief()}"))
        return out
    for i, name in enumerate(SECTIONS):
        us, ss = u.sections[i], s.sections[i]
        if us == ss:
            continue
        missing = {k for k in us if ss.get(k) != us[k]}
        extra = {k for k in ss if us.get(k) != ss[k]}
        relayed = all(auth.sections[i].get(k) == ss[k] for k in extra)
        if i > 0 and not missing and relayed:
            out.append(Difference("relayed-sections",
                                  f"{name}: sinkhole also has {sorted(map(_rr, extra))}"))
        else:
            out.append(Difference(name, f"only unbound: {sorted(map(_rr, missing))}, only "
                                  f"sinkhole: {sorted(map(_rr, extra))}"))
    return out


def ttl_problems(first: View, second: View, auth: View, qtype: int,
                 soa: dict[str, tuple[int, int]]) -> list[Difference]:
    """TTL behaviour of one server over two asks: never above the authoritative TTL, never
    rising from the first ask to the second (a cache counts down), and a negative answer's SOA
    TTL at most min(SOA TTL, MINIMUM) (RFC 2308 section 5). `soa` maps a zone apex to the
    zone's (SOA TTL, MINIMUM)."""
    out = []
    for ask, view in (("ask 1", first), ("ask 2", second)):
        for i, name in enumerate(SECTIONS):
            for key, ttl in view.ttls[i].items():
                top = auth.ttls[i].get(key)
                if top is not None and ttl > top:
                    out.append(Difference("ttl", f"{ask} {name} {_rr(key)} TTL {ttl} above the "
                                          f"authoritative {top}"))
        if view.negative(qtype):
            for key, ttl in view.ttls[1].items():
                if key[1] == dns.rdatatype.SOA and key[0] in soa:
                    limit = min(soa[key[0]])
                    if ttl > limit:
                        out.append(Difference("ttl", f"{ask} negative answer's SOA TTL {ttl} "
                                              f"above min(SOA TTL, MINIMUM) = {limit}"))
    for i, name in enumerate(SECTIONS):
        for key, ttl in second.ttls[i].items():
            before = first.ttls[i].get(key)
            if before is not None and ttl > before:
                out.append(Difference("ttl", f"{name} {_rr(key)} TTL rose from {before} to {ttl} "
                                      "between the two asks"))
    return out


def countdown_problems(first: View, late: View, elapsed: float) -> list[Difference]:
    """A cached reply asked again `elapsed` seconds later shows TTLs lowered by at least the
    whole seconds passed (1 s of slack for clocks ticking at different moments). Skipped for
    a reply holding any TTL that may have run out meanwhile: that one may be a fresh fetch."""
    if any(t <= elapsed + 1 for ttls in first.ttls for t in ttls.values()):
        return []
    out = []
    for i, name in enumerate(SECTIONS):
        for key, ttl in late.ttls[i].items():
            before = first.ttls[i].get(key)
            if before is not None and ttl > before - int(elapsed) + 1:
                out.append(Difference("ttl", f"{name} {_rr(key)} TTL {before}, then {ttl} "
                                      f"{elapsed:.1f} s later: the cache does not count down"))
    return out


@dataclass
class Tally:
    """Counts per class, and the failing differences with the query they came from."""

    checks: int = 0
    asks: int = 0      # queries sent to each server
    by_class: Counter[str] = field(default_factory=Counter)
    checks_by_class: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    failures: list[tuple[str, Difference]] = field(default_factory=list)
    unbound_ttl: list[tuple[str, Difference]] = field(default_factory=list)
    late_refetched: list[str] = field(default_factory=list)   # late asks sinkhole forwarded

    def add(self, check_id: int, where: str, diffs: list[Difference]) -> None:
        for d in diffs:
            self.by_class[d.klass] += 1
            self.checks_by_class[d.klass].add(check_id)
            if not d.accepted:
                self.failures.append((where, d))

    @property
    def identical(self) -> int:
        return self.checks - len(set().union(*self.checks_by_class.values()))

    @property
    def failing_checks(self) -> int:
        return len(set().union(*(ids for k, ids in self.checks_by_class.items()
                                 if k not in ACCEPTED)))

    def table(self, title: str, seconds: float) -> str:
        rows = [f"{title}", f"checks run: {self.checks} in {seconds:.1f} s; queries to each of "
                f"sinkhole and unbound: {self.asks} (each check asked twice, plus one late ask "
                "per name and type)",
                f"identical on every ask: {self.identical}",
                f"with accepted differences only: "
                f"{self.checks - self.identical - self.failing_checks}",
                f"failing: {self.failing_checks}", "",
                f"{'class':<18} {'verdict':<9} {'checks':>6} {'diffs':>6}"]
        for klass in [*ACCEPTED, *sorted(k for k in self.by_class if k not in ACCEPTED)]:
            verdict = "accepted" if klass in ACCEPTED else "FAILING"
            rows.append(f"{klass:<18} {verdict:<9} {len(self.checks_by_class[klass]):>6} "
                        f"{self.by_class[klass]:>6}")
        rows.append("")
        for klass, why in ACCEPTED.items():
            rows.append(f"accepted {klass}: {why}")
        if self.late_refetched:
            rows.append("")
            rows.append(f"late asks sinkhole forwarded again instead of serving from its cache "
                        f"(not cached, or expired): {len(self.late_refetched)}: "
                        f"{', '.join(self.late_refetched)}")
        if self.unbound_ttl:
            rows.append("")
            rows.append(f"unbound's own TTL oddities (reference, not failing): "
                        f"{len(self.unbound_ttl)}; first: {self.unbound_ttl[0]}")
        return "\n".join(rows)

    def failure_report(self, per_class: int = 12) -> str:
        """Failing differences by class, then by query (name and type, all variants
        together), each query with its variant count and one full example."""
        groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for where, d in self.failures:
            query, _, variant = where.partition(" | ")
            groups[d.klass][query].append(f"{variant}: {d.detail}")
        lines = []
        for klass in sorted(groups):
            queries = groups[klass]
            lines.append(f"[{klass}] {len(queries)} queries, "
                         f"{len(self.checks_by_class[klass])} checks")
            for query, items in sorted(queries.items())[:per_class]:
                lines.append(f"  {query}: {len(items)} variant(s), e.g. {items[0]}")
            if len(queries) > per_class:
                lines.append(f"  ... and {len(queries) - per_class} more queries")
        return "\n".join(lines)
