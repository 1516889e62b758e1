"""Tests for sinkhole.store on real SQLite files: what it keeps, how it is searched, and that
write faults (a lock held by another process, a full disk, a read-only file, kill -9) lose and
duplicate nothing."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import pytest

from sinkhole.store import (
    SCHEMA_VERSION,
    HitEvent,
    SchemaError,
    Store,
    StoreError,
    escape_name,
    open_reader,
    query_clients,
    query_history,
    query_hits,
    recorded_retro,
    retrohunt,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_704_067_200.0  # 2024-01-01 00:00 UTC, an hour boundary
HOUR = 3600.0
DAY = 86400.0


class FakeClock:
    """The only fake here: time, so retention and hourly aggregation need no sleeping."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Errors:
    """on_error sink that lets a test wait for the first failure without polling."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.seen = threading.Event()

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        self.seen.set()


def hit(qname: str = "evil.com", *, t: float = NOW, ip: str = "10.0.0.23",
        name: str | None = "alice-iphone", list_name: str = "triangulation",
        **kw: object) -> HitEvent:
    fields = {"qtype": "A", "category": "c2", "severity": "critical", "rule": qname,
              "action": "nxdomain", "transport": "udp", **kw}
    return HitEvent(t, ip, name, qname, list=list_name, **fields)  # type: ignore[arg-type]


def make_store(path: Path, **kw: object) -> Store:
    opts: dict[str, object] = {"commit_interval": 0.05, "retry_min": 0.05, "retry_max": 0.3,
                               "clock": FakeClock()}
    opts.update(kw)
    store = Store(str(path), **opts)  # type: ignore[arg-type]
    store.open()
    return store


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def count_hits(path: Path) -> tuple[int, int]:
    """(rows, distinct qnames) — equal when no hit was written twice."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT qname) FROM hits").fetchone()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sinkhole.db"


# --- what is kept, and reading it back ---


def test_hits_sightings_and_filters(db: Path) -> None:
    store = make_store(db)
    store.record_hit(hit(t=NOW, name="old-name"))
    store.record_hit(hit(t=NOW + 60))
    store.record_hit(hit("x.anstv.net", t=NOW + 120, ip="10.0.0.5", name=None, list_name="mvt"))
    store.record_hit(hit("backuprabbit.com", t=NOW + 30, kind="cname", transport="tcp"))
    assert store.flush()
    assert store.stats["committed_hits"] == 4
    store.close()

    conn = open_reader(str(db))
    rows = query_hits(conn)
    assert [r["time"] for r in rows] == [NOW + 120, NOW + 60, NOW + 30, NOW]
    assert list(rows[0]) == ["id", "time", "client_ip", "client_name", "qname", "qtype", "list",
                             "category", "severity", "rule", "action", "transport", "kind",
                             "first_seen", "last_seen", "count", "sni", "host", "port"]
    assert rows[2]["kind"] == "cname" and rows[2]["transport"] == "tcp"
    assert len(query_hits(conn, client="10.0.0.23")) == 3
    assert len(query_hits(conn, client="alice-iphone")) == 2  # the name *at the time*
    assert len(query_hits(conn, client="old-name")) == 1
    assert [r["qname"] for r in query_hits(conn, list_name="mvt")] == ["x.anstv.net"]
    assert len(query_hits(conn, qname="evil.com")) == 2
    assert len(query_hits(conn, since=NOW + 60)) == 2
    assert [r["time"] for r in query_hits(conn, limit=2, offset=1)] == [NOW + 60, NOW + 30]

    devices = query_clients(conn)
    assert [d["client_ip"] for d in devices] == ["10.0.0.5", "10.0.0.23"]  # latest first
    alice = devices[1]
    assert alice["client_name"] == "alice-iphone"
    assert alice["lists"] == ["triangulation"]
    assert (alice["first_seen"], alice["last_seen"], alice["count"]) == (NOW, NOW + 60, 3)
    assert query_clients(conn, since=NOW + 100)[0]["client_ip"] == "10.0.0.5"
    sight = conn.execute("SELECT count, first_seen, last_seen FROM sightings "
                         "WHERE qname = 'evil.com'").fetchone()
    assert sight == (2, NOW, NOW + 60)


