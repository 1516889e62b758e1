"""The side-by-side benchmark: sinkhole, dnsmasq and unbound, same list, same upstream, same
workloads, targets alternating within each round; then sinkhole alone with 1M names (load time,
memory, per-query cost, a reload under load) and a py-spy profile of its hot path.

Expects the data from gen.py and a built responder (run.sh does both):
    python bench/harness.py --responder PATH [--rounds 3] [--duration 10] [--quick]
Writes results.json, results.md, chart.png and the profiles to --results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import measure
import spy
import report
import targets

HERE = Path(__file__).resolve().parent
LATENCY_QPS = 2000
# workload -> (throughput query file, latency query file, warm-up passes over the file)
WORKLOADS = {
    "blocked": ("q-blocked.txt", "q-blocked.txt", 0),
    "cached": ("q-cached.txt", "q-cached.txt", 2),
    "forwarded": ("q-forwarded.txt", "q-forwarded-lat.txt", 0),
}
BLOCKED_PROBE_RCODE = 3   # NXDOMAIN


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data: Path = args.data
        self.work = Path(tempfile.mkdtemp(prefix="sinkhole-bench-"))
        os.chmod(self.work, 0o755)   # sinkhole drops root; its state folder lives in here
        self.list_small = self.data / "list-100k.txt"
        self.list_big = self.data / "list-1m.txt"
        self.names = targets.read_names(self.list_small)
        self.first_blocked = self.names[0]
        self.webhook = targets.WebhookReceiver()
        self.features = targets.sinkhole_features(self.work, self.list_small)
        self.up_port = measure.free_port()
        self.responder = subprocess.Popen([str(args.responder), str(self.up_port)],
                                          stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        measure.wait_answer(self.up_port, targets.READY_NAME, 0, time.monotonic() + 10)

    def close(self) -> None:
        self.responder.terminate()
        self.responder.wait(10)
        self.webhook.close()

    # --- one target -------------------------------------------------------------------------

    def start(self, target: str, workdir: Path, list_path: Path | None = None,
              level: str = "warning") -> targets.Server:
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)
        if target == "sinkhole":
            server = targets.start_sinkhole(workdir, self.up_port, list_path or self.list_small,
                                            self.features, self.webhook.url, level)
        elif target == "dnsmasq":
            server = targets.start_dnsmasq(workdir, self.up_port, self.names)
        else:
            server = targets.start_unbound(workdir, self.up_port, self.names)
        return targets.wait_ready(server)

    def loaded(self, rnd: int, target: str, workload: str) -> dict[str, object]:
        """Fresh server, warm-up, saturating run, then the fixed-rate latency run."""
        tput_file, lat_file, warm = WORKLOADS[workload]
        server = self.start(target, self.work / f"r{rnd}-{target}-{workload}")
        try:
            if warm:
                measure.dnsperf(server.port, str(self.data / tput_file), max_runs=warm,
                                duration=30)
            tput = self.cpu_run(server, str(self.data / tput_file), None)
            lat = self.cpu_run(server, str(self.data / lat_file), LATENCY_QPS)
            mem = measure.memory_kb(server.pid)
            posts_before = self.webhook.posts
        finally:
            server.stop()
        row = {"round": rnd, "target": target, "workload": workload, **tput,
               "latency": lat["latency"], "lat_run": {k: v for k, v in lat.items()
                                                       if k != "latency"},
               "vmhwm_kb": mem["VmHWM"], "vmrss_kb": mem["VmRSS"],
               "stderr_lines": targets.log_lines(server.log_path)}
        if target == "sinkhole":
            db = server.log_path.parent / "state" / "sinkhole.db"
            row["store_db_bytes"] = db.stat().st_size if db.exists() else None
            row["alert_posts"] = posts_before
        targets.remove(server.log_path)   # the hit log of a blocked run is large
        return row

    def cpu_run(self, server: targets.Server, datafile: str,
                qps: int | None) -> dict[str, object]:
        r0, s0 = measure.cpu_seconds(self.responder.pid), measure.cpu_seconds(server.pid)
        res = measure.dnsperf(server.port, datafile, duration=self.args.duration,
                              qps_limit=qps, verbose=qps is not None)
        s1, r1 = measure.cpu_seconds(server.pid), measure.cpu_seconds(self.responder.pid)
        answered = max(res.completed, 1)
        out = {**res.as_dict(), "server_cpu_s": round(s1 - s0, 3),
               "cpu_us_per_q": round((s1 - s0) / answered * 1e6, 2),
               "responder_cpu_s": round(r1 - r0, 3),
               "responder_cpu_pct": round(100 * (r1 - r0) / max(res.seconds, 1e-9), 1)}
        if qps is not None:
            out["latency"] = res.latency_summary()
        return out

    # --- the comparison ---------------------------------------------------------------------

    def compare(self) -> list[dict[str, object]]:
        rows = []
        for rnd in range(1, self.args.rounds + 1):
            for workload in WORKLOADS:
                order = list(targets.TARGETS)
                shift = (rnd - 1 + list(WORKLOADS).index(workload)) % len(order)
                for target in order[shift:] + order[:shift]:   # nobody always goes first
                    row = self.loaded(rnd, target, workload)
                    rows.append(row)
                    log(f"round {rnd} {workload:9} {target:8} qps {row['qps']:9.0f} "
                        f"cpu {row['cpu_us_per_q']:6.1f} us/q  p99 "
                        f"{row['latency']['p99_ms']:.2f} ms  max {row['latency']['max_ms']:.1f}"
                        f" ms  lost {row['lost']}+{row['lat_run']['lost']}")
        return rows

    # --- sinkhole with 1M names ---------------------------------------------------------------

    def scale(self) -> dict[str, object]:
        runs = []
        blocked = str(self.data / "q-blocked.txt")
        for rnd in range(1, self.args.rounds_1m + 1):
            lists = [("100k", self.list_small), ("1m", self.list_big)]
            for size, path in lists if rnd % 2 else lists[::-1]:
                server, startup = self.start_timed(self.work / f"s{rnd}-{size}", path)
                try:
                    mem_loaded = measure.memory_kb(server.pid)
                    run = self.cpu_run(server, blocked, None)
                    mem = measure.memory_kb(server.pid)
                finally:
                    server.stop()
                runs.append({"round": rnd, "list": size, **startup, **run,
                             "loaded_vmrss_kb": mem_loaded["VmRSS"],
                             "loaded_vmhwm_kb": mem_loaded["VmHWM"], "vmhwm_kb": mem["VmHWM"],
                             "vmrss_kb": mem["VmRSS"]})
                targets.remove(server.log_path)
                log(f"scale round {rnd} {size:4} first blocked answer "
                    f"{startup['first_blocked_s']:.2f} s, list load {startup['list_load_s']} s, "
                    f"rss {mem_loaded['VmRSS'] / 1024:.0f} MB, cpu {run['cpu_us_per_q']} us/q")
        return {"runs": runs, "reload": self.reload_under_load(), "lookup": self.lookup()}

    def start_timed(self, workdir: Path, path: Path) -> tuple[targets.Server, dict[str, float]]:
        """Start sinkhole (info logging: the list_reload line) and time its first block."""
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)
        server = targets.start_sinkhole(workdir, self.up_port, path, self.features,
                                        self.webhook.url, "info")
        try:
            at = measure.wait_answer(server.port, self.first_blocked, BLOCKED_PROBE_RCODE,
                                     time.monotonic() + 120, server.alive)
        except (RuntimeError, TimeoutError):
            server.stop()
            raise
        reloads = reload_events(server.log_path)
        return server, {"first_blocked_s": round(at - server.started, 3),
                        "list_load_s": reloads[0]["seconds"] if reloads else None}

    def reload_under_load(self) -> dict[str, object]:
        """Issue 3: SIGHUP twice during a 2,000 q/s blocked run on the 1M list."""
        server, _ = self.start_timed(self.work / "reload", self.list_big)
        duration = self.args.duration
        box: dict[str, measure.PerfResult] = {}

        def load() -> None:
            box["r"] = measure.dnsperf(server.port, str(self.data / "q-blocked.txt"),
                                       duration=duration, qps_limit=LATENCY_QPS, verbose=True)

        try:
            hwm_before = measure.memory_kb(server.pid)["VmHWM"]
            thread = threading.Thread(target=load)
            thread.start()
            for _ in range(2):
                time.sleep(duration / 3)
                server.proc.send_signal(signal.SIGHUP)
            thread.join(duration + 120)
            time.sleep(1)
            mem = measure.memory_kb(server.pid)
        finally:
            server.stop()
        res = box["r"]
        seconds = [e["seconds"] for e in reload_events(server.log_path)
                   if e.get("reason") == "sighup"]
        out = {"reloads": len(seconds), "reload_s": seconds, **res.latency_summary(),
               "lost": res.lost, "completed": res.completed, "vmhwm_before_kb": hwm_before,
               "vmhwm_after_kb": mem["VmHWM"]}
        log(f"reload under load: {out}")
        return out

    def lookup(self) -> list[dict[str, object]]:
        out = []
        for path in (self.list_small, self.list_big):
            proc = subprocess.run([sys.executable, str(HERE / "lookup.py"), str(path),
                                   str(self.data / "q-blocked.txt")], capture_output=True,
                                  text=True, timeout=300, check=True)
            out.append(json.loads(proc.stdout))
            log(f"lookup: {out[-1]}")
        return out

    # --- profile ----------------------------------------------------------------------------

    def profile(self) -> dict[str, object]:
        results: Path = self.args.results
        seconds = self.args.profile_seconds
        out = {}
        for workload in ("blocked", "cached"):
            tput_file, _, warm = WORKLOADS[workload]
            datafile = str(self.data / tput_file)
            server = self.start("sinkhole", self.work / f"profile-{workload}")
            try:
                if warm:
                    measure.dnsperf(server.port, datafile, max_runs=warm, duration=30)

                def load(port: int = server.port, f: str = datafile) -> measure.PerfResult:
                    return measure.dnsperf(port, f, duration=seconds + 2)

                raw = results / f"profile-{workload}.txt"
                spy.under_load(load, server.pid, seconds, raw, "raw")
                spy.under_load(load, server.pid, seconds, results / f"profile-{workload}.svg",
                                "flamegraph")
            finally:
                server.stop()
            targets.remove(server.log_path)
            out[workload] = spy.summarise(raw.read_text())
            log(f"profile {workload}: top self {out[workload]['self'][:5]}")
        return out


def reload_events(path: Path) -> list[dict[str, object]]:
    events = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"list_reload"' in line:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    return events


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> dict[str, object]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import sinkhole
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "sinkhole": sinkhole.__version__,
            "dnsmasq": first_line(["dnsmasq", "--version"]),
            "unbound": first_line(["unbound", "-V"]),
            "dnsperf": [ln for ln in subprocess.run(["dnsperf", "-h"], capture_output=True,
                                                     text=True, check=False).stderr.splitlines()
                        if ln.startswith("Version")][:1]}


def summary_medians(rows: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        key = f"{row['workload']}/{row['target']}"
        out.setdefault(key, {})
    for key in out:
        w, t = key.split("/")
        sel = [r for r in rows if r["workload"] == w and r["target"] == t]
        out[key] = {"qps": statistics.median(r["qps"] for r in sel),
                    "cpu_us_per_q": statistics.median(r["cpu_us_per_q"] for r in sel)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--responder", type=Path, required=True)
    p.add_argument("--data", type=Path, default=HERE / "data")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rounds-1m", type=int, default=2)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--profile-seconds", type=int, default=8)
    p.add_argument("--command", default="bench/run.sh", help="recorded with the results")
    args = p.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    started = time.time()
    bench = Bench(args)
    log(f"workdir {bench.work}; sinkhole features accepted by check-config: {bench.features}")
    try:
        rows = bench.compare()
        scale = bench.scale()
        profiles = bench.profile()
    finally:
        bench.close()
    results = {
        "meta": {"command": args.command, "started": time.strftime(
            "%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
            "wall_s": round(time.time() - started), "rounds": args.rounds,
            "rounds_1m": args.rounds_1m, "duration_s": args.duration,
            "latency_qps": LATENCY_QPS, "features": bench.features,
            "webhook_posts": bench.webhook.posts, "machine": machine()},
        "runs": rows, "medians": summary_medians(rows), "scale": scale, "profile": profiles,
    }
    (args.results / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    report.write_all(results, args.results)
    log(f"wrote {args.results}/results.md, results.json, chart.png "
        f"in {results['meta']['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
