"""JSON lines: sinkhole's own JSON logs, and the plain exchange format.

1. **sinkhole's log** (`log.format: json`, one object per line from logsetup.JsonFormatter:
   `time` as ISO 8601 UTC, `level`, `logger`, `msg`, then the record's fields). A line with
   `"event": "hit"` (the fields of hits.log_fields: `client`, `client_name`, `qname` with odd
   bytes as \\DDD, `qtype`, `list`, ..., `kind`) is a query a client asked that a list blocked:
   one observation. `kind: "retro"` lines are skipped (a retro-hunt find re-reports history, it
   is not a new question), as is every other log line. A `flood` line (hits folded by the flood
   guard) is one observation, at its time, with its last name. Hits carry no rcode.
2. **The exchange format** (what the evaluation generator writes; the simplest target to
   convert any other log to):
       {"time": 1764817201.25, "client": "10.0.0.5", "qname": "example.com", "qtype": "A"}
   `time`: Unix seconds (a number) or ISO 8601 text (UTC when it has no offset); `client`: an
   IP address; `qname`: the name as text (non-ASCII is taken as its UTF-8 bytes); `qtype`: a
   type name or number, default "A"; optional `client_name` (text) and `rcode` (a number).
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
    norm_client_name,
    norm_qname,
    norm_qtype,
    open_log,
    parse_lines,
    parse_time,
    unescape_ddd,
    wire_text,
)


def read(path: str | Path, stats: ImportStats) -> Iterator[Observation]:
    """Observations of a JSON-lines file (plain or gzip), in file order."""
    return parse_lines(open_log(path), JsonlParser(), stats, "jsonl", path)


class JsonlParser:
    def __init__(self) -> None:
        self.clients = ClientCache()

    def __call__(self, raw: bytes) -> Observation | None:
        if not raw.strip():
            return None
        obj = load_json(raw)
        event = obj.get("event")
        if event is not None or "logger" in obj:          # a line of sinkhole's own log
            if event != "hit" or obj.get("kind") == "retro":
                return None
            name = unescape_ddd(wire_text(_text(obj, "qname")))
            rcode = None
        else:
            name = wire_text(_text(obj, "qname"))
            rcode = _rcode(obj.get("rcode"))
        qname = norm_qname(name)
        if not qname:
            return None
        if "time" not in obj:
            raise BadLine("no 'time'")
        return Observation(parse_time(obj["time"]), self.clients(obj.get("client")), qname,
                           norm_qtype(obj.get("qtype", "A")),
                           norm_client_name(obj.get("client_name")), rcode)


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise BadLine(f"no '{key}' text")
    return value


def _rcode(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFF:
        return value
    raise BadLine(f"bad rcode {str(value)[:20]!r}")