def test_history_aggregates_per_client_name_and_hour(db: Path) -> None:
    clock = FakeClock(NOW + 10)
    store = make_store(db, clock=clock)
    for _ in range(3):
        store.record_query("10.0.0.1", "a.live.com")
    store.record_query("10.0.0.2", "a.live.com")
    store.record_query("10.0.0.1", "LIVE.com.")  # kept lower-case, no trailing dot
    assert store.flush()
    clock.now = NOW + HOUR + 5
    store.record_query("10.0.0.1", "a.live.com")
    store.record_query("10.0.0.1", "notlive.com")
    assert store.flush()
    clock.now = NOW + HOUR + 50  # same hour again: counts add up in the same row
    store.record_query("10.0.0.1", "a.live.com")
    store.close()

    conn = open_reader(str(db))
    rows = query_history(conn, name="live.com")
    assert rows == [
        {"time": NOW + HOUR, "client_ip": "10.0.0.1", "qname": "a.live.com", "count": 2},
        {"time": NOW, "client_ip": "10.0.0.1", "qname": "a.live.com", "count": 3},
        {"time": NOW, "client_ip": "10.0.0.2", "qname": "a.live.com", "count": 1},
        {"time": NOW, "client_ip": "10.0.0.1", "qname": "live.com", "count": 1},
    ]
    assert query_history(conn, name="live.com", include_subdomains=False) == [rows[3]]
    assert query_history(conn, name="live.com", client="10.0.0.2") == [rows[2]]
    assert query_history(conn, name="live.com", since=NOW + HOUR) == [rows[0]]
    assert query_history(conn, name="live.com", limit=2, offset=1) == rows[1:3]
    assert query_history(conn, name="nothing.example") == []
    assert conn.execute("SELECT count(*) FROM history").fetchone()[0] == 4  # (hour, name) rows


def test_history_off_records_nothing(db: Path) -> None:
    store = make_store(db, history_retention=0)
    store.record_query("10.0.0.1", "a.example")
    assert store.flush()
    store.close()
    assert query_history(open_reader(str(db)), name="a.example") == []


def test_retrohunt_exact_and_subdomains(db: Path) -> None:
    clock = FakeClock(NOW - 40 * DAY)
    store = make_store(db, clock=clock, history_retention=90 * DAY)
    store.record_query("10.0.0.9", "evil.com")  # too old for since=30 days
    assert store.flush()
    clock.now = NOW
    for ip, qname in [("10.0.0.1", "evil.com"), ("10.0.0.1", "evil.com"),
                      ("10.0.0.2", "c2.x.evil.com"), ("10.0.0.3", "notevil.com"),
                      ("10.0.0.3", "evil.com.au"), ("10.0.0.4", "b.anstv.net")]:
        store.record_query(ip, qname)
    clock.now = NOW + 5 * HOUR
    store.record_query("10.0.0.1", "evil.com")
    assert store.flush()
    store.close()

    conn = open_reader(str(db))
    indicators = [f"ioc{i}.example" for i in range(10_000)]
    indicators += ["evil.com", "x.evil.com", "anstv.net"]
    found = retrohunt(conn, indicators, since=NOW - 30 * DAY)   # its speed: bench/store_growth.py
    assert found == [
        {"client_ip": "10.0.0.1", "qname": "evil.com", "matched": "evil.com",
         "first_seen": NOW, "last_seen": NOW + 5 * HOUR, "count": 3},
        {"client_ip": "10.0.0.2", "qname": "c2.x.evil.com", "matched": "x.evil.com",
         "first_seen": NOW, "last_seen": NOW, "count": 1},
        {"client_ip": "10.0.0.4", "qname": "b.anstv.net", "matched": "anstv.net",
         "first_seen": NOW, "last_seen": NOW, "count": 1},
    ]
    assert {r["client_ip"] for r in retrohunt(conn, ["evil.com"], since=0)} == {
        "10.0.0.1", "10.0.0.2", "10.0.0.9"}


def test_retro_hits_recorded_once_per_client_and_name(db: Path) -> None:
    store = make_store(db)
    store.record_hit(hit(kind="retro", first_seen=NOW - DAY, last_seen=NOW - HOUR, t=NOW))
    assert store.flush()
    conn = open_reader(str(db))
    assert recorded_retro(conn, "10.0.0.23", "evil.com")
    assert not recorded_retro(conn, "10.0.0.24", "evil.com")
    row = query_hits(conn)[0]
    assert (row["first_seen"], row["last_seen"]) == (NOW - DAY, NOW - HOUR)
    store.close()


