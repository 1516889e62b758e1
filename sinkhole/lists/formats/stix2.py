"""STIX 2.1 bundles: the domain names that `indicator` patterns match (mvt-indicators,
Cloudflare Gateway custom feeds, TAXII exports).

Only patterns a resolver can act on exactly are taken: `=` comparisons on `domain-name:value`
or `url:value` (its host), alone or joined by OR. An AND, another operator, a qualifier or
another observable (the IPv4 and file-hash indicators MVT mixes in) is skipped and counted, as
are revoked indicators and those past `valid_until`. A version superseded by a newer revoked
or expired one in the same bundle is skipped too: TAXII exports may carry both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sinkhole.lists.formats.collect import Sink
from sinkhole.lists.formats.jsonstream import CHUNK, Cursor

MAX_PATTERN = 65536
_PATHS = {"domain-name:value": "name", "url:value": "host"}
_NAMED = frozenset({"malware", "intrusion-set", "campaign", "threat-actor", "tool"})
_KEYWORDS = frozenset({
    "AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET", "IN",
    "EXISTS", "WITHIN", "SECONDS", "REPEATS", "TIMES", "START", "STOP", "TRUE", "FALSE"})
# One token per match, each kind its own group; anything else is a malformed pattern. Strings
# take only the two escapes the STIX grammar has (\' and \\).
_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\['\\])*')
  | (?P<lit>[bht]'[^']*')
  | (?P<path>[a-z0-9][a-z0-9-]*:(?:[A-Za-z0-9_-]+|'[^']*')
             (?:\.(?:[A-Za-z0-9_-]+|'[^']*')|\[(?:\d+|\*)\])*)
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<punct>[\[\](),])
  | (?P<word>[A-Za-z]+)
  | (?P<num>[-+]?\d+(?:\.\d+)?)
)""", re.X)
_UNESCAPE = re.compile(r"\\(.)")
_SIMPLE = re.compile(r"\[\s*([a-z0-9-]+:value)\s*=\s*'((?:[^'\\]|\\['\\])*)'\s*\]")
_END = ("end", "")
_CLOSING = {"[": "]", "(": ")"}
_DEATH = (b'"revoked"', b'"valid_until"')
_JOINS = frozenset({"AND", "OR", "FOLLOWEDBY", "NOT"})


def parse_pattern(pattern: str) -> list[tuple[str, str]] | None:
    """[(object path, value)] of an OR-chain of `path = 'value'` comparisons; None for any
    other valid-looking pattern; ValueError for one that is not a pattern at all."""
    simple = _SIMPLE.fullmatch(pattern)
    if simple is not None:  # MVT's and most producers' shape: skip the tokenizer
        value = simple[2]
        return [(simple[1], _UNESCAPE.sub(r"\1", value) if "\\" in value else value)]
    tokens = _tokens(pattern)
    found: list[tuple[str, str]] = []
    i, n = 0, len(tokens)

    def at(k: int) -> tuple[str, str]:
        return tokens[k] if k < n else _END

    while True:
        if at(i) != ("punct", "["):
            return None
        i += 1
        while True:
            (kind, path), op, (vkind, value) = at(i), at(i + 1), at(i + 2)
            if kind != "path" or op != ("op", "=") or vkind != "str":
                return None
            found.append((path, _UNESCAPE.sub(r"\1", value[1:-1])))
            i += 3
            if at(i) != ("word", "OR"):
                break
            i += 1
        if at(i) != ("punct", "]"):
            return None
        i += 1
        if i == n:
            return found
        if at(i) != ("word", "OR"):
            return None
        i += 1


def _tokens(pattern: str) -> list[tuple[str, str]]:
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"pattern longer than {MAX_PATTERN} characters")
    tokens: list[tuple[str, str]] = []
    open_brackets: list[str] = []
    pos, end = 0, len(pattern.rstrip())
    while pos < end:
        m = _TOKEN.match(pattern, pos)
        if m is None:
            raise ValueError(f"unreadable pattern at character {pos + 1}")
        kind = m.lastgroup or ""
        text = m[kind]
        if kind == "word":
            text = text.upper()
            if text not in _KEYWORDS:
                raise ValueError(f"unknown word {m[kind]!r} in pattern")
        elif text in ("[", "("):
            open_brackets.append(_CLOSING[text])
        elif text in ("]", ")") and (not open_brackets or open_brackets.pop() != text):
            raise ValueError("unbalanced brackets in pattern")
        tokens.append((kind, text))
        pos = m.end()
    if not tokens:
        raise ValueError("empty pattern")
    if open_brackets:
        raise ValueError("unbalanced brackets in pattern")
    if tokens[0][1] not in ("[", "("):
        raise ValueError("a pattern starts with '[' (an observation)")
    if tokens[-1][1] in _JOINS:
        raise ValueError(f"pattern ends with {tokens[-1][1]}")
    return tokens


def read(path: Path, sink: Sink, *, now: float, limit: int) -> None:
    """Report every indicator of the bundle at `path` to `sink`."""
    # Revocation and expiry are rare: only a bundle that mentions them pays a second pass.
    dead = _dead_versions(path, now, limit) if _mentions(path, _DEATH) else {}
    with Cursor.open(path, limit) as cursor:
        _Bundle(str(path), sink, now, dead).run(_objects(cursor))


