"""Real loopback peers (plain DNS, DoT, DoH) and a CA for the daemon's tests: no mocks."""

from .dnsserver import (
    EDNS_PAYLOAD,
    MODES,
    Answer,
    DohUpstream,
    FakeUpstream,
    TlsUpstream,
    cname_answer,
    default_answer,
    forge_replies,
    spray_udp,
)
from .tlsca import TestCA

__all__ = [
    "EDNS_PAYLOAD",
    "MODES",
    "Answer",
    "DohUpstream",
    "FakeUpstream",
    "TestCA",
    "TlsUpstream",
    "cname_answer",
    "default_answer",
    "forge_replies",
    "spray_udp",
]
