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


def frame_key(frame: str) -> str:
    """`fn (path/to/mod.py:123)` -> `fn (to/mod.py)`: one entry per function, not per line."""
    frame = _LINE.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    parts = where.rstrip(")").split("/")
    short = "/".join(parts[-2:]) if parts and parts[0] else where.rstrip(")")
    return f"{name} ({short})" if where else name


def summarise(text: str, top: int = 15) -> dict[str, object]:
    """Self and inclusive sample shares per function from collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_key(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in c.most_common(top)]

    return {"samples": total, "self": share(own), "inclusive": share(incl)}


def record(pid: int, seconds: int, out: Path, fmt: str, rate: int = 250) -> None:
    """py-spy record for `seconds` into `out` (`raw` collapsed stacks or `flamegraph` SVG)."""
    cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate",
           str(rate), "--nonblocking", "--format", fmt, "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)


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
    lines = [f"#### {name} ({summary['samples']} samples, % of on-CPU samples)", "",
             "| self % | function | | inclusive % | function |", "| ---: | --- | --- | ---: | --- |"]
    own = summary["self"][:top]  # type: ignore[index]
    incl = summary["inclusive"][:top]  # type: ignore[index]
    for i in range(max(len(own), len(incl))):
        a = own[i] if i < len(own) else ("", "")
        b = incl[i] if i < len(incl) else ("", "")
        lines.append(f"| {a[1]} | `{a[0]}` | | {b[1]} | `{b[0]}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(to_markdown(path, summarise(Path(path).read_text())))
