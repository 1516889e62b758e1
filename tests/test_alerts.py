"""Alerts: the policy with a fake clock, the payloads, and delivery through a real Store to a real
HTTP receiver and a real Alertmanager (Debian prometheus-alertmanager; tests/run.sh installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import math
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sinkhole.alerts import AlertManager, AlertSetupError, build_payload, verify
from sinkhole.alerts.cli import cmd_test_alert
from sinkhole.alerts.policy import AlertPolicy
from sinkhole.alerts.render import render_alertmanager, render_slack
from sinkhole.alerts.sinks import WebhookSink, build_sinks, sink_names
from sinkhole.config import parse_config
from sinkhole.events import Hit
from sinkhole.metrics import Metrics
from sinkhole.store import Store
from tests.peers.receiver import Receiver

ADVICE = "Check the phone with MVT (mvt-ios check-backup) or triangle_check; Lockdown Mode."
META = {"triangulation": {"advice": ADVICE, "source": "securelist", "confidence": "high"}}


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def hit(client: str = "10.0.0.5", qname: str = "backuprabbit.com", *, severity: str = "critical",
        lst: str = "triangulation", name: str | None = "alice-iphone", **kw: Any) -> Hit:
    fields = {"rule": qname, "kind": "query", **kw}
    return Hit(time.time(), client, name, qname, "A", lst, "c2", severity,
               action="nxdomain", transport="udp", **fields)


def alerts_cfg(sinks: list[dict] | None = None, **kw: Any) -> Any:
    sinks = sinks if sinks is not None else [{"type": "webhook", "url": "http://127.0.0.1:9/x"}]
    return parse_config({"alerts": {"instance": "dns-test", "sinks": sinks, **kw}}).alerts


def policy(clock: Clock, budgets: dict[str, int] | None = None, **kw: Any) -> AlertPolicy:
    args = {"min_severity": "warning", "cooldown": 3600.0, "digest_window": 0.0, **kw}
    return AlertPolicy(budgets=budgets or {"hook": 100}, clock=clock, **args)


def items(out: list) -> list:
    return [i for alert, _ in out for i in alert.items]


# ----------------------------------------------------------------- policy (fake clock)
def test_first_hit_alerts_at_once_and_cooldown_counts() -> None:
    clock = Clock()
    p = policy(clock)
    out = p.on_hit(hit())
    assert [(a.kind, s) for a, s in out] == [("hit", ("hook",))]
    assert out[0][0].items[0].count == 1
    start = clock.t
    for dt in (10, 20, 30):
        clock.t = start + dt
        assert p.on_hit(hit()) == []
    clock.t = start + 3599
    assert p.tick() == []
    clock.t = start + 3600   # end of the cooldown: the counted hits are reported, not lost
    (item,) = items(p.tick())
    assert (item.count, item.repeats, item.repeats_since) == (4, 3, start)
    assert p.tick() == []


def test_continuing_episode_reports_once_per_cooldown() -> None:
    clock = Clock()
    p = policy(clock)
    start = clock.t
    sent = []
    for n in range(13):   # a hit every 10 minutes for two hours: never a quiet gap
        clock.t = start + 600 * n
        sent += items(p.on_hit(hit()))
    assert [(i.count, i.repeats) for i in sent] == [(1, 0), (7, 5), (13, 5)]
    assert sent[1].first_seen == start   # one episode throughout


def test_new_episode_after_quiet_gap_alerts_again() -> None:
    """A re-infected phone (Triangulation has no persistence) must not be hidden by dedup."""
    clock = Clock()
    p = policy(clock)
    assert len(p.on_hit(hit())) == 1
    clock.t += 3 * 86400          # days later, the same phone, the same C2 name
    (item,) = items(p.on_hit(hit()))
    assert (item.count, item.repeats, item.first_seen) == (1, 0, clock.t)
    clock.t += 3600               # quiet for exactly one cooldown: new episode again
    assert len(p.on_hit(hit())) == 1
    clock.t += 10                 # but within the cooldown: counted
    assert p.on_hit(hit()) == []


def test_quiet_gap_reports_the_old_count_first() -> None:
    clock = Clock()
    p = policy(clock)
    p.on_hit(hit())
    clock.t += 60
    p.on_hit(hit())               # counted, and no tick ran before the client came back
    clock.t += 7200
    out = items(p.on_hit(hit()))
    assert [(i.count, i.repeats) for i in out] == [(2, 1), (1, 0)]


@pytest.mark.parametrize("minimum, severity, alerts", [
    ("warning", "info", False), ("warning", "warning", True), ("warning", "critical", True),
    ("critical", "warning", False), ("info", "info", True), ("warning", "bogus", True),
])
def test_min_severity(minimum: str, severity: str, alerts: bool) -> None:
    p = policy(Clock(), min_severity=minimum)
    assert bool(p.on_hit(hit(severity=severity))) is alerts


def test_burst_becomes_one_digest_after_the_first() -> None:
    clock = Clock()
    p = policy(clock, digest_window=5.0)
    start = clock.t
    first = p.on_hit(hit("10.0.0.1"))
    assert [a.kind for a, _ in first] == ["hit"]      # the first goes out at once
    for n in range(2, 11):
        clock.t = start + n / 10
        assert p.on_hit(hit(f"10.0.0.{n}")) == []
    assert p.next_deadline() == start + 5.0
    clock.t = start + 5.0
    ((digest, sinks),) = p.tick()
    assert (digest.kind, digest.reason, len(digest.items), sinks) == ("digest", "burst", 9,
                                                                       ("hook",))
    clock.t = start + 6           # the burst goes on: still grouped
    assert p.on_hit(hit("10.0.0.77")) == []
    clock.t = start + 10
    assert [a.kind for a, _ in p.tick()] == ["hit"]   # a digest of one is just the alert
    clock.t = start + 15
    assert p.tick() == []         # a quiet window closes it
    clock.t = start + 20
    assert len(p.on_hit(hit("10.0.0.99"))) == 1       # a new burst starts at once


def test_rate_bound_per_sink_folds_never_drops() -> None:
    clock = Clock()
    p = policy(clock, budgets={"slow": 3, "fast": 100})
    start = clock.t
    out = []
    for n in range(10):
        clock.t = start + n
        out += p.on_hit(hit(f"10.0.0.{n}"))
    to = {s: [a for a, sinks in out if s in sinks] for s in ("slow", "fast")}
    assert (len(to["slow"]), len(to["fast"])) == (3, 10)
    assert p.next_deadline() == start + 60
    clock.t = start + 60
    ((digest, sinks),) = p.tick()
    assert (sinks, digest.kind, digest.reason, len(digest.items)) == (("slow",), "digest",
                                                                       "rate", 7)
    clients = [i.client for a in to["slow"] for i in a.items] + [i.client for i in digest.items]
    assert clients == [f"10.0.0.{n}" for n in range(10)]    # all of them, in order


def test_dedup_memory_is_bounded() -> None:
    clock = Clock()
    p = AlertPolicy(min_severity="warning", cooldown=3600, digest_window=0,
                    budgets={"hook": 10**6}, clock=clock, max_episodes=100)
    p.on_hit(hit("10.9.9.9"))
    clock.t += 1
    p.on_hit(hit("10.9.9.9"))     # one counted, unreported hit
    out = []
    for n in range(1000):
        out += p.on_hit(hit(f"10.1.{n // 256}.{n % 256}"))
    assert p.episodes == 100
    evicted = [i for i in items(out) if i.client == "10.9.9.9"]
    assert [(i.count, i.repeats) for i in evicted] == [(2, 1)]   # reported, not forgotten
    clock.t += 3600
    p.tick()
    assert p.episodes == 0 and p.next_deadline() is None


def test_list_errors_and_retro() -> None:
    clock = Clock()
    p = policy(clock, min_severity="critical")
    (item,) = items(p.on_list_error("triangulation", "no such file"))
    assert (item.kind, item.list, item.error) == ("list-error", "triangulation", "no such file")
    assert p.on_list_error("triangulation", "no such file") == []   # every reload: once
    clock.t += 3600
    assert len(p.on_list_error("triangulation", "no such file")) == 1
    finds = [hit(f"10.0.0.{n}", kind="retro", first_seen=1.0e9, last_seen=1.1e9, count=4)
             for n in range(3)]
    out = items(p.on_retro(finds))
    assert [(i.kind, i.count, i.first_seen) for i in out] == [("retro", 4, 1.0e9)] * 3


# ----------------------------------------------------------------- payloads and renderers
def one_payload(event: dict | None = None, **kw: Any) -> dict:
    p = policy(Clock(), **kw)
    ((alert, _),) = p.on_hit(event or hit())
    return build_payload(alert, instance="dns-test", meta=META, alert_id="abc")


def test_payload_schema() -> None:
    p = one_payload()
    assert p["version"] == 1 and p["kind"] == "hit" and p["severity"] == "critical"
    assert p["client"] == {"ip": "10.0.0.5", "name": "alice-iphone"}
    assert (p["domain"], p["list"], p["category"], p["count"]) == ("backuprabbit.com",
                                                                  "triangulation", "c2", 1)
    assert p["advice"] == ADVICE and p["instance"] == "dns-test"
    assert p["more"] == "sinkhole hits --client 10.0.0.5 --since 24h"
    assert "10.0.0.5 (alice-iphone) asked for backuprabbit.com" in p["summary"]
    assert p["first_seen"].endswith("Z") and p["items"] == []


def test_hmac_signature_verifies(tmp_path: Path) -> None:
    secret = b"s3cret-key-for-tests"
    sink = WebhookSink("hook", "http://127.0.0.1:9/x", timeout=1, max_per_minute=5,
                       secret=secret)
    body, headers = sink.request(one_payload(), time.time())
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert headers["X-Sinkhole-Signature"] == expected
    assert verify(secret, body, headers["X-Sinkhole-Signature"])
    assert not verify(b"other", body, headers["X-Sinkhole-Signature"])


def test_slack_escapes_markup() -> None:
    p = one_payload(hit(qname="x<b>&y.com", name="<!channel> & co", rule="r"))
    msg = render_slack(p)
    texts = [msg["text"]] + [str(b) for b in msg["blocks"]]
    assert all("<" not in t and ">" not in t for t in texts)   # no link or mention can form
    assert "&lt;!channel&gt; &amp; co" in msg["text"]
    assert "`x&lt;b&gt;&amp;y.com`" in str(msg["blocks"])       # a code span: never a link


def test_alertmanager_labels_and_odd_bytes() -> None:
    p = one_payload(hit(qname="bad\x01name.com"))
    now = time.time()
    (alert,) = render_alertmanager(p, now=now, resolve_after=3600)
    assert alert["labels"] == {"alertname": "SinkholeHit", "severity": "critical",
                               "instance": "dns-test", "client": "10.0.0.5",
                               "list": "triangulation", "domain": "bad\\001name.com",
                               "category": "c2"}
    assert alert["annotations"]["advice"] == ADVICE
    assert alert["annotations"]["more"].startswith("sinkhole hits --client 10.0.0.5")
    assert alert["startsAt"] <= alert["endsAt"] and alert["endsAt"].endswith("Z")


def test_sink_names_and_secret_errors(tmp_path: Path) -> None:
    cfg = alerts_cfg([{"type": "webhook", "url": "http://a/x"}, {"type": "slack",
                      "url": "http://b/y"}, {"type": "webhook", "url": "http://c/z"}])
    assert sink_names(cfg.sinks) == ["webhook", "slack", "webhook-2"]
    missing = tmp_path / "nope.secret"
    cfg = alerts_cfg([{"type": "webhook", "url": "http://a/x", "secret_file": str(missing)}])
    with pytest.raises(AlertSetupError, match=r"alerts.sinks\[0\].secret_file: cannot read"):
        build_sinks(cfg)
    with pytest.raises(AlertSetupError, match="two sinks are named 'x'"):
        sink_names(alerts_cfg([{"type": "slack", "url": "http://a/", "name": "x"},
                               {"type": "webhook", "url": "http://a/", "name": "x"}]).sinks)


# ----------------------------------------------------------------- delivery: real Store + peers
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@contextlib.asynccontextmanager
async def running(db: Path, cfg: Any, *, clock: Clock | None = None, commit_interval: float = 1.0,
                  **kw: Any) -> AsyncIterator[tuple[AlertManager, Store, Metrics]]:
    """A real Store on `db` and a started AlertManager, stopped and closed in daemon order.
    With `clock`, both read it: outbox times, retry times and expiry move only when the test
    moves them."""
    now = clock or time.time
    store = Store(str(db), commit_interval=commit_interval, clock=now)
    store.open()
    metrics = Metrics(CollectorRegistry())
    mgr = AlertManager(cfg, store, metrics, lambda: META, clock=now, **kw)
    await mgr.start()
    try:
        yield mgr, store, metrics
    finally:
        await mgr.stop()
        await asyncio.to_thread(store.close)


def count(metrics: Metrics, sink: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value("sinkhole_alerts_total",
                                              {"sink": sink, "outcome": outcome})
    return value or 0.0


async def until(check: Any, timeout: float = 10.0) -> None:
    """Poll `check` (plain or async) until it holds; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        ok = check()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def outbox(store: Store) -> list[Any]:
    """Every pending outbox row, due or not, once the writer committed what was queued: the
    delivery loop's progress, read from the store."""
    await asyncio.to_thread(store.flush)
    return await asyncio.to_thread(store.due_alerts, math.inf, 10_000)


