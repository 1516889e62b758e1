"""Reply builders: error replies, OPT/EDE records, truncation, synthesised answers.

Every reply echoes the client's question bytes as sent (0x20 case intact) and its txid. Parts
that do not depend on the query (OPT records, the SOA we synthesise) are built once.
"""

from __future__ import annotations

import ipaddress
from struct import pack

from sinkhole.dns.wire import (
    BADVERS,
    CD,
    CLASS_IN,
    OPCODE_MASK,
    QR,
    RA,
    RD,
    TC,
    TYPE_A,
    TYPE_AAAA,
    TYPE_OPT,
    TYPE_SOA,
    Query,
)

# Our advertised EDNS buffer (RFC 6891; 1232 per DNS Flag Day 2020: no IP fragmentation).
EDNS_SIZE = 1232

# Extended DNS Error codes (RFC 8914) that we emit.
EDE_OTHER = 0
EDE_STALE = 3
EDE_BLOCKED = 15
EDE_PROHIBITED = 18
EDE_NO_REACHABLE_AUTHORITY = 22
EDE_NETWORK_ERROR = 23

_OPT_PLAIN = pack("!BHHIH", 0, TYPE_OPT, EDNS_SIZE, 0, 0)
_OPT_DO = pack("!BHHIH", 0, TYPE_OPT, EDNS_SIZE, 0x8000, 0)


def opt_record(do: bool, options: bytes = b"", ext_rcode: int = 0) -> bytes:
    """An OPT pseudo-record advertising our buffer size, the DO bit copied from the client."""
    if not options and not ext_rcode:
        return _OPT_DO if do else _OPT_PLAIN
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return pack("!BHHIH", 0, TYPE_OPT, EDNS_SIZE, ttl, len(options)) + options


def ede_option(code: int, text: str = "") -> bytes:
    """An Extended DNS Error option (RFC 8914): info-code plus UTF-8 extra text."""
    raw = text.encode("utf-8", "replace")[:200]
    return pack("!HHH", 15, 2 + len(raw), code) + raw


def reply_flags(query_flags: int, rcode: int) -> int:
    """Response flags: QR+RA, opcode/RD/CD copied from the query, never AA (we are not
    authoritative for anything we forward, a bug dnslib's reply() has)."""
    return QR | RA | (query_flags & (OPCODE_MASK | RD | CD)) | (rcode & 0xF)


def client_limit(q: Query) -> int:
    """The largest UDP reply this client can take: 512 without EDNS (RFC 1035), else its
    advertised size capped at ours so replies never need IP fragmentation."""
    if not q.edns:
        return 512
    return q.udp_size if q.udp_size < EDNS_SIZE else EDNS_SIZE


def error_reply(q: Query, rcode: int, ede: bytes = b"") -> bytes:
    """An answerless reply (REFUSED, SERVFAIL, NOTIMP, FORMERR, BADVERS) echoing the question."""
    ar = 0
    tail = b""
    if q.edns:
        ext = rcode >> 4
        tail = opt_record(q.do, ede, ext)
        ar = 1
    elif rcode == BADVERS:  # cannot happen without OPT, but never emit an unrepresentable rcode
        rcode = 1
    return pack("!6H", q.txid, reply_flags(q.flags, rcode), 1, 0, 0, ar) + q.question + tail


def header_only_reply(data: bytes, rcode: int) -> bytes:
    """FORMERR/NOTIMP for a packet whose question could not be read: header alone."""
    txid = (data[0] << 8) | data[1]
    flags = (data[2] << 8) | data[3]
    return pack("!6H", txid, reply_flags(flags, rcode), 0, 0, 0, 0)


def truncated_reply(q: Query, rcode: int = 0) -> bytes:
    """TC=1 with the question only: the client retries over TCP (RFC 7766)."""
    ar = 1 if q.edns else 0
    tail = opt_record(q.do) if q.edns else b""
    flags = reply_flags(q.flags, rcode) | TC
    return pack("!6H", q.txid, flags, 1, 0, 0, ar) + q.question + tail


def address_rdata(qtype: int, address: str) -> bytes:
    """Packed A/AAAA rdata; raises ValueError for an address of the wrong family."""
    ip = ipaddress.ip_address(address)
    if (qtype == TYPE_A) != (ip.version == 4):
        raise ValueError(f"{address} is not an {'IPv4' if qtype == TYPE_A else 'IPv6'} address")
    return ip.packed


def answer_rr(qtype: int, ttl: int, rdata: bytes) -> bytes:
    """One answer record whose owner is a pointer to the question name (offset 12)."""
    return pack("!HHHIH", 0xC00C, qtype, CLASS_IN, ttl, len(rdata)) + rdata


def soa_rr(owner_offset: int, ttl: int) -> bytes:
    """A synthetic SOA for negative answers to blocked names, owned by the matched rule's
    name (a pointer into the question) so clients cache the negative answer for `ttl`
    (RFC 2308: negative TTL = min(SOA TTL, MINIMUM))."""
    mname = b"\x08sinkhole\x07invalid\x00"
    rname = b"\x0ahostmaster\x08sinkhole\x07invalid\x00"
    rdata = mname + rname + pack("!5I", 1, 3600, 600, 86400, ttl)
    return pack("!HHHIH", 0xC000 | owner_offset, TYPE_SOA, CLASS_IN, ttl, len(rdata)) + rdata


_HINFO_RR = pack("!HHHIH", 0xC00C, 13, CLASS_IN, 3600, 9) + b"\x07RFC8482\x00"


def minimal_any(q: Query) -> bytes:
    """RFC 8482 section 4.2: answer ANY with one synthesised HINFO record, not every RRset
    (ANY is the favourite query of reflection attacks)."""
    ar = 1 if q.edns else 0
    tail = opt_record(q.do) if q.edns else b""
    return (pack("!6H", q.txid, reply_flags(q.flags, 0), 1, 1, 0, ar) + q.question + _HINFO_RR
            + tail)


__all__ = [
    "EDNS_SIZE", "EDE_BLOCKED", "EDE_OTHER", "EDE_NETWORK_ERROR", "EDE_NO_REACHABLE_AUTHORITY",
    "EDE_PROHIBITED", "EDE_STALE", "TYPE_AAAA", "address_rdata", "answer_rr", "client_limit",
    "ede_option", "error_reply", "header_only_reply", "opt_record", "reply_flags", "soa_rr",
    "truncated_reply",
]
