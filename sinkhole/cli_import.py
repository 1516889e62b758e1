"""`sinkhole import`: replay another resolver's logs into the history and the hunting signals.

On the log's own clock, not ours: the history gets each query at the time the log says, and the
hunter's learning period starts at the log's first timestamp. So a team can baseline months of
past traffic the day they install, and the retro-hunt that ends the import names every device
that asked for a name the configured lists block today.

Streams: one observation at a time from the reader to the store's writer queue (which waits
when full instead of dropping: an import is a batch job) and to the hunter; a 10 GB log costs
time, not memory.
"""

from __future__ import annotations

import sys
import time
from argparse import Namespace
from typing import Any

from sinkhole.config import Config

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
PROGRESS_EVERY = 50_000


def add_parser(sub: Any, common: Any) -> None:
    from sinkhole.importers import FORMATS
    p = sub.add_parser("import", parents=[common], help="replay a resolver log into the history",
                       description="Replay another resolver's log (Zeek dns.log, a Pi-hole FTL "
                                   "database, dnsmasq log-queries lines, or JSON lines) into "
                                   "the passive-DNS history and the hunting signals, on the "
                                   "log's own timestamps; then retro-hunt the configured lists "
                                   "over it.")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("path", metavar="PATH")
    p.add_argument("--year", type=int, help="dnsmasq syslog lines carry no year (default: "
                                             "this year, with the new-year rollover)")
    p.add_argument("--no-hunt", action="store_true", help="history only, no hunting signals")


def cmd_import(config: Config, args: Namespace) -> int:
    from sinkhole.errors import SinkholeError
    from sinkhole.importers import ImportStats, read_log
    from sinkhole.store import Store

    stats = ImportStats()
    store = Store(config.storage.path, history_retention=config.history.retention,
                  retention=config.storage.retention)
    try:
        store.open()
    except SinkholeError as err:
        print(f"sinkhole: {err}", file=sys.stderr)
        return EXIT_RUNTIME
    latest = [0.0]
    hunter = None
    if config.hunt.enabled and not args.no_hunt:
        from sinkhole.hunt import Hunter
        hunter = Hunter(config.hunt, config.storage.hunt_path, clock=lambda: latest[0])
    suspicions: dict[tuple[str, str], int] = {}
    tty = sys.stderr.isatty()
    started = time.monotonic()
    try:
        for obs in read_log(args.path, args.format, stats, year=args.year):
            if obs.time > latest[0]:
                latest[0] = obs.time
            store.record_query_at(obs.client_ip, obs.qname, obs.time)
            if hunter is not None:
                for s in hunter.observe(obs):
                    key = (s.client_ip, s.domain)
                    suspicions[key] = max(s.score, suspicions.get(key, 0))
            if tty and not stats.lines % PROGRESS_EVERY:
                print(f"\r{stats.lines:,} lines, {stats.imported:,} queries, "
                      f"{stats.error_count:,} bad", end="", file=sys.stderr, flush=True)
    except SinkholeError as err:
        print(f"\nsinkhole: {err}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        if hunter is not None:
            hunter.flush()
            hunter.close()
        store.close()
    if tty:
        print(file=sys.stderr)
    took = time.monotonic() - started
    print(f"{args.path}: {stats.lines:,} lines, {stats.imported:,} queries imported, "
          f"{stats.skipped:,} not queries, {stats.error_count:,} bad lines in {took:.1f}s")
    for where, reason in stats.errors[:20]:
        print(f"  line {where}: {reason}", file=sys.stderr)
    if stats.error_count > 20:
        print(f"  ... and {stats.error_count - 20} more", file=sys.stderr)
    if hunter is not None:
        alerting = sum(1 for score in suspicions.values() if score >= config.hunt.alert_score)
        print(f"hunting: {len(suspicions)} suspicions ({alerting} at or above "
              f"{config.hunt.alert_score}); see `sinkhole suspicions`")
    return _retro(config)


def _retro(config: Config) -> int:
    """The configured lists against the history just imported: retro hits, once each."""
    from sinkhole.cli_lists import configured_lists
    from sinkhole.hits import hit_from_mapping
    from sinkhole.lists.feeds import FeedFetcher
    from sinkhole.lists.matcher import build_policy
    from sinkhole.retro import hunt_policy
    from sinkhole.store import Store

    lists, allows, problems = configured_lists(config, FeedFetcher(config.storage.folder))
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not lists:
        return EXIT_OK
    policy = build_policy(lists, allows)   # as the daemon's: allowlisted names are no finds
    since = time.time() - max(config.history.retention, 1.0)
    finds = hunt_policy(config.storage.path, policy, since, None)
    store = Store(config.storage.path, history_retention=config.history.retention)
    store.open()
    try:
        for find in finds:
            store.record_hit(hit_from_mapping(find))
    finally:
        store.close()
    for find in finds[:50]:
        print(f"retro-hunt: {find['client']} asked for {find['qname']} {find['count']}x "
              f"(list {find['list']})")
    print(f"retro-hunt: {len(finds)} finds over the imported history"
          + (" (see `sinkhole hits --json`)" if finds else ""))
    return EXIT_OK
