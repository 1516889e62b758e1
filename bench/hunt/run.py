"""The hunting evaluation: replay a generated office month through the hunter, score the result.

Per injected case: found or not, by which signals, its score, and how long after the case began
the first suspicion reached `hunt.alert_score`. Then the noise: suspicions and alerts that are no
injected case, per 100 device-days (the issue's target: at most 1 false alert per 100), each
false alert named with its domain, device and cause; throughput and peak memory.

Two paths, both at the default settings (the embedded config: learning 7 d, alert_score 80):
- **direct**: a child process streams the log through `sinkhole.importers.read_log` into
  `sinkhole.hunt.Hunter` on a temporary database, the clock set to each observation's time;
  every suspicion the hunter reports is kept with the log time it was reported at, which gives
  the time to detect.
- **import**: `sinkhole import --format jsonl` as a user runs it (history store, hunter, then the
  retro-hunt), then `sinkhole suspicions --json`. Its wall time and peak RSS are the user's.

    python bench/hunt/run.py [--quick] [--seed S] [--devices N] [--days D] [--mode both]

Data is generated once per (seed, size, generator version) into bench/hunt/data/. Results go to
bench/results/hunt.{md,json} (QUICK: bench/hunt/results-quick/).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402  (a sibling script, not a package)

FULL = {"devices": 300, "days": 30}
QUICK = {"devices": 50, "days": 10}


class EngineMissing(SystemExit):
    pass


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def dataset(seed: int, devices: int, days: int, sites: int) -> Path:
    """The generated month, cached: the folder name carries the generator's own hash, so an edit
    to generate.py or catalog.py regenerates instead of reusing stale data."""
    code = hashlib.sha256(b"".join((HERE / f).read_bytes() for f in ("generate.py",
                                                                     "catalog.py"))).hexdigest()[:10]
    out = HERE / "data" / f"s{seed}-{devices}x{days}-{sites}-{code}"
    if (out / "truth.json").exists() and (out / "queries.jsonl").exists():
        print(f"run: reusing {out.relative_to(ROOT)}", file=sys.stderr)
        return out
    for stale in out.parent.glob(f"s{seed}-{devices}x{days}-{sites}-*"):
        shutil.rmtree(stale)          # an older generator's month: never read again
    generate.generate(out, seed, devices, days, sites)
    return out


def check_engine() -> None:
    """Fail with what is missing, not with a traceback halfway through a long run."""
    missing = []
    try:
        from sinkhole.hunt import Hunter  # noqa: F401
    except ImportError as err:
        missing.append(f"sinkhole.hunt.Hunter ({err})")
    try:
        from sinkhole.importers import read_log  # noqa: F401
    except ImportError as err:
        missing.append(f"sinkhole.importers.read_log ({err})")
    if missing:
        raise EngineMissing("run: the hunting engine is not there yet: " + "; ".join(missing)
                            + ". The data is generated; run again once it lands.")


# ---------------------------------------------------------------------------------------------
# Direct replay (a child process, so its peak RSS is the hunter's own)
# ---------------------------------------------------------------------------------------------
def replay_child(path: Path, db: Path, out: Path) -> int:
    from sinkhole.config import embedded_default
    from sinkhole.hunt import Hunter
    from sinkhole.importers import ImportStats, read_log

    cfg = embedded_default().hunt
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    now = [0.0]
    hunter = Hunter(cfg, str(db), clock=lambda: now[0])
    stats = ImportStats()
    keys: dict[tuple[str, str], dict[str, Any]] = {}
    in_hunter = 0.0
    perf = time.perf_counter
    t_start = t_chunk = perf()
    n = 0
    rates = []       # (observations so far, observations/s over the last chunk)
    observe = hunter.observe
    for obs in read_log(path, "jsonl", stats):
        if obs.time > now[0]:
            now[0] = obs.time
        t0 = perf()
        found = observe(obs)
        in_hunter += perf() - t0
        n += 1
        for s in found:
            rec = keys.get((s.client_ip, s.domain))
            if rec is None:
                rec = keys[(s.client_ip, s.domain)] = {
                    "client_ip": s.client_ip, "domain": s.domain, "first_report": obs.time,
                    "first_alert": None, "max_score": 0}
            if s.score >= rec["max_score"]:
                rec["max_score"] = s.score
                rec["signals"] = [sig.get("signal") for sig in s.signals]
                rec["reasons"] = [sig.get("reason") for sig in s.signals]
            if rec["first_alert"] is None and s.score >= cfg.alert_score:
                rec["first_alert"] = obs.time
        if n % 500_000 == 0:
            now_s = perf()
            rates.append((n, round(500_000 / (now_s - t_chunk))))
            t_chunk = now_s
            print(f"replay: {n:,} observations, {rates[-1][1]:,}/s over the last 500,000, "
                  f"{len(keys):,} suspicions", file=sys.stderr, flush=True)
    t_flush = perf()
    hunter.flush()
    flush_s = perf() - t_flush
    seconds = perf() - t_start
    final = _final_rows(hunter)
    hunter.close()
    for row in final:
        rec = keys.get((row["client_ip"], row["domain"]))
        if rec is None:      # stored but never reported (should not happen): keep it visible
            rec = keys[(row["client_ip"], row["domain"])] = {
                "client_ip": row["client_ip"], "domain": row["domain"], "first_report": None,
                "first_alert": None, "max_score": row["score"],
                "signals": [s.get("signal") for s in row["signals"]]}
        rec.update(final_score=row["score"], count=row["count"], first_seen=row["first_seen"],
                   last_seen=row["last_seen"])
    result = {
        "observations": n, "lines": stats.lines, "bad_lines": stats.error_count,
        "seconds": round(seconds, 2), "flush_seconds": round(flush_s, 2),
        "hunter_seconds": round(in_hunter + flush_s, 2),
        "rate": round(n / seconds), "hunter_us_per_obs": round(1e6 * in_hunter / max(1, n), 2),
        "rate_by_chunk": rates,
        "rss_start_mb": round(rss0 / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "db_mb": round(sum(f.stat().st_size for f in db.parent.glob(db.name + "*")) / 2**20, 1),
        "alert_score": cfg.alert_score, "learning": cfg.learning,
        "suspicions": list(keys.values()),
    }
    out.write_text(json.dumps(result))
    return 0


def _final_rows(hunter: Any) -> list[dict[str, Any]]:
    """What the hunter stored, as `suspicions()` rows (whatever keyword spelling it takes)."""
    fn = getattr(hunter, "suspicions", None)
    if fn is None:
        return []
    for kwargs in ({"min_score": 0, "limit": 10**7}, {"limit": 10**7}, {}):
        try:
            rows = fn(**kwargs)
        except TypeError:
            continue
        return [r if isinstance(r, dict) else r.as_dict() for r in rows]
    return []


def run_direct(data: Path, work: Path) -> dict[str, Any]:
    out = work / "direct.json"
    db = work / "direct" / "hunt.db"
    db.parent.mkdir(parents=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--replay-child", str(data),
           str(db), str(out)]
    rc, wall, rss = _spawn(cmd, cwd=work)
    if rc != 0:
        raise SystemExit(f"run: the direct replay failed (exit {rc}); see its output above")
    res = json.loads(out.read_text())
    res["wall_seconds"] = round(wall, 2)
    return res


# ---------------------------------------------------------------------------------------------
# Through `sinkhole import`
# ---------------------------------------------------------------------------------------------
def run_import(data: Path, work: Path) -> dict[str, Any]:
    """The user's path: a config with the default hunting settings and its own store."""
    state = work / "import"
    state.mkdir()
    shipped = ROOT / "sinkhole" / "data" / "triangulation.txt"
    cfg = state / "sinkhole.yml"
    cfg.write_text(
        f"storage:\n  path: {state / 'sinkhole.db'}\n  synchronous: normal\n"
        f"blocklists:\n  - name: triangulation\n    path: {shipped}\n    category: c2\n"
        "    severity: critical\n    action: nxdomain\n")
    sinkhole = [sys.executable, "-m", "sinkhole.cli"]
    log = state / "import.log"
    rc, wall, rss = _spawn([*sinkhole, "import", "--format", "jsonl",
                            str(data / "queries.jsonl"), "-c", str(cfg)],
                           cwd=work, stdout=log)
    text = log.read_text()
    if rc != 0:
        raise SystemExit(f"run: `sinkhole import` failed (exit {rc}):\n{text[-2000:]}")
    listed = subprocess.run([*sinkhole, "suspicions", "-c", str(cfg), "--json",
                             "--min-score", "0", "--limit", "10000000"],
                            capture_output=True, text=True, cwd=work)
    if listed.returncode != 0:
        raise SystemExit(f"run: `sinkhole suspicions` failed: {listed.stderr[-2000:]}")
    rows = json.loads(listed.stdout or "[]")
    reported = _reported(state / "hunt.db")
    sus = [{"client_ip": r["client_ip"], "domain": r["domain"],
            "max_score": max(r["score"], reported.get((r["client_ip"], r["domain"]), 0)),
            "final_score": r["score"], "count": r["count"], "first_seen": r["first_seen"],
            "last_seen": r["last_seen"], "first_alert": None,
            "signals": [s.get("signal") if isinstance(s, dict) else s for s in r["signals"]]}
           for r in rows]
    summary = [ln for ln in text.splitlines() if ln.startswith(("hunting:", str(data)))]
    n = json.loads((data / "truth.json").read_text())["observations"]
    return {"observations": n, "wall_seconds": round(wall, 2), "seconds": round(wall, 2),
            "rate": round(n / wall), "peak_rss_mb": round(rss / 1024, 1),
            "db_mb": round(sum(f.stat().st_size for f in state.glob("*.db*")) / 2**20, 1),
            "output": summary, "suspicions": sus}


