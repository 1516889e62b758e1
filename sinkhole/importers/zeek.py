"""Zeek `dns.log`, as Zeek's ASCII writer leaves it (TSV under its own `#` header) or as JSON
lines (`LogAscii::use_json`); the two may even alternate in one concatenated stream.

Fields are found by name from `#fields` (a site may add or drop columns), values unescaped as
Zeek escapes them (`\\xNN` for odd bytes and the separator; `-` unset; `(empty)`), and a header
repeated mid-stream (rotated logs concatenated with `zcat`) starts over with its new columns.
The query type comes from the numeric `qtype` when there is one (Zeek names unknown types
"query-N" and ANY "*"); `rcode` is unset while a query is unanswered. Entries without a query,
and NetBIOS (137) and mDNS (5353) traffic that Zeek's DNS analyzer also logs, are skipped: they
are not questions to the network's resolver. Zeek writes unanswered queries when they time out,
so lines arrive a little out of time order; they are passed on in file order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sinkhole.events import Observation
from sinkhole.importers.common import (
    BadLine,
    ClientCache,
    ImportStats,
    load_json,
    norm_qname,
    norm_qtype,
    open_log,
    parse_lines,
    parse_time,
    unescape_hex,
    wire_text,
)

NOT_DNS_PORTS = frozenset({137, 5353})     # NetBIOS name service, multicast DNS
_REQUIRED = ("ts", "id.orig_h", "query")
_OPTIONAL = ("qtype", "qtype_name", "rcode", "id.resp_p")


def read(path: str | Path, stats: ImportStats) -> Iterator[Observation]:
    """Observations of a Zeek dns.log (TSV or JSON lines, plain or gzip), in file order."""
    return parse_lines(open_log(path), ZeekParser(), stats, "zeek", path)


class ZeekParser:
    """One line at a time, remembering the current header (separator, columns)."""

    def __init__(self) -> None:
        self.sep = "\t"
        self.unset = "-"
        self.empty = "(empty)"
        self.columns: tuple[int, ...] | None = None   # indexes of _REQUIRED + _OPTIONAL
        self.width = 0
        self.clients = ClientCache()
        self._meta: dict[tuple[Any, ...], tuple[str, int | None] | bool] = {}

    def __call__(self, raw: bytes) -> Observation | None:
        if raw[:1] == b"{":
            return self._json(raw)
        line = raw.decode("latin-1")     # one character per byte, as the wire decoder
        if line[:1] == "#":
            self._header(line)
            return None
        if not line:
            return None
        if self.columns is None:
            raise BadLine("data before a dns.log #fields header")
        parts = line.split(self.sep)
        if len(parts) != self.width:
            raise BadLine(f"{len(parts)} fields where #fields names {self.width}")
        unset = self.unset
        values = [None if i < 0 or parts[i] == unset else parts[i] for i in self.columns]
        if values[2] == self.empty:
            values[2] = None
        return self._build(*values)

    def _header(self, line: str) -> None:
        if line.startswith("#separator "):
            self.sep = unescape_hex(line[len("#separator "):]) or "\t"
            return
        key, _, value = line.partition(self.sep)
        if key == "#unset_field":
            self.unset = value
        elif key == "#empty_field":
            self.empty = value
        elif key == "#fields":
            names = value.split(self.sep)
            self.columns, self.width = None, len(names)
            missing = [name for name in _REQUIRED if name not in names]
            if missing:
                raise BadLine(f"#fields has no {', '.join(missing)}: not a dns.log")
            self.columns = tuple(names.index(name) if name in names else -1
                                 for name in _REQUIRED + _OPTIONAL)

    def _json(self, raw: bytes) -> Observation | None:
        obj = load_json(raw)
        orig_h = obj.get("id.orig_h")
        resp_p = obj.get("id.resp_p")
        nested = obj.get("id")
        if isinstance(nested, dict):     # exporters that nest the conn id
            orig_h = orig_h or nested.get("orig_h")
            resp_p = resp_p or nested.get("resp_p")
        query = obj.get("query")
        if isinstance(query, str):
            query = wire_text(query)
        return self._build(obj.get("ts"), orig_h, query, obj.get("qtype"),
                           obj.get("qtype_name"), obj.get("rcode"), resp_p, memo=False)

    def _build(self, ts: Any, orig_h: Any, query: Any, qtype: Any, qtype_name: Any,
               rcode: Any, resp_p: Any, memo: bool = True) -> Observation | None:
        if not query or not isinstance(query, str):
            return None
        if memo:                          # TSV: text values, a handful of distinct ones
            key = (qtype, qtype_name, rcode, resp_p)
            meta = self._meta.get(key)
            if meta is None:
                meta = _meta_of(*key)
                if len(self._meta) >= 4096:
                    self._meta.clear()
                self._meta[key] = meta
        else:                             # JSON: typed (true == 1 must not share an entry)
            meta = _meta_of(qtype, qtype_name, rcode, resp_p)
        if meta is False:
            return None
        name = norm_qname(unescape_hex(query))
        if not name:
            return None
        if ts is None:
            raise BadLine("no ts")
        return Observation(parse_time(ts), self.clients(orig_h), name, meta[0], None, meta[1])


def _meta_of(qtype: Any, qtype_name: Any, rcode: Any, resp_p: Any) -> tuple[str, int | None] | bool:
    """(type name, rcode) of an entry, or False for traffic that is not DNS to a resolver.
    Few distinct combinations exist in a log, so the caller remembers each answer."""
    if resp_p is not None and _integer(resp_p, "port", 0xFFFF) in NOT_DNS_PORTS:
        return False
    if qtype is not None:
        type_name = norm_qtype(_integer(qtype, "qtype", 0xFFFF))
    elif qtype_name is not None:
        type_name = norm_qtype(qtype_name)
    else:
        raise BadLine("no query type")
    return type_name, None if rcode is None else _integer(rcode, "rcode", 0xFFF)


def _integer(value: Any, what: str, top: int) -> int:
    """A count field, from TSV text or a JSON number, within its range."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top:
        return value
    raise BadLine(f"bad {what} {str(value)[:20]!r}")
