"""Soak: sinkhole as a child process under a steady dnsperf load, lists reloaded all along.

    python bench/soak.py --minutes 10            # the real soak; writes bench/soak.md
    python bench/soak.py --seconds 30 --out -    # a short one, report on stdout

What runs, all on 127.0.0.1 and bounded (dnsperf `-l` per chunk, `-Q` rate, a fixed count of
chunks): `sinkhole run` with the store (SQLite) and a webhook sink to a local receiver, a
local upstream (tests/peers/dnsserver.py), dnsperf sending a fixed mix of blocked, cached and
forwarded names, and a reload of the blocklist through the API every `--reload-every` seconds
(the list file is rewritten each time: 20,000 names leave, 20,000 others arrive). RSS is
sampled every few seconds. The report: queries sent/answered/lost, every answer that was not
the expected one, every daemon log line at warning or above other than a hit, p50/p99/max
latency (dnsperf's own per-query figures), RSS over time, reloads done.

The fault tests (tests/test_faults.py) reuse `Child`, `run_dnsperf`, `scrape` and
`proc_status` from here; tests/test_soak.py runs `run_soak` for ~30 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peers.receiver import Receiver  # noqa: E402

SERVER = "127.0.0.1"            # the only address any load here is aimed at
MAX_DNSPERF_SECONDS = 120       # one dnsperf run never asks for more (a soak is many chunks)
MAX_QPS = 20_000

# --------------------------------------------------------------------------- the daemon child


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), VmSize... of a process, in kB, from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key.startswith("Vm") and rest.strip().endswith("kB"):
                out[key] = int(rest.split()[0])
    return out


def _sinkhole_root() -> str:
    """The child runs the `sinkhole` package of this checkout, or of SINKHOLE_ROOT when set
    (to soak a patched copy side by side without touching the work tree)."""
    return os.environ.get("SINKHOLE_ROOT") or str(ROOT)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = _sinkhole_root() + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Child:
    """`sinkhole run -c CFG` as a child process; its JSON log on stderr is read all the time
    (a pipe nobody drains stalls the daemon's log thread) and tallied by level and event.

    Run as root, the daemon drops to `nobody` after binding: its config, lists and state
    folder must sit in a world-readable folder.
    """

    @staticmethod
    def expected(rec: dict[str, Any]) -> bool:
        """Warnings that are the daemon doing its job: a hit, and (as root on a box without
        a 'sinkhole' user, like this sandbox) falling back to 'nobody'."""
        return rec.get("event") == "hit" or (rec.get("logger") == "sinkhole.privdrop"
                                              and "no 'sinkhole' user" in str(rec.get("msg")))

    def __init__(self, cfg: Path, *, preexec: Callable[[], None] | None = None,
                 timeout: float = 60) -> None:
        self.cfg = cfg
        self.p = subprocess.Popen([sys.executable, "-m", "sinkhole.cli", "run", "-c", str(cfg)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, env=_env(),
                                  cwd=_sinkhole_root(), preexec_fn=preexec)
        self.events: Counter[tuple[str, str]] = Counter()
        self.unexpected: deque[dict[str, Any]] = deque(maxlen=200)
        self.unexpected_count = 0
        self.tail: deque[str] = deque(maxlen=200)
        self._records: list[dict[str, Any]] = []   # non-hit records, for wait_event
        self._seen = 0
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, name="sinkhole-child-log", daemon=True)
        self._reader.start()
        try:
            self.started = self.wait_event("started", timeout=timeout)
        except BaseException:
            self.kill()
            raise
        self.dns_port = int(self.started["dns"][0].rsplit(":", 1)[1])
        self.http = "http://" + self.started["http"] if self.started.get("http") else ""

    @property
    def pid(self) -> int:
        return self.p.pid

    def _read(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"level": "text", "msg": line.rstrip()}
            if not isinstance(rec, dict):
                rec = {"level": "text", "msg": line.rstrip()}
            level, event = str(rec.get("level", "")), str(rec.get("event", ""))
            with self._cond:
                self.tail.append(line.rstrip())
                self.events[(level, event)] += 1
                if level in ("warning", "error", "critical", "text") \
                        and not self.expected(rec):
                    self.unexpected.append(rec)
                    self.unexpected_count += 1
                if event != "hit":
                    self._records.append(rec)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_event(self, *events: str, timeout: float = 30) -> dict[str, Any]:
        """The next log record (after those already returned) whose event is in `events`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._seen < len(self._records):
                    rec = self._records[self._seen]
                    self._seen += 1
                    if rec.get("event") in events:
                        return rec
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    raise AssertionError(f"no {events!r} from the daemon within {timeout}s; "
                                         "log tail:\n" + "\n".join(self.tail))
                self._cond.wait(left)

    def records(self, event: str) -> list[dict[str, Any]]:
        with self._cond:
            return [r for r in self._records if r.get("event") == event]

    def count(self, event: str, level: str | None = None) -> int:
        with self._cond:
            return sum(n for (lv, ev), n in self.events.items()
                       if ev == event and level in (None, lv))

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def rss_mb(self) -> float:
        return self.status()["VmRSS"] / 1024

    def metrics(self) -> dict[str, float]:
        return scrape(self.http + "/metrics")

    def reload(self, timeout: float = 120) -> tuple[int, dict[str, Any]]:
        """POST /api/v1/reload: (HTTP status, the per-list report)."""
        return http_json(self.http + "/api/v1/reload", method="POST", timeout=timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        self._reader.join(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait for the drain; the exit code (the daemon exits 0 when all is well)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        self._reader.join(10)
        return code


def write_yaml(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    path.chmod(0o644)
    return path


def http_json(url: str, *, method: str = "GET", timeout: float = 30) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


# --------------------------------------------------------------------------- metrics


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str, timeout: float = 10) -> dict[str, float]:
    """Prometheus text from `url` as {'name{a="x",b="y"}': value} (labels sorted by key)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or line.startswith("#"):
            continue
        labels = sorted(_LABEL.findall(m[2] or ""))
        key = m[1] + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "")
        out[key] = float(m[3])
    return out


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and all(w in rest for w in want):
            total += value
    return total


# --------------------------------------------------------------------------- dnsperf


def require_dnsperf() -> str:
    exe = shutil.which("dnsperf")
    if exe is None:
        raise RuntimeError("dnsperf is not installed: apt-get install -y dnsperf")
    return exe


@dataclass
class Perf:
    """One dnsperf run: its totals, and (with a classifier) rcodes and latencies per class."""

    sent: int = 0
    completed: int = 0
    lost: int = 0
    seconds: float = 0.0
    rcodes: Counter[str] = field(default_factory=Counter)
    by_class: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: dict[str, array] = field(default_factory=dict)   # class -> seconds
    slowest: dict[str, tuple[float, str]] = field(default_factory=dict)  # class -> (s, name)

    def all_latencies(self) -> list[float]:
        return sorted(x for arr in self.latencies.values() for x in arr)

    def answers(self, cls: str, rcode: str | None = None) -> int:
        c = self.by_class.get(cls, Counter())
        return c[rcode] if rcode is not None else sum(c.values())


_TOTALS = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "seconds": re.compile(r"Run time \(s\):\s+([\d.]+)"),
}
_RCODES = re.compile(r"Response codes:\s+(.*)")


def run_dnsperf(port: int, datafile: Path, *, qps: int, seconds: float | None = None,
                runs: int | None = None, timeout: float = 5, clients: int = 4,
                source: str | None = None, classify: Callable[[str], str] | None = None,
                outfile: Path | None = None) -> Perf:
    """dnsperf against 127.0.0.1:port, bounded by -l and/or -n and rate-limited by -Q.

    With `classify` it runs verbose (`-v`: one '> RCODE name type latency' line per answer)
    into `outfile` and tallies the answers per class of name."""
    exe = require_dnsperf()
    if seconds is None and runs is None:
        raise ValueError("a dnsperf load must be bounded: seconds and/or runs")
    if seconds is not None and not 0 < seconds <= MAX_DNSPERF_SECONDS:
        raise ValueError(f"seconds must be in (0, {MAX_DNSPERF_SECONDS}]")
    if not 0 < qps <= MAX_QPS:
        raise ValueError(f"qps must be in (0, {MAX_QPS}]")
    cmd = [exe, "-s", SERVER, "-p", str(port), "-d", str(datafile), "-c", str(clients),
           "-Q", str(qps), "-t", str(timeout), "-q", "500"]
    if seconds is not None:
        cmd += ["-l", str(seconds)]
    if runs is not None:
        cmd += ["-n", str(runs)]
    if source is not None:
        cmd += ["-a", source]
    if classify is not None:
        cmd.append("-v")
    bound = (seconds or MAX_DNSPERF_SECONDS) + timeout + 30
    own_out = outfile is None
    out_path = outfile or Path(tempfile.mkstemp(prefix="dnsperf-", suffix=".out")[1])
    try:
        with open(out_path, "w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True,
                                  timeout=bound, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"dnsperf failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return _parse_dnsperf(out_path, classify)
    finally:
        if own_out:
            out_path.unlink(missing_ok=True)


def _parse_dnsperf(path: Path, classify: Callable[[str], str] | None) -> Perf:
    perf = Perf()
    summary: list[str] = []
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                if classify is not None:
                    _tally(perf, line, classify)
            else:
                summary.append(line)
    text = "".join(summary)
    for name, rx in _TOTALS.items():
        m = rx.search(text)
        if m is None:
            raise ValueError(f"dnsperf output has no {name!r}:\n{text[-2000:]}")
        setattr(perf, name, float(m[1]) if name == "seconds" else int(m[1]))
    m = _RCODES.search(text)
    if m:
        for part in m[1].split(","):
            bits = part.split()
            if len(bits) >= 2:
                perf.rcodes[bits[0]] = int(bits[1])
    return perf


def _tally(perf: Perf, line: str, classify: Callable[[str], str]) -> None:
    bits = line.split()
    if len(bits) < 5:
        return
    rcode, name = bits[1], bits[2]
    try:
        latency = float(bits[-1])
    except ValueError:
        return
    cls = classify(name)
    perf.by_class.setdefault(cls, Counter())[rcode] += 1
    perf.latencies.setdefault(cls, array("d")).append(latency)
    if latency > perf.slowest.get(cls, (-1.0, ""))[0]:
        perf.slowest[cls] = (latency, name)


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def write_queries(path: Path, names: Iterable[str], qtype: str = "A") -> Path:
    with open(path, "w") as f:
        f.writelines(f"{n} {qtype}\n" for n in names)
    path.chmod(0o644)
    return path


# --------------------------------------------------------------------------- the soak

# The upstream runs in its own process: in this one, parsing a chunk's dnsperf output holds
# the GIL for a second, and an upstream thread starved that long would time out queries.
UPSTREAM = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
from tests.peers.dnsserver import FakeUpstream
with FakeUpstream(ttl=int(sys.argv[2])) as up:
    print(up.port, flush=True)
    def forget():                      # its query log must not grow for ten minutes
        while True:
            time.sleep(5)
            up.clear_queries()
    threading.Thread(target=forget, daemon=True).start()
    sys.stdin.read()                   # until the soak closes our stdin
"""


class UpstreamProcess:
    """tests/peers/dnsserver.FakeUpstream (A 192.0.2.1 for any name) in a child process."""

    def __init__(self, ttl: int = 3600) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(ROOT), str(ttl)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"the upstream did not start: {line!r}")
        self.port = int(line)

    def url(self) -> str:
        return f"udp://{SERVER}:{self.port}"

    def close(self) -> None:
        if self.p.stdin is not None:
            self.p.stdin.close()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)

    def __enter__(self) -> UpstreamProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



BLOCKED_NAMES = 1_000     # distinct blocked names (under evil.soak): bounded alert episodes
CACHED_NAMES = 500        # always answered from the cache after the warm-up
# Forwarded names come from a fixed pool, asked in turn: more than the cache holds (so never
# a cache hit), but bounded, like a real network's, so that the store's name-id cache
# (history, up to 200,000 names) levels off too instead of growing for the whole soak.
FORWARDED_NAMES = 50_000


def classify(name: str) -> str:
    name = name.lower().rstrip(".")
    if name.endswith(".evil.soak"):
        return "blocked"
    if name.endswith(".cached.soak"):
        return "cached"
    if name.endswith(".fwd.soak"):
        return "forwarded"
    return "other"


EXPECTED_RCODE = {"blocked": "NXDOMAIN", "cached": "NOERROR", "forwarded": "NOERROR"}


@dataclass
class SoakSettings:
    seconds: float = 600.0
    qps: int = 2_000
    chunk: float = 60.0              # one dnsperf run per chunk: per-minute figures
    reload_every: float = 60.0
    sample_every: float = 5.0
    cache_entries: int = 20_000      # the cache bound that RSS must level off under
    rotating_names: int = 20_000     # names that leave and arrive at every reload
    mix: tuple[float, float, float] = (0.25, 0.55, 0.20)   # blocked, cached, forwarded
    timeout: float = 5.0             # dnsperf: a query unanswered this long is lost
    seed: int = 9


@dataclass
class Chunk:
    index: int
    sent: int
    completed: int
    lost: int
    qps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_mb: float
    unexpected: dict[str, int]


@dataclass
class SoakResult:
    settings: SoakSettings
    chunks: list[Chunk] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)   # (seconds, MB)
    rss_start_mb: float = 0.0
    reloads: list[dict[str, Any]] = field(default_factory=list)
    unexpected_answers: Counter[str] = field(default_factory=Counter)   # "class rcode"
    unexpected_logs: list[dict[str, Any]] = field(default_factory=list)
    unexpected_log_count: int = 0
    log_events: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    blocked_answered: int = 0
    hits_in_db: int = 0            # sum(count): a 'flood' row stands for many hits
    hit_rows: int = 0
    alerts_received: int = 0
    exit_code: int | None = None
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    wall_seconds: float = 0.0
    load: list[float] = field(default_factory=list)   # 1-min load average, per chunk

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.chunks)

    @property
    def completed(self) -> int:
        return sum(c.completed for c in self.chunks)

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.chunks)

    def rss_growth_mb(self, settle: float) -> float:
        """Largest RSS after `settle` seconds minus RSS at `settle`: growth once warm."""
        warm = [mb for t, mb in self.rss if t >= settle]
        return max(warm) - warm[0] if len(warm) >= 2 else 0.0

    def metric_problems(self) -> dict[str, float]:
        """Counters that must stay 0 in a healthy soak, with their values."""
        m = self.metrics
        checks = {
            "store write errors": metric(m, "sinkhole_store_write_errors_total"),
            "store dropped hits": metric(m, "sinkhole_store_dropped_total", kind="hit"),
            "store dropped queries": metric(m, "sinkhole_store_dropped_total", kind="query"),
            "upstream timeouts": metric(m, "sinkhole_upstream_requests_total",
                                        outcome="timeout"),
            "upstream errors": metric(m, "sinkhole_upstream_requests_total", outcome="error"),
            "forged replies": metric(m, "sinkhole_upstream_forged_replies_total"),
            "servfail answers": metric(m, "sinkhole_queries_total", result="servfail"),
            "malformed packets": metric(m, "sinkhole_malformed_packets_total"),
            "alert deliveries failed": metric(m, "sinkhole_alerts_total", outcome="failed"),
            "alerts expired": metric(m, "sinkhole_alerts_total", outcome="expired"),
            "list reload errors": metric(m, "sinkhole_list_reload_errors_total"),
        }
        return {k: v for k, v in checks.items() if v}


