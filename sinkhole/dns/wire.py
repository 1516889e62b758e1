"""The fast query decoder: header, question and EDNS of a client packet, no full parse.

Per-packet code: it runs for every query, so it walks the bytes by hand instead of building
dnslib objects (a full parse costs 5-10x the throughput, see ARCHITECTURE.md), and it never
raises anything but `WireError`, which carries what the listener needs to answer (or drop).
"""

from __future__ import annotations

from struct import unpack_from

# Header flag bits (RFC 1035 4.1.1).
QR = 0x8000
OPCODE_MASK = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010

# Response codes (RFC 1035, RFC 6891 for BADVERS = extended 16).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_AAAA, TYPE_OPT, TYPE_ANY = 1, 2, 5, 6, 28, 41, 255
CLASS_IN = 1

MAX_NAME_WIRE = 255
# Last byte of Query.key by (DO, CD): index DO + 2*CD (CD is 0x10, so (flags & CD) // 8).
_KEY_FLAGS = (b"\x00", b"\x01", b"\x02", b"\x03")
MAX_LABEL = 63


class WireError(Exception):
    """A packet we cannot serve as asked.

    `rcode` is the error to answer with, or None when the packet must be dropped (too short to
    carry a header, or a response: answering responses is how reflection loops start).
    `query` is the partly decoded query when the question could be read, so the error reply can
    echo it (dig and stub resolvers ignore replies without the question they asked).
    """

    def __init__(self, reason: str, rcode: int | None, txid: int = 0, query: Query | None = None):
        super().__init__(reason)
        self.reason = reason
        self.rcode = rcode
        self.txid = txid
        self.query = query


class Query:
    """One decoded client query; the raw bytes stay the source of truth.

    `qname` is the lower-case dotted name (latin-1, so every byte survives) used by policy;
    `key` is the cache key (lower-cased name wire + type + class + DO/CD), computed once here
    because both the cache and the in-flight table need it.
    """

    __slots__ = (
        "data", "txid", "flags", "qend", "qname", "qtype", "qclass", "edns", "udp_size", "do",
        "key",
    )

    def __init__(self, data: bytes, txid: int, flags: int, qend: int, qname: str,
                 qtype: int, qclass: int) -> None:
        self.data = data
        self.txid = txid
        self.flags = flags
        self.qend = qend          # offset just past the question (name + type + class)
        self.qname = qname
        self.qtype = qtype
        self.qclass = qclass
        self.edns = False         # client sent an OPT record
        self.udp_size = 512       # largest UDP reply the client accepts
        self.do = False           # DNSSEC OK bit (RFC 3225)
        self.key = b""

    @property
    def question(self) -> bytes:
        """The question section exactly as the client sent it (0x20 case preserved)."""
        return self.data[12:self.qend]


def read_qname(data: bytes, off: int) -> tuple[str, int]:
    """Walk an uncompressed name at `off`; return (lower dotted name, offset after it).

    The question of a query is never compressed in practice, and refusing pointers here means
    no pointer loop can ever reach the hot path.
    """
    end = len(data)
    labels = []
    start = off
    while True:
        if off >= end:
            raise ValueError("name runs past the end of the packet")
        n = data[off]
        if n == 0:
            off += 1
            break
        if n > MAX_LABEL:
            raise ValueError("compressed or over-long label in question")
        labels.append(data[off + 1:off + 1 + n])
        off += n + 1
        if off - start >= MAX_NAME_WIRE:   # with the root byte still to come: over 255
            raise ValueError("name longer than 255 bytes")
    if off > end:
        raise ValueError("name runs past the end of the packet")
    return b".".join(labels).lower().decode("latin-1"), off


def parse_query(data: bytes) -> Query:
    """Decode a client packet into a Query, or raise WireError saying how to answer."""
    if len(data) < 12:
        raise WireError("packet shorter than a header", None)
    txid, flags, qdcount, ancount, nscount, arcount = unpack_from("!6H", data)
    if flags & QR:
        raise WireError("response packet sent to the server", None, txid)
    if flags & OPCODE_MASK and qdcount != 1:
        # RFC 1035 4.1.1: an opcode we do not implement is NOTIMP whatever the rest holds
        # (NOTIFY, UPDATE, DSO may carry no question); only a QUERY is judged further.
        raise WireError("opcode not supported", NOTIMP, txid)
    if qdcount != 1:
        raise WireError("question count is not 1", FORMERR, txid)
    try:
        qname, off = read_qname(data, 12)
    except ValueError as err:
        raise WireError(str(err), FORMERR, txid) from None
    if off + 4 > len(data):
        raise WireError("question truncated", FORMERR, txid)
    qtype, qclass = unpack_from("!HH", data, off)
    q = Query(data, txid, flags, off + 4, qname, qtype, qclass)
    if flags & OPCODE_MASK:
        raise WireError("opcode not supported", NOTIMP, txid, q)
    if ancount or nscount:
        raise WireError("query carries answer or authority records", FORMERR, txid, q)
    if arcount:
        _parse_additional(data, q, arcount)
    # The last key byte holds DO and CD: an answer fetched with CD=1 (upstream validation
    # off) must never be served to a client that did not set CD, nor a DO=0 answer (no
    # signatures) to a validating client.
    q.key = data[12:off].lower() + data[off:off + 4] + _KEY_FLAGS[q.do + (flags & CD) // 8]
    return q


def _skip_name(data: bytes, off: int) -> int:
    """Skip a possibly compressed owner name without following pointers (no loops possible)."""
    end = len(data)
    while off < end:
        n = data[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        if n > MAX_LABEL:
            raise ValueError("bad label type")
        off += n + 1
    raise ValueError("name runs past the end of the packet")


def _parse_additional(data: bytes, q: Query, count: int) -> None:
    """Find the OPT record (RFC 6891) among the additional records; other records are skipped."""
    off = q.qend
    seen_opt = False
    for _ in range(count):
        try:
            name_start = off
            off = _skip_name(data, off)
            if off + 10 > len(data):
                raise ValueError("record truncated")
            rtype, rclass, ttl, rdlen = unpack_from("!HHIH", data, off)
            off += 10 + rdlen
            if off > len(data):
                raise ValueError("record data truncated")
        except ValueError as err:
            raise WireError(str(err), FORMERR, q.txid, q) from None
        if rtype != TYPE_OPT:
            continue
        if seen_opt or data[name_start] != 0:
            raise WireError("second OPT record or OPT not at root", FORMERR, q.txid, q)
        seen_opt = True
        q.edns = True
        q.udp_size = rclass if rclass > 512 else 512
        q.do = bool(ttl & 0x8000)
        if (ttl >> 16) & 0xFF:
            raise WireError("EDNS version not supported", BADVERS, q.txid, q)
