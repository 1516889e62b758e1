"""Upstream replies: validate them against the question asked and index them for reuse.

A reply we only pass on is not re-parsed into objects: one walk over the records finds the TTL
offsets (so cached answers can count down by patching bytes), strips the upstream's OPT (the
client gets our own), computes the cache lifetime and collects CNAME targets for policy.
"""

from __future__ import annotations

from struct import error as StructError  # noqa: N812
from struct import pack, pack_into, unpack_from

from sinkhole.dns.reply import opt_record, truncated_reply
from sinkhole.dns.wire import (
    AD,
    CD,
    MAX_LABEL,
    MAX_NAME_WIRE,
    NOERROR,
    NXDOMAIN,
    QR,
    RA,
    RD,
    TC,
    TYPE_ANY,
    TYPE_CNAME,
    TYPE_OPT,
    TYPE_SOA,
    Query,
)


class ForgedReply(ValueError):
    """An upstream datagram that does not answer what we asked (RFC 5452): dropped."""


class Reply:
    """An upstream answer, reduced to what serving it again needs."""

    __slots__ = ("flags", "an", "ns", "ar", "body", "ttl_offsets", "ttl", "cnames", "negative",
                 "ar_start")

    def __init__(self, flags: int, an: int, ns: int, ar: int, body: bytes,
                 ttl_offsets: tuple[int, ...], ttl: int, cnames: tuple[str, ...],
                 negative: bool = False, ar_start: int = -1) -> None:
        self.flags = flags              # upstream header flags (rcode, AD, TC)
        self.an, self.ns, self.ar = an, ns, ar   # counts, OPT excluded from ar
        self.body = body                # records after the question, OPT removed
        self.ttl_offsets = ttl_offsets  # offsets of every TTL field inside body
        # How long it may be cached: the smallest TTL of any record kept (-1: not cacheable).
        # Uncapped: the cache applies its configured max_ttl / max_negative_ttl (clamp()).
        self.ttl = ttl
        self.cnames = cnames            # CNAME targets in the answer section, lower dotted
        self.negative = negative        # NXDOMAIN or NODATA: capped by max_negative_ttl
        # Where the additional section starts in body: render() drops it whole when only it
        # does not fit the client's size (RFC 2181 9), instead of setting TC.
        self.ar_start = ar_start if ar_start >= 0 else len(body)

    def clamp(self, limit: int) -> None:
        """Lower the lifetime and every TTL above `limit` to `limit`, so clients are not told
        to keep a record longer than our cap lets us (a 1-week TTL under a 1-day max_ttl).
        Rare (only over-cap answers, once per upstream reply): the body is copied, not the
        per-packet render."""
        if self.ttl <= limit:
            return
        buf = bytearray(self.body)
        for o in self.ttl_offsets:
            if unpack_from("!I", buf, o)[0] > limit:
                pack_into("!I", buf, o, limit)
        self.body = bytes(buf)
        self.ttl = limit

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)


