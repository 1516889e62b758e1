"""What the harness measures: process CPU and memory from /proc, dnsperf runs and their output,
and a one-query probe used to wait for a server to answer.

Every load is bounded in time (`-l`) and sent only to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

TICK = os.sysconf("SC_CLK_TCK")
SERVER = "127.0.0.1"   # the only address any load is sent to
LATENCY_QPS = 2000     # the fixed rate of latency runs: below every target's saturation
# workload -> (saturating-run query file, latency-run query file, warm-up passes first)
WORKLOADS = {
    "blocked": ("q-blocked.txt", "q-blocked.txt", 0),
    "cached": ("q-cached.txt", "q-cached.txt", 2),
    # the latency run follows on the same process: other names, so still cache misses
    "forwarded": ("q-forwarded.txt", "q-forwarded-lat.txt", 0),
}


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds, all its threads included (/proc/PID/stat
    fields 14-15): user time is the server's own code, system time mostly the socket calls."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set since start) and VmRSS (now), in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


@dataclass
class PerfResult:
    """One dnsperf run, as dnsperf reports it, plus the client's own CPU time."""

    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    seconds: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)

    def latency_summary(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        ms = 1000.0
        return {"n": len(lat), "p50_ms": percentile(lat, 50) * ms,
                "p99_ms": percentile(lat, 99) * ms, "max_ms": (lat[-1] if lat else 0.0) * ms}

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("latencies")
        return d


_STAT = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
    "seconds": re.compile(r"Run time \(s\):\s+([\d.]+)"),
}
_RCODES = re.compile(r"Response codes:\s+(.*)")
_VERBOSE = re.compile(r"^> (\S+) \S+ \S+ ([\d.]+)$", re.M)


def parse_dnsperf(text: str, verbose: bool = False) -> PerfResult:
    r = PerfResult()
    for name, rx in _STAT.items():
        m = rx.search(text)
        if m is None:
            raise ValueError(f"dnsperf output has no {name!r}:\n{text[-2000:]}")
        setattr(r, name, float(m.group(1)) if name in ("qps", "seconds") else int(m.group(1)))
    m = _RCODES.search(text)
    if m:
        for part in m.group(1).split(","):
            bits = part.split()
            if len(bits) >= 2:
                r.rcodes[bits[0]] = int(bits[1])
    if verbose:
        r.latencies = [float(x) for _, x in _VERBOSE.findall(text)]
    return r


def dnsperf(port: int, datafile: str, *, duration: float | None = None,
            max_runs: int | None = None, qps_limit: int | None = None,
            verbose: bool = False, clients: int = 4, outstanding: int = 100) -> PerfResult:
    """Run dnsperf against 127.0.0.1:port; always bounded by -l and/or -n, and by `timeout`."""
    if duration is None and max_runs is None:
        raise ValueError("a dnsperf load must be bounded (duration or max_runs)")
    cmd = ["dnsperf", "-s", SERVER, "-p", str(port), "-d", datafile, "-c", str(clients),
           "-q", str(outstanding), "-t", "2"]
    if duration is not None:
        cmd += ["-l", str(duration)]
    if max_runs is not None:
        cmd += ["-n", str(max_runs)]
    if qps_limit is not None:
        cmd += ["-Q", str(qps_limit)]
    if verbose:
        cmd.append("-v")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=(duration or 60) + 60,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = parse_dnsperf(proc.stdout, verbose)
    result.client_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def _query_packet(name: str, txid: int) -> bytes:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!6H", txid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", 1, 1)


def probe(port: int, name: str, timeout: float = 0.2) -> int | None:
    """Send one A query for `name` to 127.0.0.1:port; its rcode, or None without an answer."""
    txid = int.from_bytes(os.urandom(2), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(_query_packet(name, txid), (SERVER, port))
            while True:
                data = s.recv(4096)
                if len(data) >= 12 and struct.unpack_from("!H", data)[0] == txid:
                    return data[3] & 0x0F
        except OSError:
            return None


def wait_answer(port: int, name: str, rcode: int | None, deadline: float,
                alive: object = None) -> float:
    """Poll until `name` is answered (with `rcode`, if given); the monotonic time it was.

    `alive` is a callable that returns False when the server has died (fail fast, no wait).
    """
    while time.monotonic() < deadline:
        got = probe(port, name, 0.05)
        if got is not None and (rcode is None or got == rcode):
            return time.monotonic()
        if callable(alive) and not alive():
            raise RuntimeError("server exited before answering")
        time.sleep(0.01)
    raise TimeoutError(f"no answer for {name} on port {port}")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (servers bind both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((SERVER, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((SERVER, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
