"""Fault injection against the real daemon and real peers: failing upstreams under a dnsperf
load, a spoofer aiming guessed-txid replies at the daemon's upstream sockets, a full disk, a
read-only or locked database, kill -9 mid-burst, and hostile list files.

All traffic stays on 127.0.0.1; every load is bounded (dnsperf -l/-n and -Q, fixed counts).
The daemon runs as a child process (`sinkhole run`) where its memory is measured, in-process
(tests/conftest.py) where the test needs its store's counters.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.conftest import DaemonThread, load_soak
from tests.peers.dnsserver import FakeUpstream, default_answer, forge_replies
from tests.peers.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent


soak = load_soak()


@pytest.fixture(autouse=True)
def _dnsperf() -> None:
    try:
        soak.require_dnsperf()
    except RuntimeError as err:
        pytest.fail(f"{err} (the test command installs it)")


def ask(port: int, name: str, rdtype: str = "A", *, source: str = "127.0.0.1",
        timeout: float = 5) -> tuple[dns.message.Message, float]:
    """One UDP query with dnspython: (reply, seconds it took). Datagrams from elsewhere are
    skipped, as any client does: a port the daemon just closed may be a prober's next, and
    the spoofer may still be aiming at it."""
    q = dns.message.make_query(name, rdtype, use_edns=0)
    t = time.monotonic()
    reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout, source=source,
                          ignore_unexpected=True)
    return reply, time.monotonic() - t


def addresses(reply: dns.message.Message) -> set[str]:
    return {rd.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A
            for rd in rrset}


def child_config(folder: Path, up: FakeUpstream, **extra: Any) -> Path:
    raw = {"listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"}, "upstreams": [up.url()],
           "log": {"format": "json", "level": "info"}, "reload": {"watch": False},
           "storage": {"path": str(folder / "state" / "sinkhole.db")}, **extra}
    return soak.write_yaml(folder / "sinkhole.yaml", raw)


# =========================================================================== upstream faults

TIMEOUT = 1.0               # upstream_timeout of these daemons
MARGIN = 0.5                # what "within the timeout" allows on a shared 2-core machine
MARKER = "203.0.113.66"     # the spoofer's address: must never reach a client
LOAD_QPS = 1_000
LOAD_SECONDS = 6.0
FAULT_AT = 1.5              # seconds into the load when the upstream turns bad


def fault_answer(q: dns.message.Message) -> dns.message.Message | None:
    """The upstream's data: names under stale.test live 1 s (so they are stale when the fault
    hits), everything else 300 s."""
    ttl = 1 if q.question and q.question[0].name.to_text().lower().endswith("stale.test.") else 300
    return default_answer(q, ttl=ttl)


def fault_class(name: str) -> str:
    for cls in ("evil", "cached", "stale", "fwd"):
        if name.rstrip(".").endswith(f".{cls}.test"):
            return cls
    return "other"


def load_names(count: int) -> list[str]:
    """Blocked, cached, stale and never-asked names in turn."""
    out = []
    for i in range(count):
        kind = i % 4
        out.append(f"b{i % 200}.evil.test" if kind == 0 else f"c{i % 100}.cached.test"
                   if kind == 1 else f"s{i % 100}.stale.test" if kind == 2 else f"f{i}.fwd.test")
    return out


def daemon_upstream_ports(pid: int, upstream_port: int) -> list[int]:
    """Local ports of the UDP sockets process `pid` holds connected to the upstream: what an
    attacker who can see the box's socket table would aim at (a strong attacker)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[9] in inodes and int(parts[2].split(":")[1], 16) == upstream_port:
                ports.append(int(parts[1].split(":")[1], 16))
    return ports