def read_name(data: bytes, off: int) -> tuple[str, int]:
    """Decode a possibly compressed name; returns (lower dotted name, offset after it).

    Pointers must point strictly backwards, which bounds the walk (no loops) — the guard
    dnslib lacks (it recurses into a RecursionError on long pointer chains).
    """
    labels: list[bytes] = []
    end_off = -1
    total = 0
    limit = off
    while True:
        if off >= len(data):
            raise ForgedReply("name runs past the end")
        n = data[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(data):
                raise ForgedReply("truncated pointer")
            target = ((n & 0x3F) << 8) | data[off + 1]
            if end_off < 0:
                end_off = off + 2
            if target >= limit:
                raise ForgedReply("compression pointer does not point backwards")
            off = limit = target
            continue
        if n > MAX_LABEL:
            raise ForgedReply("bad label type")
        if n == 0:
            break
        labels.append(data[off + 1:off + 1 + n])
        total += n + 1
        if total > MAX_NAME_WIRE:
            raise ForgedReply("name too long")
        off += n + 1
    if end_off < 0:
        end_off = off + 1
    return b".".join(labels).lower().decode("latin-1"), end_off


def _skip_name(data: bytes, off: int) -> int:
    while True:
        n = data[off]
        if n & 0xC0 == 0xC0:
            if ((n & 0x3F) << 8 | data[off + 1]) < 12:   # into the header we rewrite
                raise ForgedReply("compression pointer into the header")
            return off + 2
        if n == 0:
            return off + 1
        if n > MAX_LABEL:
            raise ForgedReply("bad label type")
        off += n + 1


def parse_reply(data: bytes, txid: int, question: bytes) -> Reply:
    """Check `data` answers `question` (lower-case name wire + type + class) with `txid`, then
    index it. Raises ForgedReply for anything that does not match or does not parse.

    Config-free: Reply.ttl is the answer's own lifetime; the cache caps it (cache.max_ttl,
    cache.max_negative_ttl) when it stores the reply."""
    if len(data) < 12:
        raise ForgedReply("short reply")
    rid, flags, qd, an, ns, ar = unpack_from("!6H", data)
    if rid != txid:
        raise ForgedReply("txid mismatch")
    if not flags & QR or qd != 1:
        raise ForgedReply("not a response to one question")
    qend = 12 + len(question)
    # Lower-case only the name: bytes.lower() would turn qtype HTTPS (65, 'A') into 97.
    if data[12:qend - 4].lower() != question[:-4] or data[qend - 4:qend] != question[-4:]:
        raise ForgedReply("question mismatch")
    try:
        return _index(data, flags, qend, an, ns, ar)
    except (IndexError, ValueError, StructError) as err:
        raise ForgedReply(f"malformed records: {err}") from None


def _index(data: bytes, flags: int, qend: int, an: int, ns: int, ar: int) -> Reply:
    """One walk over the records. The lifetime is the smallest TTL of every record kept, in
    any section: an entry is served whole, so a 4 s CNAME in front of an NXDOMAIN, or a 4 s
    glue A beside a 3600 s MX, must not outlive its own TTL inside it. A negative answer
    (NXDOMAIN, or NOERROR without a record of the type asked — a CNAME chain ending nowhere is
    NODATA too) adds min(SOA TTL, SOA MINIMUM) (RFC 2308 section 5) and is not cached at all
    without an SOA. With the lifetime the smallest TTL, render()'s countdown never reaches 0
    while an entry is fresh (age < ttl <= every record's TTL)."""
    off = qend
    qtype = (data[qend - 4] << 8) | data[qend - 3]
    ttl_offs: list[int] = []
    cnames: list[str] = []
    lowest = 0xFFFFFFFF     # smallest TTL of the records kept
    answered = False        # the answer section holds a record of the type asked
    soa_min = -1            # min(TTL, MINIMUM) of the authority section's SOA
    opt = -1                # where the OPT starts
    cut = 0                 # records after the OPT (dropped with it)
    ar_at = -1              # where the additional section starts
    for i in range(an + ns + ar):
        start = off
        if i == an + ns:
            ar_at = start
        off = _skip_name(data, off)
        rtype, _rclass, ttl, rdlen = unpack_from("!HHIH", data, off)
        rdata = off + 10
        off = rdata + rdlen
        if off > len(data):
            raise ValueError("record data truncated")
        if rtype == TYPE_OPT:
            if i < an + ns or opt >= 0:   # RFC 6891 6.1.1: one OPT, in additional
                raise ValueError("misplaced or repeated OPT record")
            opt = start
            continue
        if opt >= 0:
            cut += 1
            continue
        ttl_offs.append(rdata - 6)
        if ttl < lowest:
            lowest = ttl
        if i < an:
            if rtype == qtype or qtype == TYPE_ANY:
                answered = True
            if rtype == TYPE_CNAME:
                cnames.append(read_name(data, rdata)[0])
        elif i < an + ns and rtype == TYPE_SOA and rdlen >= 22 and soa_min < 0:
            soa_min = min(ttl, unpack_from("!I", data, off - 4)[0])
    if opt >= 0:
        # Cut the OPT and whatever follows it: later records may point into bytes after it,
        # and additional records are optional, so dropping them is always safe.
        body = data[qend:opt]
        ar -= 1 + cut
    else:
        body = data[qend:off]
    rcode = flags & 0xF
    negative = rcode == NXDOMAIN or not answered
    if flags & TC or rcode not in (NOERROR, NXDOMAIN):
        ttl = -1
    elif negative:
        ttl = min(lowest, soa_min) if soa_min >= 0 else -1   # no SOA: not cacheable
    else:
        ttl = lowest
    return Reply(flags, an, ns, ar, body, tuple(o - qend for o in ttl_offs), ttl,
                 tuple(cnames), negative, ar_at - qend if ar_at >= 0 else len(body))


STALE_TTL = 30  # RFC 8767 section 4: TTL of a stale answer served when upstreams fail


def render(q: Query, r: Reply, age: int, limit: int, opt_options: bytes = b"",
           stale: bool = False) -> bytes:
    """Serve `r` to client query `q`: its txid, its question bytes, TTLs counted down by `age`
    seconds (or STALE_TTL), our OPT when the client sent one; over `limit` bytes, without the
    additional section if that fits, else TC=1."""
    body = r.body
    if (age or stale) and r.ttl_offsets:
        buf = bytearray(body)
        for o in r.ttl_offsets:
            ttl = STALE_TTL if stale else unpack_from("!I", buf, o)[0] - age
            pack_into("!I", buf, o, ttl if ttl > 0 else 0)
        body = bytes(buf)
    flags = QR | RA | (q.flags & (RD | CD)) | (r.flags & 0xF)
    if r.flags & AD and (q.do or q.flags & AD):   # RFC 6840 5.8: AD only to those who ask
        flags |= AD
    ar = r.ar
    tail = b""
    if q.edns:
        tail = opt_record(q.do, opt_options)
        ar += 1
    out = pack("!6H", q.txid, flags, 1, r.an, r.ns, ar) + q.question + body + tail
    if len(out) > limit:
        # RFC 2181 section 9: TC only when the answer or authority does not fit; additional
        # records are optional, so a reply that fits without them goes out without them.
        if r.ar:
            out = pack("!6H", q.txid, flags, 1, r.an, r.ns, ar - r.ar) + q.question \
                + body[:r.ar_start] + tail
            if len(out) <= limit:
                return out
        return truncated_reply(q, r.flags & 0xF)
    return out


def build_query(txid: int, question: bytes, do: bool, cd: bool) -> bytes:
    """Our own upstream query: fresh txid, RD, our OPT (DO copied), the lower-cased question."""
    flags = RD | (CD if cd else 0)
    return pack("!6H", txid, flags, 1, 0, 0, 1) + question + opt_record(do)
