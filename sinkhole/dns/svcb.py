"""DDR answers (RFC 9462): `_dns.resolver.arpa` SVCB records naming our own encrypted endpoints.

A device that asks its (clear-text) resolver for `_dns.resolver.arpa` SVCB learns where the
same resolver speaks DoT/DoH (RFC 9461: ALPN, port, dohpath) and upgrades to it — to *us*,
instead of going around us to a public DoH service. Verified discovery (RFC 9462 4.2) needs the
certificate to carry the IP address the device uses for clear-text DNS (an IP SAN).

Pure and precomputed: the records are built once per endpoint set (lru_cache on the frozen
tuple), a query costs one join. Wire format: RFC 9460 2.2 (SvcPriority, TargetName, SvcParams
in increasing key order) and 7 (alpn, port, ipv4hint, ipv6hint), RFC 9461 5 (dohpath).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from struct import pack
from typing import Any

from sinkhole.dns.reply import opt_record, reply_flags, soa_rr, truncated_reply
from sinkhole.dns.wire import CLASS_IN, Query

TYPE_SVCB = 64
DDR_NAME = "_dns.resolver.arpa"
DOH_PATH = "/dns-query{?dns}"   # RFC 9461 5: a URI template with the `dns` variable
DDR_TTL = 300                   # how long a device keeps the designation before asking again
TCP_LIMIT = 65535
_KEY_ALPN, _KEY_PORT, _KEY_IPV4HINT, _KEY_IPV6HINT, _KEY_DOHPATH = 1, 3, 4, 6, 7
_WILDCARDS = {"0.0.0.0", "::"}


@dataclass(frozen=True)
class Endpoint:
    """One encrypted endpoint: ALPN ids ("dot",) or ("h2",), its port, the name clients verify
    (the certificate's), the DoH path template (DoH only) and address hints."""

    alpn: tuple[str, ...]
    port: int
    target: str
    dohpath: str | None = None
    ipv4hint: tuple[str, ...] = ()
    ipv6hint: tuple[str, ...] = ()


def ddr_endpoints(target: str, dot: Iterable[Any], doh: Iterable[Any],
                  hints: Iterable[str] = ()) -> tuple[Endpoint, ...]:
    """The endpoints of bound DoT and DoH listeners (HostPort-like: .host, .port), one per
    port. Hints: the listeners' own addresses unless they listen on a wildcard; `hints` adds
    addresses (the box's LAN address when the listener binds 0.0.0.0)."""
    out: list[Endpoint] = []
    for alpn, path, listeners in ((("dot",), None, dot), (("h2",), DOH_PATH, doh)):
        by_port: dict[int, list[str]] = {}
        for hp in listeners:
            addrs = by_port.setdefault(hp.port, [])
            if hp.host not in _WILDCARDS:
                addrs.append(hp.host)
        for port, addrs in by_port.items():
            v4, v6 = _split([*addrs, *hints])
            out.append(Endpoint(alpn, port, target, path, v4, v6))
    return tuple(out)


def _split(addrs: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    v4: list[str] = []
    v6: list[str] = []
    for a in dict.fromkeys(addrs):
        (v6 if ":" in a else v4).append(a)
    return tuple(v4), tuple(v6)


def name_wire(name: str) -> bytes:
    """A domain name in uncompressed wire form (RFC 9460 2.2: TargetName is never compressed)."""
    labels = [p.encode("ascii") for p in name.rstrip(".").split(".") if p]
    if any(len(p) > 63 for p in labels) or sum(len(p) + 1 for p in labels) > 254:
        raise ValueError(f"{name!r} is not a valid domain name")
    return b"".join(bytes([len(p)]) + p for p in labels) + b"\x00"


def _param(key: int, value: bytes) -> bytes:
    return pack("!HH", key, len(value)) + value


def svcb_rdata(priority: int, ep: Endpoint) -> bytes:
    """SVCB rdata for one endpoint (ServiceMode: priority >= 1)."""
    params = [_param(_KEY_ALPN, b"".join(bytes([len(a)]) + a.encode() for a in ep.alpn)),
              _param(_KEY_PORT, pack("!H", ep.port))]
    if ep.ipv4hint:
        params.append(_param(_KEY_IPV4HINT, b"".join(ipaddress.IPv4Address(a).packed
                                                     for a in ep.ipv4hint)))
    if ep.ipv6hint:
        params.append(_param(_KEY_IPV6HINT, b"".join(ipaddress.IPv6Address(a).packed
                                                     for a in ep.ipv6hint)))
    if ep.dohpath:
        params.append(_param(_KEY_DOHPATH, ep.dohpath.encode("utf-8")))
    return pack("!H", priority) + name_wire(ep.target) + b"".join(params)


@lru_cache(maxsize=8)
def _records(endpoints: tuple[Endpoint, ...], ttl: int) -> bytes:
    """The answer section: one SVCB per endpoint, priority 1.. in the order given, the owner
    a pointer to the question name (offset 12)."""
    out = []
    for i, ep in enumerate(endpoints, 1):
        rdata = svcb_rdata(i, ep)
        out.append(pack("!HHHIH", 0xC00C, TYPE_SVCB, CLASS_IN, ttl, len(rdata)) + rdata)
    return b"".join(out)


def ddr_answer(q: Query, endpoints: Sequence[Endpoint], limit: int = TCP_LIMIT,
               ttl: int = DDR_TTL) -> bytes:
    """The reply to `q` (asking `_dns.resolver.arpa`): our SVCB records for type SVCB, NODATA
    (with an SOA, so it is cached) for any other type or class, TC=1 past `limit`."""
    eps = tuple(endpoints)
    answers = _records(eps, ttl) if q.qtype == TYPE_SVCB and q.qclass == CLASS_IN and eps \
        else b""
    count = len(eps) if answers else 0
    authority = b"" if count else soa_rr(12, ttl)
    tail = opt_record(q.do) if q.edns else b""
    out = (pack("!6H", q.txid, reply_flags(q.flags, 0), 1, count, 0 if count else 1,
                1 if q.edns else 0) + q.question + answers + authority + tail)
    return truncated_reply(q) if len(out) > limit else out
