"""The side-by-side benchmark: sinkhole, dnsmasq and unbound, same list, same upstream, same
workloads, targets alternating within each round; then sinkhole alone (solo.py: 1M names, a
reload under load, what each feature and the cyclic GC cost) and a py-spy profile of it.

Expects the data from gen.py and a built responder (run.sh does both):
    python bench/harness.py --responder PATH [--rounds 3] [--duration 10] [--quick]
Writes results.json, results.md, chart.png and the profiles to --results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure
import report
import solo
import spy
import targets

HERE = Path(__file__).resolve().parent
LATENCY_QPS = measure.LATENCY_QPS
WORKLOADS = measure.WORKLOADS


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.data: Path = args.data
        self.work = work
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
              **sinkhole_opts: object) -> targets.Server:
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)
        if target == "sinkhole":
            features = dict(self.features)
            if not sinkhole_opts.pop("alerts", True):
                features["alerts"] = False
            server = targets.start_sinkhole(workdir, self.up_port, list_path or self.list_small,
                                            features, self.webhook.url,  # type: ignore[arg-type]
                                            **sinkhole_opts)  # type: ignore[arg-type]
        elif target == "dnsmasq":
            server = targets.start_dnsmasq(workdir, self.up_port, self.names)
        else:
            server = targets.start_unbound(workdir, self.up_port, self.names)
        return targets.wait_ready(server)

    def loaded(self, rnd: int, target: str, workload: str) -> dict[str, object]:
        """Fresh server, warm-up, saturating run, then the fixed-rate latency run."""
        tput_file, lat_file, warm = WORKLOADS[workload]
        server = self.start(target, self.work / f"r{rnd}-{target}-{workload}")
        posts0 = self.webhook.posts
        try:
            if warm:
                measure.dnsperf(server.port, str(self.data / tput_file), max_runs=warm,
                                duration=30)
            tput = self.cpu_run(server, str(self.data / tput_file), None)
            lat = self.cpu_run(server, str(self.data / lat_file), LATENCY_QPS)
            mem = measure.memory_kb(server.pid)
            posts = self.webhook.posts - posts0
            scraped = (targets.scrape_metrics(server.extra["http_port"])  # type: ignore[arg-type]
                       if target == "sinkhole" else None)
        finally:
            server.stop()
        row = {"round": rnd, "target": target, "workload": workload, **tput,
               "latency": lat["latency"], "lat_run": {k: v for k, v in lat.items()
                                                       if k != "latency"},
               "vmhwm_kb": mem["VmHWM"], "vmrss_kb": mem["VmRSS"],
               "stderr_lines": targets.log_lines(server.log_path),
               "rcodes_ok": rcodes_ok(workload, tput["rcodes"])}
        if target == "sinkhole":
            db = server.log_path.parent / "state" / "sinkhole.db"
            row["store_db_bytes"] = db.stat().st_size if db.exists() else None
            row["alert_posts"] = posts
            row["metrics"] = scraped
        targets.remove(server.log_path)   # the hit log of a blocked run is large
        return row

    def cpu_run(self, server: targets.Server, datafile: str,
                qps: int | None) -> dict[str, object]:
        r0, (u0, k0) = measure.cpu_seconds(self.responder.pid), measure.cpu_split(server.pid)
        res = measure.dnsperf(server.port, datafile, duration=self.args.duration,
                              qps_limit=qps, verbose=qps is not None)
        (u1, k1), r1 = measure.cpu_split(server.pid), measure.cpu_seconds(self.responder.pid)
        answered = max(res.completed, 1)
        s0, s1 = u0 + k0, u1 + k1
        out = {**res.as_dict(), "server_cpu_s": round(s1 - s0, 3),
               "cpu_us_per_q": round((s1 - s0) / answered * 1e6, 2),
               "user_us_per_q": round((u1 - u0) / answered * 1e6, 2),
               "sys_us_per_q": round((k1 - k0) / answered * 1e6, 2),
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
                    lat = row["latency"]
                    measure.log(f"round {rnd} {workload:9} {target:8} qps {row['qps']:9.0f} "
                                f"cpu {row['cpu_us_per_q']:6.1f} us/q  p99 {lat['p99_ms']:.2f}"
                                f" ms  max {lat['max_ms']:.1f} ms  lost {row['lost']}+"
                                f"{row['lat_run']['lost']}  rcodes ok {row['rcodes_ok']}")
        return rows

    # --- profile ----------------------------------------------------------------------------

    def profile(self) -> dict[str, object]:
        """py-spy on a fresh sinkhole per workload and format (a forwarded run must not replay
        names the previous run cached)."""
        results: Path = self.args.results
        seconds = self.args.profile_seconds
        out = {}
        for workload, (tput_file, _, warm) in WORKLOADS.items():
            datafile = str(self.data / tput_file)
            for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
                server = self.start("sinkhole", self.work / f"profile-{workload}-{fmt}")
                try:
                    if warm:
                        measure.dnsperf(server.port, datafile, max_runs=warm, duration=30)

                    def load(port: int = server.port, f: str = datafile) -> object:
                        return measure.dnsperf(port, f, duration=seconds + 2)

                    spy.under_load(load, server.pid, seconds,
                                   results / f"profile-{workload}.{suffix}", fmt)
                finally:
                    server.stop()
                targets.remove(server.log_path)
            out[workload] = spy.summarise((results / f"profile-{workload}.txt").read_text())
            measure.log(f"profile {workload}: top self {out[workload]['self'][:5]}")
        return out


def rcodes_ok(workload: str, rcodes: dict[str, int]) -> bool:
    """Every answer is what the workload expects (a run that forwards the blocked names, or
    SERVFAILs, measures the wrong thing)."""
    total = sum(rcodes.values()) or 1
    nx, ok = rcodes.get("NXDOMAIN", 0), rcodes.get("NOERROR", 0)
    if workload == "blocked":
        return nx == total
    if workload == "cached":
        return ok == total
    return nx + ok == total and 0.05 < nx / total < 0.15


def first_line(cmd: list[str], prefix: str = "") -> str:
    """The first output line of `cmd` (stdout, then stderr) that starts with `prefix`."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    lines = [ln.strip() for ln in (out.stdout + "\n" + out.stderr).splitlines()]
    found = [ln for ln in lines if ln and ln.startswith(prefix)]
    return found[0] if found else "?"


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
            "dnsmasq": first_line(["dnsmasq", "--version"]).split("  ")[0],
            "unbound": "unbound " + first_line(["unbound", "-V"]),
            "dnsperf": "dnsperf " + first_line(["dnsperf", "-h"], "Version")}


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


