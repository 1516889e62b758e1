"""What every log importer shares: the errors, the counters, bounded line reading, and turning
another program's spelling of a name, a type, an address or a time into an `Observation`'s.

Why one place: a name imported from Zeek and the same name seen live must compare equal, so
every importer normalises through the same functions (lower-case ASCII only, no trailing dot,
one character per wire byte as the wire decoder's latin-1 mapping gives), and every importer
counts and reports bad input the same way (a bad line is a counted error with its line number,
never an exception: one corrupt line must not end the import of a year of history).
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sinkhole.errors import SinkholeError
from sinkhole.events import Observation
from sinkhole.metrics import QTYPES

MAX_LINE = 64 * 1024      # bytes; a longer line is an error (a real dns.log line is < 2 KiB)
MAX_NAME = 255            # wire bytes: no DNS name is longer, so a longer one is garbage
MAX_ERRORS = 100          # errors kept with their line numbers; the rest only counted
PROBE_LINES = 1000        # no observation and mostly errors in these lines: wrong --format
MAX_CLIENTS = 100_000     # validated-address cache; cleared (all re-validated) beyond it
MAX_TIME = 1e10           # year 2286: a larger Unix time is a parse error, not a date

# Names of query types, by number: the metrics table (what the live pipeline says) plus the
# types hunting looks at (NULL and TXT tunnels) and the ones other resolvers log by name.
QTYPE_NAMES: dict[int, str] = {
    3: "MD", 4: "MF", 10: "NULL", 13: "HINFO", 17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY",
    29: "LOC", 35: "NAPTR", 37: "CERT", 39: "DNAME", 43: "DS", 44: "SSHFP", 46: "RRSIG",
    47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA",
    59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 99: "SPF", 249: "TKEY", 250: "TSIG",
    251: "IXFR", 252: "AXFR", 256: "URI", 257: "CAA", **QTYPES,
}
_KNOWN_QTYPES = frozenset(QTYPE_NAMES.values())
_MNEMONIC = re.compile(r"[A-Z][A-Z0-9-]{0,15}\Z")
_NUMBERED = re.compile(r"(?:TYPE|QUERY-|TYPE=)(\d{1,5})\Z")   # RFC 3597, Zeek, dnsmasq


class LogImportError(SinkholeError):
    """A log cannot be imported at all: missing, unreadable (bad lines are counted instead)."""


class LogFormatError(LogImportError):
    """The file as a whole is not in the format asked for (an unknown --format, an SQLite
    database read as text, a text log read as a database, no line of the start parses)."""


class BadLine(ValueError):
    """One line or row is malformed; the reason is reported with its line number."""


@dataclass
class ImportStats:
    """What an import saw, filled in as it streams: `lines` read (rows for a database) =
    `imported` + `skipped` (not a query by design: headers, reply lines, other events) +
    `error_count`; `errors` keeps the first MAX_ERRORS as (line number or row id, reason)."""

    lines: int = 0
    imported: int = 0
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    error_count: int = 0

    def error(self, where: int, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append((where, reason))

    def probe(self, fmt: str, path: str | Path) -> None:
        """Raise LogFormatError when nothing so far parsed and most lines were errors: every
        line of a Pi-hole database or a Zeek log read as dnsmasq is "bad", and a report of a
        million bad lines is a worse answer than "wrong --format"."""
        if self.imported or not self.error_count or self.error_count * 2 <= self.lines:
            return
        where, reason = self.errors[0]
        raise LogFormatError(f"{path}: not a {fmt} log? none of the first {self.lines} lines "
                             f"is a query ({self.error_count} bad; line {where}: {reason})")


def open_log(path: str | Path) -> IO[bytes]:
    """Open a text log for binary line reading; a gzip-compressed one (rotated logs) is read
    through, and an SQLite file is refused with the format that reads it."""
    try:
        f: IO[bytes] = open(path, "rb")  # noqa: SIM115 (closed by the reader's generator)
    except FileNotFoundError as err:
        raise LogImportError(f"{path}: no such file") from err
    except OSError as err:
        raise LogImportError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        head = f.peek(16)[:16]  # type: ignore[attr-defined]
    except OSError as err:
        f.close()
        raise LogImportError(f"{path}: cannot read: {err.strerror or err}") from err
    if head.startswith(b"SQLite format 3\x00"):
        f.close()
        raise LogFormatError(f"{path}: is an SQLite database, not a text log "
                             f"(Pi-hole's pihole-FTL.db is --format pihole)")
    if head.startswith(b"\x1f\x8b"):
        return _GzipLog(f)
    return f


class _GzipLog(gzip.GzipFile):
    """A gzip stream that also closes the file under it (GzipFile leaves a given file open).
    Reads through the already-open file, so a FIFO's first bytes (peeked) are not lost."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        super().__init__(fileobj=raw, mode="rb")

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def parse_lines(f: IO[bytes], parse: Callable[[bytes], Observation | None], stats: ImportStats,
                fmt: str, path: str | Path) -> Iterator[Observation]:
    """The loop every text importer runs: one bounded line at a time (a line over MAX_LINE is
    read through in MAX_LINE pieces and counted as one error); `parse` returns an Observation,
    None (skipped by design) or raises BadLine (an error, reported with the line number)."""
    readline, lineno = f.readline, 0
    try:
        while True:
            try:
                line = readline(MAX_LINE + 1)
                too_long = len(line) > MAX_LINE and not line.endswith(b"\n")
                if too_long:
                    _read_through(readline)
            except (OSError, EOFError) as err:   # a truncated .gz, an I/O error: stop, say so
                stats.lines += 1
                stats.error(lineno + 1, f"read failed: {err}")
                break
            if not line:
                break
            lineno += 1
            stats.lines += 1
            if too_long:
                stats.error(lineno, f"line longer than {MAX_LINE} bytes")
            else:
                obs = parse_one(parse, line.rstrip(b"\r\n"), lineno, stats)
                if obs is not None:
                    yield obs
            if lineno == PROBE_LINES:
                stats.probe(fmt, path)
        if lineno < PROBE_LINES:
            stats.probe(fmt, path)
    finally:
        f.close()


