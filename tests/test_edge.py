"""The network edge: response rate limiting (a real UDP flood from a test client) and
minimal ANY answers (RFC 8482)."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from tests.peers.dnsserver import FakeUpstream


def flood(port: int, count: int, source: str, name: str = "flood.test") -> tuple[int, int, int]:
    """Send `count` queries as fast as possible from `source`; count full, TC and no replies."""
    wire = dns.message.make_query(name, "A").to_wire()
    full = tc = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((source, 0))
        s.settimeout(1.0)
        for _ in range(count):
            s.sendto(wire, ("127.0.0.1", port))
        for _ in range(count):
            try:
                data = s.recv(4096)
            except TimeoutError:
                break
            assert len(data) <= 512
            if dns.message.from_wire(data).flags & dns.flags.TC:
                tc += 1
            else:
                full += 1
    return full, tc, count - full - tc


def rl_config(up: FakeUpstream, **rl) -> dict:
    return {"upstreams": [up.url()],
            "ratelimit": {"qps": 5, "burst": 20, "exempt": [], **rl}}


def test_flood_gets_truncated_replies_not_amplified(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon(rl_config(upstream))
    full, tc, silent = flood(d.port, 300, "127.0.0.5")
    assert 20 <= full <= 40, (full, tc, silent)   # the burst, plus the refill during the flood
    assert tc >= 200
    assert d.metric("sinkhole_queries_total",
                    {"transport": "udp", "type": "A", "result": "ratelimited"}) == 300 - full
    # another client is unaffected, and the limited one still gets answers over TCP
    assert d.query("other.test", "A", source="127.0.0.6").answer
    assert d.query("flood.test", "A", tcp=True, source="127.0.0.5").answer


def test_drop_action_sends_nothing(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon(rl_config(upstream, action="drop"))
    full, tc, silent = flood(d.port, 200, "127.0.0.7")
    assert tc == 0 and full <= 40 and silent >= 150


def test_network_limit_covers_many_addresses(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon(rl_config(upstream, qps=1000, burst=1000, network_qps=5, network_burst=30))
    got = [flood(d.port, 20, f"127.0.9.{i}") for i in range(1, 6)]
    assert sum(f for f, _t, _s in got) <= 45        # one /24 shares one bucket
    assert d.query("ok.test", "A", source="127.0.10.1").answer   # another /24 is fine


def test_loopback_exempt_by_default(make_daemon, upstream: FakeUpstream) -> None:
    d = make_daemon({"upstreams": [upstream.url()], "ratelimit": {"qps": 1, "burst": 1}})
    full, tc, _ = flood(d.port, 100, "127.0.0.1")
    assert tc == 0 and full == 100


def test_wildcard_listener_with_default_access_refuses_public(make_daemon,
                                                              upstream: FakeUpstream) -> None:
    d = make_daemon({"upstreams": [upstream.url()],
                     "listen": {"dns": ["0.0.0.0:0"], "http": "127.0.0.1:0"}})
    assert d.query("lan.test", "A").answer            # loopback is in the default list
    wire = dns.message.make_query("open.test", "A").to_wire()

    async def verdict(client: str) -> str:
        """A public source cannot be produced on loopback, so hand the real pipeline (on its
        own loop) the address the listener would have read from the socket."""
        res = d.daemon.pipeline.handle(wire, client, "udp")
        if isinstance(res, bytes):
            return dns.rcode.to_text(dns.message.from_wire(res).rcode())
        res.close()                   # a coroutine: it would be forwarded upstream
        return "forwarded"

    for public in ("198.51.100.7", "8.8.4.4", "2001:db8::5", "::ffff:203.0.113.9"):
        assert d.call(verdict(public)) == "REFUSED", public
    for private in ("10.1.2.3", "192.168.1.9", "172.16.0.1", "fd00::1", "::ffff:10.0.0.1"):
        assert d.call(verdict(private)) == "forwarded", private
