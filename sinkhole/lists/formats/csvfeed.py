"""CSV feeds (abuse.ch ThreatFox and URLhaus exports and the like): one column holds the
indicators, named by its header or numbered from 1.

abuse.ch writes the header as a comment (`# "first_seen_utc","ioc_id","ioc_value",…` or
`# id,dateadded,url,…`) after a block of other comments, and separates quoted fields with
`", "`; both are read as written. A column mixes indicator kinds: a URL gives its host, an
address (`1.2.3.4:443`) and a file hash are skipped and counted, anything else must be a name.
Each physical line is one record, so a stray quote costs one line, never the rest of the file.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from pathlib import Path

from sinkhole.lists.formats.collect import Sink
from sinkhole.lists.loader import ListLoadError, read_lines
from sinkhole.lists.parse import MAX_LINE

_HASH = re.compile(r"[0-9a-fA-F]{32}(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{32}|[0-9a-fA-F]{96})?")
_HASH_SIZES = frozenset({32, 40, 64, 128})
HEADER_SEARCH = 64  # comment lines before the first record searched for the header


class _OneLine:
    """The csv reader's input: exactly the line we hand it. A quoted field left open ends at
    the end of its line instead of swallowing the lines after it."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: str | None = None

    def __iter__(self) -> _OneLine:
        return self

    def __next__(self) -> str:
        line, self.pending = self.pending, None
        if line is None:
            raise StopIteration
        return line


def read(path: Path, sink: Sink, *, column: str | int) -> None:
    """Report the indicator in `column` of every record of the CSV file at `path`."""
    file = str(path)
    feed = _OneLine()
    reader = csv.reader(feed, skipinitialspace=True)  # skipinitialspace: the ", " separator
    comments: deque[str] = deque(maxlen=HEADER_SEARCH)
    index: int | None = None
    header = ""  # the column's header text, lower case, when the header names it
    for lineno, raw in enumerate(read_lines(path), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            if index is None:
                comments.append(line)
            continue
        if len(raw) > MAX_LINE:
            sink.error(file, lineno, f"line longer than {MAX_LINE} characters", "")
            continue
        feed.pending = line
        try:
            row = next(reader)
        except csv.Error as err:
            sink.error(file, lineno, f"unreadable CSV: {err}", line)
            continue
        if index is None:
            index, header, is_header = _locate(path, column, comments, row)
            if is_header:
                continue
        sink.lines += 1
        if index >= len(row):
            sink.error(file, lineno, f"no column {index + 1} (the row has {len(row)})", line)
            continue
        value = row[index].strip()
        if not value:
            sink.error(file, lineno, "empty value", line)
        elif len(value) in _HASH_SIZES and _HASH.fullmatch(value):
            sink.skip()  # ThreatFox mixes md5/sha1/sha256 indicators into ioc_value
        elif len(value) != len(header) or value.lower() != header:  # a repeated header
            sink.host(file, lineno, value, line)


def _locate(path: Path, column: str | int, comments: deque[str],
            first: list[str]) -> tuple[int, str, bool]:
    """(0-based index, header text, is `first` the header row) from the first record."""
    if isinstance(column, int):
        cell = first[column - 1].strip() if column <= len(first) else ""
        # A header cell ("url", "ioc_value") has neither the dot of a name nor the colon of
        # an address; an indicator has one of them.
        plain_header = (bool(cell) and "." not in cell and ":" not in cell
                        and not _HASH.fullmatch(cell))
        return column - 1, cell.lower() if plain_header else "", plain_header
    wanted = column.strip().lower()
    for comment in reversed(comments):  # the nearest comment naming the column
        names = _fields(comment.lstrip("#"))
        if wanted in names:
            return names.index(wanted), wanted, False
    names = [cell.strip().lower() for cell in first]
    if wanted in names:
        return names.index(wanted), wanted, True
    raise ListLoadError(path, f"no column named {column!r} in the header")


def _fields(text: str) -> list[str]:
    try:
        row = next(csv.reader((text.strip(),), skipinitialspace=True), [])
    except csv.Error:
        return []
    return [cell.strip().lower() for cell in row]