# What a parser may raise on hostile input besides BadLine: counted as that line's error.
_PARSE_ERRORS = (BadLine, ValueError, TypeError, KeyError, IndexError, AttributeError,
                 OverflowError, RecursionError)


def parse_one(parse: Callable[[Any], Observation | None], item: Any, where: int,
              stats: ImportStats) -> Observation | None:
    """Run one parse and count its outcome (imported, skipped, or an error at `where`)."""
    try:
        obs = parse(item)
    except _PARSE_ERRORS as err:
        # a BadLine's reason quotes input with repr(); other errors' text may hold raw bytes
        stats.error(where, str(err) if isinstance(err, BadLine) else
                    f"unparseable ({type(err).__name__})")
        return None
    if obs is None:
        stats.skipped += 1
    else:
        stats.imported += 1
    return obs


def _read_through(readline: Callable[[int], bytes]) -> None:
    """Skip the rest of an over-long line without holding it."""
    while True:
        piece = readline(MAX_LINE)
        if not piece or piece.endswith(b"\n"):
            return


def norm_qname(name: str) -> str:
    """The name as the wire decoder gives it: no trailing dot, ASCII lower-cased (bytes.lower
    semantics: a latin-1 letter stays, as on the wire). `name` holds one character per byte;
    an empty result is the root (callers skip it)."""
    if name.endswith("."):
        name = name[:-1]
    if len(name) > MAX_NAME:
        raise BadLine(f"name longer than {MAX_NAME} bytes")
    if name.isascii():
        return name.lower()
    try:
        return name.encode("latin-1").lower().decode("latin-1")
    except UnicodeEncodeError:
        raise BadLine("name has characters that are not bytes") from None


