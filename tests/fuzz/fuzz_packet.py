#!/usr/bin/env python3
"""atheris target: the whole per-packet path (Pipeline.handle) and the upstream reply parser.

Each input is one datagram, fed as a query from an allowed, a rate-limited and a refused
client over UDP and TCP (again with QR cleared, so the seed replies reach the query path too),
then as an upstream reply (parse_reply, then render). Any broken invariant raises.
Run: tests/fuzz/run.sh packet [SECONDS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["sinkhole"]):
    from tests.fuzz import packets

RESOLVER = packets.build_resolver()
TRANSPORTS = ("udp", "tcp")


def test_one(data: bytes) -> None:
    variants = [data]
    if len(data) >= 3 and data[2] & 0x80:
        variants.append(data[:2] + bytes([data[2] & 0x7F]) + data[3:])
    for packet in variants:
        for client in packets.CLIENTS:
            for transport in TRANSPORTS:
                packets.check_handle(RESOLVER, packet, client, transport)
    packets.check_upstream_bytes(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
