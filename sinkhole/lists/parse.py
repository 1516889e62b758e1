"""List text parsing: plain, hosts, adblock, wildcard and RPZ lines into a ParsedList (pure).

Formats are detected per line, so one file may mix them. A line we cannot read is recorded as
an error and skipped; a valid rule we cannot honour (adblock `$third-party`, element hiding,
RPZ IP triggers) is counted as `unsupported`. Nothing here raises on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sinkhole.lists.names import (
    IGNORED_NAMES,
    NAME_PATTERN,
    ignored_host,
    is_ip,
    normalise_name,
    rule_key,
)
from sinkhole.lists.rpz import Rule, ZoneReader, is_record

__all__ = ["ParseError", "ParsedList", "iter_rules", "normalise_name", "parse_lines"]

MAX_LINE = 4096  # longer lines are errors; the loader never hands us more than this + 1
MAX_ERRORS = 100  # errors kept with their text; all are counted (a binary blob stays bounded)
MAX_TEXT = 200
META_KEYS = frozenset(
    {"title", "source", "date", "licence", "license", "category", "severity", "confidence",
     "advice"}
)
ADBLOCK_OPTIONS = frozenset({"important", "all"})  # options that do not narrow a DNS block

# The common line shapes (plain name, one-name hosts line, bare `||name^`) in one regex: most
# lines of a million-line list take only this path, which keeps parsing near 1 µs per line.
_FAST_RE = re.compile(
    rf"(?:(?:0\.0\.0\.0|127\.0\.0\.1|::1?)[ \t]+)?({NAME_PATTERN})\.?|\|\|({NAME_PATTERN})\^"
)
_META_RE = re.compile(r"[#!;]+\s*([A-Za-z]+)\s*:\s*(.*?)\s*")
_ELEMHIDE_RE = re.compile(r"[^\s#]+#[@?$%]{0,2}#")  # example.com##.ad, #@#, #?#, #$#
_ADBLOCK_RE = re.compile(r"^(?:\||@@|/)|[\^$|]")
_GLOB_RE = re.compile(r"[*/:?=&%^|]")
_COMMENT_RE = re.compile(r";.*|\s#.*")


@dataclass(slots=True)
class ParseError:
    """One line we skipped: a record for logs and `check-config`, never raised."""

    source: str
    line: int
    reason: str
    text: str


@dataclass(slots=True)
class ParsedList:
    """Every rule of one list (a file or a folder), grouped by what it does.

    Keys are normalised names; a `*.name` rule (subdomains only) keeps its `*.` prefix in the
    same sets and is also listed in `wildcard`. Sets, not name -> line dicts: per million
    names a set costs 32 MB, a dict with line numbers 60 MB (measured), which would break the
    130 MB budget; `loader.find_rule` rescans the files for line numbers instead.
    """

    source: str
    block: set[str] = field(default_factory=set)  # the list's configured action
    allow: set[str] = field(default_factory=set)  # adblock @@, RPZ rpz-passthru.
    nxdomain: set[str] = field(default_factory=set)  # RPZ CNAME .
    nodata: set[str] = field(default_factory=set)  # RPZ CNAME *.
    local: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # RPZ A/AAAA/CNAME
    wildcard: set[str] = field(default_factory=set)
    errors: list[ParseError] = field(default_factory=list)
    error_count: int = 0
    unsupported: int = 0
    lines: int = 0
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def rules(self) -> int:
        """Acting rules (allow rules excluded): what `entries` and the metrics report."""
        return len(self.block) + len(self.nxdomain) + len(self.nodata) + len(self.local)


class _Parser:
    """One file's reading state (header block, zone file) feeding rules to `emit`."""

    def __init__(self, out: ParsedList, source: str,
                 emit: Callable[[Rule], None] | None = None) -> None:
        self.out, self.source = out, source
        self.emit = emit or self._store
        self.add_block: Callable[[str], None] = (
            out.block.add if emit is None else lambda key: emit(("block", key, None)))
        self.header: dict[str, str] | None = {}
        self.zone = ZoneReader()
        self.last = 0

    def run(self, lines: Iterable[str], first: int = 1) -> None:
        fast, add_block, zone = _FAST_RE.fullmatch, self.add_block, self.zone
        lineno = first - 1
        for lineno, raw in enumerate(lines, first):
            line = raw.strip()
            if not line:
                continue
            if zone.in_parens:
                try:
                    zone.paren_line(_COMMENT_RE.sub("", line).split())
                except ValueError as err:
                    self._error(lineno, str(err), line)
                continue
            if line[0] in "#!;" or (line[0] == "[" and line[-1] == "]"):  # [Adblock Plus 2.0]
                if self.header is not None:
                    self._meta(line)
                continue
            if self.header is not None:
                self._end_header()
            m = fast(line.lower())
            if m is not None:
                name = m[m.lastindex or 1]
                # A trailing digit may be an IP ("0.0.0.0 0.0.0.0"): let the slow path judge.
                if len(name) <= 253 and not name[-1].isdigit():
                    if name not in IGNORED_NAMES and not name.startswith("ip6-"):
                        add_block(name)
                    continue
            self._slow(lineno, line, raw[0] in " \t")
        self.out.lines += lineno - first + 1
        self.last = lineno

    def finish(self) -> None:
        """End of file: keep the header of a file with no rules, flag an unclosed '('."""
        if self.header is not None:
            self._end_header()
        if self.zone.in_parens:
            self._error(self.last, "file ends inside '(' … ')'", "")

    def _meta(self, line: str) -> None:
        assert self.header is not None
        m = _META_RE.fullmatch(line)
        if m is None or m[1].lower() not in META_KEYS or not m[2]:
            return
        key = "licence" if m[1].lower() == "license" else m[1].lower()
        if key == "advice" and key in self.header:
            self.header[key] += " " + m[2]
        else:
            self.header.setdefault(key, m[2])

    def _end_header(self) -> None:
        assert self.header is not None
        for key, value in self.header.items():
            self.out.meta.setdefault(key, value)  # in a folder, the first file's header wins
        self.header = None

    def _store(self, rule: Rule) -> None:
        kind, key, data = rule
        out = self.out
        if kind == "unsupported":
            out.unsupported += 1
            return
        if kind == "ignore":
            return
        if data is not None:
            out.local.setdefault(key, []).append(data)
        else:
            getattr(out, kind).add(key)
        if key[0] == "*":
            out.wildcard.add(key)

    def _error(self, lineno: int, reason: str, text: str) -> None:
        out = self.out
        out.error_count += 1
        if len(out.errors) < MAX_ERRORS:
            out.errors.append(ParseError(self.source, lineno, reason, text[:MAX_TEXT]))

    def _slow(self, lineno: int, line: str, indented: bool) -> None:
        if len(line) > MAX_LINE:
            return self._error(lineno, f"line longer than {MAX_LINE} characters", "")
        if "\ufffd" in line:
            return self._error(lineno, "invalid UTF-8 (or U+FFFD)", line)
        if _ELEMHIDE_RE.match(line):
            return self.emit(_UNSUPPORTED)
        text = _COMMENT_RE.sub("", line).strip()
        tokens = text.split()
        try:
            if not tokens:
                return None
            if text[0] == "$":
                return self.emit(self.zone.directive(tokens))
            if _ADBLOCK_RE.search(text):
                return self.emit(_adblock(text))
            if len(tokens) == 1:
                return self._plain(tokens[0])
            if is_ip(tokens[0]):
                return self._hosts(tokens[1:])
            if is_record(tokens):
                return self.emit(self.zone.record(tokens, indented))
        except ValueError as err:
            return self._error(lineno, str(err), line)
        return self._error(lineno, "unrecognised line", line)

    def _plain(self, token: str) -> None:
        if is_ip(token):
            raise ValueError("an IP address, not a name")
        if not ignored_host(token):
            self.emit(("block", rule_key(token), None))

    def _hosts(self, names: list[str]) -> None:
        # All or nothing: a line with one bad name is skipped whole, like any bad line.
        keys = [rule_key(n) for n in names if not ignored_host(n)]
        for key in keys:
            self.emit(("block", key, None))