def test_names_with_any_bytes_stored_as_given_and_shown_escaped(db: Path) -> None:
    odd = "a\x00b\x07 c\\d.\xff" + "x" * 63 + ".com"
    store = make_store(db)
    store.record_hit(hit(odd))
    store.record_query("10.0.0.1", odd)
    assert store.flush()
    store.close()
    conn = open_reader(str(db))
    assert query_hits(conn)[0]["qname"] == odd
    assert query_history(conn, name=odd)[0]["qname"] == odd
    assert escape_name(odd) == "a\\000b\\007\\032c\\\\d.\\255" + "x" * 63 + ".com"
    assert escape_name("plain.example") == "plain.example"
    assert escape_name("\udc80") == "\\128"  # a 'surrogateescape' byte


def test_malformed_event_is_dropped_alone(db: Path) -> None:
    errors = Errors()
    store = make_store(db, on_error=errors)
    store.record_hit(hit("good1.example"))
    store.record_hit(hit("bad.example", ip=object()))  # type: ignore[arg-type]
    store.record_hit(hit("good2.example"))
    assert store.flush()
    store.close()
    assert count_hits(db) == (2, 2)
    assert store.stats["write_errors"] == 1 and "malformed" in errors.messages[0]


# --- retention, schema ---


def test_retention_prunes_old_rows(db: Path) -> None:
    clock = FakeClock(NOW)
    store = make_store(db, clock=clock, retention=10 * DAY, history_retention=2 * DAY,
                       prune_interval=60)
    store.record_hit(hit("old.example", t=NOW))
    store.record_query("10.0.0.1", "old.example")
    store.enqueue_alert({"a": 1}, ["webhook", "slack"])
    assert store.flush()
    delivered, pending = (r.id for r in store.due_alerts(NOW))
    store.mark_delivered(delivered)
    assert store.flush()

    clock.now = NOW + 4 * DAY
    store.record_hit(hit("new.example", t=clock.now))
    store.record_query("10.0.0.1", "new.example")
    assert store.flush() and store.flush()  # the second waits out the prune after the first
    conn = open_reader(str(db))
    assert query_history(conn, name="old.example") == []  # history older than 2 days
    assert conn.execute("SELECT count(*) FROM names").fetchone()[0] == 1  # old name gone too
    assert len(query_hits(conn)) == 2  # hits are kept 10 days

    clock.now = NOW + 11 * DAY
    assert store.flush() and store.flush()
    assert [r["qname"] for r in query_hits(conn)] == ["new.example"]
    assert [d["qnames"] for d in query_clients(conn)] == [["new.example"]]
    states = conn.execute("SELECT id, state FROM outbox").fetchall()
    assert states == [(pending, "pending")]  # delivered rows go, pending ones never do
    store.close()


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE hits (id INTEGER PRIMARY KEY, time REAL NOT NULL, client_ip TEXT NOT NULL,
  client_name TEXT, qname TEXT NOT NULL, qtype TEXT NOT NULL, list TEXT NOT NULL,
  category TEXT, severity TEXT, rule TEXT, action TEXT, transport TEXT,
  kind TEXT NOT NULL DEFAULT 'query', first_seen REAL, last_seen REAL);
CREATE TABLE sightings (client_ip TEXT NOT NULL, qname TEXT NOT NULL, client_name TEXT,
  list TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (client_ip, qname)) WITHOUT ROWID;
INSERT INTO hits(time, client_ip, qname, qtype, list) VALUES (1704000000, '10.0.0.1', 'v1.example',
  'A', 'c2');
