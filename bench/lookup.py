"""In-process cost of the policy alone: list load and build time, memory, and `Policy.match`
per lookup over the blocked query names (the issue 3 "lookup <= 2 µs" figure).

Run once per list in its own process, so memory figures are not mixed up:
    python bench/lookup.py LIST QUERYFILE      # prints one JSON object
"""

from __future__ import annotations

import gc
import json
import sys
import time

from sinkhole.lists import build_policy, load_path
from sinkhole.lists.matcher import ListInfo


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(list_path: str, query_file: str) -> dict[str, float]:
    with open(query_file, encoding="ascii") as f:
        names = [line.split()[0].lower() for line in f if line.strip()]
    gc.collect()
    rss0 = rss_kb()
    t0 = time.perf_counter()
    parsed = load_path(list_path)
    t1 = time.perf_counter()
    policy = build_policy([(ListInfo("bench", "c2", "critical", "nxdomain"), parsed)])
    t2 = time.perf_counter()
    gc.collect()
    rss1 = rss_kb()
    match = policy.match
    best = float("inf")
    for _ in range(5):   # best of 5 passes: the cost of the lookup, not of the noise
        start = time.perf_counter()
        blocked = sum(1 for n in names if match(n) is not None)
        best = min(best, time.perf_counter() - start)
    return {"list": list_path, "entries": len(parsed.block), "parse_s": round(t1 - t0, 3),
            "build_s": round(t2 - t1, 3), "rss_growth_mb": round((rss1 - rss0) / 1024, 1),
            "lookup_us": round(best / len(names) * 1e6, 3), "queries": len(names),
            "blocked": blocked}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
