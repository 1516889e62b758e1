"""DoT and DoH next to UDP and TCP: QPS and server CPU per query, one daemon, one run each.

    python bench/encrypted.py                  # 10 s per transport
    python bench/encrypted.py --seconds 3      # a quick look
    python bench/encrypted.py --hypercorn      # also DoH through hypercorn + a tiny ASGI app
                                               # (needs `pip install hypercorn`; not a dependency)

What runs, all on 127.0.0.1 and bounded (dnsperf `-l` per run): the daemon in this process (its
own loop in a thread, as the tests run it) with the DoT and DoH listeners started on that loop
against its pipeline, a local upstream (tests/peers/dnsserver.py), and dnsperf (`-m udp|tcp|dot
|doh`, 4 clients, 100 outstanding). Every name is answered from the cache after one warm-up pass,
so the figures are the transports' cost, not the upstream's. Server CPU is this process's
user+sys time over the run (the upstream is idle once warm); dnsperf's own is its child's.
The `--hypercorn` row is why DoH is h2 under our own loop: the same pipeline behind hypercorn.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from measure import parse_dnsperf  # noqa: E402

from sinkhole.config.values import HostPort  # noqa: E402
from sinkhole.tlscert import CertStore  # noqa: E402
from tests.conftest import DaemonThread  # noqa: E402
from tests.peers.dnsserver import FakeUpstream  # noqa: E402
from tests.peers.tlsca import TestCA  # noqa: E402

SERVER = "127.0.0.1"
NAMES = 1000
MAX_SECONDS = 60


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def dnsperf(mode: str, port: int, datafile: Path, seconds: float | None, *extra: str,
            runs: int | None = None) -> dict[str, Any]:
    cmd = ["dnsperf", "-m", mode, "-s", SERVER, "-p", str(port), "-d", str(datafile),
           "-c", "4", "-q", "100", "-t", "2", *extra]
    cmd += ["-l", str(min(seconds, MAX_SECONDS))] if seconds else ["-n", str(runs or 1)]
    server0, client0 = cpu_self(), cpu_children()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_SECONDS + 60,
                       check=False)
    server, client = cpu_self() - server0, cpu_children() - client0
    if p.returncode != 0:
        raise RuntimeError(f"dnsperf {mode} failed: {p.stderr[-1000:]}")
    r = parse_dnsperf(p.stdout)
    done = max(r.completed, 1)
    return {"qps": r.qps, "completed": r.completed, "lost": r.lost, "rcodes": r.rcodes,
            "server_us": server / done * 1e6, "client_us": client / done * 1e6,
            "server_pct": server / max(r.seconds, 1e-9) * 100}


def hypercorn_doh(d: DaemonThread, cert: str, key: str) -> tuple[int, Any]:
    """The same pipeline behind hypercorn (HTTP/2 by ALPN) and a minimal ASGI app: POST only,
    no validation beyond what the pipeline does — the cheapest ASGI DoH there can be."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    handle = d.daemon.pipeline.handle

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        res = handle(body, scope["client"][0], "doh")
        if res is not None and not isinstance(res, bytes):
            res = await res
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/dns-message")]})
        await send({"type": "http.response.body", "body": res or b""})

    with socket.socket() as s:          # hypercorn binds inside serve(): pick a free port
        s.bind((SERVER, 0))
        port = s.getsockname()[1]
    cfg = Config()
    cfg.bind = [f"{SERVER}:{port}"]
    cfg.certfile, cfg.keyfile = cert, key
    cfg.alpn_protocols = ["h2", "http/1.1"]
    cfg.accesslog = cfg.errorlog = None
    stop = asyncio.Event()
    return port, (stop, d.call_soon(serve(app, cfg, shutdown_trigger=stop.wait)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--hypercorn", action="store_true")
    args = ap.parse_args(argv)
    if shutil.which("dnsperf") is None:
        print("dnsperf is not installed (apt-get install dnsperf)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sinkhole-bench-enc-"))
    ca = TestCA()
    leaf = ca.ca.issue_cert("dns.test", SERVER)
    cert, key = work / "cert.pem", work / "key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    queries = work / "queries.txt"
    queries.write_text("".join(f"n{i}.bench.test A\n" for i in range(NAMES)))
    rows: list[tuple[str, dict[str, Any]]] = []
    with FakeUpstream() as up:
        d = DaemonThread({"upstreams": [up.url()], "log": {"level": "warning"},
                          "ratelimit": {"enabled": False}}).start()
        try:
            certs = CertStore(str(cert), str(key))
            li = d.daemon.listeners
            d.call(li.start_dot([HostPort(SERVER, 0)], certs))
            d.call(li.start_doh([HostPort(SERVER, 0)], certs))
            dot, doh = li.dot_bound[0].port, li.doh_bound[0].port
            dnsperf("udp", d.port, queries, None, runs=1)            # warm the cache
            uri = f"https://{SERVER}:{doh}/dns-query"
            runs = [("udp", "udp", d.port, ()), ("tcp", "tcp", d.port, ()),
                    ("dot", "dot", dot, ()),
                    ("doh h2 POST", "doh", doh, ("-O", f"doh-uri={uri}", "-O",
                                                 "doh-method=POST")),
                    ("doh h2 GET", "doh", doh, ("-O", f"doh-uri={uri}", "-O",
                                                "doh-method=GET"))]
            hc = None
            if args.hypercorn:
                port, hc = hypercorn_doh(d, str(cert), str(key))
                runs.append(("doh hypercorn POST", "doh", port, (
                    "-O", f"doh-uri=https://{SERVER}:{port}/dns-query", "-O",
                    "doh-method=POST")))
            for label, mode, port, extra in runs:
                rows.append((label, dnsperf(mode, port, queries, args.seconds, *extra)))
            if hc is not None:
                d.loop.call_soon_threadsafe(hc[0].set)
                hc[1].result(10)
        finally:
            d.stop()
            ca.close()
            shutil.rmtree(work, ignore_errors=True)
    print(f"| transport | QPS | server CPU µs/query | server CPU % | dnsperf CPU µs/query "
          f"| completed | lost |  ({args.seconds:g} s each, 4 clients x 100 outstanding, "
          "all cached)")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r in rows:
        print(f"| {label} | {r['qps']:,.0f} | {r['server_us']:.1f} | {r['server_pct']:.0f} | "
              f"{r['client_us']:.1f} | {r['completed']:,} | {r['lost']:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
