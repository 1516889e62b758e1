"""Store budget bench: does the writer keep up with 1,000 q/s, how big does the DB get in 30
days for an office of 500 devices, and what does synchronous=FULL cost over NORMAL?

Three phases, each through the real ``sinkhole.store.Store``:
1. real time: 1,000 answered queries/s (and a few hits) for ``--realtime`` seconds; the write
   queue depth is sampled every tick and must stay flat;
2. simulated: ``--days`` of the same load fed as fast as possible under an injected clock,
   then the DB size (per table, from SQLite's dbstat) is extrapolated to 30 days;
3. commit cost: one-hit commits back to back with synchronous=FULL and =NORMAL.

The workload: each device has its own working set of 100-300 names drawn from a global Zipf
popularity over ``--universe`` names (so most queries go to a few thousand names), and
``--tail`` of its queries are fresh draws from the whole universe (the long tail of browsing).
Device rates are log-normal (a few chatty devices, many quiet ones), summing to ``--qps``.

    python bench/store_growth.py [--realtime 60] [--days 2] [--tail 0.03] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sinkhole.store import HitEvent, Store, open_reader, query_history, retrohunt  # noqa: E402

HOUR = 3600.0
DAY = 86400.0
WORDS = ("cdn", "api", "static", "img", "tracker", "login", "mail", "update", "ads", "edge",
         "sync", "push", "telemetry", "assets", "video", "auth", "metrics", "news", "shop")
TLDS = ("com", "net", "org", "io", "de", "co.uk", "fr", "cloud")


class SimClock:
    """The injected clock for the simulated phase."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Workload:
    """Generates (client_ip, qname) per simulated second, deterministic for a seed."""

    def __init__(self, *, devices: int, qps: float, universe: int, tail: float, seed: int = 7):
        rng = self.rng = random.Random(seed)
        self.names = [self._name(rng, rank) for rank in range(universe)]
        self.cum = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(universe)))
        self.ips = [f"10.{20 + i // 250}.{i % 250}.{10 + i % 7}" for i in range(devices)]
        rates = [rng.lognormvariate(0, 1) for _ in range(devices)]
        self.rates = [qps * r / sum(rates) for r in rates]
        self.tail = tail
        self.sets = []
        for _ in range(devices):
            size = rng.randint(100, 300)
            chosen = list(dict.fromkeys(rng.choices(self.names, cum_weights=self.cum, k=size)))
            ws_cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(chosen))))
            self.sets.append((chosen, ws_cum))
        self._carry = [0.0] * devices

    @staticmethod
    def _name(rng: random.Random, rank: int) -> str:
        labels = [rng.choice(WORDS) + (str(rng.randint(1, 99)) if rng.random() < 0.4 else "")
                  for _ in range(rng.randint(0, 2))]
        return ".".join([*labels, f"site{rank}", rng.choice(TLDS)])

    def batch(self, seconds: float) -> list[tuple[str, list[str]]]:
        """Per device, the names it asks in the next ``seconds``."""
        out = []
        choices = self.rng.choices
        for i, ip in enumerate(self.ips):
            due = self.rates[i] * seconds + self._carry[i]
            n = int(due)
            self._carry[i] = due - n
            if not n:
                continue
            n_tail = sum(1 for _ in range(n) if self.rng.random() < self.tail) if n < 50 \
                else round(n * self.tail)
            names, ws_cum = self.sets[i]
            picked = choices(names, cum_weights=ws_cum, k=n - n_tail)
            if n_tail:
                picked += choices(self.names, cum_weights=self.cum, k=n_tail)
            out.append((ip, picked))
        return out

    def hit(self, now: float) -> HitEvent:
        ip = self.rng.choice(self.ips)
        return HitEvent(now, ip, f"dev-{ip}", "backuprabbit.com", "A", "triangulation", "c2",
                        "critical", "backuprabbit.com", "nxdomain", "udp")