def _rotating(gen: int, count: int) -> list[str]:
    return [f"r{i}.g{gen}.rot.soak" for i in range(count)]


def _write_list(path: Path, gen: int, count: int) -> None:
    """The blocklist, version `gen`: evil.soak always, plus `count` names of this version
    (written aside and renamed in, as a git checkout would)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(f"# title: soak list, version {gen}\n# category: c2\nevil.soak\n")
        f.writelines(f"{n}\n" for n in _rotating(gen, count))
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _chunk_names(rng: random.Random, fwd: Iterator[int], count: int,
                 mix: tuple[float, float, float]) -> list[str]:
    """`count` names in a random mix; forwarded names go round FORWARDED_NAMES in turn, so
    each comes back only after more other names than the cache holds: always a miss."""
    blocked, cached, _ = mix
    out = []
    for _ in range(count):
        r = rng.random()
        if r < blocked:
            out.append(f"h{rng.randrange(BLOCKED_NAMES)}.evil.soak")
        elif r < blocked + cached:
            out.append(f"c{rng.randrange(CACHED_NAMES)}.cached.soak")
        else:
            out.append(f"f{next(fwd) % FORWARDED_NAMES}.fwd.soak")
    return out


class _Every(threading.Thread):
    """Calls `fn` every `interval` seconds until stopped; keeps the first error."""

    def __init__(self, interval: float, fn: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.interval, self.fn = interval, fn
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            try:
                self.fn()
            except BaseException as err:   # reported by the soak, not lost in a thread
                self.error = self.error or err

    def stop(self) -> None:
        self.halt.set()
        self.join(self.interval + 130)


def soak_config(work: Path, up: UpstreamProcess, hook: str, s: SoakSettings) -> Path:
    raw = {
        "listen": {"dns": [f"{SERVER}:0"], "http": f"{SERVER}:0"},
        "upstreams": [up.url()],
        "upstream_timeout": "2s",
        "log": {"format": "json", "level": "info"},
        "reload": {"watch": False},             # reloads come from the API, counted
        "cache": {"max_entries": s.cache_entries},
        "storage": {"path": str(work / "state" / "sinkhole.db"), "commit_interval": "1s"},
        "blocklists": [{"name": "soak", "path": str(work / "soak.txt"), "category": "c2",
                        "severity": "critical"}],
        "alerts": {"sinks": [{"type": "webhook", "url": hook, "max_per_minute": 60}],
                   "digest_window": "5s"},
    }
    return write_yaml(work / "sinkhole.yaml", raw)


def run_soak(s: SoakSettings, say: Callable[[str], None] = print) -> SoakResult:
    """The soak itself; raises only when it cannot run (no dnsperf, daemon will not start)."""
    require_dnsperf()
    result = SoakResult(settings=s)
    work = Path(tempfile.mkdtemp(prefix="sinkhole-soak-"))
    work.chmod(0o755)
    rx = Receiver().start()
    started = time.monotonic()
    try:
        _write_list(work / "soak.txt", 0, s.rotating_names)
        with UpstreamProcess(ttl=3600) as up:
            child = Child(soak_config(work, up, rx.url(), s))
            try:
                _soak(child, up, work, s, result, say)
            finally:
                result.exit_code = child.stop()
                result.unexpected_logs = list(child.unexpected)
                result.unexpected_log_count = child.unexpected_count
                result.log_events = {f"{lv}/{ev or '-'}": n for (lv, ev), n in
                                     sorted(child.events.items())}
        result.hit_rows, result.hits_in_db = _count_hits(work / "state" / "sinkhole.db")
        result.alerts_received = len(rx.received)
    finally:
        rx.stop()
        shutil.rmtree(work, ignore_errors=True)
        result.wall_seconds = time.monotonic() - started
    return result


def _count_hits(db: Path) -> tuple[int, int]:
    """(rows, hits) in the store: past `storage.hit_detail_rate` a client's hits are folded
    into one 'flood' row per second whose `count` says how many it stands for."""
    import sqlite3
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows, hits = conn.execute("SELECT count(*), coalesce(sum(count), 0) FROM hits").fetchone()
        return int(rows), int(hits)
    finally:
        conn.close()


def _soak(child: Child, up: UpstreamProcess, work: Path, s: SoakSettings, result: SoakResult,
          say: Callable[[str], None]) -> None:
    rng = random.Random(s.seed)
    fwd = itertools.count()
    cached = write_queries(work / "warm.txt", [f"c{i}.cached.soak" for i in range(CACHED_NAMES)])
    warm = run_dnsperf(child.dns_port, cached, qps=min(s.qps, 2000), runs=1, timeout=s.timeout,
                       classify=classify, outfile=work / "warm.out")
    if warm.lost or warm.answers("cached", "NOERROR") != CACHED_NAMES:
        raise RuntimeError(f"warm-up failed: {warm}")
    t0 = time.monotonic()
    result.rss_start_mb = child.rss_mb()
    result.rss.append((0.0, result.rss_start_mb))

    def sample() -> None:
        result.rss.append((round(time.monotonic() - t0, 1), child.rss_mb()))

    gen = [0]

    def reload() -> None:
        gen[0] += 1
        _write_list(work / "soak.txt", gen[0], s.rotating_names)
        t = time.monotonic()
        status, body = child.reload()
        rep = (body.get("lists") or [{}])[0]
        result.reloads.append({"at_s": round(t - t0, 1), "status": status,
                               "ok": bool(body.get("ok")), "seconds": body.get("seconds"),
                               "entries": rep.get("entries"), "added": rep.get("added"),
                               "removed": rep.get("removed")})

    sampler = _Every(s.sample_every, sample, "soak-rss")
    reloader = _Every(s.reload_every, reload, "soak-reload")
    sampler.start()
    reloader.start()
    lat: list[float] = []
    try:
        chunks = max(1, round(s.seconds / s.chunk))
        length = s.seconds / chunks
        for index in range(chunks):
            names = _chunk_names(rng, fwd, int(s.qps * length * 1.05) + 100, s.mix)
            data = write_queries(work / f"q{index}.txt", names)
            perf = run_dnsperf(child.dns_port, data, qps=s.qps, seconds=length,
                               timeout=s.timeout, classify=classify,
                               outfile=work / f"q{index}.out")
            data.unlink()
            (work / f"q{index}.out").unlink()
            chunk_lat = perf.all_latencies()
            lat.extend(chunk_lat)
            bad = {f"{cls} {rc}": n for cls, counts in perf.by_class.items()
                   for rc, n in counts.items() if rc != EXPECTED_RCODE.get(cls)}
            result.unexpected_answers.update(bad)
            result.blocked_answered += perf.answers("blocked", "NXDOMAIN")
            chunk = Chunk(index, perf.sent, perf.completed, perf.lost,
                          round(perf.completed / perf.seconds, 1) if perf.seconds else 0.0,
                          percentile(chunk_lat, 50) * 1e3, percentile(chunk_lat, 99) * 1e3,
                          (chunk_lat[-1] if chunk_lat else 0.0) * 1e3, child.rss_mb(), bad)
            result.chunks.append(chunk)
            result.load.append(os.getloadavg()[0])
            say(f"chunk {index + 1}/{chunks}: sent {chunk.sent} lost {chunk.lost} "
                f"p99 {chunk.p99_ms:.2f} ms rss {chunk.rss_mb:.1f} MB reloads "
                f"{len(result.reloads)} unexpected {bad or 'none'}")
    finally:
        reloader.stop()
        sampler.stop()
    for thread in (sampler, reloader):
        if thread.error is not None:
            raise RuntimeError(f"{thread.name} failed: {thread.error!r}") from thread.error
    sample()
    lat.sort()
    result.p50_ms = percentile(lat, 50) * 1e3
    result.p99_ms = percentile(lat, 99) * 1e3
    result.max_ms = (lat[-1] if lat else 0.0) * 1e3
    result.blocked_answered += warm.answers("blocked", "NXDOMAIN")
    _settle_store(child, result)


def _settle_store(child: Child, result: SoakResult, timeout: float = 15) -> None:
    """Wait for the store's queue to drain (commit_interval is 1 s), then keep the metrics."""
    deadline = time.monotonic() + timeout
    time.sleep(1.2)    # folded 'flood' hits are handed to the store once a second
    while True:
        result.metrics = child.metrics()
        if not metric(result.metrics, "sinkhole_store_queue_depth") \
                or time.monotonic() > deadline:
            return
        time.sleep(0.25)