class Spoofer(threading.Thread):
    """Floods forged replies from the upstream's own address and port to every socket the
    daemon has open towards it, for the very question in flight on that socket (read from
    the upstream's query log): every txid guess but the real one, plus the real txid with
    another question. Only the txid and question checks stand between them and the cache.
    Bounded: `rate` packets/s, until stopped, at most SPRAY_LIMIT per spray call."""

    def __init__(self, up: FakeUpstream, pid: int, *, rate: int = 20_000,
                 guesses: int = 32) -> None:
        super().__init__(name="spoofer", daemon=True)
        self.up, self.pid, self.rate, self.guesses = up, pid, rate, guesses
        self.halt = threading.Event()
        self.sent = 0
        self.ports_hit: set[int] = set()
        self.rng = random.Random(66)

    def _payloads(self, q: dns.message.Message) -> list[bytes]:
        txids = [t for t in self.rng.sample(range(65536), self.guesses + 1) if t != q.id]
        out = list(forge_replies(q, txids[:self.guesses], ip=MARKER))
        other = dns.message.make_query("elsewhere.fwd.test", "A")
        other.id = q.id
        out += list(forge_replies(other, [q.id], ip=MARKER))
        return out

    def run(self) -> None:
        start, budget_used = time.monotonic(), 0
        while not self.halt.is_set():
            in_flight = {peer[1]: q for _, q, peer in self.up.queries[-5000:] if q.question}
            for port in daemon_upstream_ports(self.pid, self.up.port):
                q = in_flight.get(port)
                if q is None:
                    continue
                payloads = self._payloads(q)
                self.sent += self.up.spray(("127.0.0.1", port), payloads, len(payloads))
                self.ports_hit.add(port)
                budget_used += len(payloads)
            # stay under `rate`: sleep off whatever was sent ahead of schedule
            ahead = budget_used / self.rate - (time.monotonic() - start)
            self.halt.wait(max(0.005, ahead))


class Prober(threading.Thread):
    """dnspython queries during the fault, checking each answer's content (dnsperf only
    sees rcodes): blocked NXDOMAIN, cached and stale answered, the rest SERVFAIL in time,
    and never the spoofer's address. One prober per kind, so a slow kind (stale, uncached:
    a timeout each) does not thin out the others."""

    def __init__(self, port: int, fault: str, kind: str) -> None:
        super().__init__(name=f"prober-{kind}", daemon=True)
        self.port, self.fault, self.kind = port, fault, kind
        self.halt = threading.Event()
        self.failures: list[str] = []
        self.checked = 0
        self.slowest = 0.0

    def check(self, cond: bool, what: str) -> None:
        if not cond:
            self.failures.append(what)

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            i += 1
            try:
                getattr(self, self.kind)(i)
            except Exception as err:   # a timeout is a failure too: nothing may go unanswered
                self.failures.append(f"{self.kind} #{i}: {err!r}")
            self.checked += 1
            self.halt.wait(0.05)

    def fast(self, i: int) -> None:
        r, _ = ask(self.port, f"p{i}.b1.evil.test")
        self.check(r.rcode() == dns.rcode.NXDOMAIN, f"blocked: {r.rcode()}")
        r, _ = ask(self.port, f"c{i % 100}.cached.test")
        self.check(addresses(r) == {"192.0.2.1"}, f"cached: {r}")

    def stale(self, i: int) -> None:
        r, took = ask(self.port, f"s{i % 100}.stale.test")
        self.check(addresses(r) == {"192.0.2.1"}, f"stale: {r}")
        if self.fault != "spoof":   # served stale: TTL 30 (RFC 8767), after the timeout
            self.check(all(rr.ttl == 30 for rr in r.answer), f"stale TTL: {r}")
            self.check(took <= TIMEOUT + MARGIN, f"stale answer after {took:.3f}s")

    def uncached(self, i: int) -> None:
        r, took = ask(self.port, f"p{i}.probe.test")
        self.slowest = max(self.slowest, took)
        if self.fault == "spoof":
            self.check(addresses(r) == {"192.0.2.1"}, f"forwarded under spoofing: {r}")
        else:
            self.check(r.rcode() == dns.rcode.SERVFAIL, f"uncached: {r.rcode()}")
            self.check(took <= TIMEOUT + MARGIN, f"SERVFAIL after {took:.3f}s")


