"""results.json -> results.md (tables per workload, ratios, targets, 1M names, profile) and
chart.png. Run alone to re-render: `python bench/report.py [RESULTS_DIR]`.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import spy

WORKLOADS = ("blocked", "cached", "forwarded")
TARGETS = ("sinkhole", "dnsmasq", "unbound")
PEERS = ("dnsmasq", "unbound")
# Issue 8 targets for sinkhole (all features on), medians over rounds.
CPU_TARGET = {"blocked": 16.0, "cached": 20.0, "forwarded": 45.0}
P99_TARGET = {"blocked": 1.0, "cached": 1.0, "forwarded": 2.0}
SPIKE_MS = 20.0


def _sel(runs: list[dict], workload: str, target: str) -> list[dict]:
    return [r for r in runs if r["workload"] == workload and r["target"] == target]


def _med(rows: list[dict], key: str, sub: str | None = None) -> float:
    vals = [(r[sub][key] if sub else r[key]) for r in rows]
    return statistics.median(vals) if vals else float("nan")


def workload_table(runs: list[dict], workload: str) -> list[str]:
    out = [f"### {workload}", "",
           "| target | round | QPS | lost | CPU µs/q | user / sys | p50 ms | p99 ms | max ms "
           "| peak RSS MB | responder CPU % |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for target in TARGETS:
        rows = _sel(runs, workload, target)
        for r in rows:
            lat = r["latency"]
            flag = "" if r.get("rcodes_ok", True) else " ⚠ unexpected rcodes"
            out.append(f"| {target}{flag} | {r['round']} | {r['qps']:,.0f} | "
                       f"{r['lost']}+{r['lat_run']['lost']} | {r['cpu_us_per_q']:.1f} | "
                       f"{r['user_us_per_q']:.1f} / {r['sys_us_per_q']:.1f} | "
                       f"{lat['p50_ms']:.3f} | {lat['p99_ms']:.3f} | {lat['max_ms']:.2f} | "
                       f"{r['vmhwm_kb'] / 1024:.0f} | {r['responder_cpu_pct']:.0f} |")
        if rows:
            out.append(f"| **{target}** | median | **{_med(rows, 'qps'):,.0f}** | | "
                       f"**{_med(rows, 'cpu_us_per_q'):.1f}** | "
                       f"{_med(rows, 'user_us_per_q'):.1f} / {_med(rows, 'sys_us_per_q'):.1f} | "
                       f"{_med(rows, 'p50_ms', 'latency'):.3f} | "
                       f"{_med(rows, 'p99_ms', 'latency'):.3f} | "
                       f"{max(r['latency']['max_ms'] for r in rows):.2f} (worst) | "
                       f"{_med(rows, 'vmhwm_kb') / 1024:.0f} | |")
    return out + [""]


def ratio_table(runs: list[dict]) -> list[str]:
    out = ["### sinkhole / peer ratios", "",
           "QPS ratio > 1 and CPU ratio < 1 favour sinkhole.", "",
           "| workload | round | QPS ÷ dnsmasq | CPU ÷ dnsmasq | QPS ÷ unbound | CPU ÷ unbound |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for workload in WORKLOADS:
        per_round: dict[str, list[float]] = {}
        rounds = sorted({r["round"] for r in runs if r["workload"] == workload})
        for rnd in rounds:
            cells = []
            for peer in PEERS:
                s = [r for r in _sel(runs, workload, "sinkhole") if r["round"] == rnd]
                p = [r for r in _sel(runs, workload, peer) if r["round"] == rnd]
                if not s or not p:
                    cells += ["", ""]
                    continue
                q = s[0]["qps"] / p[0]["qps"]
                c = s[0]["cpu_us_per_q"] / p[0]["cpu_us_per_q"]
                per_round.setdefault(f"{peer}q", []).append(q)
                per_round.setdefault(f"{peer}c", []).append(c)
                cells += [f"{q:.2f}", f"{c:.2f}"]
            out.append(f"| {workload} | {rnd} | " + " | ".join(cells) + " |")
        if per_round:
            med = [f"**{statistics.median(per_round[k]):.2f}**" for k in
                   ("dnsmasqq", "dnsmasqc", "unboundq", "unboundc") if k in per_round]
            out.append(f"| {workload} | median | " + " | ".join(med) + " |")
    return out + [""]


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets_table(runs: list[dict], scale: dict | None) -> list[str]:
    out = ["## Issue 8 targets (sinkhole, medians over rounds)", "",
           "| target | wanted | measured | verdict |", "| --- | --- | --- | --- |"]
    for w in WORKLOADS:
        s = _sel(runs, w, "sinkhole")
        d = _sel(runs, w, "dnsmasq")
        if not s:
            continue
        cpu = _med(s, "cpu_us_per_q")
        out.append(f"| CPU {w} | ≤ {CPU_TARGET[w]:.0f} µs/q | {cpu:.1f} µs/q "
                   f"({cpu / CPU_TARGET[w]:.1f}×) | {_verdict(cpu <= CPU_TARGET[w])} |")
        if d:
            ratio = _med(s, "qps") / _med(d, "qps")
            out.append(f"| QPS {w} | ≥ 1.0× dnsmasq | {ratio:.2f}× | {_verdict(ratio >= 1)} |")
        p99 = _med(s, "p99_ms", "latency")
        out.append(f"| p99 {w} @ {2000:,} q/s | ≤ {P99_TARGET[w]:.0f} ms | {p99:.3f} ms | "
                   f"{_verdict(p99 <= P99_TARGET[w])} |")
        worst = max(r["latency"]["max_ms"] for r in s)
        out.append(f"| max {w} (any run) | ≤ {SPIKE_MS:.0f} ms | {worst:.2f} ms | "
                   f"{_verdict(worst <= SPIKE_MS)} |")
    if scale and scale.get("runs"):
        g = scale_summary(scale)
        out.append(f"| 1M list load | ≤ 2.5 s | {g['load_1m']:.2f} s (log), first blocked answer "
                   f"{g['first_1m']:.2f} s | {_verdict(g['load_1m'] <= 2.5)} |")
        out.append(f"| 1M RSS | ≤ 130 MB | {g['loaded_1m']:.0f} MB after load (peak while "
                   f"loading {g['loaded_peak_1m']:.0f} MB) | {_verdict(g['loaded_1m'] <= 130)} |")
        out.append(f"| per-query growth 100k → 1M | ≤ 25% | {g['growth']:+.1f}% | "
                   f"{_verdict(g['growth'] <= 25)} |")
    return out + [""]


def scale_summary(scale: dict) -> dict[str, float]:
    runs = scale["runs"]
    small = [r for r in runs if r["list"] == "100k"]
    big = [r for r in runs if r["list"] == "1m"]
    cpu_s, cpu_b = _med(small, "cpu_us_per_q"), _med(big, "cpu_us_per_q")
    return {"load_1m": _med(big, "list_load_s"), "load_100k": _med(small, "list_load_s"),
            "first_1m": _med(big, "first_blocked_s"), "first_100k": _med(small, "first_blocked_s"),
            "rss_1m": _med(big, "vmhwm_kb") / 1024, "rss_100k": _med(small, "vmhwm_kb") / 1024,
            "loaded_1m": _med(big, "loaded_vmrss_kb") / 1024,
            "loaded_100k": _med(small, "loaded_vmrss_kb") / 1024,
            "loaded_peak_1m": _med(big, "loaded_vmhwm_kb") / 1024,
            "cpu_100k": cpu_s, "cpu_1m": cpu_b, "growth": (cpu_b / cpu_s - 1) * 100}


def scale_section(scale: dict) -> list[str]:
    out = ["## sinkhole with 1,000,000 names (blocked workload, saturating)", "",
           "Alerts and passive-DNS history off in these runs (hit log and hit store on): with "
           "them the CPU per blocked query moves by tens of percent from run to run, which "
           "would drown the list-size effect.", "",
           "| round | list | list load s (log) | first blocked answer s | RSS after load MB | "
           "peak RSS MB | QPS | CPU µs/q |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: "
           "| ---: |"]
    for r in scale["runs"]:
        out.append(f"| {r['round']} | {r['list']} | {r['list_load_s']} | "
                   f"{r['first_blocked_s']:.2f} | {r['loaded_vmrss_kb'] / 1024:.0f} | "
                   f"{r['vmhwm_kb'] / 1024:.0f} | {r['qps']:,.0f} | {r['cpu_us_per_q']:.1f} |")
    g = scale_summary(scale)
    out += ["", f"Medians: list load {g['load_100k']:.2f} s → {g['load_1m']:.2f} s; RSS after "
            f"load {g['loaded_100k']:.0f} → {g['loaded_1m']:.0f} MB (peak {g['rss_100k']:.0f} → "
            f"{g['rss_1m']:.0f} MB); CPU {g['cpu_100k']:.1f} → {g['cpu_1m']:.1f} µs/q "
            f"({g['growth']:+.1f}%).", ""]
    lk = scale.get("lookup") or []
    if lk:
        out += ["Policy alone, in-process (`bench/lookup.py`, best of 5 passes over the blocked "
                "query names):", "", "| list | parse s | build s | RSS growth MB | "
                "Policy.match µs |", "| --- | ---: | ---: | ---: | ---: |"]
        out += [f"| {x['entries']:,} | {x['parse_s']} | {x['build_s']} | {x['rss_growth_mb']} | "
                f"{x['lookup_us']} |" for x in lk]
        out.append("")
    rl = scale.get("reload")
    if rl:
        out += [f"Reload under load (issue 3): 1M list, blocked queries at 2,000 q/s, SIGHUP "
                f"twice: {rl['reloads']} reloads of {rl['reload_s']} s; latency p50 "
                f"{rl['p50_ms']:.3f} ms, p99 {rl['p99_ms']:.3f} ms, **max {rl['max_ms']:.1f} ms**"
                f" (target ≤ 50 ms); {rl['over_10ms']} answers over 10 ms; lost {rl['lost']} of "
                f"{rl['completed'] + rl['lost']}; peak RSS {rl['vmhwm_before_kb'] / 1024:.0f} → "
                f"{rl['vmhwm_after_kb'] / 1024:.0f} MB across the reloads.", "",
                "Worst latency per half second of the run (ms; reloads at 1/3 and 2/3): "
                + " ".join(f"{x:g}" for x in rl["worst_per_half_second_ms"]), ""]
        if rl.get("profile"):
            out += ["py-spy over the first reload (`profile-reload.txt`): the event loop's "
                    "thread, then the worker thread that parses the list.", "",
                    spy.to_markdown("reload: event loop", rl["profile"]["loop"], 8),
                    spy.to_markdown("reload: list parsing (asyncio.to_thread worker)",
                                    rl["profile"]["pool"], 8)]
    return out


def diagnostics_section(rows: list[dict]) -> list[str]:
    out = ["## What sinkhole's per-query cost is made of (one run per variant)", "",
           "Each variant on a fresh process, all features on unless the row says otherwise. "
           "The GC rows run sinkhole through `bench/gcstats.py` (records every collection "
           "with gc.callbacks over both runs; `--no-gc`: gc.disable() after the daemon's "
           "start-up).", "",
           "| workload | variant | QPS | CPU µs/q | user / sys | p99 ms @2k | max ms @2k | "
           "GC pauses (n, total ms, worst ms) |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        gc = r.get("gc") or {}
        gc_cell = "; ".join(f"{g}: {v['n']}, {v['total_ms']}, {v['max_ms']}"
                            for g, v in gc.items() if g.startswith("gen"))
        if r.get("gc") and not gc_cell:
            gc_cell = "none"
        lat = r["latency"]
        lat_cells = f"{lat['p99_ms']:.3f} | {lat['max_ms']:.2f}" if lat else "– | –"
        out.append(f"| {r['workload']} | {r['variant']} | {r['qps']:,.0f} | "
                   f"{r['cpu_us_per_q']:.1f} | {r['user_us_per_q']:.1f} / "
                   f"{r['sys_us_per_q']:.1f} | {lat_cells} | {gc_cell} |")
    return out + [""]


def header(meta: dict, runs: list[dict]) -> list[str]:
    m = meta["machine"]
    feats = meta["features"]
    sink = [r for r in runs if r["target"] == "sinkhole"]
    dbs = [r.get("store_db_bytes") for r in sink]
    blocked = [r.get("metrics") or {} for r in sink if r["workload"] == "blocked"]
    store = ""
    if any(blocked):
        hits = sum(m.get("sinkhole_blocked_queries_total", 0) for m in blocked)
        kept = sum(m.get("sinkhole_store_committed_hits_total", 0) for m in blocked)
        shed = sum(m.get("sinkhole_store_dropped_total", 0) for m in blocked)
        store = (f" In the blocked runs, per sinkhole's own `/metrics`: {hits:,.0f} hits, "
                 f"{kept:,.0f} hit rows committed to the store, {shed:,.0f} store events "
                 "(hits or passive-DNS records) shed because its queue was full.")
    on = [k for k in ("storage", "alerts") if feats.get(k)]
    return [
        "# sinkhole vs dnsmasq vs unbound", "",
        f"Command: `{meta['command']}` — started {meta['started']}, {meta['wall_s']} s; "
        f"{meta['rounds']} rounds × {meta['duration_s']} s per run; latency runs at "
        f"{meta['latency_qps']:,} q/s.", "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared by dnsperf, the server and the "
        f"responder), kernel {m['kernel']}, Python {m['python']}; {m['dnsmasq']}; "
        f"{m['unbound']}; {m['dnsperf']}.", "",
        f"sinkhole code: a copy of `{meta['sinkhole_code']['source']}` taken at the start "
        f"(sha256 {meta['sinkhole_code']['sha256']}, {meta['sinkhole_code']['files']} files, "
        f"newest {meta['sinkhole_code']['newest_file']} UTC); every sinkhole process ran it.", "",
        "sinkhole features on: metrics (HTTP listener), access control, rate limiting (loopback "
        "exempt), the JSON hit log on stderr (to a file), EDNS, the cache"
        + (f"; accepted by `check-config` and configured: {', '.join(on)}" if on else "")
        + ("; passive-DNS history of every query (on by default)" if feats.get("history")
           else "")
        + f". Store database written: {'yes' if any(dbs) else 'no'}; alert POSTs received by "
        f"the local webhook: {meta['webhook_posts']}.{store}", "",
        "CPU µs/q = server CPU time (utime+stime) ÷ answered queries in the saturating run; "
        "lost = saturating run + latency run; p50/p99/max from the fixed-rate run; peak RSS = "
        "VmHWM.", "", "![chart](chart.png)", "",
    ]


def write_markdown(results: dict, out: Path) -> None:
    runs = results["runs"]
    lines = header(results["meta"], runs)
    lines += targets_table(runs, results.get("scale"))
    lines += ["## Results, all rounds", ""]
    for w in WORKLOADS:
        lines += workload_table(runs, w)
    lines += ratio_table(runs)
    if results.get("scale"):
        lines += scale_section(results["scale"])
    if results.get("diagnostics"):
        lines += diagnostics_section(results["diagnostics"])
    if results.get("profile"):
        lines += ["## Profile (py-spy, sinkhole under saturating load)", "",
                  "Flamegraphs: `profile-<workload>.svg`; collapsed stacks (flamegraph.pl / "
                  "speedscope input): `profile-<workload>.txt`. py-spy counts a thread as busy "
                  "while it is runnable, so a socket call on which the kernel wakes dnsperf and "
                  "preempts the server shows up large (`_send_udp`); the CPU split user/sys in "
                  "the tables is the exact figure.", ""]
        for w, summary in results["profile"].items():
            lines.append(spy.to_markdown(w, summary))
    (out / "results.md").write_text("\n".join(lines) + "\n")


def write_chart(results: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.26
    colors = {"sinkhole": "#d9534f", "dnsmasq": "#5b9bd5", "unbound": "#70ad47"}
    for ax, key, title in ((axes[0], "cpu_us_per_q", "server CPU µs per query (lower is better)"),
                           (axes[1], "qps", "queries per second (higher is better)")):
        for i, target in enumerate(TARGETS):
            meds, lo, hi = [], [], []
            for w in WORKLOADS:
                vals = [r[key] for r in _sel(runs, w, target)] or [0.0]
                m = statistics.median(vals)
                meds.append(m)
                lo.append(m - min(vals))
                hi.append(max(vals) - m)
            xs = [j + (i - 1) * width for j in range(len(WORKLOADS))]
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=target,
                   color=colors[target])
        if key == "cpu_us_per_q":
            for j, w in enumerate(WORKLOADS):
                ax.hlines(CPU_TARGET[w], j - 1.5 * width, j + 1.5 * width, colors="black",
                          linestyles="dashed", linewidth=1)
        ax.set_xticks(range(len(WORKLOADS)), WORKLOADS)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    axes[0].text(0.01, 0.97, "dashed: issue 8 target", transform=axes[0].transAxes,
                 fontsize=8, va="top")
    fig.suptitle("medians over rounds; whiskers: min-max", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "chart.png", dpi=110)
    plt.close(fig)


def write_all(results: dict, out: Path) -> None:
    write_markdown(results, out)
    write_chart(results, out)


def resummarise(results: dict, folder: Path) -> None:
    """Recompute the profile summaries from the collapsed stacks kept in `folder`."""
    for workload in list(results.get("profile") or {}):
        raw = folder / f"profile-{workload}.txt"
        if raw.exists():
            results["profile"][workload] = spy.summarise(raw.read_text())


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    data = json.loads((folder / "results.json").read_text())
    resummarise(data, folder)
    (folder / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    write_all(data, folder)
