"""Log importers: another resolver's history as `Observation`s on *its* clock, so hunting can
baseline months of past traffic (and retro-hunt it) the day sinkhole is installed.

`read_log(path, fmt, stats)` returns a lazy iterator: lines are read one at a time (bounded by
MAX_LINE), never a whole file, so a 10 GB log streams in constant memory. Observations come in
file order, not sorted (Zeek writes unanswered queries late; a few minutes out of order is
normal and the consumer takes them as they come). Bad lines are counted in `stats` with their
line numbers (rows: their id) and never raise; only a file that cannot be read at all, or that
is not in the format asked for as a whole, raises LogImportError / LogFormatError. Opening
happens at the call (a missing file fails before the first observation is asked for).

Formats (each module's docstring says what exactly it reads):
- zeek: Zeek dns.log, TSV with its #fields header, or JSON lines
- pihole: Pi-hole's FTL database (pihole-FTL.db), read-only, never locking it
- dnsmasq: dnsmasq log-queries lines (and Pi-hole's pihole.log), syslog or RFC 3339 times
- jsonl: sinkhole's own JSON log (hit lines), and the plain exchange format
Text formats may be gzip-compressed (rotated logs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sinkhole.events import Observation
from sinkhole.importers import dnsmasq, jsonl, pihole, zeek
from sinkhole.importers.common import (
    MAX_ERRORS,
    MAX_LINE,
    ImportStats,
    LogFormatError,
    LogImportError,
)

FORMATS = ("zeek", "pihole", "dnsmasq", "jsonl")

__all__ = ["FORMATS", "MAX_ERRORS", "MAX_LINE", "ImportStats", "LogFormatError",
           "LogImportError", "read_log"]


def read_log(path: str | Path, fmt: str, stats: ImportStats, *,
             year: int | None = None) -> Iterator[Observation]:
    """The observations of one log, lazily, counting into `stats`; `year` is for dnsmasq's
    syslog times, which have none (default: the current year, see importers.dnsmasq)."""
    if fmt == "zeek":
        return zeek.read(path, stats)
    if fmt == "pihole":
        return pihole.read(path, stats)
    if fmt == "dnsmasq":
        return dnsmasq.read(path, stats, year)
    if fmt == "jsonl":
        return jsonl.read(path, stats)
    raise LogFormatError(f"unknown log format {fmt!r} (one of: {', '.join(FORMATS)})")
