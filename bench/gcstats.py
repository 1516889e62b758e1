"""Diagnostic wrapper: run `sinkhole` with the cyclic GC's pauses recorded (gc.callbacks), and
optionally with the GC tuning the issue proposes, to show what the tail latency is made of.

    python bench/gcstats.py [--tune] run -c FILE

At exit it writes one JSON line to stderr: {"event": "gc_stats", "gen0": {"n", "total_ms",
"max_ms"}, ...}. `--tune` freezes everything alive once the daemon has started (the loaded
lists move to the permanent generation, never traversed again) and raises the thresholds.
Only the benchmark uses this; it changes nothing in the package.
"""

from __future__ import annotations

import gc
import json
import sys
import time

TUNED_THRESHOLDS = (50_000, 20, 100)


class Pauses:
    def __init__(self) -> None:
        self.start = 0.0
        self.stats: dict[int, list[float]] = {}

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.start = time.perf_counter()
            return
        took = time.perf_counter() - self.start
        s = self.stats.setdefault(info["generation"], [0, 0.0, 0.0])
        s[0] += 1
        s[1] += took
        s[2] = max(s[2], took)

    def line(self, tuned: bool) -> str:
        out: dict[str, object] = {"event": "gc_stats", "tuned": tuned}
        for gen, (n, total, worst) in sorted(self.stats.items()):
            out[f"gen{gen}"] = {"n": int(n), "total_ms": round(total * 1000, 1),
                                "max_ms": round(worst * 1000, 2)}
        return json.dumps(out)


def tune() -> None:
    from sinkhole import daemon

    original = daemon.Daemon.start

    async def start_then_freeze(self: daemon.Daemon) -> None:
        await original(self)
        gc.collect()
        gc.freeze()

    daemon.Daemon.start = start_then_freeze  # type: ignore[method-assign]
    gc.set_threshold(*TUNED_THRESHOLDS)


def main() -> int:
    tuned = sys.argv[1:2] == ["--tune"]
    args = sys.argv[2:] if tuned else sys.argv[1:]
    pauses = Pauses()
    gc.callbacks.append(pauses.on_gc)
    if tuned:
        tune()
    from sinkhole.cli import main as sinkhole_main

    try:
        return sinkhole_main(args)
    finally:
        print(pauses.line(tuned), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