@contextmanager
def probing(port: int, fault: str) -> Iterator[list[Prober]]:
    probers = [Prober(port, fault, kind) for kind in ("fast", "stale", "uncached")]
    for p in probers:
        p.start()
    try:
        yield probers
    finally:
        for p in probers:
            p.halt.set()
        for p in probers:
            p.join(30)


@contextmanager
def background(thread: threading.Thread) -> Iterator[threading.Thread]:
    thread.start()
    try:
        yield thread
    finally:
        thread.halt.set()  # type: ignore[attr-defined]
        thread.join(30)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


@pytest.mark.parametrize("fault", ["silent", "garbage", "slow", "spoof"])
def test_upstream_fault_under_load(fault: str, service_dir: Path) -> None:
    folder = service_dir
    (folder / "block.txt").write_text("evil.test\n")
    with FakeUpstream(fault_answer) as up:
        child = soak.Child(child_config(folder, up, upstream_timeout=f"{TIMEOUT}s",
                                        blocklists=[{"name": "c2",
                                                     "path": str(folder / "block.txt")}]))
        try:
            for i in range(100):   # warm: cached names (300 s) and soon-stale names (1 s)
                ask(child.dns_port, f"c{i}.cached.test")
                ask(child.dns_port, f"s{i}.stale.test")
            rss_before = child.status()
            forged_before = soak.metric(child.metrics(), "sinkhole_upstream_forged_replies_total")
            data = soak.write_queries(folder / "load.txt",
                                      load_names(int(LOAD_QPS * LOAD_SECONDS * 1.2)))
            perf: list[Any] = []
            load = threading.Thread(target=lambda: perf.append(soak.run_dnsperf(
                child.dns_port, data, qps=LOAD_QPS, seconds=LOAD_SECONDS, timeout=4,
                classify=fault_class, outfile=folder / "load.out")))
            load.start()
            time.sleep(FAULT_AT)
            if fault == "slow":
                up.delay = TIMEOUT * 2
            elif fault == "spoof":
                up.delay = 0.4      # slow but in time: sockets stay open for the spoofer
            else:
                up.mode = fault
            spoofer = Spoofer(up, child.pid)
            with background(spoofer) if fault == "spoof" else _nothing():
                time.sleep(1.2)     # every stale name is past its TTL before probing starts
                with probing(child.dns_port, fault) as probers:
                    load.join(LOAD_SECONDS + 30)
            samples = child.metrics()
            rss_after = child.status()
            asked = {q.question[0].name.to_text().rstrip(".").lower() for _, q, _ in up.queries
                     if q.question}
            leaked: list[str] = []
            if fault == "spoof":   # a forged answer that got in would sit in the cache now
                up.delay = 0.0
                leaked = [n for n in sorted(asked) if n.endswith("fwd.test")
                          and MARKER in addresses(ask(child.dns_port, n)[0])]
        finally:
            code = child.stop()
    assert perf, "dnsperf did not finish"
    p = perf[0]
    print(f"\n[{fault}] daemon RSS before {rss_before['VmRSS'] / 1024:.1f} MB, after "
          f"{rss_after['VmRSS'] / 1024:.1f} MB, peak {rss_after['VmHWM'] / 1024:.1f} MB; "
          f"dnsperf {p.sent} sent, {p.lost} lost, {dict(p.rcodes)}; probes "
          f"{[(x.kind, x.checked) for x in probers]}, slowest uncached probe "
          f"{probers[2].slowest:.3f}s; "
          f"spoofed {spoofer.sent} to {len(spoofer.ports_hit)} ports; forged replies counted "
          f"{soak.metric(samples, 'sinkhole_upstream_forged_replies_total') - forged_before:.0f}")
    for x in probers:
        assert not x.failures, x.failures[:10]
        assert x.checked >= 2, (x.kind, x.checked)
    assert p.lost == 0 and p.completed == p.sent
    assert set(p.by_class["evil"]) == {"NXDOMAIN"}, p.by_class
    assert set(p.by_class["cached"]) == {"NOERROR"}, p.by_class
    assert set(p.by_class["stale"]) == {"NOERROR"}, p.by_class
    fwd = p.by_class["fwd"]
    if fault == "spoof":
        assert set(fwd) == {"NOERROR"}, p.by_class
    else:
        assert set(fwd) == {"NOERROR", "SERVFAIL"} and fwd["SERVFAIL"] > 100, p.by_class
    assert p.slowest["fwd"][0] <= TIMEOUT + MARGIN, p.slowest
    forged = soak.metric(samples, "sinkhole_upstream_forged_replies_total") - forged_before
    if fault == "spoof":
        assert spoofer.sent > 10_000 and len(spoofer.ports_hit) > 100
        assert forged > 5_000, (forged, spoofer.sent)
        assert len(asked) > 500 and not leaked, leaked[:5]
    elif fault == "garbage":
        assert forged > 100
    assert rss_after["VmRSS"] - rss_before["VmRSS"] < 64 * 1024, (rss_before, rss_after)
    assert code == 0
    assert not child.unexpected, list(child.unexpected)[:5]    # nothing logged but hits


