"""Fuzz invariants of the list parsers: parse_lines, iter_rules, normalise_name, load_path,
and what the policy built from them matches. Used by tests/test_fuzz.py and fuzz_lists.py.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from struct import pack
from typing import Any

from sinkhole.dns.wire import WireError, parse_query
from sinkhole.lists.loader import ListError, load_path
from sinkhole.lists.matcher import ListInfo, build_policy
from sinkhole.lists.names import normalise_name
from sinkhole.lists.parse import ParsedList, iter_rules, parse_lines
from tests.fuzz.common import fail, question_of

_NAME_RE = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")


def is_normalised(name: str) -> bool:
    return len(name) <= 253 and _NAME_RE.fullmatch(name) is not None


def check_key(key: str, data: Any, tag: str = "lists.name") -> None:
    name = key[2:] if key.startswith("*.") else key
    if not is_normalised(name):
        if "*" in name:
            tag = "lists.nested-wildcard"
        fail(tag, f"stored name {key!r} is not normalised (lower case, no trailing dot, "
             "labels 1-63, total <= 253)", data)


def check_parsed(parsed: ParsedList, data: Any) -> None:
    keys: set[str] = set()
    for kind in (parsed.block, parsed.allow, parsed.nxdomain, parsed.nodata, parsed.local):
        keys.update(kind)
    for key in keys:
        check_key(key, data)
    if not parsed.wildcard <= keys or any(k.startswith("*") for k in keys - parsed.wildcard):
        fail("lists.wildcard", "wildcard set differs from the `*.` rules", data)
    for key, entries in parsed.local.items():
        for qtype, text in entries:
            if qtype == 5:
                check_key(text, data, "lists.local-target")
            elif qtype in (1, 28):
                ip = ipaddress.ip_address(text)
                if ip.version != (4 if qtype == 1 else 6) or str(ip) != text:
                    fail("lists.local-data", f"{key}: bad address {text!r}", data)
            else:
                fail("lists.local-data", f"{key}: local data of type {qtype}", data)
    try:
        policy = build_policy([(ListInfo("fuzz"), parsed)])
    except Exception as err:
        fail("lists.policy", f"build_policy: {type(err).__name__}: {err}", data)
        return
    for key in sorted(keys)[:50]:
        name = "x." + key[2:] if key.startswith("*.") else key
        if len(name) <= 253 and policy.match(name) is None:
            fail("lists.match", f"rule {key!r} does not match {name!r}", data)
        if not key.startswith("*.") and is_normalised(key):
            _check_wire_key(key, data)


def _check_wire_key(name: str, data: Any) -> None:
    """The stored key equals what the wire decoder hands the matcher for that name."""
    packet = pack("!6H", 1, 0x0100, 1, 0, 0, 0) + question_of(name, 1)
    try:
        qname = parse_query(packet).qname
    except WireError as err:
        fail("lists.wire-key", f"a query for rule {name!r} is rejected: {err}", data)
        return
    if qname != name:
        fail("lists.wire-key", f"rule {name!r} reaches the matcher as {qname!r}", data)


def check_lines(lines: list[str]) -> None:
    """parse_lines never raises and stores only normalised names; iter_rules agrees."""
    try:
        parsed = parse_lines(lines, "fuzz")
        rules = {(kind, key) for _n, _t, (kind, key, _d) in iter_rules(lines, "fuzz")}
    except Exception as err:
        fail("lists.escape", f"{type(err).__name__}: {err}", lines)
        return
    check_parsed(parsed, lines)
    stored = {("block", k) for k in parsed.block} | {("allow", k) for k in parsed.allow} | \
        {("nxdomain", k) for k in parsed.nxdomain} | {("nodata", k) for k in parsed.nodata} | \
        {("local", k) for k in parsed.local}
    if rules != stored:
        fail("lists.iter-rules", f"iter_rules and parse_lines disagree: {rules ^ stored}", lines)


def check_normalise(text: str) -> None:
    """normalise_name: ValueError or a normalised, idempotent name."""
    try:
        name = normalise_name(text)
    except ValueError:
        return
    except Exception as err:
        fail("names.escape", f"{type(err).__name__}: {err}", text)
        return
    if not is_normalised(name) or normalise_name(name) != name:
        fail("names.normalise", f"normalise_name gave {name!r}", text)


def check_load(data: bytes, path: Path) -> None:
    """load_path on any bytes: a ParsedList, or ListError (only for a binary file)."""
    path.write_bytes(data)
    try:
        parsed = load_path(path)
    except ListError as err:
        if b"\x00" not in data[:8192]:
            fail("load.rejected", f"a text file was rejected: {err}", data)
        return
    except Exception as err:
        fail("load.escape", f"{type(err).__name__}: {err}", data)
        return
    check_parsed(parsed, data)
