"""Diagnostic wrapper: run `sinkhole` with the cyclic GC's pauses recorded (gc.callbacks), and
optionally with the cyclic GC off once the daemon has started, to show what the tail latency
and the CPU per query owe to it.

    python bench/gcstats.py [--no-gc] run -c FILE

At exit it writes one JSON line to stderr: {"event": "gc_stats", "gen0": {"n", "total_ms",
"max_ms"}, ...}. `--no-gc` calls gc.disable() after the daemon's own start-up (which tunes the
GC itself): the lower bound of what any GC tuning can win. Only the benchmark uses this; it
changes nothing in the package.
"""

from __future__ import annotations

import gc
import json
import sys
import time


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

    def line(self, gc_off: bool) -> str:
        out: dict[str, object] = {"event": "gc_stats", "gc_disabled": gc_off,
                                  "thresholds": gc.get_threshold()}
        for gen, (n, total, worst) in sorted(self.stats.items()):
            out[f"gen{gen}"] = {"n": int(n), "total_ms": round(total * 1000, 1),
                                "max_ms": round(worst * 1000, 2)}
        return json.dumps(out)


def disable_after_start() -> None:
    from sinkhole import daemon

    original = daemon.Daemon.start

    async def start_then_disable(self: daemon.Daemon) -> None:
        await original(self)
        gc.disable()

    daemon.Daemon.start = start_then_disable  # type: ignore[method-assign]


def main() -> int:
    gc_off = sys.argv[1:2] == ["--no-gc"]
    args = sys.argv[2:] if gc_off else sys.argv[1:]
    pauses = Pauses()
    gc.callbacks.append(pauses.on_gc)
    if gc_off:
        disable_after_start()
    from sinkhole.cli import main as sinkhole_main

    try:
        return sinkhole_main(args)
    finally:
        print(pauses.line(gc_off), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
