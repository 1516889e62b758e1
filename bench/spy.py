"""Profiling a running sinkhole under load with py-spy, and summarising the samples.

py-spy samples the process from outside (`--nonblocking`: it does not pause the target), so
the profile shows the daemon as it runs, not an instrumented copy. The raw output is collapsed
stacks (one `frame;frame;frame count` line per distinct stack, the format flamegraph.pl and
speedscope read); `summarise` turns it into the top functions by own ("self") and inclusive
time, as a share of all on-CPU samples.

    python bench/spy.py FILE.txt      # print the summary of a collapsed-stack file
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
WRAPPER_SHARE = 0.9   # frames in more samples than this are the loop, not the work
# Frames that only carry the program to the event loop: left out of the inclusive table.
WRAPPERS = frozenset({"<frozen runpy>", "sinkhole/cli.py", "asyncio/runners.py"})
LOOP_FRAMES = frozenset({"BaseEventLoop.run_forever", "BaseEventLoop._run_once",
                         "BaseEventLoop.run_until_complete", "Handle._run"})


def frame_key(frame: str) -> str:
    """`fn (path/to/mod.py:123)` -> `fn (to/mod.py)`: one entry per function, not per line."""
    frame = _LINE.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    parts = where.rstrip(")").split("/")
    short = "/".join(parts[-2:]) if parts and parts[0] else where.rstrip(")")
    return f"{name} ({short})" if where else name


def module_of(key: str) -> str:
    """`fn (sinkhole/server.py)` -> `sinkhole/server.py`."""
    return key.rpartition(" (")[2].rstrip(")") or key


def thread_name(frame: str) -> str:
    """`thread (2816): Thread-1 (_monitor)` -> `Thread-1 (_monitor)`; pool threads
    (`asyncio_0`, `asyncio_1`) are one name."""
    name = frame.partition("): ")[2] or "?"
    base = name.rstrip("0123456789")
    return base.rstrip("_") if base.endswith("_") else name


def summarise(text: str, top: int = 15, focus: str = "MainThread") -> dict[str, object]:
    """Per-thread sample shares, then, for one thread alone (`focus`: the event loop's by
    default), self and inclusive shares per function and self share per module.

    Stacks are recorded with `--threads` (first frame `thread (TID): NAME`). Inclusive shares
    leave out frames present in nearly every sample (the interpreter's entry, run_forever...):
    they say nothing about where the time goes.
    """
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = main = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        thread = "MainThread"
        if frames and frames[0].startswith("thread ("):
            thread = thread_name(frames.pop(0))
        total += n
        threads[thread] += n
        if thread != focus or not frames:
            continue
        frames = [frame_key(f) for f in frames]
        main += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out: dict[str, object] = {"samples": total, "main_samples": main, "focus": focus,
                              "threads": _share(threads, total, top)}
    modules: Counter[str] = Counter()
    for key, n in own.items():
        modules[module_of(key)] += n
    inner = Counter({k: v for k, v in incl.items() if v < WRAPPER_SHARE * main
                     and module_of(k) not in WRAPPERS
                     and k.partition(" (")[0] not in LOOP_FRAMES})
    out.update({"self": _share(own, main, top), "inclusive": _share(inner, main, top),
                "modules": _share(modules, main, top)})
    return out


def _share(c: Counter[str], total: int, top: int) -> list[tuple[str, float]]:
    return [(k, round(100.0 * v / total, 1)) for k, v in c.most_common(top)] if total else []


def record(pid: int, seconds: int, out: Path, fmt: str, rate: int = 250) -> None:
    """py-spy record for `seconds` into `out` (`raw` collapsed stacks or `flamegraph` SVG)."""
    cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate",
           str(rate), "--nonblocking", "--threads", "--format", fmt, "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)


def start_recording(pid: int, seconds: int, out: Path, rate: int = 250) -> subprocess.Popen:
    """py-spy raw recording in the background (wait() on the result)."""
    cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate",
           str(rate), "--nonblocking", "--threads", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def under_load(load: Callable[[], object], pid: int, seconds: int, out: Path,
               fmt: str) -> object:
    """Run `load` (a bounded dnsperf call) in a thread and record while it runs."""
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(result=load()), daemon=True)
    thread.start()
    try:
        record(pid, seconds, out, fmt)
    finally:
        thread.join(seconds + 120)
    return box.get("result")


def to_markdown(name: str, summary: dict[str, object], top: int = 12) -> str:
    threads = ", ".join(f"{k} {v}%" for k, v in summary.get("threads", []))  # type: ignore[union-attr]
    lines = [f"#### {name}", "",
             f"{summary['samples']} samples while busy; by thread: {threads}. The tables: "
             f"thread {summary.get('focus', 'MainThread')} alone "
             f"({summary.get('main_samples', '?')} samples = 100%).",
             "", "| self % | function | inclusive % | function | self % | module |",
             "| ---: | --- | ---: | --- | ---: | --- |"]
    cols = [summary[k][:top] for k in ("self", "inclusive", "modules")]  # type: ignore[index]
    for i in range(max(len(c) for c in cols)):
        cells = []
        for c in cols:
            key, pct = c[i] if i < len(c) else ("", "")
            cells += [str(pct), f"`{key}`" if key else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(to_markdown(path, summarise(Path(path).read_text())))