async def waiting(store: Store, n: int) -> bool:
    """`n` rows pending and none of them due: the sender has dealt with each (a new row is
    due at once), and none will be offered again before its retry time."""
    rows = await outbox(store)
    return len(rows) == n and all(row.next_attempt > time.time() for row in rows)


async def settled(mgr: AlertManager, store: Store) -> None:
    """Make "nothing more will arrive" a fact instead of a pause: stop() lets every send in
    flight finish, and the sender only ever sends rows the outbox offers; once it offers none,
    whenever due, no further request can reach a receiver."""
    await mgr.stop()
    assert await outbox(store) == []


async def wait_received(receiver: Receiver, n: int, **kw: Any) -> list:
    return await asyncio.to_thread(receiver.wait_for, n, **kw)


def fast(url: str, **sink: Any) -> Any:
    """Every alert its own message (no digest), short timeouts: failures resolve in ms."""
    return alerts_cfg([{"type": "webhook", "url": url, "timeout": "300ms", **sink}],
                      digest_window=0)


def test_failures_then_recovery_each_alert_once_in_order(tmp_path: Path,
                                                         receiver: Receiver) -> None:
    secret = tmp_path / "hook.secret"
    secret.write_text("hmac-key-0123456789\n")
    receiver.fail("500", "hang", "close")
    cfg = fast(receiver.url(), secret_file=str(secret))

    async def main() -> None:
        async with running(tmp_path / "s.db", cfg, retry_min=0.05, retry_max=0.2) as (
                mgr, store, metrics):
            for n in range(1, 6):
                mgr.on_hit(hit(f"10.0.0.{n}"))
            got = await wait_received(receiver, 5)
            assert len({r.json["id"] for r in got}) == 5
            await settled(mgr, store)
            assert [r.json["client"]["ip"] for r in receiver.received] == \
                [f"10.0.0.{n}" for n in range(1, 6)]
            assert len(receiver.attempts) == 8      # three failures, then each exactly once
            assert (count(metrics, "webhook", "failed"),
                    count(metrics, "webhook", "delivered")) == (3, 5)
            for r in got:
                assert verify(b"hmac-key-0123456789", r.body, r.headers["X-Sinkhole-Signature"])
                assert abs(int(r.headers["X-Sinkhole-Timestamp"]) - time.time()) < 10

    asyncio.run(main())


