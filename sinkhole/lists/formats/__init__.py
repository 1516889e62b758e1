"""Threat-intel feed formats: STIX 2.1 bundles, MISP feeds and exports, CSV columns, and the
dispatch by a list's `format` (line-based formats go to the line parser, `auto` sniffs).

Blocking file I/O, like `loader`: call it from a worker thread. Whatever the file holds, a
load raises nothing but `ListLoadError` (the caller keeps the last good version); records it
cannot read are `errors` of the ParsedList, records it will not act on are `unsupported`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from sinkhole.lists.formats import csvfeed, misp, stix2
from sinkhole.lists.formats.collect import Collector, Finder, Sink
from sinkhole.lists.formats.jsonstream import MAX_JSON_BYTES, Cursor
from sinkhole.lists.loader import ListLoadError, find_rule, load_path
from sinkhole.lists.names import normalise_name
from sinkhole.lists.parse import ParsedList

__all__ = ["FEED_FORMATS", "LINE_FORMATS", "MAX_JSON_BYTES", "detect_format", "find_feed_rule",
           "load_feed"]

LINE_FORMATS = frozenset({"plain", "hosts", "adblock", "rpz"})  # detected per line anyway
FEED_FORMATS = frozenset({"stix2", "misp", "csv"})
SNIFF_BYTES = 65536
_JSON_LIST = re.compile(r"\[\s*\{")  # a list of MISP events; "[Adblock Plus 2.0]" is not


def load_feed(path: str | Path, fmt: str, *, column: str | int = "", to_ids_only: bool = True,
              now: float | None = None, max_bytes: int = MAX_JSON_BYTES) -> ParsedList:
    """Parse the list or feed at `path` as `fmt` (see `FORMATS` in the config schema)."""
    root = Path(path)
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt in LINE_FORMATS:
        return load_path(root)
    out = ParsedList(source=str(path))
    collector = Collector(out)
    _read(root, fmt, collector, column, to_ids_only, now, max_bytes)
    out.lines = collector.lines
    return out


def find_feed_rule(path: str | Path, fmt: str, name: str, *, column: str | int = "",
                   to_ids_only: bool = True, now: float | None = None,
                   ) -> list[tuple[str, str, str]]:
    """(file, where, rule text) of every record that covers `name`: where is "line 12",
    "indicator--<id>" or "attribute <uuid>". For `sinkhole check`; rereads the feed."""
    root = Path(path)
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt in LINE_FORMATS:
        return [(file, f"line {line}", text) for file, line, text in find_rule(root, name)]
    finder = Finder(normalise_name(name))
    _read(root, fmt, finder, column, to_ids_only, now, MAX_JSON_BYTES)
    return finder.found


def detect_format(path: str | Path) -> str:
    """`auto`: "stix2" for a bundle, "misp" for a feed folder, an event or an attribute
    export, "plain" (the per-line parser) for anything that is not JSON. CSV is never
    guessed: which column holds the names must be said."""
    root = Path(path)
    if root.is_dir():
        return "misp" if misp.is_feed(root) else "plain"
    if root.name == misp.MANIFEST:
        return "misp"
    try:
        with open(root, "rb") as raw:
            head = raw.read(SNIFF_BYTES).decode("utf-8-sig", errors="replace").lstrip()
    except OSError as err:
        raise ListLoadError(root, err.strerror or str(err)) from err
    if _JSON_LIST.match(head):
        return "misp"
    if not head.startswith("{"):
        return "plain"
    cursor = Cursor(root, text=head)
    try:
        for key in cursor.members("the document"):
            if key in ("Event", "response", "Attribute"):
                return "misp"
            if key == "objects" or (key == "type" and cursor.value() == "bundle"):
                return "stix2"
    except ListLoadError:
        pass  # the sniffed head ends inside a value
    raise ListLoadError(root, "JSON, but neither a STIX bundle nor a MISP event or attribute "
                              "export: set the list's format")


def _read(path: Path, fmt: str, sink: Sink, column: str | int, to_ids_only: bool,
          now: float | None, limit: int) -> None:
    try:
        if fmt == "stix2":
            stix2.read(path, sink, now=time.time() if now is None else now, limit=limit)
        elif fmt == "misp":
            misp.read(path, sink, to_ids_only=to_ids_only, limit=limit)
        elif fmt == "csv":
            if column == "" or (isinstance(column, int) and column < 1):
                raise ListLoadError(path, "format csv needs a column (a header name or a "
                                          "number counted from 1)")
            csvfeed.read(path, sink, column=column)
        else:
            raise ListLoadError(path, f"unknown list format {fmt!r}")
    except ListLoadError:
        raise
    except (RecursionError, MemoryError) as err:
        raise ListLoadError(path, f"{fmt}: too deeply nested or too big to parse") from err
    except Exception as err:
        # The contract is "nothing but ListLoadError, whatever the file holds": a reader bug
        # on a hostile feed must cost that feed (last good version kept), not the reload.
        raise ListLoadError(path, f"{fmt} reader failed: {type(err).__name__}: {err}") from err
