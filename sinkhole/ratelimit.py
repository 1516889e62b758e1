"""Response rate limiting per client address and per client network (RRL-style, UDP only).

A UDP source address can be forged, so a resolver that answers every datagram is an
amplifier for floods aimed at the forged address. Over the limit a query gets a truncated
reply (TC=1: no bigger than the query, and a real client simply retries over TCP, which cannot
be spoofed) or nothing at all, per config. TCP is never limited here.

Per query: one dict lookup and two token-bucket updates on preallocated objects; the network
key (/24, /56) is computed once per new address, not per packet.
"""

from __future__ import annotations

import ipaddress


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """Token buckets per address and per network; `allow(ip, now)` is the hot call."""

    def __init__(self, qps: float, burst: float, network_qps: float, network_burst: float,
                 ipv4_prefix: int = 24, ipv6_prefix: int = 56, exempt: object = None,
                 max_clients: int = 100_000) -> None:
        self.qps, self.burst = qps, burst
        self.net_qps, self.net_burst = network_qps, network_burst
        self.v4, self.v6 = ipv4_prefix, ipv6_prefix
        self.exempt = exempt          # an AccessList-like object with .allowed(ip), or None
        self.max_clients = max_clients
        self._clients: dict[str, tuple[_Bucket, _Bucket] | None] = {}
        self._nets: dict[str, _Bucket] = {}
        self.limited = 0

    def allow(self, ip: str, now: float) -> bool:
        entry = self._clients.get(ip, False)
        if entry is False:
            entry = self._new(ip, now)
        if entry is None:             # exempt address
            return True
        own, net = entry
        if not _take(own, now, self.qps, self.burst):
            self.limited += 1
            return False
        if not _take(net, now, self.net_qps, self.net_burst):
            own.tokens += 1           # the network refused: do not charge the address too
            self.limited += 1
            return False
        return True

    def _new(self, ip: str, now: float) -> tuple[_Bucket, _Bucket] | None:
        if len(self._clients) >= self.max_clients:   # bounded memory under a spoofed flood
            self._clients.clear()
            self._nets.clear()
        if self.exempt is not None and self.exempt.allowed(ip):
            self._clients[ip] = None
            return None
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            addr = None
        if addr is None:
            key = ip
        else:
            if addr.version == 6 and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            prefix = self.v4 if addr.version == 4 else self.v6
            key = str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
        net = self._nets.get(key)
        if net is None:
            net = self._nets[key] = _Bucket(self.net_burst, now)
        entry = (_Bucket(self.burst, now), net)
        self._clients[ip] = entry
        return entry


def _take(b: _Bucket, now: float, rate: float, burst: float) -> bool:
    tokens = b.tokens + (now - b.stamp) * rate
    b.stamp = now
    if tokens > burst:
        tokens = burst
    if tokens < 1.0:
        b.tokens = tokens
        return False
    b.tokens = tokens - 1.0
    return True