def test_out_of_descriptors_with_a_dead_upstream_still_answers(service_dir: Path) -> None:
    """A dead upstream holds one socket per query for upstream_timeout. `sinkhole run` by
    hand gets the shell's 1,024 descriptors (the unit sets 65,536); at 256 and 500 new
    names/s for 2 s they run out: every query must still get its SERVFAIL."""
    import resource

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with FakeUpstream(mode="silent") as up:
        child = soak.Child(child_config(service_dir, up, upstream_timeout="2s"),
                           preexec=few_descriptors)
        try:
            data = soak.write_queries(service_dir / "names.txt",
                                      [f"f{i}.fwd.test" for i in range(1_500)])
            perf = soak.run_dnsperf(child.dns_port, data, qps=500, runs=1, timeout=4,
                                    classify=fault_class)
        finally:
            code = child.stop()
    print(f"\n[256 descriptors] {perf.sent} sent, {perf.lost} unanswered, "
          f"{dict(perf.rcodes)}; {child.unexpected_count} error lines")
    assert code == 0
    assert perf.lost == 0 and set(perf.by_class["fwd"]) == {"SERVFAIL"}, perf.by_class
    assert not child.unexpected, list(child.unexpected)[:3]


# =========================================================================== store faults

BLOCKED_SENT = 3_000


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (root only): a real ENOSPC. Requested before make_daemon, so the daemon
    is stopped before the unmount."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs",
                           str(mnt)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@contextmanager
def disk_full(db: Path) -> Iterator[None]:
    filler = db.parent / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:
        yield
    finally:
        filler.unlink()


@contextmanager
def read_only(db: Path) -> Iterator[None]:
    """`chattr +i` on the database and its WAL: as root, file modes stop nothing. Never on
    the -shm: SQLite maps it, and a write to an immutable mapping is SIGBUS (it would kill
    this very process, the daemon being in-process)."""
    files = [str(db), f"{db}-wal"]
    done = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not possible here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)


HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process holds BEGIN EXCLUSIVE until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(10)


FAULTS = {"disk_full": disk_full, "read_only": read_only, "locked": locked}


async def _flush_floods(d: DaemonThread) -> None:
    d.daemon.hits.flush_floods()