"""


def test_v1_database_is_upgraded(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.executescript(V1_SCHEMA)
    store = make_store(db)
    store.record_query("10.0.0.1", "v3.example")
    store.enqueue_alert({"k": "v"}, ["webhook"])
    assert store.flush()
    store.close()
    conn = open_reader(str(db))
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert int(version[0]) == SCHEMA_VERSION
    assert query_hits(conn)[0]["qname"] == "v1.example"
    assert query_history(conn, name="v3.example")[0]["count"] == 1
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def test_newer_schema_is_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                           "INSERT INTO meta VALUES ('schema_version', '99');")
    with pytest.raises(SchemaError, match=r"version 99 is newer than this sinkhole supports"):
        Store(str(db)).open()
    with pytest.raises(SchemaError, match="newer"):
        open_reader(str(db))
    with pytest.raises(StoreError, match="no database"):
        open_reader(str(db.parent / "missing.db"))


# --- the outbox ---


def test_outbox_lifecycle_and_on_durable_after_commit(db: Path) -> None:
    clock = FakeClock(NOW)
    store = make_store(db, clock=clock)
    seen_committed: list[list[int]] = []

    def on_durable(ids: list[int]) -> None:
        # A connection of its own sees the rows only if the COMMIT already happened.
        with sqlite3.connect(db) as other:
            rows = other.execute("SELECT id FROM outbox ORDER BY id").fetchall()
        seen_committed.append([r[0] for r in rows if r[0] in ids])

    store.enqueue_alert({"client": "10.0.0.23", "qname": "evil.com"}, ["webhook", "am"],
                        on_durable)
    assert store.flush()
    assert len(seen_committed) == 1 and len(seen_committed[0]) == 2
    first, second = seen_committed[0]
    due = store.due_alerts(NOW)
    assert [(r.id, r.sink, r.state, r.attempts) for r in due] == [
        (first, "webhook", "pending", 0), (second, "am", "pending", 0)]
    assert due[0].payload == {"client": "10.0.0.23", "qname": "evil.com"}
    assert store.stats["outbox_pending"] == 2

    store.mark_failed(first, "HTTP 503", next_attempt=NOW + 30)
    store.mark_delivered(second)
    assert store.flush()
    assert store.due_alerts(NOW) == []
    clock.now = NOW + 31
    retry = store.due_alerts(clock.now)
    assert [(r.id, r.attempts, r.last_error) for r in retry] == [(first, 1, "HTTP 503")]
    assert store.stats["outbox_pending"] == 1
    assert store.stats["oldest_pending_age"] == pytest.approx(31)
    store.mark_expired(first)
    assert store.flush()
    assert store.due_alerts(clock.now + DAY) == []
    assert store.stats["outbox_pending"] == 0
    store.close()

    conn = open_reader(str(db))
    rows = conn.execute("SELECT id, state, delivered_at FROM outbox ORDER BY id").fetchall()
    assert rows == [(first, "expired", None), (second, "delivered", NOW)]


def test_queued_mark_hides_row_and_restart_resumes_delivery(db: Path) -> None:
    store = make_store(db)
    store.enqueue_alert({"n": 1}, ["webhook"])
    store.enqueue_alert({"n": 2}, ["webhook"])
    assert store.flush()
    one, two = (r.id for r in store.due_alerts(NOW))
    with locked(db):  # the mark cannot commit while another process holds the write lock
        store.mark_delivered(one)
        assert [r.id for r in store.due_alerts(NOW)] == [two]
    assert store.flush()
    store.close()
    again = make_store(db)  # a restart: what was not delivered is still due
    assert [r.payload for r in again.due_alerts(NOW)] == [{"n": 2}]
    again.close()


# --- intake bound, flush and close ---


def test_queue_bound_is_counted_and_never_blocks(db: Path) -> None:
    # Not open yet, so nothing drains the queue.
    store = Store(str(db), queue_max=10, commit_interval=0.05, clock=FakeClock())
    # Nothing drains the queue and no writer runs: returning at all proves it never waits.
    accepted = [store.record_hit(hit(f"n{i}.example")) for i in range(15)]
    for i in range(15):
        store.record_query("10.0.0.1", f"n{i}.example")
    assert accepted == [True] * 10 + [False] * 5
    assert store.stats["dropped_hits"] == 5 and store.stats["dropped_queries"] == 5
    store.open()
    assert store.flush()
    store.close()
    assert count_hits(db) == (10, 10)


def test_close_loses_nothing(db: Path) -> None:
    store = make_store(db, commit_interval=30.0, history_interval=3600.0)
    for i in range(20_000):
        store.record_hit(hit(f"h{i}.example", t=NOW + i))
        store.record_query(f"10.0.{i % 50}.1", f"q{i % 700}.example")
    store.close()
    assert count_hits(db) == (20_000, 20_000)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM names").fetchone()[0] == 700


# --- write faults ---


HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


class locked:  # noqa: N801 - used like a function: `with locked(db):`
    """Another *process* holds the database's write lock until the block ends."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> subprocess.Popen[str]:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(self.path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "locked\n"
        return self.proc

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(10)


