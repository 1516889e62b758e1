"""DoT, DoH, DDR and the sinkhole listener as the daemon wires them from its config: a device
that discovers our encrypted endpoints by DDR, asks over DoT and DoH, gets the sinkhole address
for a C2 name and then connects to it, leaves a `connect` hit naming itself and the SNI."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.svcbbase
import pytest

from tests.conftest import DaemonThread, sinkhole_cmd, subprocess_env, write_config
from tests.peers.dnsserver import FakeUpstream
from tests.peers.receiver import Receiver
from tests.peers.tlsca import TestCA
from tests.test_encrypted import issue, run, tool

SINK = "127.0.0.3"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.02)


@pytest.fixture
def wired(make_daemon, upstream: FakeUpstream, tmp_path: Path) -> tuple[DaemonThread, Any]:
    ca = TestCA()
    cert, key, _der = issue(ca, tmp_path)
    (tmp_path / "c2.txt").write_text("evil.test\n")
    rx = Receiver().start()
    port = free_port(SINK)
    d = make_daemon({
        "upstreams": [upstream.url()], "reload": {"watch": False},
        "listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0", "dot": ["127.0.0.1:0"],
                   "doh": ["127.0.0.1:0"]},
        "tls": {"cert_file": str(cert), "key_file": str(key)},
        "sinkhole": {"ipv4": SINK, "listen": True, "ports": [port]},
        "blocklists": [{"name": "c2", "path": str(tmp_path / "c2.txt"), "action": "sinkhole",
                        "category": "c2", "severity": "critical"}],
        "alerts": {"sinks": [{"type": "webhook", "url": rx.url()}], "digest_window": "0s"}})
    yield d, ca, port, rx
    rx.stop()
    ca.close()


def test_ddr_names_our_endpoints_and_dot_doh_answer(wired) -> None:
    d, ca, _port, _rx = wired
    r = d.query("_dns.resolver.arpa", "SVCB")
    ports = {rr.params[dns.rdtypes.svcbbase.ParamKey.PORT].port for rrset in r.answer
             for rr in rrset if rr.rdtype == dns.rdatatype.SVCB}
    alpns = {tuple(a.decode() for a in rr.params[1].ids) for rrset in r.answer for rr in rrset}
    dot, doh = d.daemon.listeners.dot_bound[0].port, d.daemon.listeners.doh_bound[0].port
    assert ports == {dot, doh}, r.to_text()
    assert ("dot",) in alpns and ("h2",) in alpns
    q = dns.message.make_query("fine.example", "A")
    ctx = ca.client_context()
    via_dot = dns.query.tls(q, "127.0.0.1", port=dot, ssl_context=ctx, server_hostname="dns.test",
                            timeout=5)
    assert via_dot.answer
    out = run([tool("curl"), "-s", "--http2", "--cacert", ca.ca_pem_path, "-H",
               "accept: application/dns-message", "--resolve", f"dns.test:{doh}:127.0.0.1",
               f"https://dns.test:{doh}/dns-query?dns=AAABAAABAAAAAAAABGZpbmUHZXhhbXBsZQAAAQAB"])
    assert out.returncode == 0 and dns.message.from_wire(out.stdout).answer
    assert d.metric("sinkhole_queries_total",
                    {"transport": "dot", "type": "A", "result": "forwarded"}) == 1
    assert d.metric("sinkhole_queries_total",
                    {"transport": "doh", "type": "A", "result": "cached"}) == 1


def test_a_device_connecting_to_the_sinkhole_is_a_connect_hit_and_alert(wired) -> None:
    d, _ca, port, rx = wired
    r = d.query("backup.evil.test", "A", source="127.0.0.9")
    assert [rr.to_text() for rrset in r.answer for rr in rrset] == [SINK]
    out = run([tool("curl"), "-sk", "--max-time", "5", "--interface", "127.0.0.9",
               "--resolve", f"backup.evil.test:{port}:{SINK}",
               f"https://backup.evil.test:{port}/"])
    assert out.returncode != 0                      # never a handshake, never a reply
    wait_for(lambda: d.metric("sinkhole_sinkhole_connections_total", {"proto": "tls"}) == 1)
    kinds = {}
    for alert in rx.wait_for(2):
        kinds[alert.json["kind"]] = alert.json
    assert "connect" in kinds, list(kinds)
    assert kinds["connect"]["client"]["ip"] == "127.0.0.9"
    assert kinds["connect"]["domain"] == "backup.evil.test"
    assert d.daemon.store.flush()
    cfg = write_config(Path(d.tmp), {"storage": {"path": d.config.storage.path}})
    res = subprocess.run([*sinkhole_cmd(), "hits", "--json", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60, env=subprocess_env(),
                         check=False)
    rows = [h for h in json.loads(res.stdout) if h["kind"] == "connect"]
    assert rows and rows[0]["qname"] == "backup.evil.test" and rows[0]["client_ip"] == "127.0.0.9"
    assert rows[0]["sni"] == "backup.evil.test" and rows[0]["port"] == port

