"""Fuzz invariants of the packet path: the question decoder, Pipeline.handle as a whole,
and upstream replies (parse_reply, then render). Used by tests/test_fuzz.py and fuzz_packet.py.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable
from struct import pack, unpack_from
from typing import Any

import dns.exception
import dns.message
import dns.rrset
from prometheus_client import CollectorRegistry

from sinkhole.cache import Cache
from sinkhole.clients.access import AccessList
from sinkhole.config import parse_config
from sinkhole.config.values import parse_upstream
from sinkhole.daemon import outsider_limiter
from sinkhole.dns.block import BlockAnswers
from sinkhole.dns.message import ForgedReply, parse_reply, render
from sinkhole.dns.wire import WireError, parse_query
from sinkhole.lists.matcher import ListInfo, build_policy
from sinkhole.lists.parse import parse_lines
from sinkhole.metrics import Metrics
from sinkhole.pipeline import Pipeline, build_pipeline
from sinkhole.ratelimit import RateLimiter
from sinkhole.upstream.pool import UpstreamPool
from tests.fuzz.common import (
    TYPE_OPT,
    dnspython_parses,
    fail,
    question_of,
    read_message,
    skip_name,
    walk_message,
    walk_records,
)

QR, AA, TC, OPCODE = 0x8000, 0x0400, 0x0200, 0x7800
OPT_LEN = 11            # an OPT record without options: what a TC reply may add to the query
EDNS_MAX = 1232
CLIENTS = {"allowed": "10.0.0.1", "limited": "10.0.0.200", "refused": "192.0.2.1"}


# -- the question decoder ------------------------------------------------------------------------

def check_parse_query(data: bytes) -> Any:
    """parse_query either returns a consistent Query or raises WireError; returns the Query, or
    the WireError."""
    try:
        q = parse_query(data)
    except WireError as err:
        if err.rcode not in (None, 1, 4, 16):
            fail("parse_query.rcode", f"WireError with rcode {err.rcode}", data)
        if err.rcode is None and len(data) >= 12 and not data[2] & 0x80:
            fail("parse_query.drop", "a query (QR=0, full header) dropped unanswered", data)
        if err.query is not None:
            _check_query(err.query, data, complete=False)
        return err
    except Exception as err:  # anything else escaping is the bug we look for
        fail("parse_query.escape", f"{type(err).__name__}: {err}", data)
        return None
    _check_query(q, data, complete=True)
    return q


def _check_query(q: Any, data: bytes, complete: bool) -> None:
    if q.data is not data and q.data != data:
        fail("parse_query.field", "Query.data is not the packet", data)
    if not 17 <= q.qend <= len(data):
        fail("parse_query.field", f"qend {q.qend} outside the packet ({len(data)})", data)
        return
    txid, flags = unpack_from("!HH", data)
    if (q.txid, q.flags) != (txid, flags):
        fail("parse_query.field", "txid/flags differ from the header", data)
    labels, off = [], 12
    while data[off]:
        n = data[off]
        if n > 63:
            fail("parse_query.field", f"label length byte {n} accepted", data)
            return
        labels.append(data[off + 1:off + 1 + n])
        off += n + 1
    if off + 5 != q.qend:
        fail("parse_query.field", "qend is not the end of name + type + class", data)
    if off + 1 - 12 > 255:
        fail("parse_query.name-length", f"question name of {off + 1 - 12} wire bytes accepted "
             "(limit 255, RFC 1035 2.3.4)", data)
    if q.qname.encode("latin-1") != b".".join(labels).lower():
        fail("parse_query.field", f"qname {q.qname!r} is not the lower-cased name", data)
    if (q.qtype, q.qclass) != unpack_from("!HH", data, q.qend - 4):
        fail("parse_query.field", "qtype/qclass differ from the packet", data)
    if not complete:
        return
    if flags & (QR | OPCODE) or unpack_from("!4H", data, 4)[:3] != (1, 0, 0):
        fail("parse_query.accepted", "accepted a response, an opcode or lying counts", data)
    cd = bool(unpack_from("!H", data, 2)[0] & 0x10)
    key = data[12:q.qend - 4].lower() + data[q.qend - 4:q.qend] + bytes([q.do + 2 * cd])
    if q.key != key:
        fail("parse_query.field", f"key {q.key!r} is not built from the name", data)
    if q.udp_size < 512 or (not q.edns and (q.udp_size != 512 or q.do)):
        fail("parse_query.field", f"udp_size {q.udp_size} / DO {q.do} without EDNS", data)
    _compare_dnspython(q, data)


def _compare_dnspython(q: Any, data: bytes) -> None:
    """When dnspython also reads the packet, both must see the same question and EDNS."""
    try:
        m = dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError, IndexError):
        return
    if len(m.question) != 1:
        return
    name = m.question[0].name.to_wire()
    if name.lower() != data[12:q.qend - 4].lower() or m.question[0].rdtype != q.qtype:
        fail("parse_query.differs", "question differs from dnspython's", data)
    if (m.edns >= 0) != q.edns or (q.edns and (
            max(512, m.payload) != q.udp_size or bool(m.ednsflags & 0x8000) != q.do)):
        fail("parse_query.differs", "EDNS differs from dnspython's", data)


# -- the whole per-packet path -------------------------------------------------------------------

LIST_C2 = """# title: fuzz c2
# category: c2
# severity: critical
evil.test
0.0.0.0 ads.test tracker.test
||adblock.test^
@@||ok.evil.test^
*.wild.test
{long}.evil.test
""".format(long="x" * 46)
LIST_RPZ = """$ORIGIN rpz.fuzz.
$TTL 60
@ SOA ns.rpz.fuzz. host.rpz.fuzz. ( 1 3600 600 86400 60 )
nx.test CNAME .
nodata.test CNAME *.
pass.evil.test CNAME rpz-passthru.
local.test A 192.0.2.10
local.test AAAA 2001:db8::10
alias.test CNAME target.example.
*.star.test CNAME .
""" + "".join(f"many.test A 198.51.100.{i}\n" for i in range(1, 41))
LISTS = [("c2", "nxdomain", LIST_C2), ("rpz", "nxdomain", LIST_RPZ),
         ("sink", "sinkhole", "sinkholed.test\n"), ("null", "null", "nulled.test\n"),
         ("refuse", "refused", "refused.test\n")]


def build_resolver() -> Pipeline:
    """The pipeline as Daemon.start() assembles it, minus sockets: its upstream is never
    awaited (the fuzz test closes the coroutine)."""
    policy = build_policy([(ListInfo(name, action=action), parse_lines(text.splitlines(), name))
                           for name, action, text in LISTS])
    cache = Cache(1000, 3600)
    res = build_pipeline(
        parse_config({}), access=AccessList(["10.0.0.0/24", "::1/128"]),
        refusals=outsider_limiter(),
        ratelimiter=RateLimiter(0, 0, 0, 0, exempt=AccessList(["10.0.0.0/25"])), cache=cache,
        pool=UpstreamPool([parse_upstream("udp://127.0.0.1:9")], 1.0),
        metrics=Metrics(CollectorRegistry()),
        blocker=BlockAnswers("192.0.2.53", "2001:db8::53", 300), on_hit=lambda *_a: None,
        record_query=lambda _c, _n: None)
    res.set_policy(policy)
    _fill_cache(cache)
    return res


def make_reply(name: str, rdtype: str, answers: Iterable[str] = (), rcode: int = 0,
               soa: bool = False, want_dnssec: bool = False, txid: int = 0x4242) -> bytes:
    """A dnspython-made upstream reply (also used to write the seed corpus)."""
    q = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=want_dnssec)
    q.id = txid
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for text in answers:
        rtype, _, rdata = text.partition(" ")
        owner = name + "."
        if "=" in rtype:
            owner, rtype = rtype.split("=")
        r.answer.append(dns.rrset.from_text(owner, 300, "IN", rtype, rdata))
    if soa:
        r.authority.append(dns.rrset.from_text(
            "test.", 900, "IN", "SOA", "ns.test. host.test. 1 3600 600 86400 120"))
    r.additional.append(dns.rrset.from_text("ns.test.", 300, "IN", "A", "192.0.2.7"))
    return r.to_wire(max_size=65535)


CACHED = [
    ("cached.test", "A", ["A 192.0.2.1", "A 192.0.2.2", "A 192.0.2.3"], 0, False),
    ("big.test", "A", [f"A 198.51.100.{i}" for i in range(1, 90)], 0, False),
    ("cname.test", "A", ["CNAME ads.test.", "ads.test.=A 192.0.2.9"], 0, False),
    ("cnameok.test", "A", ["CNAME fine.example.", "fine.example.=A 192.0.2.8"], 0, False),
    ("neg.test", "A", [], 3, True),
]


def _fill_cache(cache: Cache) -> None:
    """Cached answers (stored 100 s ago, so TTLs get patched) for the render and CNAME paths."""
    then = time.monotonic() - 100
    for name, rdtype, answers, rcode, soa in CACHED:
        question = question_of(name, 1)
        reply = parse_reply(make_reply(name, rdtype, answers, rcode, soa), 0x4242, question)
        for do in (b"\x00", b"\x01"):
            cache.put(question + do, reply, then)


def check_handle(res: Pipeline, data: bytes, client: str, transport: str) -> None:
    """Pipeline.handle never raises; every reply answers this packet within its size limits."""
    try:
        out = res.handle(data, CLIENTS[client], transport)
    except Exception as err:
        fail("handle.escape", f"{type(err).__name__}: {err} ({client}, {transport})", data)
        return
    parsed = check_parse_query(data)
    q = parsed if not isinstance(parsed, WireError) else parsed.query
    if inspect.iscoroutine(out):
        out.close()   # a cache miss to forward: never awaited, no socket is ever opened
        # the rate limit covers UDP only (a TCP source cannot be forged)
        may_forward = client == "allowed" or (client == "limited" and transport == "tcp")
        if not isinstance(parsed, WireError) and may_forward:
            return
        fail("handle.forward", f"forwarded for a {client} client or a bad packet", data)
        return
    if out is None:
        # Dropped: too short, a response, or from an outsider (never FORMERR; its REFUSED
        # only within the refusal rate limit, which the fuzzer's volume exhausts).
        dropped = len(data) < 12 or bool(data[2] & 0x80) or client == "refused"
        if not dropped:
            fail("handle.drop", f"no reply to a query ({client}, {transport})", data)
        return
    if not isinstance(out, bytes):
        fail("handle.type", f"handle returned {type(out).__name__}", data)
        return
    _check_reply(data, out, q, parsed, client, transport)


def _check_reply(data: bytes, out: bytes, q: Any, parsed: Any, client: str,
                 transport: str) -> None:
    ctx = f"({client}, {transport}) reply {out!r}"
    if len(out) < 12 or len(data) < 12:
        fail("handle.short", f"reply shorter than a header {ctx}", data)
        return
    flags = unpack_from("!H", out, 2)[0]
    if out[:2] != data[:2]:
        fail("handle.txid", f"reply txid differs {ctx}", data)
    if not flags & QR:
        fail("handle.qr", f"reply without QR {ctx}", data)
    if flags & AA:
        fail("handle.aa", f"reply claims authority (AA) {ctx}", data)
    if flags & OPCODE != unpack_from("!H", data, 2)[0] & OPCODE:
        fail("handle.opcode", f"reply opcode differs from the query's {ctx}", data)
    bad_pointer = _misaligned_pointer(out, q)
    if bad_pointer is not None:
        fail("handle.misaligned-pointer", f"a record owner points at offset {bad_pointer}, "
             f"inside a label of the question name {ctx}", data)
    elif (why := dnspython_parses(out)) is not None:
        tag = "handle.name-too-long" if why.startswith("NameTooLong") else "handle.unparseable"
        fail(tag, f"dnspython cannot read the reply: {why} {ctx}", data)
    try:
        sections = walk_message(out)
    except ValueError as err:
        fail("handle.counts", f"reply records do not match its counts: {err} {ctx}", data)
        return
    opts = [sum(t == TYPE_OPT for t in s) for s in sections]
    edns = q is not None and q.edns
    if opts[0] or opts[1] or opts[2] != (1 if edns else 0):
        fail("handle.opt", f"OPT records per section {opts}, client EDNS {edns} {ctx}", data)
    qd = unpack_from("!H", out, 4)[0]
    if qd and (q is None or out[12:q.qend] != data[12:q.qend]):
        fail("handle.question", f"the question is not echoed as sent {ctx}", data)
    if isinstance(parsed, WireError) and parsed.rcode is not None:
        rcode = (flags & 0xF) | (_ext_rcode(out) << 4)
        if rcode != parsed.rcode:
            fail("handle.rcode", f"rcode {rcode} for a WireError({parsed.rcode}) {ctx}", data)
    if client == "refused" and ((flags & 0xF) != 5 or len(out) > len(data)):
        fail("handle.refused", f"a client outside access.allow got more than a REFUSED no "
             f"larger than its query {ctx}", data)
    if transport == "udp":
        limit = max(512, min(q.udp_size, EDNS_MAX)) if edns else 512
        if len(out) > limit:
            fail("handle.udp-size", f"{len(out)} bytes over the client's {limit} {ctx}", data)
        if (flags & TC or client == "limited") and len(out) > len(data) + OPT_LEN:
            fail("handle.amplify", f"{len(out)}-byte TC/limited reply to a {len(data)}-byte "
                 f"query {ctx}", data)
    elif len(out) > 65535:
        fail("handle.tcp-size", f"{len(out)} bytes over TCP {ctx}", data)


def _misaligned_pointer(out: bytes, q: Any) -> int | None:
    """The target of an answer/authority owner pointer that lands inside the question name
    but not on one of its label starts (our synthesised records point into the question)."""
    if q is None or unpack_from("!H", out, 4)[0] != 1 or out[12:q.qend] != q.data[12:q.qend]:
        return None
    starts, off = set(), 12
    while off < q.qend - 4:
        starts.add(off)
        off += out[off] + 1
    try:
        off = q.qend
        an, ns = unpack_from("!2H", out, 6)
        for _ in range(an + ns):
            if out[off] & 0xC0 == 0xC0:
                target = unpack_from("!H", out, off)[0] & 0x3FFF
                if 12 <= target < q.qend - 4 and target not in starts:
                    return target
            off, _recs = walk_records(out, off, 1)
    except (ValueError, IndexError):
        pass
    return None


def _ext_rcode(msg: bytes) -> int:
    """The OPT's extended-rcode byte, 0 without one (or if the message does not walk)."""
    try:
        _id, _f, qd, an, ns, ar = unpack_from("!6H", msg)
        off = 12
        for _ in range(qd):
            off = skip_name(msg, off) + 4
        off, _ = walk_records(msg, off, an + ns)
        for _ in range(ar):
            start = off
            off, recs = walk_records(msg, off, 1)
            if recs[0][0] == TYPE_OPT:
                return msg[skip_name(msg, start) + 4]
    except (ValueError, IndexError):
        pass
    return 0