def _reported(db: Path) -> dict[tuple[str, str], int]:
    """The highest score each suspicion ever reached (hunt.db's `reported`): an alert once
    sent stays sent even if a signal is later dropped, so false alerts count that, not the
    stored score. Read-only; {} when the column is not there."""
    import sqlite3
    try:
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return {(ip, dom): rep for ip, dom, rep in
                    conn.execute("SELECT client_ip, domain, reported FROM suspicions")}
        finally:
            conn.close()
    except sqlite3.Error as err:
        print(f"run: no `reported` scores in {db} ({err}); using stored scores", file=sys.stderr)
        return {}


def snapshot(work: Path) -> tuple[Path, str]:
    """A copy of sinkhole/ taken now, for every child of this run: the engine is edited while
    benchmarks run, and the two paths must judge the same code. Returns (folder, hash)."""
    pkg = work / "pkg"
    shutil.copytree(ROOT / "sinkhole", pkg / "sinkhole",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for f in sorted((pkg / "sinkhole").rglob("*")):
        if f.is_file():
            digest.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
    return pkg, digest.hexdigest()[:12]


PKG: Path | None = None     # the snapshot, once taken (first on every child's PYTHONPATH)


def _spawn(cmd: list[str], cwd: Path, stdout: Path | None = None) -> tuple[int, float, int]:
    """Run a child; its exit code, wall seconds and its own peak RSS (KiB, from wait4)."""
    first = str(PKG) if PKG else str(ROOT)
    env = {**os.environ, "PYTHONPATH": first + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.monotonic()
    with open(stdout, "w") if stdout else open(os.devnull, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sink if stdout else None)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - t0, usage.ru_maxrss


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
def evaluate(truth: dict[str, Any], labels: dict[str, str], res: dict[str, Any],
             alert_score: int) -> dict[str, Any]:
    from sinkhole.hunt.domains import registrable

    devices = {d["ip"]: d for d in truth["device_list"]}
    case_of: dict[tuple[str, str], str] = {}
    for case in truth["cases"]:
        for name in (*case["domains"], *case["registrable"]):
            case_of[(case["client"], name)] = case["id"]
    cases = []
    matched: set[int] = set()
    rows = res["suspicions"]
    for case in truth["cases"]:
        mine = []
        for i, s in enumerate(rows):
            key = (s["client_ip"], s["domain"])
            if case_of.get(key) == case["id"] or case_of.get(
                    (s["client_ip"], registrable(s["domain"]))) == case["id"]:
                mine.append(s)
                matched.add(i)
        alerts = [s for s in mine if s["max_score"] >= alert_score]
        firsts = [s["first_alert"] for s in alerts if s.get("first_alert")]
        best = max(mine, key=lambda s: s["max_score"], default=None)
        cases.append({
            "id": case["id"], "device": case["device"], "client": case["client"],
            "start": case["start"], "detected": bool(alerts),
            "score": best["max_score"] if best else 0,
            "signals": sorted({sig for s in mine for sig in s.get("signals") or ()}),
            "best_domain": best["domain"] if best else None,
            "suspicions": len(mine), "alerts": len(alerts),
            "time_to_alert": (min(firsts) - case["start"]) if firsts else None,
            "domains": case["registrable"][:5] if case["id"] != "dga" else
            [f"{len(case['registrable'])} DGA names"]})
    false = [s for i, s in enumerate(rows) if i not in matched]
    false_alerts = [s for s in false if s["max_score"] >= alert_score]
    case_ips = {c["client"] for c in truth["cases"]}

    def describe(s: dict[str, Any]) -> dict[str, Any]:
        dev = devices.get(s["client_ip"], {"name": "guest", "kind": "phone", "os": "?"})
        reg = registrable(s["domain"])
        return {"domain": s["domain"], "client_ip": s["client_ip"], "device": dev["name"],
                "kind": f"{dev['kind']}/{dev['os']}", "score": s["max_score"],
                "final_score": s.get("final_score", s["max_score"]),
                "signals": s.get("signals") or [], "count": s.get("count"),
                "category": labels.get(reg) or labels.get(s["domain"]) or "unlabelled",
                "on_case_device": s["client_ip"] in case_ips}

    dd = truth["device_days"]
    per100 = 100.0 / dd
    return {
        "cases": cases,
        "false_suspicions": len(false), "false_alerts": len(false_alerts),
        "false_suspicions_per_100dd": round(len(false) * per100, 2),
        "false_alerts_per_100dd": round(len(false_alerts) * per100, 3),
        "false_alert_list": sorted((describe(s) for s in false_alerts),
                                   key=lambda d: (-d["score"], d["domain"])),
        "false_notable": notable(describe(s) for s in false),
        "false_by_category": Counter(describe(s)["category"] for s in false).most_common(),
        "false_by_signals": Counter("+".join(sorted(s.get("signals") or ["?"]))
                                    for s in false).most_common(15),
        "all_found": all(c["detected"] for c in cases),
    }


LONG_TAIL = frozenset({"site", "site-cdn", "app", "tracker", "sender", "spam-sender",
                       "typo-nxdomain", "cdn-hash"})


def notable(rows: Any) -> list[dict[str, Any]]:
    """False suspicions that are not the browsing long tail (new, one-device domains are
    expected there): planted hard negatives, beacons, higher scores. What to tune against."""
    out = [d for d in rows if d["category"] not in LONG_TAIL or d["score"] >= 50
           or "beacon" in d["signals"]]
    return sorted(out, key=lambda d: (-d["score"], d["category"], d["domain"]))[:60]


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def fmt_dt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def write_report(results: Path, meta: dict[str, Any], runs: dict[str, dict[str, Any]]) -> None:
    truth = meta["truth"]
    lines = [
        "# Hunting evaluation (issue 14)", "",
        f"`{meta['command']}` — {meta['date']}, {meta['host']}, sinkhole {meta['commit']}.", "",
        f"A generated office month: **{truth['devices']} devices** (+{truth['guests']} one-day "
        f"guest phones) × **{truth['days']} days**, seed {truth['seed']}, "
        f"**{truth['observations']:,} queries** over **{truth['device_days']:,} device-days** "
        f"({truth['observations'] / truth['device_days']:.0f} per device-day), "
        f"{truth['sites']:,} web sites (Zipf) plus apps, trackers, CDNs, OS and IoT background. "
        f"Default settings: learning {meta['learning'] / 86400:.0f} d, alert_score "
        f"{meta['alert_score']}. Generated in {truth['generate_seconds']} s "
        "(`bench/hunt/generate.py`).", "",
    ]
    for path, r in runs.items():
        ev = r["eval"]
        lines += [f"## {path}: {_path_doc(path)}", "",
                  "| case | device | detected | score | signals | time to alert | "
                  "suspicions (alerts) | domains |",
                  "| --- | --- | --- | ---: | --- | --- | --- | --- |"]
        for c in ev["cases"]:
            lines.append(f"| {c['id']} | {c['device']} ({c['client']}) | "
                         f"{'**yes**' if c['detected'] else '**NO**'} | {c['score']} | "
                         f"{', '.join(c['signals']) or '—'} | {fmt_dt(c['time_to_alert'])} | "
                         f"{c['suspicions']} ({c['alerts']}) | {', '.join(c['domains'])} |")
        fa_ok = ev["false_alerts_per_100dd"] <= 1.0
        lines += ["",
                  "| noise | count | per 100 device-days | target |",
                  "| --- | ---: | ---: | --- |",
                  f"| false suspicions (any score) | {ev['false_suspicions']:,} | "
                  f"{ev['false_suspicions_per_100dd']} | — |",
                  f"| false alerts (score ≥ {meta['alert_score']}) | {ev['false_alerts']:,} | "
                  f"{ev['false_alerts_per_100dd']} | ≤ 1: {'met' if fa_ok else '**missed**'} |",
                  "",
                  f"Every injected case found: **{'yes' if ev['all_found'] else 'NO'}**. "
                  f"Throughput {r['rate']:,} observations/s over {r['seconds']} s"
                  + (f" (the hunter itself {r['hunter_us_per_obs']} µs per observation, "
                     f"the rest is reading the log)" if "hunter_us_per_obs" in r else "")
                  + f"; peak RSS {r['peak_rss_mb']} MB; state on disk {r['db_mb']} MB."
                  + _chunks(r.get("rate_by_chunk") or []), ""]
        if r.get("output"):
            lines += ["```", *r["output"], "```", ""]
        if ev["false_alert_list"]:
            lines += [f"False alerts ({len(ev['false_alert_list'])}; first 40):", "",
                      "| domain | device | score | signals | generator's category |",
                      "| --- | --- | ---: | --- | --- |"]
            for d in ev["false_alert_list"][:40]:
                lines.append(f"| `{d['domain']}` | {d['device']} ({d['kind']}) | {d['score']} | "
                             f"{', '.join(d['signals'])} | {d['category']}"
                             f"{' (case device)' if d['on_case_device'] else ''} |")
            lines.append("")
        below = [d for d in ev["false_notable"] if d["score"] < meta["alert_score"]]
        if below:
            lines += ["False suspicions below the alert score that are not the browsing long "
                      f"tail ({len(below)}" + (", first 25" if len(below) > 25 else "") + "):",
                      "", "| domain | device | score | signals | generator's category |",
                      "| --- | --- | ---: | --- | --- |"]
            for d in below[:25]:
                lines.append(f"| `{d['domain']}` | {d['device']} ({d['kind']}) | {d['score']} | "
                             f"{', '.join(d['signals'])} | {d['category']} |")
            lines.append("")
        if ev["false_by_category"]:
            lines += ["False suspicions by the generator's category: " + ", ".join(
                f"{k} {v}" for k, v in ev["false_by_category"]) + ".", "",
                "By signal set: " + ", ".join(f"{k} {v}" for k, v in ev["false_by_signals"])
                + ".", ""]
    lines += ["## Injected cases", ""]
    for c in truth["cases"]:
        day = int((c["start"] - truth["start"]) // 86400)
        lines.append(f"- **{c['id']}** on {c['device']} ({c['client']}), from day {day} "
                     f"({time.strftime('%a %H:%M', time.gmtime(c['start']))}), "
                     f"{c['queries']:,} queries: {c['description']}.")
    neg = truth["hard_negatives"]
    lines += ["", "Hard negatives the generator plants (none is a case): SaaS adopted mid-month "
              f"{', '.join(neg['saas_new'])}; a TV firmware update's new domain "
              f"{neg['iot_fleet_new']} (every TV, day 17); a display installed on day 16 "
              f"beaconing {neg['iot_new_device']}; lone IoT devices beaconing "
              f"{', '.join(neg['iot_unique_vendor'])} since day 0.", ""]
    (results / meta["md_name"]).write_text("\n".join(lines))


def _chunks(rates: list) -> str:
    """The rate over the run: a hunter that slows as its state grows shows here."""
    if len(rates) < 2:
        return ""
    mid = rates[len(rates) // 2]
    return (f" Rate per 500,000 observations: {rates[0][1]:,}/s at the start, {mid[1]:,}/s at "
            f"{mid[0]:,}, {rates[-1][1]:,}/s at {rates[-1][0]:,}.")


def _path_doc(path: str) -> str:
    return {"direct": "`read_log` → `Hunter.observe`, one process",
            "import": "`sinkhole import --format jsonl` (history + hunter + retro-hunt), then "
                      "`sinkhole suspicions --json`; score = the highest it reached "
                      "(hunt.db `reported`); time to alert only from the direct path"}[path]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--replay-child"]:
        data, db, out = (Path(a) for a in argv[1:4])
        return replay_child(data / "queries.jsonl", db, out)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="50 devices x 10 days (< 1 min)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--devices", type=int)
    ap.add_argument("--days", type=int)
    ap.add_argument("--sites", type=int, default=40_000)
    ap.add_argument("--mode", choices=("direct", "import", "both"), default="both")
    ap.add_argument("--results", type=Path)
    ap.add_argument("--command", default="python bench/hunt/run.py")
    args = ap.parse_args(argv)
    size = dict(QUICK if args.quick else FULL)
    size.update({k: v for k, v in (("devices", args.devices), ("days", args.days)) if v})
    results = args.results or (HERE / "results-quick" if args.quick else ROOT / "bench" /
                               "results")
    data = dataset(args.seed, size["devices"], size["days"], args.sites)
    global PKG
    work = Path(tempfile.mkdtemp(prefix="sinkhole-hunt-bench-"))
    runs: dict[str, dict[str, Any]] = {}
    try:
        PKG, code_hash = snapshot(work)
        sys.path.insert(0, str(PKG))
        check_engine()
        from sinkhole.config import embedded_default
        hcfg = embedded_default().hunt
        truth = json.loads((data / "truth.json").read_text())
        labels = json.loads((data / "labels.json").read_text())
        for path in (("direct", "import") if args.mode == "both" else (args.mode,)):
            print(f"run: {path} replay of {truth['observations']:,} queries", file=sys.stderr)
            res = run_direct(data, work) if path == "direct" else run_import(data, work)
            res["eval"] = evaluate(truth, labels, res, hcfg.alert_score)
            runs[path] = res
            ev = res["eval"]
            print(f"run: {path}: {sum(c['detected'] for c in ev['cases'])}/{len(ev['cases'])} "
                  f"cases, {ev['false_alerts']} false alerts "
                  f"({ev['false_alerts_per_100dd']}/100 device-days), {res['rate']:,} obs/s",
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.mkdir(parents=True, exist_ok=True)
    meta = {"command": args.command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "host": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                    f"{platform.python_version()}",
            "commit": f"{_commit()}, sinkhole/ snapshot {code_hash}", "truth": truth,
            "alert_score": hcfg.alert_score, "learning": hcfg.learning, "md_name": "hunt.md"}
    write_report(results, meta, runs)
    slim = {k: v for k, v in truth.items() if k != "device_list"}
    out = {"meta": {k: v for k, v in meta.items() if k != "truth"}, "data": slim,
           "runs": {p: {k: v for k, v in r.items() if k != "suspicions"} for p, r in runs.items()}}
    (results / "hunt.json").write_text(json.dumps(out, indent=1))
    print(f"run: wrote {results / 'hunt.md'} and hunt.json", file=sys.stderr)
    ok = all(r["eval"]["all_found"] and r["eval"]["false_alerts_per_100dd"] <= 1.0
             for r in runs.values())
    return 0 if ok else 1


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "sinkhole"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except OSError:
        return "unknown"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EngineMissing as err:
        print(err, file=sys.stderr)
        sys.exit(3)
