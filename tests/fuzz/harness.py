"""The fuzzing invariants, shared by the hypothesis properties and the atheris targets.

Each `check_*` feeds one input to one part of sinkhole and raises `Violation` (an
AssertionError, so pytest and atheris both report it) when an invariant breaks. The checks use
their own wire walker and dnspython, never the code under test, to judge its output.
`SINKHOLE_FUZZ_IGNORE=tag,tag` lets a long run go on past a known, already reported bug.
"""

from __future__ import annotations

import inspect
import ipaddress
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from struct import pack, unpack_from
from typing import Any

import dns.exception
import dns.message
from prometheus_client import CollectorRegistry

from sinkhole.cache import Cache
from sinkhole.clients.access import AccessList
from sinkhole.config.values import parse_upstream
from sinkhole.dns.block import BlockAnswers
from sinkhole.dns.message import ForgedReply, parse_reply, render
from sinkhole.dns.wire import WireError, parse_query
from sinkhole.lists.loader import ListError, load_path
from sinkhole.lists.matcher import ListInfo, build_policy
from sinkhole.lists.names import normalise_name
from sinkhole.lists.parse import ParsedList, iter_rules, parse_lines
from sinkhole.metrics import Metrics
from sinkhole.ratelimit import RateLimiter
from sinkhole.resolver import Resolver
from sinkhole.upstream.pool import UpstreamPool

CORPUS = Path(__file__).resolve().parent / "corpus"
IGNORED = frozenset(t for t in os.environ.get("SINKHOLE_FUZZ_IGNORE", "").split(",") if t)

QR, AA, TC, OPCODE = 0x8000, 0x0400, 0x0200, 0x7800
TYPE_OPT = 41
OPT_LEN = 11            # an OPT record without options: what a TC reply may add to the query
EDNS_MAX = 1232
CLIENTS = {"allowed": "10.0.0.1", "limited": "10.0.0.200", "refused": "192.0.2.1"}
_NAME_RE = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")


class Violation(AssertionError):
    """An invariant broke; `tag` names which, the message carries the input."""

    def __init__(self, tag: str, message: str, data: Any) -> None:
        shown = repr(data)
        if len(shown) > 3000:
            shown = shown[:3000] + "..."
        super().__init__(f"[{tag}] {message}\n  input: {shown}")
        self.tag = tag


def fail(tag: str, message: str, data: Any) -> None:
    if tag not in IGNORED:
        raise Violation(tag, message, data)


# -- an independent wire walker ----------------------------------------------------------------

def skip_name(msg: bytes, off: int) -> int:
    """Offset after a (possibly compressed) name; ValueError if it does not fit."""
    while True:
        if off >= len(msg):
            raise ValueError("name past the end")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 2 > len(msg):
                raise ValueError("pointer past the end")
            return off + 2
        if n & 0xC0:
            raise ValueError("bad label type")
        off += n + 1
        if n == 0:
            return off


def walk_records(msg: bytes, off: int, count: int) -> tuple[int, list[tuple[int, int]]]:
    """Walk `count` records from `off`: (end offset, [(rtype, ttl offset)])."""
    out = []
    for _ in range(count):
        off = skip_name(msg, off)
        if off + 10 > len(msg):
            raise ValueError("record header past the end")
        rtype, _cls, _ttl, rdlen = unpack_from("!HHIH", msg, off)
        out.append((rtype, off + 4))
        off += 10 + rdlen
        if off > len(msg):
            raise ValueError("rdata past the end")
    return off, out


def walk_message(msg: bytes) -> list[list[int]]:
    """Record types per section (answer, authority, additional); ValueError unless the header
    counts describe the message exactly (no shortfall, no trailing bytes)."""
    _id, _flags, qd, an, ns, ar = unpack_from("!6H", msg)
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    if off > len(msg):
        raise ValueError("question past the end")
    sections = []
    for count in (an, ns, ar):
        off, recs = walk_records(msg, off, count)
        sections.append([t for t, _ in recs])
    if off != len(msg):
        raise ValueError(f"{len(msg) - off} bytes after the last record")
    return sections


