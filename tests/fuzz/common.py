"""What every fuzz check shares: the Violation it raises, an independent wire walker,
dnspython's reading of a message, and the seed corpus.

A check raises `Violation` (an AssertionError, so pytest and atheris both report it) when an
invariant breaks; it judges sinkhole's output with this walker and dnspython, never with the
code under test. `SINKHOLE_FUZZ_IGNORE=tag,tag` lets a long run go on past a bug already
reported: its first occurrence is printed, then it is ignored.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from struct import pack, unpack_from
from typing import Any

import dns.exception
import dns.message

CORPUS = Path(__file__).resolve().parent / "corpus"
IGNORED = frozenset(t for t in os.environ.get("SINKHOLE_FUZZ_IGNORE", "").split(",") if t)
TYPE_OPT = 41


class Violation(AssertionError):
    """An invariant broke; `tag` names which, the message carries the input."""

    def __init__(self, tag: str, message: str, data: Any) -> None:
        shown = repr(data)
        if len(shown) > 3000:
            shown = shown[:3000] + "..."
        super().__init__(f"[{tag}] {message}\n  input: {shown}")
        self.tag = tag


_seen_ignored: set[str] = set()


def fail(tag: str, message: str, data: Any) -> None:
    if tag not in IGNORED:
        raise Violation(tag, message, data)
    if tag not in _seen_ignored:   # say once that a known bug was hit again, then go on
        _seen_ignored.add(tag)
        print(f"known violation (ignored): {Violation(tag, message, data)}", file=sys.stderr)


# -- an independent wire walker ----------------------------------------------------------------

def skip_name(msg: bytes, off: int) -> int:
    """Offset after a (possibly compressed) name; ValueError if it does not fit."""
    while True:
        if off >= len(msg):
            raise ValueError("name past the end")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 2 > len(msg):
                raise ValueError("pointer past the end")
            return off + 2
        if n & 0xC0:
            raise ValueError("bad label type")
        off += n + 1
        if n == 0:
            return off


def walk_records(msg: bytes, off: int, count: int) -> tuple[int, list[tuple[int, int]]]:
    """Walk `count` records from `off`: (end offset, [(rtype, ttl offset)])."""
    out = []
    for _ in range(count):
        off = skip_name(msg, off)
        if off + 10 > len(msg):
            raise ValueError("record header past the end")
        rtype, _cls, _ttl, rdlen = unpack_from("!HHIH", msg, off)
        out.append((rtype, off + 4))
        off += 10 + rdlen
        if off > len(msg):
            raise ValueError("rdata past the end")
    return off, out


def walk_message(msg: bytes) -> list[list[int]]:
    """Record types per section (answer, authority, additional); ValueError unless the header
    counts describe the message exactly (no shortfall, no trailing bytes)."""
    _id, _flags, qd, an, ns, ar = unpack_from("!6H", msg)
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    if off > len(msg):
        raise ValueError("question past the end")
    sections = []
    for count in (an, ns, ar):
        off, recs = walk_records(msg, off, count)
        sections.append([t for t, _ in recs])
    if off != len(msg):
        raise ValueError(f"{len(msg) - off} bytes after the last record")
    return sections


def read_message(msg: bytes) -> dns.message.Message:
    """dnspython's reading of `msg`, opcode forced to QUERY: an UPDATE reply echoes the
    client's zone section, which dnspython would validate as one."""
    if len(msg) >= 4 and msg[2] & 0x78:
        msg = msg[:2] + bytes([msg[2] & 0x87]) + msg[3:]
    return dns.message.from_wire(msg)


def dnspython_parses(msg: bytes) -> str | None:
    """None if dnspython reads `msg` as a DNS message, else why not."""
    try:
        read_message(msg)
    except (dns.exception.DNSException, ValueError, IndexError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def question_of(name: str, qtype: int) -> bytes:
    return b"".join(bytes([len(lb)]) + lb for lb in name.encode().split(b".")) + b"\x00" + \
        pack("!HH", qtype, 1)


def corpus(kind: str) -> list[bytes]:
    """The seed files of one corpus folder (packets, replies, lists), sorted by name."""
    folder = CORPUS / kind
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
