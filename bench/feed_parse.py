"""Feed parse bench: time and memory to parse a 1M-line CSV feed and the biggest STIX 2.1
bundle the 64 MiB fetch cap lets through, through the real `sinkhole.lists.formats`.

A 1M-indicator bundle does not fit in 64 MiB (an MVT-style indicator with its `indicates`
relationship is ~1 KB pretty-printed, ~330 B compact without one), so the STIX cases are the
largest bundles under the cap, in both shapes; `--stix-uncapped N` adds an N-indicator bundle
parsed with the cap lifted, for the per-indicator rate at scale. Each case runs in a fresh
interpreter so its peak RSS (VmHWM) is its own; "RSS growth" is the peak minus the RSS
after imports (and after the public suffix list is loaded, a one-off shown apart), and
"retained" the RSS still held with the parsed list alive. `--json-loads` adds, for the same
bundle, what a plain `json.loads` would have peaked at (why the reader streams).

    python bench/feed_parse.py [--lines 1000000] [--stix-uncapped 0] [--json-loads] [--dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CAP = 64 << 20
WORDS = ("cdn", "api", "update", "sync", "panel", "gate", "login", "secure", "cloud", "mail",
         "static", "track", "push", "docs", "drive", "pay", "auth", "files", "app", "web")
TLDS = ("com", "net", "org", "ru", "top", "xyz", "info", "co.uk", "de", "online", "site")


def name(rng: random.Random, i: int) -> str:
    return (f"{rng.choice(WORDS)}-{i:x}.{rng.choice(WORDS)}{rng.randrange(1000)}."
            f"{rng.choice(TLDS)}")


def write_csv(path: Path, lines: int) -> None:
    """ThreatFox-shaped: 80 % domains, 15 % URLs, 5 % ip:port, `", "` separators, CRLF."""
    rng = random.Random(13)
    with open(path, "w", newline="") as out:
        out.write("# ThreatFox IOCs: CSV export\r\n#\r\n# \"first_seen_utc\",\"ioc_id\","
                  "\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\","
                  "\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"reference\","
                  "\"tags\",\"anonymous\",\"reporter\"\r\n")
        for i in range(lines):
            roll = rng.random()
            if roll < 0.80:
                value, kind = name(rng, i), "domain"
            elif roll < 0.95:
                value, kind = f"https://{name(rng, i)}/{rng.choice(WORDS)}.php", "url"
            else:
                value, kind = f"198.51.{i >> 8 & 255}.{i & 255}:{rng.randrange(1, 65535)}", \
                    "ip:port"
            out.write(f'"2026-07-04 22:19:04", "{1844855 + i}", "{value}", "{kind}", '
                      f'"botnet_cc", "win.cobalt_strike", "None", "Cobalt Strike", "", "75", '
                      f'"None", "CobaltStrike", "0", "abuse_ch"\r\n')


def stix_objects(count: int, relationships: bool):
    rng = random.Random(7)
    malware = "malware--3c12f6c5-e47a-4f36-a2ac-f9ede0fb5134"
    yield {"type": "malware", "spec_version": "2.1", "id": malware, "name": "Bench",
           "created": "2023-06-19T12:09:21.789402Z", "modified": "2023-06-19T12:09:21.789402Z",
           "is_family": False}
    for i in range(count):
        ind = f"indicator--{i:08x}-8cf1-4533-88a4-d86c92ff6b09"
        stamp = f"2023-06-19T12:09:21.{i % 1000000:06d}Z"
        pattern = (f"[ipv4-addr:value='203.0.{i >> 8 & 255}.{i & 255}']" if i % 20 == 19
                   else f"[domain-name:value='{name(rng, i)}']")
        yield {"type": "indicator", "spec_version": "2.1", "id": ind, "created": stamp,
               "modified": stamp, "indicator_types": ["malicious-activity"], "pattern": pattern,
               "pattern_type": "stix", "pattern_version": "2.1", "valid_from": stamp}
        if relationships:
            yield {"type": "relationship", "spec_version": "2.1",
                   "id": f"relationship--{i:08x}-e023-4def-9459-8f274e3ec581", "created": stamp,
                   "modified": stamp, "relationship_type": "indicates", "source_ref": ind,
                   "target_ref": malware}


def write_stix(path: Path, count: int, *, mvt: bool) -> None:
    """MVT shape (indent 4, a relationship per indicator) or compact (indicators only)."""
    indent = "    " if mvt else ""
    sep = ",\n" if mvt else ","
    with open(path, "w") as out:
        out.write('{"type": "bundle", "id": "bundle--2b7a774e-cd8e-45df-b702-26d2a37dacbc", '
                  '"objects": [\n' if mvt else '{"type":"bundle","objects":[')
        for n, obj in enumerate(stix_objects(count, mvt)):
            if n:
                out.write(sep)
            out.write(json.dumps(obj, indent=indent or None,
                                 separators=None if mvt else (",", ":")))
        out.write("]}\n")


def fit(shape: str, tmp: Path, *, mvt: bool) -> tuple[Path, int]:
    """The largest indicator count whose bundle stays under the cap (one sample to size it)."""
    sample = tmp / f"sample-{shape}.json"
    write_stix(sample, 2000, mvt=mvt)
    per = sample.stat().st_size / 2000
    count = int(CAP * 0.995 / per)
    path = tmp / f"{shape}.stix2"
    write_stix(path, count, mvt=mvt)
    while path.stat().st_size > CAP:
        count = int(count * 0.99)
        write_stix(path, count, mvt=mvt)
    return path, count


CHILD = r"""
import json, sys, time
def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4
def peak_kib():
    # VmHWM, not getrusage's ru_maxrss: on Linux a child's ru_maxrss starts at the parent's
    # RSS at fork time; VmHWM belongs to the new address space exec gave us.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
