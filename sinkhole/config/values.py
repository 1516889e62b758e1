"""Value parsers for config fields: addresses, upstream URLs, networks, enums.

Each takes the raw YAML value and returns the typed value or raises ValueError whose message
names the bad value and what was expected; loader.py prefixes the key path.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def display(self, redact: bool = True) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UpstreamURL:
    """One upstream: proto udp|tcp|tls|https, where to connect, and the TLS name to verify."""

    proto: str
    host: str
    port: int
    tls_name: str | None = None
    url: str = ""
    # 0x20 (draft-vixie-dnsext-dns0x20): random letter case in our questions, checked in the
    # reply; off (`randomize_case: false`) for the rare upstream that does not echo it.
    randomize_case: bool = True

    def display(self, redact: bool = True) -> str:
        return self.url


def parse_hostport(value: Any, default_port: int | None = None) -> HostPort:
    """'127.0.0.1:5353', '[::1]:5353' (IP literals only: listeners bind addresses, not names)."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an address like 127.0.0.1:5353")
    host, port = _split(value, default_port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
    return HostPort(host, port)


def _split(value: str, default_port: int | None) -> tuple[str, int]:
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r} is not an address like [::1]:5353")
        port_s = rest[1:] if rest else ""
    elif value.count(":") == 1:
        host, port_s = value.split(":")
    else:
        host, port_s = value, ""
    if not port_s:
        if default_port is None:
            raise ValueError(f"{value!r} has no port (like 127.0.0.1:5353)")
        return host, default_port
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"{value!r}: port {port_s!r} is not a number 0-65535")
    return host, int(port_s)


_DEFAULT_PORTS = {"udp": 53, "tcp": 53, "tls": 853, "https": 443}


def parse_upstream(value: Any) -> UpstreamURL:
    """udp://IP[:port], tcp://IP[:port], tls://IP[:port]#name, https://host[:port]/path, or a
    mapping `{url: ..., randomize_case: false}` for an upstream that breaks 0x20.

    A bare IP[:port] means UDP. DNS upstreams must be IP literals: resolving an upstream's name
    through ourselves would be a loop at start-up.
    """
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"url", "randomize_case"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: randomize_case, url)")
        if "url" not in value:
            raise ValueError(".url: missing (the upstream URL)")
        case = value.get("randomize_case", True)
        if not isinstance(case, bool):
            raise ValueError(f".randomize_case: expected true or false, found {case!r}")
        return dataclasses.replace(parse_upstream(value["url"]), randomize_case=case)
    bad = ValueError(f"{value!r} is not a valid upstream URL (like udp://9.9.9.9:53, "
                     "tls://9.9.9.9:853#dns.quad9.net, https://dns.quad9.net/dns-query)")
    if not isinstance(value, str) or not value:
        raise bad
    if "://" not in value:
        try:
            hp = parse_hostport(value, 53)
        except ValueError:
            raise bad from None
        return UpstreamURL("udp", hp.host, hp.port, None, f"udp://{hp.display()}")
    parts = urlsplit(value)
    proto = parts.scheme
    if proto not in _DEFAULT_PORTS or not parts.hostname:
        raise bad
    try:
        port = parts.port or _DEFAULT_PORTS[proto]
    except ValueError:
        raise bad from None
    host = parts.hostname
    if proto == "https":
        return UpstreamURL(proto, host, port, parts.fragment or host, value)
    if parts.path or parts.query:
        raise bad
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: upstream host must be an IP address") from None
    tls_name = (parts.fragment or host) if proto == "tls" else None
    return UpstreamURL(proto, host, port, tls_name, value)


def parse_network(value: Any) -> str:
    """A CIDR like '10.0.0.0/8' or a single address; returned normalised."""
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP network like 10.0.0.0/8") from None


def one_of(*choices: str) -> Callable[[Any], str]:
    """A check accepting exactly one of `choices` (case-insensitive)."""
    def check(value: Any) -> str:
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
    return check


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} is not a positive integer")
    return value


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "k": 1 << 10,
               "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "KB": 1000, "MB": 1000**2,
               "GB": 1000**3}


def parse_size(value: Any) -> int:
    """A byte count: 65536, '64KiB', '128MiB', '1GiB' (a bare number means bytes)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.match(str(value)) if isinstance(value, str) else None
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{value!r} is not a size (like 65536, 64KiB, 128MiB, 1GiB)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