def wire_text(text: str) -> str:
    """A name from JSON (Unicode text) in the wire decoder's form: its UTF-8 bytes, one
    character each. Undecodable bytes of the line come back as they were (surrogateescape)."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("latin-1")


_HEX_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_DDD_ESCAPE = re.compile(r"\\(\d{3})")


def unescape_hex(text: str) -> str:
    """Zeek's escaping of odd bytes (\\xNN) back to the bytes, one character each."""
    if "\\x" not in text:
        return text
    return _HEX_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def unescape_ddd(text: str) -> str:
    """DNS presentation escapes (\\DDD, what sinkhole's logs write) back to the bytes."""
    if "\\" not in text:
        return text
    return _DDD_ESCAPE.sub(_ddd_char, text)


def _ddd_char(m: re.Match[str]) -> str:
    code = int(m.group(1))
    return chr(code) if code < 256 else m.group(0)


def qtype_label(qtype: int) -> str:
    """A type number as Observation names it ("A", "NULL", "TYPE65534")."""
    return QTYPE_NAMES.get(qtype) or f"TYPE{qtype}"


def norm_qtype(value: Any) -> str:
    """A type as another program spells it (a number, "aaaa", Zeek's "*" and "query-65534",
    dnsmasq's "type=65534", RFC 3597 "TYPE65") in Observation's spelling."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 0xFFFF:
            return qtype_label(value)
        raise BadLine(f"query type {value} out of range")
    if not isinstance(value, str):
        raise BadLine("query type is not a name or number")
    name = value.upper()
    if name in _KNOWN_QTYPES:
        return name
    if name.isdigit() and len(name) <= 5:
        return norm_qtype(int(name))
    numbered = _NUMBERED.match(name)
    if numbered:
        return norm_qtype(int(numbered.group(1)))
    if name == "*":
        return "ANY"
    if _MNEMONIC.match(name):
        return name
    raise BadLine(f"bad query type {value[:20]!r}")


def parse_time(value: Any) -> float:
    """A Unix time from a number, a number as text (Zeek TSV), or ISO 8601 text (Zeek JSON,
    sinkhole's JSON logs); ISO without an offset is UTC (JSON writers log in UTC)."""
    if isinstance(value, bool):
        raise BadLine("bad time")
    if isinstance(value, int | float):
        when = float(value)
    elif isinstance(value, str):
        try:
            when = float(value)
        except ValueError:
            when = _iso_time(value)
    else:
        raise BadLine("time is not a number or ISO 8601 text")
    return check_time(when)


def _iso_time(text: str) -> float:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise BadLine(f"bad time {text[:40]!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def check_time(when: float) -> float:
    """A plausible Unix time, or BadLine (NaN fails the comparison too)."""
    if not 0.0 < when < MAX_TIME:
        raise BadLine(f"time {when!r} out of range")
    return when


class ClientCache:
    """Validates client addresses (an IP, v4 or v6, in its canonical spelling), remembering
    the answer: a network has few clients and a log repeats them millions of times."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, text: Any) -> str:
        if not isinstance(text, str):
            raise BadLine("no client address")
        seen = self._seen.get(text)
        if seen is not None:
            return seen
        if len(text) > 64:
            raise BadLine("bad client address")
        try:
            canonical = str(ipaddress.ip_address(text))
        except ValueError:
            raise BadLine(f"bad client address {text[:64]!r}") from None
        if len(self._seen) >= MAX_CLIENTS:
            self._seen.clear()
        self._seen[text] = canonical
        return canonical


def norm_client_name(value: Any) -> str | None:
    """A device name as text, or None; cut to a DNS name's length (it only labels a row)."""
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_NAME]


def load_json(raw: bytes) -> dict[str, Any]:
    """One JSON object from a line; bytes that are not UTF-8 survive as surrogates (and
    become their own bytes again in `wire_text`) instead of failing the line."""
    try:
        try:
            obj = json.loads(raw)
        except UnicodeDecodeError:
            obj = json.loads(raw.decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError as err:
        raise BadLine(f"bad JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(obj, dict):
        raise BadLine("JSON line is not an object")
    return obj