def test_database_locked_by_another_process(db: Path) -> None:
    errors = Errors()
    store = make_store(db, on_error=errors)
    with locked(db):
        for i in range(100):
            store.record_hit(hit(f"a{i}.example"))
        assert errors.seen.wait(5)
        for i in range(100):  # still accepted while the writer is stuck on the lock
            assert store.record_hit(hit(f"b{i}.example"))
        assert not store.flush(timeout=0.3)
        assert store.stats["failing"] and store.stats["write_errors"] >= 1
    assert "SQLITE_BUSY" in errors.messages[0] and "retrying" in errors.messages[0]
    assert store.flush()
    assert not store.stats["failing"]
    store.close()
    assert count_hits(db) == (200, 200)


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 2 MB tmpfs: a real ENOSPC.  Needs root (mount); skipped where that is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_then_space_freed(tiny_disk: Path) -> None:
    db = tiny_disk / "sinkhole.db"
    errors = Errors()
    store = make_store(db, on_error=errors)
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    big = "r" * 400
    for i in range(2_000):  # ~1 MB of hits: the WAL must grow
        store.record_hit(hit(f"f{i}.example", rule=big))
    assert errors.seen.wait(5)
    assert "SQLITE_FULL" in errors.messages[0]
    assert not store.flush(timeout=0.3)
    filler.unlink()
    assert store.flush(timeout=10)
    store.close()
    assert count_hits(db) == (2_000, 2_000)


def readonly_scenario(db: Path) -> Store:
    """Open on a read-only file and record hits: the commits fail and are retried.

    Run as an unprivileged user (a fork of this process when the tests run as root, where
    file modes do not stop writes); the caller then makes the file writable and flushes."""
    errors = Errors()
    store = make_store(db, on_error=errors)
    for i in range(50):
        store.record_hit(hit(f"ro{i}.example"))
    assert errors.seen.wait(5)
    assert "readonly" in errors.messages[0]
    assert not store.flush(timeout=0.3)
    return store


def test_read_only_database_file(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        db = tmp_path / "ro" / "sinkhole.db"
        make_store(db).close()  # an existing, current database...
        os.chmod(db, 0o444)     # ...that this user may not write
        store = readonly_scenario(db)
        for path in db.parent.iterdir():
            os.chmod(path, 0o644)
        assert store.flush(timeout=10)
        store.close()
        assert count_hits(db) == (50, 50)
        return
    # As root: a directory nobody can reach (pytest's own tmp root is 0700).
    base = Path(tempfile.mkdtemp(prefix="sinkhole-ro-"))
    try:
        db = base / "sinkhole.db"
        make_store(db).close()
        os.chmod(db, 0o444)
        run_as_nobody(db)
        assert count_hits(db) == (50, 50)
    finally:
        shutil.rmtree(base)


def run_as_nobody(db: Path) -> None:
    """readonly_scenario in a fork that dropped root; the parent fixes the file mid-way."""
    nobody = 65534
    os.chown(db.parent, nobody, nobody)  # the directory stays writable for -wal/-shm
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(nobody)
            os.setuid(nobody)
            store = readonly_scenario(db)
            os.write(ready_w, b"x")
            os.read(go_r, 1)
            code = 0 if store.flush(timeout=10) else 2
            store.close()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x", "the child failed before the fault was seen"
    for path in db.parent.iterdir():  # what an admin does: chown -R, and SQLite's -wal/-shm
        os.chown(path, nobody, nobody)  # were created with the database file's mode
        os.chmod(path, 0o644)
    os.write(go_w, b"x")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


WRITER = """
import sys, time
from sinkhole.store import HitEvent, Store
store = Store(sys.argv[1], commit_interval=0.01)
store.open()
seq = 0
while True:
    for _ in range(25):
        seq += 1
        store.record_hit(HitEvent(time.time(), "10.0.0.9", "dev", f"n{seq}.evil.com", "A",
                                  "c2", "c2", "critical", "evil.com", "nxdomain", "udp"))
        store.record_query("10.0.0.9", f"n{seq}.evil.com")
    if store.flush(5):
        print(seq, flush=True)
"""


def test_kill_9_keeps_every_reported_commit(db: Path) -> None:
    db.parent.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                            text=True, env=env())
    assert proc.stdout is not None
    reported = 0
    try:
        for line in proc.stdout:
            reported = int(line)
            if reported >= 3_000:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: hits queued and a commit in flight
        proc.wait(10)
    assert reported >= 3_000
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows, distinct = count_hits(db)
    assert rows == distinct >= reported
    store = make_store(db)  # and the daemon's own open works on it
    assert store.flush()
    store.close()
    stored = {r["qname"] for r in query_hits(open_reader(str(db)), limit=1_000_000)}
    assert {f"n{i}.evil.com" for i in range(1, reported + 1)} <= stored