def test_old_alert_expires_counted_and_logged(tmp_path: Path, receiver: Receiver,
                                              caplog: pytest.LogCaptureFixture) -> None:
    receiver.down = True
    cfg = alerts_cfg([{"type": "webhook", "url": receiver.url("/hook/TOKEN123?key=abc")}],
                     digest_window=0, max_age="1h")
    clock = Clock(time.time())

    async def main() -> None:
        async with running(tmp_path / "s.db", cfg, clock=clock, retry_min=0.05,
                           retry_max=0.1) as (mgr, store, metrics):
            mgr.on_hit(hit())
            await until(lambda: count(metrics, "webhook", "failed") >= 1)
            assert count(metrics, "webhook", "expired") == 0
            clock.t += 3601                    # past max_age, and past every retry time
            await until(lambda: count(metrics, "webhook", "expired") == 1)
            receiver.recover()
            await settled(mgr, store)          # an expired alert is never sent
            assert receiver.received == []

    asyncio.run(main())
    assert any("expired undelivered" in r.getMessage() for r in caplog.records)
    assert "TOKEN123" not in caplog.text and "key=abc" not in caplog.text


def test_restart_in_the_middle_delivers_pending_once(tmp_path: Path, receiver: Receiver) -> None:
    cfg = fast(receiver.url())
    db = tmp_path / "s.db"

    async def before_restart() -> None:
        # A long backoff: after the restart the pending rows are not due yet, and must go
        # out at once anyway (start-up retries every sink's oldest pending alert).
        async with running(db, cfg, retry_min=20, retry_max=60) as (mgr, store, _m):
            for n in range(1, 3):
                mgr.on_hit(hit(f"10.0.0.{n}"))
            await wait_received(receiver, 2)
            receiver.down = True
            for n in range(3, 6):
                mgr.on_hit(hit(f"10.0.0.{n}"))
            await asyncio.to_thread(receiver.wait_attempts, 3)
            # Every pending row now has a retry time ahead (the 3rd its backoff, the 4th and
            # 5th deferred behind it), so none is offered again before then...
            await until(lambda: waiting(store, 3))
        assert len(receiver.attempts) == 3   # ...and stopping let nothing in flight escape

    async def after_restart() -> None:
        # Time stands still: the rows' retry times (20-60 s ahead) never come, so only the
        # start-up retry can deliver them.
        async with running(db, cfg, clock=Clock(time.time())) as (mgr, store, metrics):
            await wait_received(receiver, 5)
            await settled(mgr, store)
            assert count(metrics, "webhook", "delivered") == 3

    asyncio.run(before_restart())
    assert len(receiver.received) == 2
    receiver.recover()
    asyncio.run(after_restart())
    assert [r.json["client"]["ip"] for r in receiver.received] == \
        [f"10.0.0.{n}" for n in range(1, 6)]
    assert len({r.json["id"] for r in receiver.received}) == 5


