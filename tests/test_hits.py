"""Hits and history end to end: who asked (by name at the time), kept in a real SQLite file,
read back with the CLI and the API, retro-hunt on reload, store faults, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode

from tests.conftest import DaemonThread, sinkhole_cmd, subprocess_env, write_config
from tests.peers.dnsserver import FakeUpstream
from tests.test_process import Proc


async def _wait(task: asyncio.Task | None) -> None:
    assert task is not None, "the reload started no retro-hunt"
    await task


def cli(d: DaemonThread, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cfg = write_config(tmp_path, {"storage": {"path": d.config.storage.path}})
    return subprocess.run([*sinkhole_cmd(), *args, "-c", str(cfg)], capture_output=True,
                          text=True, timeout=60, env=subprocess_env(), check=False)


def api(d: DaemonThread, path: str) -> Any:
    with urllib.request.urlopen(d.http + path, timeout=10) as resp:
        return json.load(resp)


def listed(make_daemon, upstream: FakeUpstream, tmp_path: Path, **extra: Any) -> DaemonThread:
    (tmp_path / "c2.txt").write_text("# advice: check the phone with MVT\nevil.test\n")
    raw = {"upstreams": [upstream.url()], "reload": {"watch": False},
           "blocklists": [{"name": "c2", "path": str(tmp_path / "c2.txt"), "category": "c2",
                           "severity": "critical"}], **extra}
    return make_daemon(raw)


def test_hit_recorded_with_client_name_at_query_time(make_daemon, upstream: FakeUpstream,
                                                     tmp_path: Path) -> None:
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text("4102444800 aa:bb:cc:dd:ee:01 127.0.0.3 bob-phone *\n")
    d = listed(make_daemon, upstream, tmp_path, clients={
        "names": {"127.0.0.2": "alice-iphone", "127.0.0.0/24": "lab"},
        "leases": [str(leases)]})
    assert d.query("c2.evil.test", "A", source="127.0.0.2").rcode() == dns.rcode.NXDOMAIN
    d.query("evil.test", "AAAA", source="127.0.0.3", tcp=True)
    leases.write_text("4102444800 aa:bb:cc:dd:ee:02 127.0.0.3 carol-laptop *\n")
    d.daemon.client_names.refresh()         # the daemon re-reads leases on a timer
    d.query("evil.test", "A", source="127.0.0.3")
    d.query("evil.test", "A", source="127.0.0.4")
    assert d.daemon.store.flush()

    res = cli(d, tmp_path, "hits", "--json")
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert [(h["client_ip"], h["client_name"]) for h in hits] == [
        ("127.0.0.4", "lab"), ("127.0.0.3", "carol-laptop"), ("127.0.0.3", "bob-phone"),
        ("127.0.0.2", "alice-iphone")]
    first = hits[-1]
    assert first["qname"] == "c2.evil.test" and first["list"] == "c2"
    assert first["rule"] == "evil.test" and first["action"] == "nxdomain"
    assert first["qtype"] == "A" and first["transport"] == "udp" and first["severity"] == "critical"
    assert hits[-2]["transport"] == "tcp" and hits[-2]["qtype"] == "AAAA"

    res = cli(d, tmp_path, "hits", "--client", "carol-laptop")
    assert "carol-laptop" in res.stdout and "alice" not in res.stdout
    res = cli(d, tmp_path, "clients", "--json")
    devices = {c["client_ip"]: c for c in json.loads(res.stdout)}
    assert devices["127.0.0.3"]["count"] == 2 and devices["127.0.0.3"]["lists"] == ["c2"]
    assert devices["127.0.0.3"]["client_name"] == "carol-laptop"
    table = cli(d, tmp_path, "clients").stdout
    assert table.splitlines()[0].split()[:2] == ["CLIENT_NAME", "CLIENT_IP"]
    assert d.metric("sinkhole_clients_with_hits", {"list": "c2", "severity": "critical"}) == 3


def test_history_and_api(make_daemon, upstream: FakeUpstream, tmp_path: Path) -> None:
    d = listed(make_daemon, upstream, tmp_path)
    for _ in range(3):
        d.query("www.news.test", "A", source="127.0.0.5")
    d.query("evil.test", "A", source="127.0.0.6")
    assert d.daemon.store.flush()
    hist = api(d, "/api/v1/history?name=news.test")["items"]
    assert hist == [{"time": hist[0]["time"], "client_ip": "127.0.0.5",
                     "qname": "www.news.test", "count": 3}]
    assert api(d, "/api/v1/hits?list=c2")["items"][0]["client_ip"] == "127.0.0.6"
    assert api(d, "/api/v1/hits?list=nope")["count"] == 0
    assert api(d, "/api/v1/clients")["items"][0]["client_ip"] == "127.0.0.6"
    try:
        api(d, "/api/v1/hits?limit=x")
        raise AssertionError("expected HTTP 400")
    except urllib.error.HTTPError as err:
        assert err.code == 400


def test_retrohunt_on_reload_finds_earlier_queries_once(make_daemon, upstream: FakeUpstream,
                                                        tmp_path: Path) -> None:
    from tests.peers.receiver import Receiver
    rx = Receiver().start()
    try:
        d = listed(make_daemon, upstream, tmp_path, alerts={"sinks": [
            {"type": "webhook", "url": rx.url()}]})
        d.query("cdn.later-bad.test", "A", source="127.0.0.7")    # not listed yet: answered
        d.query("innocent.test", "A", source="127.0.0.8")
        assert d.daemon.store.flush()
        (tmp_path / "c2.txt").write_text("evil.test\nlater-bad.test\n")
        d.call(d.daemon.reload("api"))
        d.call(_wait(d.daemon.retro_task))
        assert d.daemon.store.flush()
        retro = json.loads(cli(d, tmp_path, "hits", "--json").stdout)
        assert [(h["client_ip"], h["qname"], h["kind"]) for h in retro] == [
            ("127.0.0.7", "cdn.later-bad.test", "retro")]
        assert retro[0]["first_seen"] and retro[0]["last_seen"]
        got = rx.wait_for(1)[0].json
        assert got["kind"] == "retro" and got["client"]["ip"] == "127.0.0.7"
        # the next reload does not report the same (client, name) again
        (tmp_path / "c2.txt").write_text("evil.test\nlater-bad.test\nthird.test\n")
        d.call(d.daemon.reload("api"))
        d.call(_wait(d.daemon.retro_task))
        assert d.daemon.store.flush()
        assert len(json.loads(cli(d, tmp_path, "hits", "--json").stdout)) == 1
        res = cli(d, tmp_path, "retrohunt", "--file", str(tmp_path / "c2.txt"), "--json")
        assert [r["client_ip"] for r in json.loads(res.stdout)] == ["127.0.0.7"]
    finally:
        rx.stop()


def test_hit_alert_reaches_webhook_with_advice(make_daemon, upstream: FakeUpstream,
                                               tmp_path: Path) -> None:
    from tests.peers.receiver import Receiver
    rx = Receiver().start()
    try:
        d = listed(make_daemon, upstream, tmp_path, alerts={"sinks": [
            {"type": "webhook", "url": rx.url()}]})
        d.query("backup.evil.test", "A", source="127.0.0.9")
        alert = rx.wait_for(1)[0].json
        assert alert["kind"] == "hit" and alert["domain"] == "backup.evil.test"
        assert alert["client"]["ip"] == "127.0.0.9" and alert["list"] == "c2"
        assert "MVT" in alert["advice"]
    finally:
        rx.stop()


def test_store_locked_dns_keeps_answering_and_nothing_lost(make_daemon, upstream: FakeUpstream,
                                                           tmp_path: Path) -> None:
    d = listed(make_daemon, upstream, tmp_path)
    other = sqlite3.connect(d.config.storage.path, timeout=5)
    other.execute("BEGIN EXCLUSIVE")            # another process holds the write lock
    try:
        for i in range(50):
            assert d.query(f"n{i}.evil.test", "A").rcode() == dns.rcode.NXDOMAIN
        assert not d.daemon.store.flush(timeout=1.5)
        assert d.daemon.store.stats["write_errors"] >= 1
        assert d.query("still.ok.test", "A").answer
    finally:
        other.rollback()
        other.close()
    assert d.daemon.store.flush(timeout=15)
    assert len(json.loads(cli(d, tmp_path, "hits", "--json").stdout)) == 50


def raw_query(port: int, qname_wire: bytes) -> bytes:
    packet = struct.pack("!6H", 99, 0x0100, 1, 0, 0, 0) + qname_wire + b"\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(packet, ("127.0.0.1", port))
        return s.recv(4096)


def test_hostile_names_stored_and_shown_escaped(make_daemon, upstream: FakeUpstream,
                                                tmp_path: Path) -> None:
    d = listed(make_daemon, upstream, tmp_path)
    label = b"a\x07\nb\"c"
    raw_query(d.port, bytes([len(label)]) + label + b"\x04evil\x04test\x00")
    assert d.daemon.store.flush()
    table = cli(d, tmp_path, "hits").stdout
    assert "a\\007\\010b" in table and "\x07" not in table and len(table.splitlines()) == 2
    hits = json.loads(cli(d, tmp_path, "hits", "--json").stdout)
    assert hits[0]["qname"] == 'a\\007\\010b"c.evil.test'


def test_kill_9_keeps_every_committed_hit(service_dir: Path) -> None:
    (service_dir / "c2.txt").write_text("evil.test\n")
    with FakeUpstream() as up:
        cfg = write_config(service_dir, {
            "listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"}, "upstreams": [up.url()],
            "log": {"format": "json", "level": "warning"}, "reload": {"watch": False},
            "storage": {"path": str(service_dir / "state" / "s.db"),
                        "commit_interval": "100ms"},
            "blocklists": [{"name": "c2", "path": "c2.txt"}]})
        proc = Proc(cfg, "--debug")
        http = proc.started["http"]
        for i in range(300):
            q = dns.message.make_query(f"h{i}.evil.test", "A")
            dns.query.udp(q, "127.0.0.1", port=proc.port, timeout=5)
        committed = 0.0
        deadline = time.monotonic() + 10
        while committed == 0 and time.monotonic() < deadline:   # the first 100 ms commit
            with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            committed = next(float(x.split()[1]) for x in text.splitlines()
                             if x.startswith("sinkhole_store_committed_hits_total"))
        for i in range(300, 400):      # kill while hits are still streaming in
            q = dns.message.make_query(f"h{i}.evil.test", "A")
            dns.query.udp(q, "127.0.0.1", port=proc.port, timeout=5)
        os.kill(proc.p.pid, signal.SIGKILL)
        proc.p.wait(10)
    db = sqlite3.connect(service_dir / "state" / "s.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = db.execute("SELECT count(*) FROM hits").fetchone()[0]
    db.close()
    assert committed > 0 and stored >= committed


def test_hit_flood_is_aggregated_but_every_hit_counted(make_daemon, upstream: FakeUpstream,
                                                       tmp_path: Path) -> None:
    d = listed(make_daemon, upstream, tmp_path,
               storage={"hit_detail_rate": 5, "hit_detail_burst": 10})
    for i in range(40):
        assert d.query(f"f{i}.evil.test", "A", source="127.0.0.11").rcode() == dns.rcode.NXDOMAIN
    d.query("evil.test", "A", source="127.0.0.12")       # another client: its own budget

    async def flush() -> None:
        d.daemon.hits.flush_floods()
    d.call(flush())
    assert d.daemon.store.flush()
    hits = json.loads(cli(d, tmp_path, "hits", "--json").stdout)
    mine = [h for h in hits if h["client_ip"] == "127.0.0.11"]
    detailed = [h for h in mine if h["kind"] == "query"]
    floods = [h for h in mine if h["kind"] == "flood"]
    assert 10 <= len(detailed) < 40 and floods
    assert sum(h["count"] for h in mine) == 40, [(h["kind"], h["count"]) for h in mine]
    assert floods[0]["qname"].endswith(".evil.test") and floods[0]["list"] == "c2"
    assert [h["kind"] for h in hits if h["client_ip"] == "127.0.0.12"] == ["query"]
    assert d.metric("sinkhole_blocked_queries_total",
                    {"list": "c2", "category": "c2", "severity": "critical"}) == 41


def test_store_queue_full_drops_hit_and_its_alert_together(make_daemon, upstream: FakeUpstream,
                                                           tmp_path: Path) -> None:
    """The rule: an alert always points at a stored hit. With the writer stuck (another
    process holds the lock) and a queue of 3, later hits are dropped — and so are their alerts:
    after the lock goes, every alert in the outbox names a hit that `sinkhole hits` shows."""
    d = listed(make_daemon, upstream, tmp_path, storage={"queue_max": 3},
               alerts={"sinks": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
                       "digest_window": "0s"})
    other = sqlite3.connect(d.config.storage.path, timeout=5)
    other.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(12):
            assert d.query(f"q{i}.evil.test", "A").rcode() == dns.rcode.NXDOMAIN
        dropped = d.metric("sinkhole_hits_dropped_total")
        assert dropped >= 1
    finally:
        other.rollback()
        other.close()
    assert d.daemon.store.flush(timeout=15)
    stored = {h["qname"] for h in json.loads(cli(d, tmp_path, "hits", "--json").stdout)}
    assert len(stored) == 12 - dropped
    conn = sqlite3.connect(d.config.storage.path)
    try:
        payloads = [json.loads(p) for (p,) in conn.execute("SELECT payload FROM outbox")]
    finally:
        conn.close()
    domains = {p.get("domain") for p in payloads} | \
        {item.get("domain") for p in payloads for item in p.get("items") or []}
    domains.discard(None)
    assert domains and domains <= stored, (domains - stored)


def test_recent_clients_bounded_without_a_scrape(monkeypatch) -> None:
    """The clients-with-hits table is bounded on the hit path: a spoofed-source flood cannot
    grow it between Prometheus scrapes (it used to be pruned only when /metrics was read)."""
    from prometheus_client import CollectorRegistry

    import sinkhole.hits as hits_mod
    from sinkhole.dns.wire import parse_query
    from sinkhole.lists.matcher import ListInfo, Verdict
    from sinkhole.metrics import Metrics

    monkeypatch.setattr(hits_mod, "MAX_RECENT_CLIENTS", 100)
    rec = hits_mod.HitRecorder(Metrics(CollectorRegistry()))
    q = parse_query(dns.message.make_query("evil.test", "A").to_wire())
    verdict = Verdict(ListInfo("c2", "c2", "critical"), "nxdomain")
    for i in range(5000):
        rec.on_hit(q, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "udp", verdict,
                   "evil.test", "query")
    clients = rec._recent[("c2", "critical")]
    assert len(clients) <= 100
    assert "10.0.19.135" in clients          # the newest client is kept, the oldest forgotten
    assert "10.0.0.0" not in clients
