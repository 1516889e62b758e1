"""Client access control: which source addresses may use the resolver at all.

Also the address helpers the rest of ``clients`` shares, so that an IPv4 client seen through a
dual-stack socket (``::ffff:10.0.0.1``) is the same client everywhere.
"""

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# 65,536 distinct source addresses is far more than an office network has; past that the client
# set is hostile or spoofed, and clearing bounds memory at the cost of recomputing (2-6 µs each).
DEFAULT_CACHE_SIZE = 65_536

_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_address(text: str) -> IPAddress:
    """Parse an address as a socket reports it, unmapping IPv4-mapped IPv6 and dropping scopes.

    A dual-stack listener reports IPv4 clients as ``::ffff:a.b.c.d``; unmapping lets one rule
    (and one name) cover both socket families. A zone (``fe80::1%eth0``) says which interface the
    packet came in on, not who sent it, so it is dropped. Raises ValueError on anything else.
    """
    addr = ipaddress.ip_address(text.strip())
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.scope_id is not None:
            return ipaddress.IPv6Address(int(addr))
    return addr


def canonical_ip(text: str) -> str:
    """The one spelling of an address used as a dictionary key (raises ValueError)."""
    return str(parse_address(text))


def parse_network(item: object) -> IPNetwork:
    """Parse one CIDR (or bare address = host route); ValueError names the bad item.

    Host bits must be clear: ``10.0.0.1/24`` is far more often a typo for ``/32`` than a wish to
    allow the whole /24, and strict config says so at start-up instead of guessing.
    """
    if not isinstance(item, str):
        raise ValueError(f"{item!r}: expected an address or CIDR string")
    try:
        network = ipaddress.ip_network(item.strip(), strict=True)
    except ValueError as err:
        raise ValueError(f"{item!r}: not an IP network in CIDR notation ({err})") from err
    return _unmap_network(network)


def parse_networks(items: Iterable[object]) -> list[IPNetwork]:
    """Parse a config list of CIDRs, in order; the first bad item raises ValueError naming it."""
    return [parse_network(item) for item in items]


def _unmap_network(network: IPNetwork) -> IPNetwork:
    """``::ffff:10.0.0.0/104`` becomes ``10.0.0.0/8``: clients are unmapped, so rules must be."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED_V4):
        v4_int = int(network.network_address) & 0xFFFF_FFFF
        return ipaddress.IPv4Network((v4_int, network.prefixlen - 96))
    return network


def is_public(ip: str) -> bool:
    """True for a globally routable client address (e.g. to warn about an open resolver).

    False for private, loopback, link-local, CGNAT and other special ranges, and for garbage.
    """
    try:
        return parse_address(ip).is_global
    except ValueError:
        return False


# Per address family: (mask, set of network addresses under that mask), one entry per distinct
# prefix length; a decision is one AND plus one set lookup per prefix length, never a list scan.
_Table = tuple[tuple[int, frozenset[int]], ...]


def _build_table(networks: Iterable[IPNetwork]) -> _Table:
    by_mask: dict[int, set[int]] = {}
    for network in networks:
        by_mask.setdefault(int(network.netmask), set()).add(int(network.network_address))
    # Widest first: a short prefix covers the most addresses, so it usually answers first.
    return tuple((mask, frozenset(nets)) for mask, nets in sorted(by_mask.items()))


class AccessList:
    """The client networks allowed to query; everything else is REFUSED.

    ``allowed`` runs once per packet, so decisions are cached per address string exactly as the
    socket gives it: the common case is one dict lookup. An empty list allows nobody (the config
    decides the default, not this class).
    """

    __slots__ = ("networks", "_tables", "_cache", "_cache_size")

    def __init__(self, cidrs: Iterable[object], *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        parsed = parse_networks(cidrs)
        v4 = list(ipaddress.collapse_addresses(n for n in parsed if n.version == 4))
        v6 = list(ipaddress.collapse_addresses(n for n in parsed if n.version == 6))
        self.networks: tuple[IPNetwork, ...] = (*v4, *v6)
        self._tables: dict[int, _Table] = {4: _build_table(v4), 6: _build_table(v6)}
        self._cache: dict[str, bool] = {}
        self._cache_size = cache_size

    def allowed(self, ip: str) -> bool:
        """Whether a packet from ``ip`` may be answered; unparsable addresses are refused."""
        decision = self._cache.get(ip)
        if decision is not None:
            return decision
        decision = self._decide(ip)
        cache = self._cache
        if len(cache) >= self._cache_size:
            # Clearing (not LRU) keeps the hit path free of bookkeeping; a refill costs µs.
            cache.clear()
        cache[ip] = decision
        return decision

    def _decide(self, ip: str) -> bool:
        try:
            addr = parse_address(ip)
        except ValueError:
            return False
        value = int(addr)
        return any((value & mask) in nets for mask, nets in self._tables[addr.version])

    @property
    def allows_everything(self) -> bool:
        """Every IPv4 and IPv6 address is allowed (0.0.0.0/0 and ::/0): the pipeline then
        leaves the access stage out of the chain instead of asking per packet."""
        return {str(n) for n in self.networks} >= {"0.0.0.0/0", "::/0"}

    @property
    def cached(self) -> int:
        """How many decisions are cached (for tests and a gauge)."""
        return len(self._cache)

    def __repr__(self) -> str:
        return f"AccessList({[str(n) for n in self.networks]!r})"
