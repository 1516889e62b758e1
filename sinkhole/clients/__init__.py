"""Who is asking: client access control, and client names from a static map and DHCP leases."""

from sinkhole.clients.access import AccessList, canonical_ip, is_public, parse_networks
from sinkhole.clients.leases import Lease, LeaseFormat, ParsedLeases, load_lease_file, parse_leases
from sinkhole.clients.names import ClientNames

__all__ = [
    "AccessList",
    "ClientNames",
    "Lease",
    "LeaseFormat",
    "ParsedLeases",
    "canonical_ip",
    "is_public",
    "load_lease_file",
    "parse_leases",
    "parse_networks",
]
