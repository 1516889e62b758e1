"""Hunting in the running daemon: a Triangulation-like chain that no list names — iMessage,
an attachment fetch, then two never-seen domains — from one phone raises a `suspicion` alert
naming the device, and `sinkhole suspicions --json` shows it. The daemon's clock is the test's,
so the learning period and "a device known for a day" pass without waiting."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import FakeClock, sinkhole_cmd, subprocess_env, write_config
from tests.peers.dnsserver import FakeUpstream
from tests.peers.receiver import Receiver

PHONE = "127.0.0.9"


def wait_for(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.02)


def test_triangulation_like_chain_alerts_naming_the_phone(make_daemon, upstream: FakeUpstream,
                                                         tmp_path: Path) -> None:
    clock = FakeClock()
    rx = Receiver().start()
    try:
        raw = {"upstreams": [upstream.url()], "reload": {"watch": False},
               "clients": {"names": {PHONE: "ceo-iphone"}},
               "hunt": {"learning": "1h"},
               "storage": {"path": str(tmp_path / "state" / "sinkhole.db")},
               "alerts": {"sinks": [{"type": "webhook", "url": rx.url()}],
                          "digest_window": "0s"}}
        d = make_daemon(raw, clock=clock)

        def ask(name: str, after: float = 0.0) -> None:
            clock.advance(after)
            assert d.query(name, "A", source=PHONE).answer

        for name in ("www.apple.com", "news.example.com", "mail.example.org"):
            ask(name)                                  # the phone, during the learning period
        clock.advance(2 * 86400)                       # learning over; the phone is known
        ask("mail.example.org")
        ask("p57-identity.ess.apple.com", 60)          # iMessage
        ask("p57-content.icloud.com", 20)              # the attachment
        ask("weatherstatsfeed.com", 30)                # a never-seen domain...
        ask("cdn.tinyupdatesvc.net", 40)               # ...and a second one
        alerts = [a.json for a in rx.wait_for(1, timeout=20)]
        assert alerts[0]["kind"] == "suspicion", alerts
        assert alerts[0]["client"] == {"ip": PHONE, "name": "ceo-iphone"}
        assert alerts[0]["domain"] in ("weatherstatsfeed.com", "tinyupdatesvc.net")
        assert d.metric("sinkhole_suspicions_total", {"signal": "sequence"}) >= 1
        d.call(_flush(d))
        import urllib.request
        with urllib.request.urlopen(d.http + "/api/v1/suspicions?min_score=80", timeout=10) as r:
            api = json.load(r)["items"]
        assert PHONE in {row["client_ip"] for row in api}
        d.stop()                                       # the hunter writes its state on stop

        cfg = write_config(tmp_path, {"storage": {"path": d.config.storage.path}})
        res = subprocess.run([*sinkhole_cmd(), "suspicions", "--json", "--min-score", "80",
                              "-c", str(cfg)], capture_output=True, text=True, timeout=60,
                             env=subprocess_env(), check=False)
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)
        assert rows and all(set(r) == {"client_ip", "client_name", "domain", "score",
                                       "signals", "first_seen", "last_seen", "count"}
                            for r in rows)
        mine = {r["domain"]: r for r in rows if r["client_ip"] == PHONE}
        assert {"weatherstatsfeed.com", "tinyupdatesvc.net"} <= set(mine), rows
        assert any(s["signal"] == "sequence" for s in mine["weatherstatsfeed.com"]["signals"])
        assert not {"apple.com", "icloud.com"} & set(mine)   # the allowlist: never suspected
    finally:
        rx.stop()


def test_nothing_is_suspected_during_the_learning_period(make_daemon, upstream: FakeUpstream,
                                                         tmp_path: Path) -> None:
    clock = FakeClock()
    d = make_daemon({"upstreams": [upstream.url()], "hunt": {"learning": "7d"}}, clock=clock)
    for name in ("p1.ess.apple.com", "p1-content.icloud.com", "weatherstatsfeed.com",
                 "cdn.tinyupdatesvc.net"):
        clock.advance(30)
        assert d.query(name, "A", source=PHONE).answer
    wait_for(lambda: d.daemon.hunt.observed >= 4)
    assert d.metric("sinkhole_suspicions_total", {"signal": "sequence"}) == 0
    assert d.metric("sinkhole_suspicion_alerts_total") == 0


async def _flush(d: Any) -> None:
    """Ask the hunter thread to write its state now (as it does every few seconds)."""
    import asyncio
    done = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    d.daemon.hunt.submit(lambda h: (h.flush(), loop.call_soon_threadsafe(done.set_result, 1)))
    await done


def nx_for_dga(q: Any) -> Any:
    """An upstream that answers NXDOMAIN for the made-up .com names of a DGA."""
    import dns.message
    import dns.rcode

    from tests.peers.dnsserver import default_answer
    name = q.question[0].name.to_text().lower()
    if name.startswith("dga") and name.endswith(".com."):
        r = dns.message.make_response(q)
        r.set_rcode(dns.rcode.NXDOMAIN)
        return r
    return default_answer(q)


def _known_devices(d: Any, clock: FakeClock, *clients: str) -> None:
    """The devices ask ordinary names during learning, then two days pass: the learning
    period is over and the network knows them."""
    for client in clients:
        for name in ("www.example.com", "mail.example.org"):
            assert d.query(name, "A", source=client).answer
    clock.advance(2 * 86400)


def _suspected(d: Any, client: str, signal: str) -> set[str]:
    d.call(_flush(d))
    from sinkhole.hunt import read_suspicions
    rows = read_suspicions(str(Path(d.config.storage.path).parent / "hunt.db"))
    return {r["domain"] for r in rows if r["client_ip"] == client
            and any(s["signal"] == signal for s in r["signals"])}


def test_live_tunnel_dga_and_beacon_are_suspected(make_daemon, tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeUpstream(nx_for_dga) as up:
        d = make_daemon({"upstreams": [up.url()], "reload": {"watch": False},
                         "hunt": {"learning": "1h"},
                         "storage": {"path": str(tmp_path / "state" / "sinkhole.db")}},
                        clock=clock)
        laptop, camera, other = "127.0.0.21", "127.0.0.22", "127.0.0.23"
        _known_devices(d, clock, laptop, camera, other)
        # a DNS tunnel: 40 unique long labels under one new domain within a minute, TXT
        for i in range(40):
            clock.advance(1)
            d.query(f"{i:04x}q9z7x2k4m8v1c6b3n5.exfil-tunnel.net", "TXT", source=laptop)
        # a DGA: 25 never-seen random .com names, all NXDOMAIN, within ten minutes
        for i in range(25):
            clock.advance(10)
            d.query(f"dga{i:02d}xkq7vz3w9pl.com", "A", source=laptop)
        # a beacon: the camera asks one new domain every 10 minutes for two hours
        for _ in range(13):
            clock.advance(600)
            assert d.query("telemetry.slowbeacon-cdn.net", "A", source=camera).answer
        assert d.query("www.example.com", "A", source=other).answer
        wait_for(lambda: d.daemon.hunt.observed >= 80 and not d.daemon.hunt.queue)
        assert "exfil-tunnel.net" in _suspected(d, laptop, "tunnel")
        assert _suspected(d, laptop, "dga")
        assert "slowbeacon-cdn.net" in _suspected(d, camera, "beacon")
        assert not _suspected(d, other, "newly_seen")      # an ordinary device: nothing