def _mentions(path: Path, words: tuple[bytes, ...]) -> bool:
    """Whether any of `words` occurs in the file (a C search, chunk by chunk)."""
    keep = max(map(len, words))
    tail = b""
    try:
        with open(path, "rb") as raw:
            while chunk := raw.read(CHUNK):
                window = tail + chunk
                if any(word in window for word in words):
                    return True
                tail = window[-keep:]
    except OSError:
        return False  # the reading pass reports it
    return False


def _objects(cursor: Cursor) -> Iterator[tuple[int, Any]]:
    bundle_type: Any = None
    for key in cursor.members("the bundle"):
        if key == "type":
            bundle_type = cursor.value()
            if bundle_type != "bundle":
                raise cursor.error(f"not a STIX bundle (type {bundle_type!r})")
        elif key == "objects":
            yield from enumerate(cursor.values("objects"))
    cursor.end()
    if bundle_type is None:
        raise cursor.error('not a STIX bundle (no "type": "bundle")')


def _dead_versions(path: Path, now: float, limit: int) -> dict[str, float]:
    """Indicator id -> `modified` time of its newest revoked or expired version."""
    dead: dict[str, float] = {}
    with Cursor.open(path, limit) as cursor:
        for _, obj in _objects(cursor):
            if not isinstance(obj, dict) or obj.get("type") != "indicator":
                continue
            try:
                gone = obj.get("revoked") is True or _expired(obj, now)
                modified = _time(obj, "modified", 0.0)
            except ValueError:
                continue  # the main pass reports it
            oid = obj.get("id")
            if gone and isinstance(oid, str):
                dead[oid] = max(modified, dead.get(oid, modified))
    return dead


def _time(obj: dict[str, Any], field: str, default: float) -> float:
    value = obj.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected a timestamp, found {type(value).__name__}")
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"{field}: invalid timestamp {value[:40]!r}") from err
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)  # STIX times are UTC
    return stamp.timestamp()


def _expired(obj: dict[str, Any], now: float) -> bool:
    return _time(obj, "valid_until", float("inf")) <= now


class _Bundle:
    """One pass over a bundle's objects."""

    def __init__(self, file: str, sink: Sink, now: float, dead: dict[str, float]) -> None:
        self.file, self.sink, self.now, self.dead = file, sink, now, dead
        self.names: dict[str, str] = {}  # malware/intrusion-set id -> name
        self.indicates: dict[str, list[str]] = {}  # indicator id -> target ids (check only)

    def run(self, objects: Iterator[tuple[int, Any]]) -> None:
        sink = self.sink
        for index, obj in objects:
            kind = obj.get("type") if isinstance(obj, dict) else None
            if not isinstance(kind, str):
                sink.error(self.file, f"object #{index + 1}", "not a STIX object (no type)", "")
            elif kind == "indicator":
                self.indicator(index, obj)
            elif kind in _NAMED and isinstance(obj.get("name"), str) and len(self.names) < 64:
                self.names[str(obj.get("id"))] = obj["name"]
            elif (kind == "relationship" and sink.wants_text
                  and obj.get("relationship_type") == "indicates"):
                self.indicates.setdefault(str(obj.get("source_ref")), []).append(
                    str(obj.get("target_ref")))
        if len(self.names) == 1:
            sink.meta.setdefault("title", next(iter(self.names.values())))
        if sink.wants_text:
            self.annotate()

    def indicator(self, index: int, obj: dict[str, Any]) -> None:
        sink, oid = self.sink, obj.get("id")
        where = oid if isinstance(oid, str) and oid else f"indicator #{index + 1}"
        sink.lines += 1
        pattern = obj.get("pattern")
        revoked = obj.get("revoked", False)
        pattern_type = obj.get("pattern_type", "stix")  # STIX 2.0 had no pattern_type
        try:
            if not isinstance(pattern, str):
                raise ValueError("pattern: expected a string")
            if not isinstance(revoked, bool):
                raise ValueError("revoked: expected true or false")
            if not isinstance(pattern_type, str):
                raise ValueError("pattern_type: expected a string")
            if revoked or ("valid_until" in obj and _expired(obj, self.now)) \
                    or (self.dead and self._superseded(obj)):
                return sink.skip()
            if pattern_type != "stix":  # sigma, yara, snort...
                return sink.skip()
            comparisons = parse_pattern(pattern)
        except ValueError as err:
            return sink.error(self.file, where, str(err), pattern if isinstance(pattern, str)
                              else "")
        if comparisons is None:
            return sink.skip()
        # The rule text is shown by `sinkhole check` only; a load's errors show the pattern.
        text = _text(obj, pattern) if sink.wants_text else pattern
        for obj_path, value in comparisons:
            kind = _PATHS.get(obj_path)
            if kind == "name":
                sink.name(self.file, where, value, text)
            elif kind == "host":
                sink.host(self.file, where, value, text)
            else:
                sink.skip()

    def _superseded(self, obj: dict[str, Any]) -> bool:
        newest_dead = self.dead.get(str(obj.get("id")))
        return newest_dead is not None and _time(obj, "modified", 0.0) < newest_dead

    def annotate(self) -> None:
        """`sinkhole check` shows what an indicator indicates (MVT's have no name)."""
        found = self.sink.found  # type: ignore[attr-defined]
        for i, (file, where, text) in enumerate(found):
            targets = [self.names[t] for t in self.indicates.get(where, ()) if t in self.names]
            if targets:
                found[i] = (file, where, f"{text} (indicates {', '.join(targets)})")


def _text(obj: dict[str, Any], pattern: str) -> str:
    """The rule text: the indicator's name, else its description, else its pattern."""
    for key in ("name", "description"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return pattern
