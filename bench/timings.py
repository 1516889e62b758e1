"""Wall-clock figures that the unit tests check by order and state instead of by seconds:
measured and printed here, never asserted (a loaded machine must not fail a test for being
slow, and a test must not pass only because the machine was fast).

    python bench/timings.py [--rounds 5] [--json]

- peers (tests/peers): five UDP queries at once to a FakeUpstream delaying every reply by
  300 ms (concurrent: ~300 ms; one at a time would be 1.5 s); four queries pipelined on one
  TCP connection, likewise; how soon `wait_queries` returns after the query was sent.
- alerts (real Store in a temporary folder, real HTTP receiver): `on_hit` to the webhook's
  arrival with default alert settings and the store's default 1 s commit interval
  (synchronous=FULL); a restart with three pending alerts whose retry is 20 s away: start to
  the last arrival; a webhook that hangs (2 s timeout) beside a Slack sink: `on_hit` to the
  second Slack arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.message  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from sinkhole.alerts import AlertManager  # noqa: E402
from sinkhole.config import parse_config  # noqa: E402
from sinkhole.events import Hit  # noqa: E402
from sinkhole.metrics import Metrics  # noqa: E402
from sinkhole.store import Store  # noqa: E402
from tests.peers import FakeUpstream  # noqa: E402
from tests.peers.receiver import Receiver  # noqa: E402

LOOP = "127.0.0.1"
DELAY = 0.3


def _query(name: str = "www.example.com") -> bytes:
    return dns.message.make_query(name, "A").to_wire()


# ----------------------------------------------------------------- peers
def udp_concurrent(n: int = 5) -> float:
    with FakeUpstream(delay=DELAY) as peer:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
        start = time.perf_counter()
        for s in socks:
            s.settimeout(5)
            s.sendto(_query(), (LOOP, peer.port))
        for s in socks:
            s.recvfrom(65535)
            s.close()
        return time.perf_counter() - start


def tcp_pipelined(n: int = 4) -> float:
    with FakeUpstream(delay=DELAY) as peer, \
            socket.create_connection((LOOP, peer.port), timeout=5) as s:
        start = time.perf_counter()
        for i in range(n):
            wire = _query(f"n{i}.example")
            s.sendall(len(wire).to_bytes(2, "big") + wire)
        for _ in range(n):
            size = int.from_bytes(_recv(s, 2), "big")
            _recv(s, size)
        return time.perf_counter() - start


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


def wait_queries_wake() -> float:
    with FakeUpstream() as peer, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        sent: list[float] = []

        def send() -> None:
            sent.append(time.perf_counter())
            s.sendto(_query(), (LOOP, peer.port))

        threading.Timer(0.05, send).start()   # the waiter is waiting by then
        peer.wait_queries(1, timeout=5)
        return time.perf_counter() - sent[0]


# ----------------------------------------------------------------- alerts
def _hit(client: str) -> Hit:
    return Hit(time.time(), client, None, "backuprabbit.com", "A", "triangulation", "c2",
               "critical", action="nxdomain", transport="udp", rule="backuprabbit.com",
               kind="query")


def _alerts(sinks: list[dict[str, Any]], **kw: Any) -> Any:
    return parse_config({"alerts": {"instance": "bench", "sinks": sinks, **kw}}).alerts


async def _with_manager(db: Path, cfg: Any, body: Callable[[AlertManager], Any],
                        **kw: Any) -> Any:
    store = Store(str(db))
    store.open()
    mgr = AlertManager(cfg, store, Metrics(CollectorRegistry()), **kw)
    await mgr.start()
    try:
        return await body(mgr)
    finally:
        await mgr.stop()
        await asyncio.to_thread(store.close)


def hit_to_webhook(folder: Path, rounds: int) -> list[float]:
    """Each client the first of its own burst, so the digest window is not in the path."""
    receiver = Receiver().start()
    try:
        cfg = _alerts([{"type": "webhook", "url": receiver.url()}])

        async def body(mgr: AlertManager) -> list[float]:
            samples = []
            for n in range(rounds):
                mgr.policy.window = 5.0 if n == 0 else 0.0
                start = time.time()
                mgr.on_hit(_hit(f"10.0.1.{n}"))
                got = await asyncio.to_thread(receiver.wait_for, n + 1)
                samples.append(got[-1].time - start)
            return samples

        return asyncio.run(_with_manager(folder / "latency.db", cfg, body))
    finally:
        receiver.stop()


def restart_delivery(folder: Path) -> float:
    receiver = Receiver().start()
    try:
        cfg = _alerts([{"type": "webhook", "url": receiver.url(), "timeout": "300ms"}],
                      digest_window=0)
        db = folder / "restart.db"
        receiver.down = True

        async def fail_three(mgr: AlertManager) -> None:
            for n in range(3):
                mgr.on_hit(_hit(f"10.0.2.{n}"))
            await asyncio.to_thread(receiver.wait_attempts, 1)

        asyncio.run(_with_manager(db, cfg, fail_three, retry_min=20, retry_max=60))
        receiver.recover()

        async def deliver(mgr: AlertManager) -> float:
            got = await asyncio.to_thread(receiver.wait_for, 3)
            return got[-1].time

        start = time.time()
        return asyncio.run(_with_manager(db, cfg, deliver)) - start
    finally:
        receiver.stop()


def beside_a_hanging_sink(folder: Path) -> float:
    hung, slack = Receiver().start(), Receiver().start()
    try:
        hung.fail("hang")
        cfg = _alerts([{"type": "webhook", "url": hung.url(), "timeout": "2s"},
                       {"type": "slack", "url": slack.url()}], digest_window=0)

        async def body(mgr: AlertManager) -> float:
            start = time.time()
            mgr.on_hit(_hit("10.0.3.1"))
            mgr.on_hit(_hit("10.0.3.2"))
            got = await asyncio.to_thread(slack.wait_for, 2)
            return got[-1].time - start

        return asyncio.run(_with_manager(folder / "hang.db", cfg, body, retry_min=0.05))
    finally:
        hung.stop()
        slack.stop()


# ----------------------------------------------------------------- report
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = ap.parse_args()
    logging.getLogger("sinkhole").setLevel(logging.ERROR)   # the failures here are on purpose
    ms: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="sinkhole-timings-") as tmp:
        folder = Path(tmp)
        for _ in range(args.rounds):
            ms.setdefault(f"peer: 5 UDP queries, {DELAY * 1000:.0f} ms delay each",
                          []).append(udp_concurrent() * 1000)
            ms.setdefault(f"peer: 4 TCP pipelined, {DELAY * 1000:.0f} ms delay each",
                          []).append(tcp_pipelined() * 1000)
            ms.setdefault("peer: send -> wait_queries returns", []).append(
                wait_queries_wake() * 1000)
        ms["alerts: on_hit -> webhook (defaults, 1 s commit)"] = [
            s * 1000 for s in hit_to_webhook(folder, args.rounds)]
        ms["alerts: restart -> 3 pending delivered"] = [restart_delivery(folder) * 1000]
        ms["alerts: on_hit -> 2 Slack beside a hung webhook"] = [
            beside_a_hanging_sink(folder) * 1000]
    if args.json:
        print(json.dumps({k: [round(v, 2) for v in vals] for k, vals in ms.items()}))
        return
    width = max(map(len, ms))
    print(f"{'measurement (ms)':<{width}}  {'median':>8}  {'min':>8}  {'max':>8}  n")
    for name, vals in ms.items():
        print(f"{name:<{width}}  {statistics.median(vals):8.1f}  {min(vals):8.1f}  "
              f"{max(vals):8.1f}  {len(vals)}")


if __name__ == "__main__":
    main()