def test_stop_keeps_held_alerts_for_the_next_run(tmp_path: Path, receiver: Receiver) -> None:
    """Alerts still grouped in the digest window at shutdown reach the outbox, not the void."""
    cfg = alerts_cfg([{"type": "webhook", "url": receiver.url()}], digest_window="1m")
    db = tmp_path / "s.db"

    async def run(hits: int) -> None:
        async with running(db, cfg) as (mgr, _s, _m):
            for n in range(hits):
                mgr.on_hit(hit(f"10.0.0.{n}"))
            await wait_received(receiver, 1 if hits else 2)

    asyncio.run(run(3))   # the first goes at once, two are held in the window
    asyncio.run(run(0))
    first, digest = (r.json for r in receiver.wait_for(2))
    assert first["client"]["ip"] == "10.0.0.0"
    assert (digest["kind"], digest["reason"], digest["count"]) == ("digest", "burst", 2)
    assert [i["client"]["ip"] for i in digest["items"]] == ["10.0.0.1", "10.0.0.2"]


def test_a_hanging_sink_holds_up_only_itself(tmp_path: Path, receiver: Receiver) -> None:
    other = Receiver().start()
    try:
        receiver.fail("hang")
        cfg = alerts_cfg([{"type": "webhook", "url": receiver.url(), "timeout": "2s"},
                          {"type": "slack", "url": other.url()}], digest_window=0)

        async def main() -> None:
            async with running(tmp_path / "s.db", cfg, retry_min=0.05) as (mgr, _s, metrics):
                mgr.on_hit(hit("10.0.0.1"))
                mgr.on_hit(hit("10.0.0.2"))
                await wait_received(other, 2)
                # the other sink got both while the first request to the hung one is still
                # unanswered: sent beside it, not after its 2 s timeout
                assert len(receiver.attempts) == 1 and receiver.received == []
                assert count(metrics, "webhook", "failed") == 0
                await wait_received(receiver, 2)       # and the hung one catches up, in order
                assert [r.json["client"]["ip"] for r in receiver.received] == \
                    ["10.0.0.1", "10.0.0.2"]

        asyncio.run(main())
    finally:
        other.stop()