def realtime(work: Workload, directory: str, seconds: float, qps: float) -> dict[str, float]:
    """Phase 1: real clock, real pacing; samples the queue every 10 ms tick."""
    store = Store(os.path.join(directory, "realtime.db"))
    store.open()
    rq = store.record_query
    tick = 0.01
    max_depth = 0
    depths = []
    cpu0, start = time.process_time(), time.monotonic()
    next_tick = start
    fed = 0
    next_hit = last = start
    while (now := time.monotonic()) - start < seconds:
        # Feed what the elapsed time calls for, so sleep overshoot does not lower the rate.
        batch, last = work.batch(now - last), now
        for ip, names in batch:
            for name in names:
                rq(ip, name)
            fed += len(names)
        if now >= next_hit:  # a hit every 10 s: far more than an office sees, still tiny
            store.record_hit(work.hit(time.time()))
            next_hit += 10
        depth = store.stats["queue_depth"]
        depths.append(depth)
        max_depth = max(max_depth, depth)
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.monotonic()))
    elapsed = time.monotonic() - start
    cpu = time.process_time() - cpu0
    stats = store.stats
    store.close()
    last_minute = depths[-int(10 / tick):] or [0]
    return {"seconds": elapsed, "fed": fed, "qps": fed / elapsed, "max_depth": max_depth,
            "depth_last_10s_max": max(last_minute), "cpu_pct": 100 * cpu / elapsed,
            "dropped": stats["dropped_queries"] + stats["dropped_hits"],
            "write_errors": stats["write_errors"]}


