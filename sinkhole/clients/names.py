"""Client names: which device an address is, from the static map and DHCP lease files.

Precedence, most trusted first:
1. an exact address in the static map (the admin pinned it; a lease cannot rename it);
2. a current DHCP lease (when several files name an address, the lease that runs longest wins,
   being the most recent grant; a tie goes to the file listed later);
3. the most specific network in the static map (``10.0.5.0/24: guest-wifi`` names whatever has
   no better name in that network).
A ``/32`` or ``/128`` key in the static map is an exact address.
"""

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sinkhole.clients.access import (
    DEFAULT_CACHE_SIZE,
    IPAddress,
    IPNetwork,
    parse_address,
    parse_network,
)
from sinkhole.clients.leases import Lease, LeaseFormat, clean_name, load_lease_file

# Per family, most specific first: (mask, {network address: name}).
_NetTable = tuple[tuple[int, dict[int, str]], ...]


def parse_static_map(static: Mapping[str, str]) -> tuple[dict[str, str], dict[IPNetwork, str]]:
    """Split the config map into exact addresses and networks; ValueError names the bad key."""
    exact: dict[str, str] = {}
    networks: dict[IPNetwork, str] = {}
    for key, raw_name in static.items():
        network = parse_network(key)
        name = clean_name(raw_name) if isinstance(raw_name, str) else None
        if name is None:
            raise ValueError(f"{key!r}: name must be a non-empty string, got {raw_name!r}")
        if network.prefixlen == network.max_prefixlen:
            ip = str(network.network_address)
            if ip in exact:
                raise ValueError(f"{key!r}: address {ip} is named twice")
            exact[ip] = name
        elif network in networks:
            raise ValueError(f"{key!r}: network {network} is named twice")
        else:
            networks[network] = name
    return exact, networks


def _build_net_tables(networks: Mapping[IPNetwork, str]) -> dict[int, _NetTable]:
    tables: dict[int, _NetTable] = {}
    for version in (4, 6):
        by_prefix: dict[int, dict[int, str]] = {}
        for network, name in networks.items():
            if network.version == version:
                table = by_prefix.setdefault(network.prefixlen, {})
                table[int(network.network_address)] = name
        max_len = 32 if version == 4 else 128
        full = (1 << max_len) - 1
        tables[version] = tuple(
            (full ^ (full >> prefix), table)
            for prefix, table in sorted(by_prefix.items(), reverse=True)
        )
    return tables


@dataclass(slots=True)
class _View:
    """One immutable generation of the name map; refresh builds a new one and swaps it in.

    ``resolved`` starts as a copy of ``exact`` and also memoises network lookups and misses
    ("" = no name), so a repeat lookup for any address is one dict get. Readers may add to it
    concurrently; losing such an addition to a race only costs a recomputation.
    """

    exact: dict[str, str]
    networks: dict[int, _NetTable]
    cache_size: int
    resolved: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.resolved = dict(self.exact)

    def resolve(self, ip: str) -> str | None:
        try:
            addr = parse_address(ip)
        except ValueError:
            return None
        name = self.exact.get(str(addr)) or self._network_name(addr) or ""
        if len(self.resolved) >= len(self.exact) + self.cache_size:
            self.resolved = dict(self.exact)
        self.resolved[ip] = name
        return name or None

    def _network_name(self, addr: IPAddress) -> str | None:
        value = int(addr)
        for mask, table in self.networks[addr.version]:
            name = table.get(value & mask)
            if name is not None:
                return name
        return None


def _signature(path: str) -> tuple[int, int, int]:
    """(mtime_ns, size, inode): changes on an in-place rewrite and on a replace by rename."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass(slots=True)
class _LeaseSource:
    path: str
    fmt: LeaseFormat
    signature: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) of the last good read
    leases: tuple[Lease, ...] = ()


class ClientNames:
    """Names clients by address; ``refresh`` (from a worker thread) re-reads changed lease files.

    ``name_for`` never blocks and never takes the lock: it reads ``self._view`` once, and
    ``refresh`` only ever replaces that reference with a fully built new view. The constructor
    does a first ``refresh`` so the object is useful at once; a static-map error raises
    ValueError, a lease file error is only recorded in ``errors``.
    """

    def __init__(
        self,
        static: Mapping[str, str],
        lease_paths: Sequence[str],
        clock: Callable[[], float] = time.time,
        *,
        formats: Mapping[str, LeaseFormat] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._static_exact, static_networks = parse_static_map(static)
        self._net_tables = _build_net_tables(static_networks)
        formats = formats or {}
        self._sources = [_LeaseSource(path, formats.get(path, "auto")) for path in lease_paths]
        self._clock = clock
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.errors: dict[str, str] = {}  # path -> last error; replaced whole, never mutated
        self.malformed: dict[str, int] = {}  # path -> entries skipped in its last good read
        self._view = _View(dict(self._static_exact), self._net_tables, cache_size)
        self.refresh()

    def name_for(self, ip: str) -> str | None:
        """The client's name, or None; ``ip`` as the socket gives it (mapped IPv6 is fine)."""
        view = self._view
        name = view.resolved.get(ip)
        if name is not None:
            return name or None
        return view.resolve(ip)

    def refresh(self) -> bool:
        """Re-read lease files whose (mtime, size, inode) changed; True if any name changed.

        Expiry is re-applied on every call, so a lease running out changes the map even when
        no file did. A file that vanished or cannot be read keeps its last good leases (a DHCP
        server rewriting its file must not make every device anonymous) and records why.
        """
        with self._lock:
            errors = dict(self.errors)
            malformed = dict(self.malformed)
            for source in self._sources:
                error = self._reload(source, malformed)
                if error is None:
                    errors.pop(source.path, None)
                else:
                    errors[source.path] = error
            self.errors, self.malformed = errors, malformed
            exact = self._merge(self._clock())
            if exact == self._view.exact:
                return False
            self._view = _View(exact, self._net_tables, self._cache_size)
            return True

    def snapshot(self) -> dict[str, str]:
        """Address -> name for every exactly named client (leases and static addresses)."""
        return dict(self._view.exact)

    def _reload(self, source: _LeaseSource, malformed: dict[str, int]) -> str | None:
        """Re-read one file if it changed; returns an error text, or None when it is fine."""
        try:
            signature = _signature(source.path)
            if signature == source.signature:
                return None
            parsed = load_lease_file(source.path, source.fmt)
            if _signature(source.path) != signature:
                # Written while we read (dnsmasq rewrites in place): what we read may be a
                # truncated file. Keep the last good data; the next refresh reads it again.
                return None
        except (OSError, ValueError) as err:
            return f"{type(err).__name__}: {err}"
        source.signature, source.leases = signature, parsed.leases
        malformed[source.path] = parsed.malformed
        return None

    def _merge(self, now: float) -> dict[str, str]:
        best: dict[str, Lease] = {}
        for source in self._sources:
            for lease in source.leases:
                if lease.expires <= now:
                    continue
                current = best.get(lease.ip)
                if current is None or lease.expires >= current.expires:
                    best[lease.ip] = lease
        exact = {ip: lease.name for ip, lease in best.items()}
        exact.update(self._static_exact)  # an admin-pinned address beats any lease
        return exact
