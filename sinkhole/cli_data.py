"""CLI commands that read the store: `hits`, `clients`, `retrohunt`.

They open the daemon's SQLite file read-only (WAL lets them read while it writes), so they
work whether or not the daemon runs. Names are printed escaped: a hostile query name cannot
break the table or the JSON (which is plain `json.dumps` output with stable keys).
"""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sinkhole.config import Config
from sinkhole.config.loader import parse_duration
from sinkhole.lists.loader import ListError, load_path
from sinkhole.store import StoreError, escape_name, open_reader, query_clients, query_hits
from sinkhole.store.queries import retrohunt

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
HIT_COLUMNS = ("time", "client_ip", "client_name", "qname", "qtype", "list", "severity",
               "action", "kind", "count")


def _since(text: str | None) -> float | None:
    if not text:
        return None
    return time.time() - parse_duration(text)


def _stamp(value: Any) -> str:
    if not isinstance(value, int | float):
        return "" if value is None else str(value)
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(escape_name(str(v)) for v in value)
    return escape_name(str(value)) if value is not None else "-"


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    times = {"time", "first_seen", "last_seen"}
    cells = [[_stamp(r.get(c)) if c in times else _cell(r.get(c)) for c in columns]
             for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _emit(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        json.dump([{k: (escape_name(v) if k in ("qname", "client_name") and isinstance(v, str)
                        else v) for k, v in r.items()} for r in rows],
                  sys.stdout, indent=1, sort_keys=True)
        print()
    elif rows:
        print_table(rows, columns)
    else:
        print("no matching records")


def _open(config: Config) -> Any:
    try:
        return open_reader(config.storage.path)
    except StoreError as err:
        print(f"sinkhole: {err}", file=sys.stderr)
        return None


def _run(config: Config, query: Any, columns: Sequence[str], as_json: bool, **kw: Any) -> int:
    conn = _open(config)
    if conn is None:
        return EXIT_RUNTIME
    with conn:
        rows = query(conn, **kw)
    _emit(rows, columns, as_json)
    return EXIT_OK


def cmd_hits(config: Config, args: Namespace) -> int:
    return _run(config, query_hits, HIT_COLUMNS, args.json, since=_since(args.since),
                client=args.client, list_name=args.list, limit=args.limit or -1)


def cmd_clients(config: Config, args: Namespace) -> int:
    return _run(config, query_clients, ("client_name", "client_ip", "lists", "first_seen",
                                        "last_seen", "count"), args.json,
                since=_since(args.since))


def cmd_retrohunt(config: Config, args: Namespace) -> int:
    """Who asked for these names in the history: the same search a reload runs by itself."""
    paths = [args.file] if args.file else [
        s.path for s in config.blocklists if args.list in (None, s.name)]
    if args.list and not paths:
        print(f"sinkhole: no blocklist named {args.list!r} in the config", file=sys.stderr)
        return EXIT_USAGE
    names: set[str] = set()
    for path in paths:
        try:
            parsed = load_path(path)
        except ListError as err:
            print(f"sinkhole: {err}", file=sys.stderr)
            return EXIT_RUNTIME
        names |= parsed.block | parsed.nxdomain | parsed.nodata | set(parsed.local)
    names = {n[2:] if n.startswith("*.") else n for n in names}
    return _run(config, retrohunt, ("client_ip", "qname", "matched", "first_seen", "last_seen",
                                    "count"), args.json, names=names,
                since=_since(args.since) or 0.0)


def add_parsers(sub: Any, common: Any) -> None:
    h = sub.add_parser("hits", parents=[common], help="list recorded hits, newest first",
                       description="List stored hits, newest first (all of them when no "
                                   "filter is given).")
    h.add_argument("--since", metavar="DURATION", help="only the last DURATION (e.g. 1h, 7d)")
    h.add_argument("--client", metavar="IP|NAME", help="one client, by address or name")
    h.add_argument("--list", metavar="NAME", help="one list")
    h.add_argument("--limit", type=int, metavar="N", help="at most N hits")
    h.add_argument("--json", action="store_true", help="one JSON array with stable keys")
    c = sub.add_parser("clients", parents=[common], help="devices with hits",
                       description="Devices with hits: name, IP, lists, first/last seen, "
                                   "count.")
    c.add_argument("--since", metavar="DURATION")
    c.add_argument("--json", action="store_true")
    r = sub.add_parser("retrohunt", parents=[common], help="search the history for list names",
                       description="Search the passive-DNS history for the names of the "
                                   "configured lists (or one list, or a file).")
    r.add_argument("--since", metavar="DURATION", default="90d")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--list", metavar="NAME")
    g.add_argument("--file", metavar="FILE", help="a list file in any supported format")
    r.add_argument("--json", action="store_true")
    s = sub.add_parser("suspicions", parents=[common], help="what hunting found (no list knows)",
                       description="Suspicions from the hunting signals (newly seen, rare, "
                                   "beacon, sequences, tunnel/DGA), highest score first.")
    s.add_argument("--since", metavar="DURATION", help="last seen within DURATION (e.g. 7d)")
    s.add_argument("--min-score", type=int, default=0, metavar="N", help="score at least N")
    s.add_argument("--limit", type=int, default=1000, metavar="N")
    s.add_argument("--json", action="store_true",
                   help="a JSON array: client_ip, client_name, domain, score, signals, "
                        "first_seen, last_seen, count (times Unix seconds)")


SUSPICION_KEYS = ("client_ip", "client_name", "domain", "score", "signals", "first_seen",
                  "last_seen", "count")


def cmd_suspicions(config: Config, args: Namespace) -> int:
    import os

    from sinkhole.hunt import read_suspicions
    path = config.storage.hunt_path
    if not os.path.exists(path):
        print(f"sinkhole: no hunting state at {path} yet (is hunt.enabled on, and has the "
              "daemon run?)", file=sys.stderr)
        return EXIT_RUNTIME
    rows = read_suspicions(path, since=_since(args.since), min_score=args.min_score,
                           limit=args.limit)
    if args.json:
        json.dump([{k: (escape_name(r[k]) if k in ("domain", "client_name")
                        and isinstance(r[k], str) else r[k]) for k in SUSPICION_KEYS}
                   for r in rows], sys.stdout, indent=1, sort_keys=True)
        print()
        return EXIT_OK
    shown = [{**r, "signals": [s["signal"] for s in r["signals"]]} for r in rows]
    _emit(shown, ("score", "client_name", "client_ip", "domain", "signals", "first_seen",
                  "last_seen", "count"), False)
    return EXIT_OK