def test_first_alert_waits_for_neither_the_clock_nor_the_commit_interval(
        tmp_path: Path, receiver: Receiver) -> None:
    """Default alert settings (a 5 s digest window), time standing still and a one-hour commit
    interval: the first hit of a burst goes out at once, and enqueue_alert wakes the writer
    itself, so neither the window nor the interval is in its path. How long the path takes
    is measured by bench/timings.py."""
    cfg = alerts_cfg([{"type": "webhook", "url": receiver.url()}])

    async def main() -> None:
        async with running(tmp_path / "s.db", cfg, clock=Clock(time.time()),
                           commit_interval=3600) as (mgr, _store, _m):
            mgr.on_hit(hit("10.0.1.1"))
            (got,) = await wait_received(receiver, 1)
            assert got.json["client"]["ip"] == "10.0.1.1"

    asyncio.run(main())


def test_test_alert_command(tmp_path: Path, receiver: Receiver,
                            capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    good = [{"type": "webhook", "url": receiver.url("/hook")},
            {"type": "slack", "url": receiver.url("/slack")}]
    config = parse_config({"alerts": {"sinks": good}})
    assert cmd_test_alert(config, None) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "webhook  OK" in out and "slack    OK" in out
    by_path = {r.path: r.json for r in receiver.wait_for(2)}
    assert by_path["/hook"]["kind"] == "test"
    assert {"text", "blocks"} <= set(by_path["/slack"])
    bad = good + [{"type": "webhook", "url": f"http://127.0.0.1:{closed}/t/SECRET"}]
    assert cmd_test_alert(parse_config({"alerts": {"sinks": bad}}), None) == 1  # type: ignore
    out = capsys.readouterr().out
    assert "webhook-2  FAILED" in out and "SECRET" not in out
    assert cmd_test_alert(parse_config({}), None) == 2  # type: ignore[arg-type]


def test_on_hit_never_raises(tmp_path: Path) -> None:
    class Broken:
        def enqueue_alert(self, *a: Any, **kw: Any) -> None:
            raise OSError("disk on fire")

    mgr = AlertManager(alerts_cfg(), Broken(), Metrics(CollectorRegistry()))
    mgr.on_hit(hit())
    mgr.on_list_error("x", "y")


# ----------------------------------------------------------------- a real Alertmanager
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_alertmanager_passes_labels_on(tmp_path: Path, receiver: Receiver) -> None:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, ("prometheus-alertmanager is missing: tests/run.sh installs it "
                    "(apt-get install prometheus-alertmanager)")
    (tmp_path / "am.yml").write_text(f"""
route:
  receiver: test
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: {receiver.url('/am')}
        send_resolved: false
""")
    port = free_port()
    with open(tmp_path / "am.log", "wb") as am_log:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=am_log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "am.log").read_text()
                assert time.monotonic() < deadline, "alertmanager did not become ready"
                time.sleep(0.1)
        cfg = alerts_cfg([{"type": "alertmanager", "url": f"http://127.0.0.1:{port}"}])

        async def main() -> None:
            async with running(tmp_path / "s.db", cfg) as (mgr, _store, metrics):
                mgr.on_hit(hit())
                await until(lambda: count(metrics, "alertmanager", "delivered") == 1)

        asyncio.run(main())
        (got,) = receiver.wait_for(1, timeout=15, path="/am")
        (alert,) = got.json["alerts"]
        assert alert["status"] == "firing"
        labels = alert["labels"]
        assert {k: labels[k] for k in ("alertname", "severity", "client", "list", "domain",
                                       "instance")} == {
            "alertname": "SinkholeHit", "severity": "critical", "client": "10.0.0.5",
            "list": "triangulation", "domain": "backuprabbit.com", "instance": "dns-test"}
        assert alert["annotations"]["advice"] == ADVICE
    finally:
        os.kill(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait(5)