# --------------------------------------------------------------------------- the report


def render_markdown(r: SoakResult) -> str:
    s = r.settings
    settle = min(180.0, s.seconds / 3)
    m = r.metrics
    lines = [
        "# sinkhole soak",
        "",
        f"`python bench/soak.py --seconds {s.seconds:g}` ({s.seconds / 60:.1f} min), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. dnsperf at {s.qps} q/s "
        f"(`-Q {s.qps} -c 4 -t {s.timeout:g}`, one run per {s.chunk:g} s chunk, 127.0.0.1), "
        f"mix {s.mix[0]:.0%} blocked ({BLOCKED_NAMES} names), {s.mix[1]:.0%} cached "
        f"({CACHED_NAMES} names), {s.mix[2]:.0%} forwarded ({FORWARDED_NAMES} names asked "
        f"in turn: never in the cache when they come round again); "
        f"cache bound {s.cache_entries} entries; store on, webhook sink to a local receiver; "
        f"the blocklist rewritten and reloaded through the API every {s.reload_every:g} s "
        f"({s.rotating_names} names out, {s.rotating_names} in).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| queries sent / answered / lost | {r.sent} / {r.completed} / {r.lost} |",
        f"| answers other than expected | {sum(r.unexpected_answers.values())} "
        f"{dict(r.unexpected_answers) or ''} |",
        f"| daemon log lines at warning+ other than hits | {r.unexpected_log_count} |",
        f"| latency p50 / p99 / max (dnsperf) | {r.p50_ms:.2f} / {r.p99_ms:.2f} / "
        f"{r.max_ms:.1f} ms |",
        f"| RSS start / end / max | {r.rss_start_mb:.1f} / {r.rss[-1][1]:.1f} / "
        f"{max(mb for _, mb in r.rss):.1f} MB |",
        f"| RSS growth after the first {settle:.0f} s | {r.rss_growth_mb(settle):.1f} MB |",
        f"| list reloads done (all ok) | {len(r.reloads)} "
        f"({'yes' if all(x['ok'] for x in r.reloads) else 'NO'}) |",
        f"| blocked answers / blocked-queries counter / hits in the DB (rows) | "
        f"{r.blocked_answered} / {metric(m, 'sinkhole_blocked_queries_total'):.0f} / "
        f"{r.hits_in_db} ({r.hit_rows}) |",
        f"| cache entries at the end / evictions | "
        f"{metric(m, 'sinkhole_cache_entries'):.0f} / "
        f"{metric(m, 'sinkhole_cache_evictions_total'):.0f} |",
        f"| alerts delivered (received) | "
        f"{metric(m, 'sinkhole_alerts_total', outcome='delivered'):.0f} "
        f"({r.alerts_received}) |",
        f"| counters that must stay 0 | {r.metric_problems() or 'all 0'} |",
        f"| daemon exit code after SIGTERM | {r.exit_code} |",
        "",
        "## Per chunk",
        "",
        "| chunk | sent | answered | lost | q/s | p50 ms | p99 ms | max ms | RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {c.index + 1} | {c.sent} | {c.completed} | {c.lost} | {c.qps:.0f} | "
              f"{c.p50_ms:.2f} | {c.p99_ms:.2f} | {c.max_ms:.1f} | {c.rss_mb:.1f} |"
              for c in r.chunks]
    lines += ["", "## RSS over time", "", "| s | RSS MB |", "| --- | --- |"]
    step = max(1, len(r.rss) // 40)
    shown = r.rss[::step] + ([r.rss[-1]] if (len(r.rss) - 1) % step else [])
    lines += [f"| {t:.0f} | {mb:.1f} |" for t, mb in shown]
    lines += ["", "## Reloads", "", "| at s | HTTP | ok | seconds | entries | +added | -removed |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {x['at_s']} | {x['status']} | {x['ok']} | {x['seconds']} | {x['entries']} | "
              f"{x['added']} | {x['removed']} |" for x in r.reloads]
    if r.unexpected_logs:
        lines += ["", "## Unexpected log lines (first ones)", "", "```"]
        lines += [json.dumps(x)[:300] for x in r.unexpected_logs[:20]]
        lines += ["```"]
    lines += ["", f"Wall time {r.wall_seconds:.0f} s; the machine ({os.cpu_count()} cores, "
              f"shared by dnsperf, the daemon, the upstream and anything else running) had a "
              f"1-minute load average of {min(r.load, default=0):.1f}-"
              f"{max(r.load, default=0):.1f} during the chunks. Log lines by level/event: "
              f"{r.log_events}.", ""]
    return "\n".join(lines)


def verdict(r: SoakResult, *, loss_tolerance: float = 0.001, rss_tolerance_mb: float = 40.0,
            settle: float | None = None) -> list[str]:
    """What is wrong with a soak, as sentences; empty when it passed."""
    s = r.settings
    settle = min(180.0, s.seconds / 3) if settle is None else settle
    problems = []
    if r.lost > loss_tolerance * max(1, r.sent):
        problems.append(f"{r.lost} of {r.sent} queries lost")
    if r.unexpected_answers:
        problems.append(f"unexpected answers: {dict(r.unexpected_answers)}")
    if r.unexpected_log_count:
        problems.append(f"{r.unexpected_log_count} unexpected log lines, e.g. "
                        f"{r.unexpected_logs[:3]}")
    if r.metric_problems():
        problems.append(f"counters not 0: {r.metric_problems()}")
    if not r.reloads or not all(x["ok"] and x["status"] == 200 for x in r.reloads):
        problems.append(f"reloads: {r.reloads}")
    if r.rss_growth_mb(settle) > rss_tolerance_mb:
        problems.append(f"RSS grew {r.rss_growth_mb(settle):.1f} MB after the first "
                        f"{settle:.0f} s (tolerance {rss_tolerance_mb:.0f} MB; see 'RSS over "
                        f"time')")
    counted = metric(r.metrics, "sinkhole_blocked_queries_total")
    if not counted == r.hits_in_db == r.blocked_answered:
        problems.append(f"hits: {r.blocked_answered} blocked answers, {counted:.0f} counted, "
                        f"{r.hits_in_db} in the DB")
    if r.exit_code != 0:
        problems.append(f"daemon exit code {r.exit_code}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="soak length (default 10)")
    length.add_argument("--seconds", type=float, help="soak length in seconds")
    p.add_argument("--qps", type=int, default=2_000)
    p.add_argument("--reload-every", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--chunk", type=float, default=60.0, help="seconds per dnsperf run")
    p.add_argument("--sample-every", type=float, default=5.0, help="RSS sample, seconds")
    p.add_argument("--cache-entries", type=int, default=20_000)
    p.add_argument("--rotating-names", type=int, default=20_000,
                   help="names replaced in the list at every reload")
    p.add_argument("--out", default=str(Path(__file__).with_name("soak.md")),
                   help="markdown report ('-' for stdout only)")
    a = p.parse_args(argv)
    seconds = a.seconds if a.seconds is not None else 60 * (a.minutes or 10)
    if not 1 <= seconds <= 4 * 3600:
        p.error("the soak runs between 1 second and 4 hours")
    s = SoakSettings(seconds=seconds, qps=a.qps, chunk=min(a.chunk, seconds),
                     reload_every=a.reload_every, sample_every=a.sample_every,
                     cache_entries=a.cache_entries, rotating_names=a.rotating_names)
    r = run_soak(s, say=lambda x: print(x, flush=True))
    text = render_markdown(r)
    problems = verdict(r)
    text += "\nVerdict: " + ("pass" if not problems else "FAIL: " + "; ".join(problems)) + "\n"
    if a.out != "-":
        Path(a.out).write_text(text)
    print(text)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Child", "Perf", "SoakResult", "SoakSettings", "classify", "metric", "percentile",
           "proc_status", "render_markdown", "require_dnsperf", "run_dnsperf", "run_soak",
           "scrape", "verdict", "write_queries", "write_yaml"]
