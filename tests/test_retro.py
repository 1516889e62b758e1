"""Retro-hunt: a reload finds a query made seconds before it (history not yet written by the
store's minute timer), and the start-up hunt finds names listed while the daemon was down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sinkhole.lists.matcher import ListInfo, build_policy
from sinkhole.lists.parse import parse_lines
from sinkhole.retro import hunt, hunt_policy
from sinkhole.store.queries import open_reader, query_hits
from tests.peers.dnsserver import FakeUpstream
from tests.test_store import DAY, HOUR, NOW, FakeClock, hit, make_store

C2 = ListInfo("c2", category="c2", severity="critical")
ADS = ListInfo("ads", category="ads", severity="low")


def test_reload_retro_hunt_sees_a_query_made_just_before(make_daemon, upstream: FakeUpstream,
                                                         tmp_path: Path) -> None:
    listfile = tmp_path / "c2.txt"
    listfile.write_text("evil.test\n")
    d = make_daemon({"upstreams": [upstream.url()], "reload": {"watch": False},
                     "blocklists": [{"name": "c2", "path": str(listfile), "category": "c2",
                                     "severity": "critical"}]})
    assert d.query("beacon.fresh-c2.test", "A", source="127.0.0.9").answer   # answered
    listfile.write_text("evil.test\nfresh-c2.test\n")     # seconds later, the list learns it
    d.call(d.daemon.reload("test"))
    assert d.daemon.retro_task is not None, "the reload started no retro-hunt"
    d.call(_await(d.daemon.retro_task))
    assert d.daemon.store.flush()
    conn = open_reader(d.config.storage.path)
    try:
        retro = [(h["client_ip"], h["qname"], h["rule"]) for h in query_hits(conn)
                 if h["kind"] == "retro"]
    finally:
        conn.close()
    assert retro == [("127.0.0.9", "beacon.fresh-c2.test", "fresh-c2.test")]


async def _await(task: Any) -> None:
    await task


def test_flush_history_lets_a_hunt_see_counts_still_in_memory(tmp_path: Path) -> None:
    db = tmp_path / "sinkhole.db"
    store = make_store(db, history_interval=3600.0)
    try:
        store.record_query("10.0.0.1", "late.test")
        added = {"c2": {"late.test"}}
        # the premise: the count is still in the writer's memory, not on disk
        assert hunt(str(db), added, {"c2": C2}, NOW - DAY) == []
        assert store.flush_history()
        finds = hunt(str(db), added, {"c2": C2}, NOW - DAY)
        assert [(f["client"], f["qname"], f["list"]) for f in finds] == [
            ("10.0.0.1", "late.test", "c2")]
    finally:
        store.close()


def _policy() -> Any:
    c2 = parse_lines(["evil.test", "*.wild.test", "@@||ok.evil.test^", "both.test"], "c2")
    ads = parse_lines(["||tracker.ads.test^", "both.test"], "ads")
    return build_policy([(C2, c2), (ADS, ads)], [parse_lines(["safe.evil.test"], "allow")])


def test_hunt_policy_finds_history_names_the_current_lists_block(tmp_path: Path) -> None:
    db = tmp_path / "sinkhole.db"
    clock = FakeClock(NOW - 40 * DAY)
    store = make_store(db, clock=clock, history_retention=90 * DAY)
    since = NOW - 30 * DAY
    store.record_query("10.0.0.4", "old.evil.test")           # before the window
    assert store.flush()
    clock.now = since - 2 * HOUR                              # just before the window...
    store.record_query("10.0.0.4", "edge.evil.test")
    assert store.flush()
    clock.now = since + 10 * HOUR     # ...and in it: the name's last_hour lags (refreshed daily)
    store.record_query("10.0.0.9", "edge.evil.test")
    assert store.flush()
    clock.now = NOW - 2 * DAY
    store.record_query("10.0.0.1", "c2.evil.test")
    assert store.flush()
    clock.now = NOW
    for ip, qname in [("10.0.0.1", "c2.evil.test"), ("10.0.0.1", "C2.Evil.Test."),
                      ("10.0.0.2", "x.wild.test"), ("10.0.0.2", "wild.test"),
                      ("10.0.0.3", "ok.evil.test"), ("10.0.0.3", "safe.evil.test"),
                      ("10.0.0.5", "news.test"), ("10.0.0.6", "evil.test"),
                      ("10.0.0.7", "evil.test"), ("10.0.0.8", "tracker.ads.test"),
                      ("10.0.0.8", "both.test")]:
        store.record_query(ip, qname)
    store.record_hit(hit("evil.test", ip="10.0.0.6", kind="retro", list_name="c2"))
    store.close()

    names = {"10.0.0.1": "alice-iphone"}.get
    finds = hunt_policy(str(db), _policy(), since, names)
    got = [(f["client"], f["qname"], f["list"], f["rule"], f["count"]) for f in finds]
    assert sorted(got) == [
        ("10.0.0.1", "c2.evil.test", "c2", "evil.test", 3),   # two hours, case folded
        ("10.0.0.2", "x.wild.test", "c2", "wild.test", 1),    # `*.wild.test`: not the apex
        ("10.0.0.7", "evil.test", "c2", "evil.test", 1),      # 10.0.0.6 was reported before
        ("10.0.0.8", "both.test", "c2", "both.test", 1),      # the first list decides
        ("10.0.0.8", "tracker.ads.test", "ads", "tracker.ads.test", 1),
        ("10.0.0.9", "edge.evil.test", "c2", "evil.test", 1),   # only the query in the window
    ]
    alice = next(f for f in finds if f["client"] == "10.0.0.1")
    assert alice["kind"] == "retro" and alice["client_name"] == "alice-iphone"
    assert (alice["first_seen"], alice["last_seen"]) == (NOW - 2 * DAY, NOW)
    assert alice["category"] == "c2" and alice["severity"] == "critical"


def test_start_up_hunts_names_listed_while_the_daemon_was_down(make_daemon,
                                                               upstream: FakeUpstream,
                                                               tmp_path: Path) -> None:
    """Asked on Monday, the daemon stopped, the list learns the name by `git pull`, the
    daemon starts on Tuesday: the start-up hunt names the device — once, not again at the
    next start."""
    listfile = tmp_path / "c2.txt"
    listfile.write_text("evil.test\n")
    raw = {"upstreams": [upstream.url()], "reload": {"watch": False},
           "storage": {"path": str(tmp_path / "state" / "sinkhole.db")},
           "blocklists": [{"name": "c2", "path": str(listfile), "category": "c2",
                           "severity": "critical"}]}
    first = make_daemon(raw)
    assert first.query("cdn.later-c2.test", "A", source="127.0.0.7").answer
    first.stop()                                   # the store writes its history on close
    listfile.write_text("evil.test\nlater-c2.test\n")

    def retro_finds() -> list[tuple[str, str]]:
        d = make_daemon(raw)
        assert d.daemon.retro_task is not None, "no start-up hunt"
        d.call(_await(d.daemon.retro_task))
        assert d.daemon.store.flush()
        conn = open_reader(d.config.storage.path)
        try:
            found = [(h["client_ip"], h["qname"]) for h in query_hits(conn)
                     if h["kind"] == "retro"]
        finally:
            conn.close()
        d.stop()
        return found

    assert retro_finds() == [("127.0.0.7", "cdn.later-c2.test")]
    assert retro_finds() == [("127.0.0.7", "cdn.later-c2.test")]   # reported once
