"""Which registrable domain a query name belongs to, and whether hunting may suspect it (pure).

Hunting counts *registrable* domains (eTLD+1 by the Public Suffix List), because that is the
unit an attacker buys: `a.evil.com` and `b.evil.com` are one newly seen domain, while
`x.github.io` and `y.github.io` (a private-section suffix) are two. Names whose top-level
label is not in the list (`nas.lan`, `printer.corp`) fall back to the PSL's default rule: the
last two labels, so every LAN domain is its own group and never one big bucket; a single label
(`wpad`) is its own group. Reverse lookups and local-only names (`.arpa`, `.local`,
`localhost`) are skipped: they say nothing about the Internet a device talks to.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

from sinkhole.lists.names import suffix_rules as _suffix_rules

ALLOW_FILE = Path(__file__).resolve().parent.parent / "data" / "hunt-allow.txt"

# What a name is to the hunter (small ints: the classification is cached per name).
TRACK = 0     # an ordinary Internet name: every signal applies
SINGLE = 1    # a single label (`wpad`, a Chrome probe): tracked, but never "newly seen"
ALLOWED = 2   # shipped allowlist or hunt.ignore: may start a sequence, never suspected
SKIP = 3      # reverse DNS or local-only: not looked at at all

_SKIP_TLDS = frozenset({"arpa", "local", "localhost"})


def registrable(name: str) -> str:
    """The registrable domain (eTLD+1) of a normalised name; a public suffix is its own.

    Longest-match over every suffix of the name (a deeper rule can apply where a shallower one
    does not: `s3.amazonaws.com` is a suffix, `amazonaws.com` is not); `!` exceptions win.
    """
    labels = name.split(".")
    n = len(labels)
    if n == 1:
        return name
    exact, wild, exceptions = _suffix_rules()
    suffix_len = 1  # the PSL default rule "*": an unknown TLD is a public suffix
    for k in range(2, n + 1):
        candidate = ".".join(labels[n - k:])
        if candidate in exceptions:
            suffix_len = k - 1
            break
        if candidate in exact or ".".join(labels[n - k + 1:]) in wild:
            suffix_len = k
    if suffix_len >= n:
        return name
    return ".".join(labels[n - suffix_len - 1:])


def classify(qname: str, quiet: frozenset[str]) -> tuple[str, int]:
    """(registrable domain, TRACK/SINGLE/ALLOWED/SKIP) of a query name; `quiet` holds the
    allowlisted and ignored domains, each covering its subdomains."""
    name = qname.rstrip(".")
    tld = name.rpartition(".")[2]
    if tld in _SKIP_TLDS or not name:
        return name, SKIP
    domain = registrable(name)
    if quiet and _covered(name, quiet):
        return domain, ALLOWED
    return domain, (SINGLE if "." not in name else TRACK)


def _covered(name: str, suffixes: frozenset[str]) -> bool:
    """True if the name or one of its parents is in the set (one probe per label)."""
    if name in suffixes:
        return True
    dot = name.find(".")
    while dot >= 0:
        if name[dot + 1:] in suffixes:
            return True
        dot = name.find(".", dot + 1)
    return False


def parse_allow(lines: Iterable[str]) -> frozenset[str]:
    """Domains from allowlist lines: one per line, `#` comments, a leading `*.` tolerated."""
    out = set()
    for line in lines:
        entry = line.split("#", 1)[0].strip().lower()
        if entry.startswith("*."):
            entry = entry[2:]
        entry = entry.strip(".")
        if entry:
            out.add(entry)
    return frozenset(out)


@functools.cache
def shipped_allow() -> frozenset[str]:
    """The shipped allowlist of well-known infrastructure (read once)."""
    with open(ALLOW_FILE, encoding="utf-8") as lines:
        return parse_allow(lines)


def quiet_set(ignore: Iterable[str]) -> frozenset[str]:
    """The shipped allowlist plus the operator's `hunt.ignore` domains."""
    return shipped_allow() | parse_allow(ignore)