SQLITE_CODES = {"disk_full": ("SQLITE_FULL",), "locked": ("SQLITE_BUSY",),
                "read_only": ("SQLITE_IOERR", "SQLITE_READONLY")}


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_store_fault_dns_answers_and_every_hit_lands(fault: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    folder = request.getfixturevalue("tiny_fs") if fault == "disk_full" else tmp_path / "st"
    make_daemon = request.getfixturevalue("make_daemon")   # after tiny_fs: stopped first
    up = request.getfixturevalue("upstream")
    db = folder / "sinkhole.db"
    (tmp_path / "block.txt").write_text("evil.test\n")
    d: DaemonThread = make_daemon({
        "upstreams": [up.url()], "reload": {"watch": False},
        "storage": {"path": str(db), "commit_interval": "100ms", "queue_max": 20_000},
        "blocklists": [{"name": "c2", "path": str(tmp_path / "block.txt")}]})
    assert ask(d.port, "warm.evil.test")[0].rcode() == dns.rcode.NXDOMAIN
    assert d.daemon.store.flush(10)
    store = d.daemon.store
    names = soak.write_queries(tmp_path / "hits.txt",
                               [f"h{i}.evil.test" for i in range(BLOCKED_SENT)])
    with FAULTS[fault](db):
        perf = soak.run_dnsperf(d.port, names, qps=2_000, runs=1, timeout=4,
                                classify=fault_class)
        wait_for(lambda: store.stats["failing"], 10, f"{fault}: the store to fail")
        stats = store.stats
        assert not store.flush(timeout=0.5), "committed although the fault is still on"
        reply, took = ask(d.port, "during.fault.test")     # forwarding is unaffected
        assert addresses(reply) == {"192.0.2.1"} and took < 1
        assert ask(d.port, "during.evil.test")[0].rcode() == dns.rcode.NXDOMAIN
    assert perf.sent == perf.completed == perf.answers("evil", "NXDOMAIN") == BLOCKED_SENT
    assert stats["write_errors"] >= 1 and stats["dropped_hits"] == 0
    assert 0 < stats["queue_depth"] <= 2 * 20_000, stats   # hits + history, each bounded
    d.call(_flush_floods(d))   # hits past the per-client detail rate, folded per second
    assert store.flush(timeout=30), f"{fault}: not written after the fault cleared"
    assert not store.stats["failing"] and store.stats["dropped_hits"] == 0
    with sqlite3.connect(db) as conn:
        # sum(count): past storage.hit_detail_rate a client's hits are folded into one
        # 'flood' row per second that says how many it stands for; detailed rows count 1
        hits, rows, distinct = conn.execute(
            "SELECT sum(count), sum(kind = 'query'), count(DISTINCT qname) "
            "FILTER (WHERE kind = 'query') FROM hits WHERE qname LIKE 'h%.evil.test'"
        ).fetchone()
        total = conn.execute("SELECT sum(count) FROM hits").fetchone()[0]
    errors = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "store_error"]
    print(f"\n[{fault}] during the fault: {stats}; first error: {errors[:1]}")
    assert errors and any(code in errors[0] for code in SQLITE_CODES[fault]), errors[:3]
    assert hits == BLOCKED_SENT and rows == distinct > 0, (hits, rows, distinct)
    assert total == BLOCKED_SENT + 2                      # + warm + during
    assert d.metric("sinkhole_blocked_queries_total",
                    {"list": "c2", "category": "malware", "severity": "warning"}) == total


# =========================================================================== kill -9


def burst(port: int, halt: threading.Event, sent: list[int]) -> None:
    """Blocked queries from 20 client addresses, distinct names: one alert episode each.
    Bounded: 20,000 queries at most; stops at the first unanswered one (the daemon died)."""
    for i in range(20_000):
        if halt.is_set():
            return
        try:
            ask(port, f"k{i}.evil.test", source=f"127.0.0.{2 + i % 20}", timeout=0.5)
        except (OSError, dns.exception.Timeout):
            return
        sent[0] = i + 1