def table_sizes(path: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        total = conn.execute("SELECT page_count * page_size FROM pragma_page_count(), "
                             "pragma_page_size()").fetchone()[0]
    finally:
        conn.close()
    sizes = {name: int(size) for name, size in rows}
    sizes["_total"] = int(total)
    return sizes


def simulated(work: Workload, directory: str, days: float) -> dict[str, object]:
    """Phase 2: the same load under an injected clock, as fast as the store takes it."""
    path = os.path.join(directory, "simulated.db")
    start = 1_750_000_000.0 - 1_750_000_000.0 % DAY
    clock = SimClock(start)
    store = Store(path, clock=clock, commit_interval=0.2)
    store.open()
    rq = store.record_query
    step = 60.0  # one simulated minute per batch: the store writes history once a minute too
    snapshots = []
    queries = 0
    wall = time.monotonic()
    hits_per_day = 4
    minutes = int(days * DAY / step)
    for minute in range(minutes):
        for ip, names in work.batch(step):
            for name in names:
                rq(ip, name)
            queries += len(names)
        if minute % int(DAY / step / hits_per_day) == 0:
            store.record_hit(work.hit(clock.now))
        clock.now += step
        store.flush(60)
        if (minute + 1) % int(DAY / step) == 0 or minute + 1 == minutes:
            snapshots.append((clock.now - start, table_sizes(path)))
            print(f"  simulated {(clock.now - start) / DAY:.2f} d: "
                  f"{snapshots[-1][1]['_total'] / 1e6:.1f} MB"
                  f" ({time.monotonic() - wall:.0f} s)", flush=True)
    stats = store.stats
    store.close()
    wall = time.monotonic() - wall
    conn = open_reader(path)
    known = work.names[5_000:5_010]
    indicators = [f"ioc{i}.invalid" for i in range(9_990)] + known
    t0 = time.perf_counter()
    found = retrohunt(conn, indicators, since=start)
    hunt = time.perf_counter() - t0
    t0 = time.perf_counter()
    page = query_history(conn, name=work.names[0], limit=100)
    page_time = time.perf_counter() - t0
    rows = conn.execute("SELECT count(*), sum(length(clients)) FROM history").fetchone()
    names = conn.execute("SELECT count(*) FROM names").fetchone()[0]
    conn.close()
    return {"snapshots": snapshots, "queries": queries, "wall": wall, "stats": stats,
            "hunt_s": hunt, "hunt_found": len(found), "page_s": page_time,
            "page_rows": len(page), "history_rows": rows[0], "blob_bytes": rows[1],
            "names": names, "file": os.path.getsize(path)}


def commit_cost(directory: str, mode: str, commits: int) -> tuple[float, float]:
    """Phase 3: back-to-back one-hit commits; returns (commits/s, ms per commit)."""
    store = Store(os.path.join(directory, f"sync-{mode}.db"), synchronous=mode,
                  commit_interval=60)
    store.open()
    ev = HitEvent(time.time(), "10.0.0.1", "d", "x.example", "A", "l", None, None, None, None,
                  None)
    store.record_hit(ev)
    store.flush()
    start = time.perf_counter()
    for _ in range(commits):
        store.record_hit(ev)
        store.flush()
    elapsed = time.perf_counter() - start
    store.close()
    return commits / elapsed, 1000 * elapsed / commits


def record_query_cost(directory: str, calls: int = 1_000_000) -> float:
    """ns per record_query call on the hot path (the store is not opened: the append alone)."""
    store = Store(os.path.join(directory, "hot.db"), queue_max=calls + 1)
    rq = store.record_query
    start = time.perf_counter()
    for _ in range(calls):
        rq("10.0.0.1", "www.example.com")
    return (time.perf_counter() - start) / calls * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realtime", type=float, default=60.0, help="seconds of real-time load")
    ap.add_argument("--days", type=float, default=2.0, help="simulated span, days")
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--qps", type=float, default=1000.0)
    ap.add_argument("--universe", type=int, default=300_000, help="distinct names in the world")
    ap.add_argument("--tail", type=float, default=0.03, help="share of long-tail queries")
    ap.add_argument("--commits", type=int, default=500)
    ap.add_argument("--dir", default=None, help="where the DBs go (a real disk, not tmpfs)")
    ap.add_argument("--keep", action="store_true", help="keep the DBs for inspection")
    args = ap.parse_args()
    directory = tempfile.mkdtemp(prefix="sinkhole-bench-", dir=args.dir)
    print(f"workload: {args.devices} devices, {args.qps:.0f} q/s, universe {args.universe} "
          f"names (Zipf), working sets 100-300, tail {args.tail:.0%}; DBs in {directory}")
    work = Workload(devices=args.devices, qps=args.qps, universe=args.universe, tail=args.tail)

    print(f"record_query: {record_query_cost(directory):.0f} ns per call")
    for mode in ("FULL", "NORMAL"):
        rate, ms = commit_cost(directory, mode, args.commits)
        print(f"commit cost synchronous={mode}: {rate:.0f} commits/s, {ms:.2f} ms per commit")

    if args.realtime > 0:
        rt = realtime(work, directory, args.realtime, args.qps)
        print(f"real time {rt['seconds']:.0f} s: fed {rt['fed']} queries ({rt['qps']:.0f} q/s), "
              f"max queue depth {rt['max_depth']} (last 10 s max {rt['depth_last_10s_max']}), "
              f"dropped {rt['dropped']}, write errors {rt['write_errors']}, "
              f"process CPU {rt['cpu_pct']:.0f}% (feeder + writer)")

    if args.days > 0:
        report_simulated(simulated(work, directory, args.days), args.days)
    if not args.keep:
        shutil.rmtree(directory)


def report_simulated(sim: dict, days: float) -> None:
    snaps = sim["snapshots"]
    t_last, last = snaps[-1]
    t_prev, prev = snaps[-2] if len(snaps) > 1 else (0.0, {"_total": 0})
    span = (t_last - t_prev) / DAY

    def growth(*tables: str) -> float:
        return sum(last.get(t, 0) - prev.get(t, 0) for t in tables) / span

    per_day = growth("_total")
    at_30 = last["_total"] + per_day * (30 - t_last / DAY)
    stats = sim["stats"]
    print(f"simulated {days:g} days: {sim['queries']} queries in {sim['wall']:.0f} s wall "
          f"({sim['queries'] / sim['wall']:.0f} q/s through the store), dropped "
          f"{stats['dropped_queries']}, write errors {stats['write_errors']}")
    print("  DB size by day: " + ", ".join(f"{s['_total'] / 1e6:.1f} MB" for _, s in snaps))
    names = ("names", "sqlite_autoindex_names_1", "names_last_hour")
    print(f"  growth over the last simulated day: {per_day / 1e6:.1f} MB/day "
          f"(history {growth('history') / 1e6:.1f}, names {growth(*names) / 1e6:.1f})")
    for table in ("history", *names, "clients", "hits"):
        print(f"    {table}: {last.get(table, 0) / 1e6:.1f} MB")
    rows = sim["history_rows"]
    print(f"  history: {rows} (hour, name) rows, {sim['blob_bytes'] / max(rows, 1):.1f} "
          f"blob bytes/row, {sim['names']} names")
    print(f"  extrapolated to 30 days (history retention 30 d, flat after): {at_30 / 1e9:.2f} GB "
          "(an upper bound: new names dwindle as the name universe is used up)")
    print(f"  retrohunt of 10,000 names: {sim['hunt_s'] * 1000:.0f} ms "
          f"({sim['hunt_found']} (client, name) found); history page of the most popular "
          f"name: {sim['page_s'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