# -- upstream replies ----------------------------------------------------------------------------

def check_parse_reply(data: bytes, txid: int, question: bytes) -> None:
    """parse_reply raises only ForgedReply; what it keeps walks; render of it stays valid."""
    try:
        r = parse_reply(data, txid, question)
    except ForgedReply:
        return
    except Exception as err:
        fail("parse_reply.escape", f"{type(err).__name__}: {err} (question {question!r})",
             data)
        return
    body = r.body
    if any(not 0 <= o <= len(body) - 4 for o in r.ttl_offsets):
        fail("parse_reply.ttl-offset", f"TTL offsets {r.ttl_offsets} outside the "
             f"{len(body)}-byte body", data)
        return
    try:
        end, recs = walk_records(body, 0, r.an + r.ns + r.ar)
    except ValueError as err:
        fail("parse_reply.body", f"body does not hold an+ns+ar records: {err}", data)
        return
    if end != len(body):
        fail("parse_reply.body", f"{len(body) - end} bytes after the body's records", data)
    if any(rtype == TYPE_OPT for rtype, _ in recs):
        fail("parse_reply.opt", "an OPT record is left in the body (more than one OPT, or "
             "one outside the additional section)", data)
    elif [o for _, o in recs] != list(r.ttl_offsets):
        fail("parse_reply.ttl-offset", f"TTL offsets {r.ttl_offsets} are not the records' "
             f"{[o for _, o in recs]}", data)
    kept = [unpack_from("!I", r.body, o)[0] for o in r.ttl_offsets]
    if r.ttl > 0 and (not kept or r.ttl > min(kept)):
        fail("parse_reply.ttl", f"cache lifetime {r.ttl} over the smallest TTL held", data)
    valid_upstream = dnspython_parses(data) is None
    for edns, do, age, stale, limit in ((False, False, 0, False, 512),
                                        (True, True, 50, False, 1232),
                                        (True, False, 0, True, 65535)):
        _check_render(data, question, r, edns, do, age, stale, limit, valid_upstream)


