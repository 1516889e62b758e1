"""Feeds through the running daemon: a STIX 2.1 bundle by URL blocks, a 304 costs no parse,
a restart with the feed server gone still blocks, a refresh that adds a name queried earlier
raises a retro-hunt alert naming the device, an outage alerts once, and `sinkhole lists`
shows it all. Real parts: the daemon, a real HTTP feed server, a real webhook receiver."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.rcode
import pytest

from sinkhole.config import load_config
from tests.conftest import DaemonThread, sinkhole_cmd, subprocess_env, write_config
from tests.peers.dnsserver import FakeUpstream
from tests.peers.feedserver import FeedServer
from tests.peers.receiver import Receiver

DATA = Path(__file__).parent / "data" / "feeds"
STIX = (DATA / "triangulation.stix2").read_bytes()


def wait_for(cond: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        threading.Event().wait(0.02)


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver().start()
    yield rx
    rx.stop()


def feed_config(upstream: FakeUpstream, tmp_path: Path, url: str, **extra: Any) -> dict:
    return {"upstreams": [upstream.url()], "reload": {"watch": False},
            "storage": {"path": str(tmp_path / "state" / "sinkhole.db")},
            "blocklists": [{"name": "mvt-triangulation", "url": url, "format": "stix2",
                            "category": "c2", "severity": "critical"}], **extra}


def fetched(d: DaemonThread, name: str = "mvt-triangulation") -> float:
    return d.metric("sinkhole_list_last_success_timestamp_seconds", {"list": name})


def ede_text(r: Any) -> str:
    return " ".join(o.text or "" for o in r.options if o.otype == dns.edns.EDE)


def test_stix_feed_blocks_304_costs_nothing_and_a_restart_without_it_still_blocks(
        make_daemon, upstream: FakeUpstream, feeds: FeedServer, tmp_path: Path) -> None:
    feeds.serve("/mvt/triangulation.stix2", STIX, etag='"v1"', content_type="application/json")
    raw = feed_config(upstream, tmp_path, feeds.url("/mvt/triangulation.stix2"))
    d = make_daemon(raw)
    wait_for(lambda: fetched(d) > 0, what="the first download")
    r = d.query("backuprabbit.com", "A", use_edns=0)
    assert r.rcode() == dns.rcode.NXDOMAIN and "mvt-triangulation" in ede_text(r)
    assert d.query("fine.example", "A").answer          # everything else still resolves

    result = d.call(d.daemon.reload("api"))              # conditional GET: 304
    assert feeds.seen()[-1].headers.get("If-None-Match") == '"v1"'
    (report,) = [r for r in result.reports if r.name == "mvt-triangulation"]
    assert report.error is None and report.seconds == 0.0   # not parsed again
    assert report.entries == 15                         # the bundle's 15 domains
    d.stop()

    feeds.stop()                                        # the feed server (the internet) is gone
    again = make_daemon(raw)
    assert again.query("backuprabbit.com", "A").rcode() == dns.rcode.NXDOMAIN
    assert not again.daemon.feeds.next_refresh["mvt-triangulation"] < time.time() + 3600, \
        "a restart must not refetch a feed that is still fresh"
    again.call(again.daemon.feeds.refresh())          # an update-lists while it is down
    assert again.metric("sinkhole_list_fetch_errors_total", {"list": "mvt-triangulation"}) == 1
    assert again.query("backuprabbit.com", "A").rcode() == dns.rcode.NXDOMAIN


def test_refresh_adding_a_name_queried_earlier_alerts_naming_the_device(
        make_daemon, upstream: FakeUpstream, feeds: FeedServer, receiver: Receiver,
        tmp_path: Path) -> None:
    feed = feeds.serve("/c2.txt", b"evil.test\n", etag='"1"')
    raw = feed_config(upstream, tmp_path, feeds.url("/c2.txt"),
                      clients={"names": {"127.0.0.5": "alice-iphone"}},
                      alerts={"sinks": [{"type": "webhook", "url": receiver.url()}]})
    raw["blocklists"][0]["format"] = "plain"
    d = make_daemon(raw)
    wait_for(lambda: fetched(d) > 0, what="the first download")
    assert d.query("cdn.new-c2.test", "A", source="127.0.0.5").answer   # not listed yet
    feed.body, feed.etag = b"evil.test\nnew-c2.test\n", '"2"'
    d.call(d.daemon.reload("api"))
    assert d.daemon.retro_task is not None
    d.call(_wait(d.daemon.retro_task))
    alerts = [a.json for a in receiver.wait_for(1)]
    retro = [a for a in alerts if a["kind"] == "retro"]
    assert retro and retro[0]["client"] == {"ip": "127.0.0.5", "name": "alice-iphone"}
    assert retro[0]["domain"] == "cdn.new-c2.test"
    assert d.query("cdn.new-c2.test", "A").rcode() == dns.rcode.NXDOMAIN


async def _wait(task: Any) -> None:
    await task


def test_outage_alerts_once_keeps_blocking_and_shows_in_lists(
        make_daemon, upstream: FakeUpstream, feeds: FeedServer, tmp_path: Path) -> None:
    feed = feeds.serve("/c2.txt", b"evil.test\nbad.test\n")
    raw = feed_config(upstream, tmp_path, feeds.url("/c2.txt?key=s3cret"),
                      alerts={"sinks": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}]})
    raw["blocklists"][0]["format"] = "plain"
    d = make_daemon(raw)
    wait_for(lambda: fetched(d) > 0, what="the first download")
    feed.mode, feed.status = "error", 503
    for _ in range(3):
        d.call(d.daemon.feeds.refresh())
    assert d.metric("sinkhole_list_fetch_errors_total", {"list": "mvt-triangulation"}) == 3
    assert d.query("bad.test", "A").rcode() == dns.rcode.NXDOMAIN     # last good copy
    assert d.daemon.store.flush()
    conn = sqlite3.connect(d.config.storage.path)
    try:
        kinds = [json.loads(p)["kind"] for (p,) in conn.execute("SELECT payload FROM outbox")]
    finally:
        conn.close()
    assert kinds.count("list-error") == 1, kinds

    cfg = write_config(tmp_path, {"listen": {"http": d.http.removeprefix("http://")},
                                  **{k: raw[k] for k in ("blocklists", "storage")}})
    res = subprocess.run([*sinkhole_cmd(), "lists", "--json", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60, env=subprocess_env(),
                         check=False)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert set(row) == {"name", "source", "format", "entries", "last_success", "last_error",
                        "next_refresh"}
    assert row["entries"] == 2 and row["format"] == "plain" and row["last_success"] > 0
    assert "503" in row["last_error"] and "s3cret" not in res.stdout   # no key in the output
    assert row["source"] == feeds.url("/c2.txt") and row["next_refresh"] > time.time()


def test_update_lists_with_only_url_lists_refreshes_them(
        make_daemon, upstream: FakeUpstream, feeds: FeedServer, tmp_path: Path) -> None:
    feed = feeds.serve("/c2.txt", b"evil.test\n", etag='"a"')
    raw = feed_config(upstream, tmp_path, feeds.url("/c2.txt"))
    raw["blocklists"][0]["format"] = "plain"
    d = make_daemon(raw)
    wait_for(lambda: fetched(d) > 0, what="the first download")
    feed.body, feed.etag = b"evil.test\nfresh.test\n", '"b"'
    cfg = write_config(tmp_path, {"listen": {"http": d.http.removeprefix("http://")},
                                  **{k: raw[k] for k in ("blocklists", "storage")}})
    res = subprocess.run([*sinkhole_cmd(), "update-lists", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60, env=subprocess_env(),
                         check=False)
    assert res.returncode == 0, res.stderr
    assert "mvt-triangulation: 2 entries (+1 -0)" in res.stdout
    assert d.query("fresh.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_embedded_default_sinkholes_the_triangulation_names(make_daemon,
                                                           upstream: FakeUpstream,
                                                           tmp_path: Path) -> None:
    """What the README's first command runs: the embedded default loads the shipped list."""
    default = load_config(None)
    (spec,) = default.blocklists
    d = make_daemon({"upstreams": [upstream.url()], "reload": {"watch": False},
                     "blocklists": [{"name": spec.name, "path": spec.path,
                                     "category": spec.category, "severity": spec.severity,
                                     "action": spec.action}]})
    r = d.query("backuprabbit.com", "A", use_edns=0)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert "blocked by triangulation" in ede_text(r)
    assert spec.severity == "critical" and spec.action == "nxdomain"
    assert Path(spec.path).read_bytes() == \
        (Path(__file__).parent.parent / "blocklists" / "triangulation.txt").read_bytes()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*sinkhole_cmd(), *args], capture_output=True, text=True, timeout=60,
                          env=subprocess_env(), check=False)


def test_check_config_names_a_missing_list_and_fetch_tries_each_url(
        feeds: FeedServer, tmp_path: Path) -> None:
    missing = write_config(tmp_path, {"blocklists": [{"name": "gone", "path": "nope.txt"}]})
    res = run_cli("check-config", "-c", str(missing))
    assert res.returncode == 2 and "blocklists[0] (gone).path" in res.stderr
    assert "nope.txt" in res.stderr

    feeds.serve("/mvt.stix2", STIX, content_type="application/json")
    feeds.serve("/down.txt", mode="error", status=500)
    ok = {"name": "mvt", "url": feeds.url("/mvt.stix2"), "format": "stix2"}
    cfg = write_config(tmp_path, {"blocklists": [ok]})
    res = run_cli("check-config", "--fetch", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "mvt:" in res.stdout and "15 names" in res.stdout
    assert not (tmp_path / "state" / "feeds").exists()     # the daemon's copies untouched
    bad = write_config(tmp_path, {"blocklists": [ok, {"name": "down", "url":
                                                      feeds.url("/down.txt")}]})
    res = run_cli("check-config", "--fetch", "-c", str(bad))
    assert res.returncode == 1 and "down:" in res.stderr and "500" in res.stderr