_UNSUPPORTED: Rule = ("unsupported", "", None)


def _adblock(text: str) -> Rule:
    """`||name^` blocks, `@@||name^` allows; anything narrower than a whole name is unsupported
    (URL paths, globs, regexes, `$third-party` and other options a resolver cannot see)."""
    kind = "allow" if text.startswith("@@") else "block"
    body, _, opts = text.removeprefix("@@").partition("$")
    options = {o.strip().lower() for o in opts.split(",")} if opts else set()
    if not body.startswith("||") or not options <= ADBLOCK_OPTIONS:
        return _UNSUPPORTED
    body = body[2:].removesuffix("|")
    # Without the ^ separator "||ads" is a prefix match ("ads.example", "adsl.net"...).
    if not body.endswith("^") or _GLOB_RE.search(body[:-1].removeprefix("*.")):
        return _UNSUPPORTED
    return (kind, rule_key(body[:-1]), None)


def parse_lines(lines: Iterable[str], source: str, into: ParsedList | None = None) -> ParsedList:
    """Parse one file's lines; bad lines become `errors`, never exceptions.

    `into` lets the loader merge the files of a folder without copying sets; each call keeps
    its own header block and `$ORIGIN`, as each file is its own document.
    """
    out = into if into is not None else ParsedList(source=source)
    parser = _Parser(out, source)
    try:
        parser.run(lines)
        parser.finish()
    finally:
        # The parser's `emit` is its own bound method: a reference cycle that would keep the
        # whole ParsedList alive until a full GC (rare with our thresholds): RSS grew by one
        # list per reload. Break it so the old version is freed when the policy swaps.
        parser.emit = None  # type: ignore[assignment]
    return out


def iter_rules(lines: Iterable[str], source: str = "") -> Iterator[tuple[int, str, Rule]]:
    """Yield (line number, stripped line, rule) per rule found: what `sinkhole check` shows.

    Slower than `parse_lines` (one parser call per line); only the CLI uses it.
    """
    found: list[Rule] = []
    parser = _Parser(ParsedList(source), source, found.append)
    for lineno, raw in enumerate(lines, 1):
        parser.run((raw,), lineno)
        for rule in found:
            if rule[0] not in ("ignore", "unsupported"):
                yield lineno, raw.strip(), rule
        found.clear()