def snapshot_sinkhole(work: Path) -> dict[str, object]:
    """Copy the package as it is now and run every sinkhole process from the copy (PYTHONPATH):
    the tree is being edited while a run takes 15 minutes, and every row must measure the
    same code. Returns the copy's content hash (sha256 over its files, sorted by path)."""
    import sinkhole
    src = Path(sinkhole.__file__).resolve().parent
    dest = work / "src" / "sinkhole"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(dest)).encode() + b"\0" + f.read_bytes())
    os.environ["PYTHONPATH"] = str(dest.parent)
    newest = max(f.stat().st_mtime for f in files)
    return {"source": str(src), "sha256": digest.hexdigest()[:16], "files": len(files),
            "newest_file": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(newest))}


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
    p.add_argument("--keep", action="store_true", help="keep the work folder (configs, logs)")
    args = p.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # Not under /tmp: other suites running on this machine clean up /tmp behind us.
    scratch = HERE / "build"
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    code = snapshot_sinkhole(work)
    bench = Bench(args, work)
    measure.log(f"workdir {bench.work}; sinkhole features accepted by check-config: "
                f"{bench.features}")
    try:
        rows = bench.compare()
        scale = solo.scale(bench)
        diagnostics = solo.diagnostics(bench)
        profiles = bench.profile()
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results = {
        "meta": {"command": args.command, "started": time.strftime(
            "%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
            "wall_s": round(time.time() - started), "rounds": args.rounds,
            "rounds_1m": args.rounds_1m, "duration_s": args.duration,
            "latency_qps": LATENCY_QPS, "features": bench.features, "sinkhole_code": code,
            "webhook_posts": bench.webhook.posts, "machine": machine()},
        "runs": rows, "medians": summary_medians(rows), "scale": scale,
        "diagnostics": diagnostics, "profile": profiles,
    }
    (args.results / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    report.write_all(results, args.results)
    measure.log(f"wrote {args.results}/results.md, results.json, chart.png "
        f"in {results['meta']['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