def dnspython_parses(msg: bytes) -> str | None:
    """None if dnspython reads `msg` as a DNS message (opcode forced to QUERY: an UPDATE
    reply echoes the client's zone section, which dnspython validates), else why not."""
    if len(msg) >= 4 and msg[2] & 0x78:
        msg = msg[:2] + bytes([msg[2] & 0x87]) + msg[3:]
    try:
        dns.message.from_wire(msg)
    except (dns.exception.DNSException, ValueError, IndexError) as err:
        return f"{type(err).__name__}: {err}"
    return None


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
    key = data[12:q.qend - 4].lower() + data[q.qend - 4:q.qend] + bytes([q.do])
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
"""
LISTS = [("c2", "nxdomain", LIST_C2), ("rpz", "nxdomain", LIST_RPZ),
         ("sink", "sinkhole", "sinkholed.test\n"), ("null", "null", "nulled.test\n"),
         ("refuse", "refused", "refused.test\n")]
SPECIALS = {"use-application-dns.net": "nxdomain", "resolver.arpa": "nodata"}


def build_resolver() -> Resolver:
    """A Resolver as Daemon.start() assembles it, minus sockets: its upstream is never awaited."""
    policy = build_policy([(ListInfo(name, action=action), parse_lines(text.splitlines(), name))
                           for name, action, text in LISTS])
    res = Resolver(access=AccessList(["10.0.0.0/24", "::1/128"]), cache=Cache(1000, 3600),
                   pool=UpstreamPool([parse_upstream("udp://127.0.0.1:9")], 1.0),
                   metrics=Metrics(CollectorRegistry()),
                   blocker=BlockAnswers("192.0.2.53", "2001:db8::53", 300),
                   specials=dict(SPECIALS), on_hit=lambda *_a: None,
                   ratelimit=RateLimiter(0, 0, 0, 0, exempt=AccessList(["10.0.0.0/25"])),
                   record_query=lambda _c, _n: None)
    res.policy = policy
    _fill_cache(res.cache)
    return res


def make_reply(name: str, rdtype: str, answers: Iterable[str] = (), rcode: int = 0,
               soa: bool = False, want_dnssec: bool = False, txid: int = 0x4242) -> bytes:
    """A dnspython-made upstream reply (also used to write the seed corpus)."""
    import dns.rrset

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


def question_of(name: str, qtype: int) -> bytes:
    return b"".join(bytes([len(lb)]) + lb for lb in name.encode().split(b".")) + b"\x00" + \
        pack("!HH", qtype, 1)


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


def check_handle(res: Resolver, data: bytes, client: str, transport: str) -> None:
    """Resolver.handle never raises; every reply answers this packet within its size limits."""
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
        dropped = len(data) < 12 or bool(data[2] & 0x80)
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
    why = dnspython_parses(out)
    if why is not None:
        fail("handle.unparseable", f"dnspython cannot read the reply: {why} {ctx}", data)
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
    if client == "refused" and (flags & 0xF) not in (1, 4, 5) and _ext_rcode(out) == 0:
        fail("handle.refused", f"a client outside access.allow got an answer {ctx}", data)
    if transport == "udp":
        limit = max(512, min(q.udp_size, EDNS_MAX)) if edns else 512
        if len(out) > limit:
            fail("handle.udp-size", f"{len(out)} bytes over the client's {limit} {ctx}", data)
        if (flags & TC or client == "limited") and len(out) > len(data) + OPT_LEN:
            fail("handle.amplify", f"{len(out)}-byte TC/limited reply to a {len(data)}-byte "
                 f"query {ctx}", data)
    elif len(out) > 65535:
        fail("handle.tcp-size", f"{len(out)} bytes over TCP {ctx}", data)


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
    if [o for _, o in recs if _ != TYPE_OPT] != list(r.ttl_offsets):
        fail("parse_reply.ttl-offset", f"TTL offsets {r.ttl_offsets} are not the records' "
             f"{[o for _, o in recs]}", data)
    if any(t == TYPE_OPT for t, _ in recs):
        fail("parse_reply.opt", "an OPT record is left in the body (more than one OPT, or "
             "one outside the additional section)", data)
    if r.ttl > 86400:
        fail("parse_reply.ttl", f"cache TTL {r.ttl} over max_ttl", data)
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
    if valid_upstream and (why := dnspython_parses(out)) is not None:
        fail("render.unparseable", f"a valid upstream reply rendered unreadable: {why} {ctx}",
             data)


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


# -- lists ---------------------------------------------------------------------------------------

def is_normalised(name: str) -> bool:
    return len(name) <= 253 and _NAME_RE.fullmatch(name) is not None


def check_key(key: str, data: Any, tag: str = "lists.name") -> None:
    name = key[2:] if key.startswith("*.") else key
    if not is_normalised(name):
        fail(tag, f"stored name {key!r} is not normalised (lower case, no trailing dot, "
             "labels 1-63, total <= 253)", data)


def check_parsed(parsed: ParsedList, data: Any) -> None:
    keys: set[str] = set()
    for kind in (parsed.block, parsed.allow, parsed.nxdomain, parsed.nodata, parsed.local):
        keys.update(kind)
    for key in keys:
        check_key(key, data)
    if not parsed.wildcard <= keys or any(k.startswith("*") for k in keys - parsed.wildcard):
        fail("lists.wildcard", "wildcard set differs from the `*.` rules", data)
    for key, entries in parsed.local.items():
        for qtype, text in entries:
            if qtype == 5:
                check_key(text, data, "lists.local-target")
            elif qtype in (1, 28):
                ip = ipaddress.ip_address(text)
                if ip.version != (4 if qtype == 1 else 6) or str(ip) != text:
                    fail("lists.local-data", f"{key}: bad address {text!r}", data)
            else:
                fail("lists.local-data", f"{key}: local data of type {qtype}", data)
    try:
        policy = build_policy([(ListInfo("fuzz"), parsed)])
    except Exception as err:
        fail("lists.policy", f"build_policy: {type(err).__name__}: {err}", data)
        return
    for key in sorted(keys)[:50]:
        name = "x." + key[2:] if key.startswith("*.") else key
        if len(name) <= 253 and policy.match(name) is None:
            fail("lists.match", f"rule {key!r} does not match {name!r}", data)
        if not key.startswith("*.") and is_normalised(key):
            _check_wire_key(key, data)


def _check_wire_key(name: str, data: Any) -> None:
    """The stored key equals what the wire decoder hands the matcher for that name."""
    packet = pack("!6H", 1, 0x0100, 1, 0, 0, 0) + question_of(name, 1)
    try:
        qname = parse_query(packet).qname
    except WireError as err:
        fail("lists.wire-key", f"a query for rule {name!r} is rejected: {err}", data)
        return
    if qname != name:
        fail("lists.wire-key", f"rule {name!r} reaches the matcher as {qname!r}", data)


def check_lines(lines: list[str]) -> None:
    """parse_lines never raises and stores only normalised names; iter_rules agrees."""
    try:
        parsed = parse_lines(lines, "fuzz")
        rules = {(kind, key) for _n, _t, (kind, key, _d) in iter_rules(lines, "fuzz")}
    except Exception as err:
        fail("lists.escape", f"{type(err).__name__}: {err}", lines)
        return
    check_parsed(parsed, lines)
    stored = {("block", k) for k in parsed.block} | {("allow", k) for k in parsed.allow} | \
        {("nxdomain", k) for k in parsed.nxdomain} | {("nodata", k) for k in parsed.nodata} | \
        {("local", k) for k in parsed.local}
    if rules != stored:
        fail("lists.iter-rules", f"iter_rules and parse_lines disagree: {rules ^ stored}", lines)


def check_normalise(text: str) -> None:
    """normalise_name: ValueError or a normalised, idempotent name."""
    try:
        name = normalise_name(text)
    except ValueError:
        return
    except Exception as err:
        fail("names.escape", f"{type(err).__name__}: {err}", text)
        return
    if not is_normalised(name) or normalise_name(name) != name:
        fail("names.normalise", f"normalise_name gave {name!r}", text)


def check_load(data: bytes, path: Path) -> None:
    """load_path on any bytes: a ParsedList, or ListError (only for a binary file)."""
    path.write_bytes(data)
    try:
        parsed = load_path(path)
    except ListError as err:
        if b"\x00" not in data[:8192]:
            fail("load.rejected", f"a text file was rejected: {err}", data)
        return
    except Exception as err:
        fail("load.escape", f"{type(err).__name__}: {err}", data)
        return
    check_parsed(parsed, data)


def corpus(kind: str) -> list[bytes]:
    """The seed files of one corpus folder (packets, replies, lists), sorted by name."""
    folder = CORPUS / kind
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