def test_kill_9_mid_burst_then_restart_delivers_each_alert_once(service_dir: Path) -> None:
    folder = service_dir
    (folder / "block.txt").write_text("# advice: check the phone\nevil.test\n")
    db = folder / "state" / "sinkhole.db"
    rx = Receiver().start()
    rx.down = True                         # failing until after the crash
    try:
        with FakeUpstream() as up:
            cfg = child_config(
                folder, up, storage={"path": str(db), "commit_interval": "100ms"},
                blocklists=[{"name": "c2", "path": str(folder / "block.txt"),
                             "severity": "critical"}],
                alerts={"digest_window": "100ms",
                        "sinks": [{"type": "webhook", "url": rx.url(),
                                   "max_per_minute": 10_000}]})
            child = soak.Child(cfg)
            halt, sent = threading.Event(), [0]
            sender = threading.Thread(target=burst, args=(child.dns_port, halt, sent))
            sender.start()
            try:
                wait_for(lambda: sent[0] >= 1_000 and len(rx.attempts) >= 2, 30,
                         "a burst under way and the receiver refusing alerts")
                committed = soak.metric(child.metrics(), "sinkhole_store_committed_hits_total")
                os.kill(child.pid, signal.SIGKILL)
                child.p.wait(10)
            finally:
                halt.set()
                sender.join(30)
                child.kill()
            assert not rx.received, "the receiver was down: nothing delivered before the kill"
            with sqlite3.connect(db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                stored = conn.execute("SELECT count(*) FROM hits").fetchone()[0]
                pending = [json.loads(p)["id"] for (p,) in conn.execute(
                    "SELECT payload FROM outbox WHERE state = 'pending'")]
                every = {json.loads(p)["id"] for (p,) in conn.execute(
                    "SELECT payload FROM outbox")}
            conn.close()
            assert committed > 0 and stored >= committed, (committed, stored)
            assert len(pending) >= 2 and len(set(pending)) == len(pending)

            rx.recover()
            child = soak.Child(cfg)
            try:
                wait_for(lambda: {r.json["id"] for r in rx.received} >= set(pending), 60,
                         f"{len(pending)} pending alerts delivered after the restart")
                time.sleep(1.5)            # room for a duplicate to show up
                delivered = soak.metric(child.metrics(), "sinkhole_alerts_total",
                                        outcome="delivered")
            finally:
                code = child.stop()
    finally:
        rx.stop()
    ids = [r.json["id"] for r in rx.received]
    print(f"\n[kill -9] {sent[0]} queries sent, {committed:.0f} hits committed before the "
          f"kill, {stored} in the DB after it; {len(pending)} alerts pending, "
          f"{len(ids)} delivered after the restart")
    assert len(ids) == len(set(ids)), "an alert was delivered twice"
    assert set(ids) <= every, "delivered something that was never in the outbox"
    assert delivered == len(ids)
    assert code == 0
    with sqlite3.connect(db) as conn:   # marked delivered, durably, before the clean exit
        left = conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
    conn.close()
    assert left == (0,)


# =========================================================================== lists

TEN_MILLION = 10_000_000
DISTINCT = 100_000


def write_ten_million(path: Path) -> None:
    """10M lines (~180 MB): DISTINCT names over and over, and keep.test; written in blocks."""
    names = [f"n{i}.big.test\n" for i in range(DISTINCT)]
    block = "".join(names)
    with open(path, "w") as f:
        f.write("keep.test\n")
        for _ in range(TEN_MILLION // DISTINCT - 1):
            f.write(block)
        f.write("".join(names[:-1]))
    path.chmod(0o644)


def write_gigabyte(path: Path) -> None:
    """1 GiB, one line with no newline: 8 KiB of text, then a hole (no disk used)."""
    with open(path, "wb") as f:
        f.write(b"x" * 8192)
        f.truncate(1 << 30)
    path.chmod(0o644)


BAD_LISTS = {
    # name: (writer, what the report's error says)
    "binary": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + os.urandom(4096)),
               "binary file"),
    "invalid_utf8": (lambda p: p.write_bytes(b"bad\xff\xfe.test\n\xc3\x28x.test\n" * 5000),
                     "no valid rule"),
    "one_gigabyte": (write_gigabyte, "no valid rule"),
}


class LatencyWatch(threading.Thread):
    """Asks a blocked and a cached name over and over; keeps the slowest answer and any
    failure (for DNS during a long reload)."""

    def __init__(self, port: int) -> None:
        super().__init__(name="latency-watch", daemon=True)
        self.port = port
        self.halt = threading.Event()
        self.slowest = 0.0
        self.count = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                r, took = ask(self.port, "x.keep.test", timeout=5)
                r2, took2 = ask(self.port, "cached.ok.test", timeout=5)
            except Exception as err:
                self.failures.append(repr(err))
                continue
            if r.rcode() != dns.rcode.NXDOMAIN or addresses(r2) != {"192.0.2.1"}:
                self.failures.append(f"{r.rcode()} {r2.rcode()}")
            self.slowest = max(self.slowest, took, took2)
            self.count += 2
            self.halt.wait(0.02)