def _check_render(data: bytes, question: bytes, r: Any, edns: bool, do: bool, age: int,
                  stale: bool, limit: int, valid_upstream: bool) -> None:
    opt = pack("!BHHIH", 0, TYPE_OPT, 4096, 0x8000 if do else 0, 0) if edns else b""
    client = pack("!6H", 0x1357, 0x0100, 1, 0, 0, 1 if edns else 0) + question + opt
    try:
        q = parse_query(client)
    except WireError:
        return
    try:
        out = render(q, r, age, limit, stale=stale)
    except Exception as err:
        fail("render.escape", f"{type(err).__name__}: {err}", data)
        return
    ctx = f"(EDNS {edns}, age {age}, stale {stale}, limit {limit}) reply {out!r}"
    if out[:2] != client[:2] or not out[2] & 0x80:
        fail("render.header", f"wrong txid or no QR {ctx}", data)
    if len(out) > max(limit, 12 + len(question) + len(opt)):
        fail("render.size", f"{len(out)} bytes over the limit {ctx}", data)
    try:
        sections = walk_message(out)
    except ValueError as err:
        fail("render.counts", f"rendered records do not match the counts: {err} {ctx}", data)
        return
    opts = [sum(t == TYPE_OPT for t in s) for s in sections]
    if opts != [0, 0, 1 if edns else 0]:
        fail("render.opt", f"OPT records per section {opts} for a client with EDNS={edns} "
             f"{ctx}", data)
    if not valid_upstream or out[2] & 0x02:   # TC: the records were dropped on purpose
        return
    why = dnspython_parses(out)
    if why is None:
        ours, theirs = records(out), records(data)
        # Answer and authority pass unchanged; additional records are optional (RFC 1035), so
        # render may drop some (those after a cut OPT) but never add or alter one.
        if ours[:2] == theirs[:2] and ours[2] <= theirs[2]:
            return
        why = f"records differ: {ours} != {theirs}"
    # A pointer into the header or a TTL: bytes render rewrites (counts, age), so the name
    # it spells changes. Legal wire, absurd in practice: tagged apart from other breakage.
    tag = "render.pointer-into-rewritten" if _points_into_rewritten(data, question) else \
        "render.changed"
    fail(tag, f"a valid upstream reply rendered differently: {why} {ctx}", data)


