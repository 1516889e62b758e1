"""sinkhole alone: the 1M-name list (load time, memory, per-query cost, a reload under load,
the policy lookup in-process), and diagnostics that split its per-query cost: the same run
without the hit log, without rate limiting, and with the cyclic GC recorded and tuned.

Functions take the harness's Bench (responder, data, workdir, the start/measure helpers).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import measure
import spy
import targets

HERE = Path(__file__).resolve().parent
NXDOMAIN = 3
LATENCY_QPS = measure.LATENCY_QPS


def start_timed(bench: Any, workdir: Path, path: Path) -> tuple[targets.Server, dict[str, Any]]:
    """Start sinkhole at info level (its list_reload line; hit log on) and time its first
    blocked answer from the moment the process was spawned (interpreter start-up included)."""
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    # alerts and passive-DNS history off: with them the CPU per blocked query moves by tens of
    # percent from run to run, which would drown the list-size effect measured here
    features = {k: v for k, v in bench.features.items() if k != "alerts"}
    server = targets.start_sinkhole(workdir, bench.up_port, path, features, None, "info",
                                    history=False)
    try:
        at = measure.wait_answer(server.port, bench.first_blocked, NXDOMAIN,
                                 time.monotonic() + 120, server.alive)
    except (RuntimeError, TimeoutError):
        server.stop()
        raise
    reloads = targets.reload_events(server.log_path)
    return server, {"first_blocked_s": round(at - server.started, 3),
                    "list_load_s": reloads[0]["seconds"] if reloads else None}


def scale(bench: Any) -> dict[str, Any]:
    """100k vs 1M names, alternating, `rounds_1m` rounds, blocked workload saturating."""
    runs = []
    blocked = str(bench.data / "q-blocked.txt")
    lists = [("100k", bench.list_small), ("1m", bench.list_big)]
    for rnd in range(1, bench.args.rounds_1m + 1):
        for size, path in lists if rnd % 2 else lists[::-1]:
            server, startup = start_timed(bench, bench.work / f"s{rnd}-{size}", path)
            try:
                loaded = measure.memory_kb(server.pid)
                run = bench.cpu_run(server, blocked, None)
                mem = measure.memory_kb(server.pid)
            finally:
                server.stop()
            targets.remove(server.log_path)
            runs.append({"round": rnd, "list": size, **startup, **run,
                         "loaded_vmrss_kb": loaded["VmRSS"], "loaded_vmhwm_kb": loaded["VmHWM"],
                         "vmhwm_kb": mem["VmHWM"], "vmrss_kb": mem["VmRSS"]})
            measure.log(f"scale round {rnd} {size:4} first blocked answer "
                        f"{startup['first_blocked_s']:.2f} s, list load {startup['list_load_s']}"
                        f" s, rss {loaded['VmRSS'] / 1024:.0f} MB, cpu {run['cpu_us_per_q']} us/q")
    return {"runs": runs, "reload": reload_under_load(bench), "lookup": lookup(bench)}


def reload_under_load(bench: Any) -> dict[str, Any]:
    """Issue 3: SIGHUP twice during a 2,000 q/s blocked run on the 1M list; the latency
    timeline (worst per 0.5 s, by answer order) shows where the stall falls."""
    server, _ = start_timed(bench, bench.work / "reload", bench.list_big)
    duration = max(bench.args.duration, 9)
    box: dict[str, measure.PerfResult] = {}

    def load() -> None:
        box["r"] = measure.dnsperf(server.port, str(bench.data / "q-blocked.txt"),
                                   duration=duration, qps_limit=LATENCY_QPS, verbose=True)

    raw = bench.args.results / "profile-reload.txt"
    try:
        hwm_before = measure.memory_kb(server.pid)["VmHWM"]
        thread = threading.Thread(target=load)
        thread.start()
        time.sleep(duration / 3 - 0.5)
        recorder = spy.start_recording(server.pid, int(duration / 3), raw)   # the first reload
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(duration / 3)
        server.proc.send_signal(signal.SIGHUP)
        thread.join(duration + 120)
        recorder.wait(60)
        deadline = time.monotonic() + 30   # let the second reload finish before stopping
        while time.monotonic() < deadline and len(_sighups(server.log_path)) < 2:
            time.sleep(0.2)
        mem = measure.memory_kb(server.pid)
    finally:
        server.stop()
    res = box["r"]
    lat = res.latencies
    step = LATENCY_QPS // 2
    timeline = [round(max(lat[i:i + step]) * 1000, 1) for i in range(0, len(lat), step)]
    out = {"reloads": len(_sighups(server.log_path)), "duration_s": duration,
           "reload_s": _sighups(server.log_path), **res.latency_summary(), "lost": res.lost,
           "completed": res.completed, "over_10ms": sum(1 for x in lat if x > 0.010),
           "worst_per_half_second_ms": timeline, "vmhwm_before_kb": hwm_before,
           "vmhwm_after_kb": mem["VmHWM"]}
    if raw.exists():
        text = raw.read_text()
        out["profile"] = {"loop": spy.summarise(text), "pool": spy.summarise(text, focus="asyncio")}
    measure.log(f"reload under load: {out}")
    return out


def _sighups(path: Path) -> list[float]:
    return [e["seconds"] for e in targets.reload_events(path) if e.get("reason") == "sighup"]


def lookup(bench: Any) -> list[dict[str, Any]]:
    out = []
    for path in (bench.list_small, bench.list_big):
        proc = subprocess.run([sys.executable, str(HERE / "lookup.py"), str(path),
                               str(bench.data / "q-blocked.txt")], capture_output=True,
                              text=True, timeout=300, check=True)
        out.append(json.loads(proc.stdout))
        measure.log(f"lookup: {out[-1]}")
    return out


# What each variant changes; every one runs the workload saturating on a fresh process, then
# (latency=True) at 2,000 q/s.
VARIANTS: tuple[tuple[str, str, dict[str, Any], bool], ...] = (
    ("blocked", "as configured", {}, True),
    ("blocked", "no hit log (log level error)", {"level": "error"}, False),
    ("blocked", "alerts off", {"alerts": False}, True),
    ("blocked", "passive-DNS history off", {"history": False}, False),
    ("blocked", "rate limiting off", {"ratelimit": False}, False),
    ("cached", "as configured", {}, False),
    ("cached", "rate limiting off", {"ratelimit": False}, False),
    ("cached", "passive-DNS history off", {"history": False}, False),
    ("forwarded", "GC recorded (the daemon's own GC settings)",
     {"wrapper": (str(HERE / "gcstats.py"),)}, True),
    ("forwarded", "GC disabled after start-up",
     {"wrapper": (str(HERE / "gcstats.py"), "--no-gc")}, True),
)


def diagnostics(bench: Any) -> list[dict[str, Any]]:
    """One run per variant: saturating CPU µs/q and QPS, and for some the 2,000 q/s run."""
    rows = []
    for i, (workload, name, opts, with_latency) in enumerate(VARIANTS):
        tput, lat_file, warm = measure.WORKLOADS[workload]
        server = bench.start("sinkhole", bench.work / f"diag{i}", **opts)
        try:
            if warm:
                measure.dnsperf(server.port, str(bench.data / tput), max_runs=warm, duration=30)
            run = bench.cpu_run(server, str(bench.data / tput), None)
            lat = (bench.cpu_run(server, str(bench.data / lat_file), LATENCY_QPS)
                   if with_latency else None)
        finally:
            server.stop()
        gc_stats = targets.json_event(server.log_path, "gc_stats")
        targets.remove(server.log_path)
        rows.append({"workload": workload, "variant": name, "qps": run["qps"],
                     "cpu_us_per_q": run["cpu_us_per_q"], "user_us_per_q": run["user_us_per_q"],
                     "sys_us_per_q": run["sys_us_per_q"],
                     "latency": lat["latency"] if lat else None, "gc": gc_stats})
        measure.log(f"diag {workload} / {name}: qps {run['qps']:.0f} cpu {run['cpu_us_per_q']}"
                    f" us/q  latency {lat['latency'] if lat else '-'}  gc {gc_stats}")
    return rows