mode, path, fmt, extra = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
from sinkhole.lists.formats import load_feed
from sinkhole.lists.names import validate_name
base0 = rss_kib()
validate_name("warm.example")  # loads the public suffix list once
base = rss_kib()
# A thread standing in for the event loop: the longest it waits for the GIL is the worst
# delay a query would see while this parse runs beside it.
import threading
worst, done = [0.0], threading.Event()
def ticker():
    last = time.perf_counter()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        worst[0] = max(worst[0], now - last - 0.001)
        last = now
tick = threading.Thread(target=ticker)
tick.start()
start, cpu = time.perf_counter(), time.process_time()
if mode == "json.loads":
    with open(path, "rb") as f:
        doc = json.loads(f.read())
    result = {"objects": len(doc["objects"])}
else:
    parsed = load_feed(path, fmt, **extra)
    result = {"names": len(parsed.block), "unsupported": parsed.unsupported,
              "errors": parsed.error_count, "records": parsed.lines or len(parsed.block)}
done.set()
tick.join()
result.update(seconds=time.perf_counter() - start, cpu=time.process_time() - cpu,
              stall_ms=worst[0] * 1000,
              psl_kib=base - base0, growth_kib=peak_kib() - base, retained_kib=rss_kib() - base)
print(json.dumps(result))
"""


def measure(mode: str, path: Path, fmt: str, **extra) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), fmt, json.dumps(extra)],
                         cwd=ROOT, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout)


COUNTS = ("names", "unsupported", "errors", "records", "objects")


def report(label: str, path: Path, result: dict) -> None:
    size = path.stat().st_size / (1 << 20)
    per = result.get("records") or result.get("objects") or 1
    counts = ", ".join(f"{k} {result[k]:,}" for k in COUNTS if k in result)
    print(f"{label}: {size:.1f} MiB file, {result['seconds']:.2f} s wall, {result['cpu']:.2f} s "
          f"CPU ({result['cpu'] / per * 1e6:.2f} µs/record), RSS growth "
          f"{result['growth_kib'] / 1024:.0f} MiB, retained {result['retained_kib'] / 1024:.0f} "
          f"MiB, longest GIL wait of a 1 ms ticker {result['stall_ms']:.1f} ms; {counts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--stix-uncapped", type=int, default=0, metavar="N")
    ap.add_argument("--json-loads", action="store_true")
    ap.add_argument("--dir", type=Path)
    args = ap.parse_args()
    tmp = args.dir or Path(tempfile.mkdtemp(prefix="feed-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    csv_path = tmp / "threatfox-1m.csv"
    write_csv(csv_path, args.lines)
    mvt, mvt_n = fit("mvt", tmp, mvt=True)
    compact, compact_n = fit("compact", tmp, mvt=False)
    print(f"generated in {time.perf_counter() - t0:.0f} s under {tmp}; PSL load cost is "
          f"reported per case as psl_kib")
    result = measure("load", csv_path, "csv", column="ioc_value")
    report(f"CSV {args.lines:,} lines (ThreatFox shape)", csv_path, result)
    print(f"  public suffix list, loaded once: {result['psl_kib'] / 1024:.1f} MiB")
    plain = tmp / "plain-1m.txt"
    rng = random.Random(13)
    plain.write_text("".join(name(rng, i) + "\n" for i in range(args.lines)))
    report(f"  reference: {args.lines:,}-name plain list, line parser", plain,
           measure("load", plain, "plain"))
    report(f"STIX MVT shape, {mvt_n:,} indicators + relationships (max under 64 MiB)", mvt,
           measure("load", mvt, "stix2"))
    report(f"STIX compact, {compact_n:,} indicators (max under 64 MiB)", compact,
           measure("load", compact, "stix2"))
    if args.json_loads:
        report("  same MVT bundle through json.loads (not used)", mvt,
               measure("json.loads", mvt, "stix2"))
    if args.stix_uncapped:
        big = tmp / "uncapped.stix2"
        write_stix(big, args.stix_uncapped, mvt=False)
        report(f"STIX compact, {args.stix_uncapped:,} indicators, cap lifted", big,
               measure("load", big, "stix2", max_bytes=big.stat().st_size))


if __name__ == "__main__":
    main()