def _points_into_rewritten(data: bytes, question: bytes) -> bool:
    """Whether any two bytes after the question look like a pointer into the header or into a
    record's TTL field (a byte scan: rdata is not parsed, so names in it are found too)."""
    ttl_fields: set[int] = set()
    try:
        _end, recs = walk_records(data, 12 + len(question), sum(unpack_from("!3H", data, 6)))
    except ValueError:
        recs = []
    for _rtype, ttl_off in recs:
        ttl_fields.update(range(ttl_off, ttl_off + 4))
    for i in range(12 + len(question), len(data) - 1):
        if data[i] & 0xC0 == 0xC0:
            target = unpack_from("!H", data, i)[0] & 0x3FFF
            if target < 12 or target in ttl_fields:
                return True
    return False


Record = tuple[str, int, int, bytes]


def records(msg: bytes) -> list[set[Record]]:
    """What a client reads from a message: its records (TTLs aside) per section, names in
    canonical (lower) case: render echoes the client's 0x20 casing into compressed names."""
    m = read_message(msg)
    return [{(r.name.to_text().lower(), r.rdtype, r.rdclass, d.to_digestable())
             for r in section for d in r}
            for section in (m.answer, m.authority, m.additional)]


def question_from(data: bytes) -> bytes | None:
    """The lower-case question (name wire + type + class) a reply carries uncompressed, so
    arbitrary bytes reach the record walk instead of failing the question match."""
    off = 12
    try:
        while data[off]:
            if data[off] > 63:
                return None
            off += data[off] + 1
    except IndexError:
        return None
    off += 1
    if off + 4 > len(data):
        return None
    return data[12:off].lower() + data[off:off + 4]


def check_upstream_bytes(data: bytes) -> None:
    """Arbitrary bytes as an upstream reply: once to the question they carry, once to another."""
    if len(data) >= 12:
        question = question_from(data)
        if question is not None:
            check_parse_reply(data, unpack_from("!H", data)[0], question)
    check_parse_reply(data, 0x4242, question_of("example.com", 1))