def test_broken_config_and_hostile_lists_keep_the_policy(service_dir: Path) -> None:
    folder = service_dir
    lst = folder / "block.txt"
    lst.write_text("keep.test\n")
    with FakeUpstream() as up:
        cfg = child_config(folder, up, blocklists=[{"name": "l", "path": str(lst)}])
        child = soak.Child(cfg)
        try:
            ask(child.dns_port, "cached.ok.test")
            base = child.status()["VmRSS"]
            # SIGHUP reloads the lists; the config is read once at start, so a broken YAML
            # file on disk changes nothing (and is not even read).
            good_cfg = cfg.read_text()
            cfg.write_text("listen: [unclosed\n  - {{{\n")
            os.kill(child.pid, signal.SIGHUP)
            rec = child.wait_event("list_reload", "list_error")
            assert rec["event"] == "list_reload" and rec["reason"] == "sighup", rec
            assert child.p.poll() is None
            assert ask(child.dns_port, "keep.test")[0].rcode() == dns.rcode.NXDOMAIN
            cfg.write_text(good_cfg)

            for kind, (write, phrase) in BAD_LISTS.items():
                errors_before = soak.metric(child.metrics(), "sinkhole_list_reload_errors_total",
                                            list="l")
                write(lst)
                status, body = child.reload()
                report = body["lists"][0]
                assert status == 500 and body["ok"] is False, (kind, body)
                assert phrase in report["error"], (kind, report)
                assert report["entries"] == 1, (kind, report)     # the old version, active
                assert ask(child.dns_port, "keep.test")[0].rcode() == dns.rcode.NXDOMAIN, kind
                assert addresses(ask(child.dns_port, "n1.big.test")[0]) == {"192.0.2.1"}
                after = soak.metric(child.metrics(), "sinkhole_list_reload_errors_total",
                                    list="l")
                assert after == errors_before + 1, kind
                logged = child.wait_event("list_error", timeout=10)
                assert logged["level"] == "error" and logged["list"] == "l", logged
                print(f"\n[{kind}] {report['error'][:100]} ({report['seconds']} s); peak RSS "
                      f"{child.status()['VmHWM'] / 1024:.1f} MB")
            lst.unlink()

            start = time.monotonic()
            write_ten_million(lst)
            written = time.monotonic() - start
            with background(LatencyWatch(child.dns_port)) as watch:
                status, body = child.reload(timeout=240)
            report = body["lists"][0]
            peak = child.status()["VmHWM"]
            print(f"\n[10M lines] written in {written:.1f} s, reloaded in {report['seconds']} s, "
                  f"{report['entries']} entries; RSS {base / 1024:.1f} MB before, peak "
                  f"{peak / 1024:.1f} MB; DNS during the reload: {watch.count} answers, "
                  f"slowest {watch.slowest * 1000:.0f} ms")
            assert status == 200 and body["ok"], body
            assert report["entries"] == DISTINCT + 1 and report["parse_errors"] == 0
            assert ask(child.dns_port, "n99999.big.test")[0].rcode() == dns.rcode.NXDOMAIN
            assert ask(child.dns_port, "keep.test")[0].rcode() == dns.rcode.NXDOMAIN
            assert not watch.failures and watch.count > 10, watch.failures[:5]
            # every query answered within a stub resolver's 5 s; the slowest is reported
            # (0.7-2.3 s seen here: the event loop starves while the parse thread runs)
            assert watch.slowest < 5.0
            assert peak - base < 300 * 1024, (base, peak)
        finally:
            code = child.stop()
            lst.unlink(missing_ok=True)
    assert code == 0
