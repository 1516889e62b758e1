"""Encrypted DNS to us: DoT and DoH listeners, the certificate and its reload, DDR answers.

Real peers only: `kdig +tls` / `+https`, `curl --http2` / `--http1.1`, `openssl s_client`, an
`h2` client where a test needs HTTP/2 frames curl does not send (tiny windows, resets), and a
throwaway CA (tests/peers/tlsca.py). The listeners are started on the real daemon's loop against
its real pipeline (`d.daemon.listeners`), as the daemon's wiring will.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rdtypes.svcbbase
import dns.rrset
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from sinkhole.config.values import HostPort
from sinkhole.dns.svcb import DOH_PATH, Endpoint, ddr_answer, ddr_endpoints
from sinkhole.dns.wire import parse_query
from sinkhole.errors import StartupError
from sinkhole.tlscert import CertStore
from tests.conftest import DaemonThread
from tests.peers.dnsserver import FakeUpstream, default_answer
from tests.peers.tlsca import TestCA
from tests.test_peers import tcp_recv
from tests.test_tcp_bounds import connect, until, wait_closed

NAME = "dns.test"
TTL = 1234          # the upstream's TTL: what Cache-Control must say
BIG = "big.doh.test."
LOOP = "127.0.0.1"


def tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed: tests/run.sh installs it")
    return exe


def run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def big_answer(q: dns.message.Message) -> dns.message.Message:
    """~30 KB of TXT for BIG: two HTTP/2 frames at least, far over the default 16 KiB."""
    if not q.question or q.question[0].name.to_text().lower() != BIG:
        return default_answer(q, ttl=TTL)
    r = dns.message.make_response(q, recursion_available=True)
    texts = [f'"{i:03d}{"x" * 240}"' for i in range(120)]
    r.answer.append(dns.rrset.from_text_list(q.question[0].name, 300, "IN", "TXT", texts))
    return r


def issue(ca: TestCA, folder: Path, tag: str = "") -> tuple[Path, Path, bytes]:
    """A leaf for NAME and 127.0.0.1 written as cert/key files; returns (cert, key, DER)."""
    leaf = ca.ca.issue_cert(NAME, LOOP)
    cert, key = folder / f"cert{tag}.pem", folder / f"key{tag}.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return cert, key, der


@dataclass
class Enc:
    d: DaemonThread
    up: FakeUpstream
    ca: TestCA
    certs: CertStore
    folder: Path
    der: bytes

    @property
    def li(self) -> Any:
        return self.d.daemon.listeners

    @property
    def dot(self) -> int:
        return self.li.dot_bound[0].port

    @property
    def doh(self) -> int:
        return self.li.doh_bound[0].port

    def url(self, query: str = "") -> str:
        return f"https://{NAME}:{self.doh}/dns-query{query}"

    def transport_count(self, transport: str) -> float:
        """Queries the daemon counted under this transport label, every type and outcome."""
        total = 0.0
        for fam in self.d.registry.collect():
            if fam.name == "sinkhole_queries":
                total += sum(s.value for s in fam.samples
                             if s.name.endswith("_total") and s.labels["transport"] == transport)
        return total

    def curl(self, *args: str, version: str = "--http2") -> tuple[int, str, dict[str, str],
                                                                     bytes]:
        """(status, HTTP version, headers, body) of one curl request to our DoH listener."""
        body, head = self.folder / "body", self.folder / "head"
        p = run([tool("curl"), "-sS", version, "--cacert", self.ca.ca_pem_path, "--resolve",
                 f"{NAME}:{self.doh}:{LOOP}", "-o", str(body), "-D", str(head), "-w",
                 "%{http_code} %{http_version}", "--max-time", "10", *args])
        assert p.returncode == 0, p.stderr
        status, http = p.stdout.decode().split()
        headers = {}
        for line in head.read_text().splitlines()[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return int(status), http, headers, body.read_bytes()


@pytest.fixture
def make_enc(make_daemon: Any, tmp_path: Path) -> Iterator[Callable[..., Enc]]:
    ca = TestCA()
    ups: list[FakeUpstream] = []

    def make(answer: Any = big_answer, raw: dict[str, Any] | None = None, **server: Any) -> Enc:
        up = FakeUpstream(answer).__enter__()
        ups.append(up)
        d = make_daemon({"upstreams": [up.url()], "upstream_timeout": "2s",
                         "server": server, **(raw or {})})
        cert, key, der = issue(ca, tmp_path)
        certs = CertStore(str(cert), str(key))
        d.call(d.daemon.listeners.start_dot([HostPort(LOOP, 0)], certs))
        d.call(d.daemon.listeners.start_doh([HostPort(LOOP, 0)], certs))
        return Enc(d, up, ca, certs, tmp_path, der)

    yield make
    for up in ups:
        up.__exit__(None, None, None)
    ca.close()


@pytest.fixture
def enc(make_enc: Callable[..., Enc]) -> Enc:
    return make_enc()


def b64(wire: bytes) -> str:
    return base64.urlsafe_b64encode(wire).rstrip(b"=").decode()


def query_wire(name: str, rdtype: str = "A", qid: int = 0) -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    return q.to_wire()


# --- DoT ---------------------------------------------------------------------------------------

def kdig(enc: Enc, port: int, *opts: str) -> str:
    p = run([tool("kdig"), f"@{LOOP}", "-p", str(port), f"+tls-ca={enc.ca.ca_pem_path}",
             f"+tls-hostname={NAME}", "+timeout=5", "+retry=0", *opts])
    return p.stdout.decode() + p.stderr.decode()


def test_kdig_over_tls_gets_the_pipelines_answer_counted_as_dot(enc: Enc) -> None:
    out = kdig(enc, enc.dot, "+tls", "a.example", "A")
    assert "status: NOERROR" in out and "192.0.2.1" in out, out
    assert "TLS1.3" in out                      # a verified session, not a clear-text retry
    assert enc.transport_count("dot") == 1
    assert enc.up.count() == 1                  # the same pipeline: forwarded upstream


def test_dot_connection_keeps_rfc7766_framing_and_answers_pipelined(enc: Enc) -> None:
    ctx = enc.ca.client_context()
    with socket.create_connection((LOOP, enc.dot), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=NAME) as s:
        assert s.selected_alpn_protocol() is None or s.selected_alpn_protocol() == "dot"
        wires = [query_wire(f"p{i}.example", qid=i) for i in range(5)]
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in wires))
        got = {m.id: m for m in (dns.message.from_wire(tcp_recv(s)) for _ in wires)}
    assert sorted(got) == list(range(5))
    assert all(m.answer[0][0].address == "192.0.2.1" for m in got.values())


def test_dot_shares_the_tcp_connection_caps_and_times_out_silent_handshakes(
        make_enc: Callable[..., Enc]) -> None:
    enc = make_enc(tcp_max_connections_per_client=2, tcp_idle_timeout="1s")
    held = [connect(enc.dot, "127.0.0.2"), connect(enc.dot, "127.0.0.2")]
    try:
        until(enc.d, lambda: enc.li.tcp_per_client.get("127.0.0.2") == 2)
        with connect(enc.dot, "127.0.0.2") as extra:        # over the per-client cap
            assert extra.recv(1) == b""
        assert enc.d.metric("sinkhole_tcp_connections_rejected_total") == 1
        # another device is still served, over TLS
        assert "192.0.2.1" in kdig(enc, enc.dot, "+tls", "-b", "127.0.0.3", "x.example")
        # the two that never start a handshake are dropped at the idle timeout
        assert all(wait_closed(s, 10) for s in held)
    finally:
        for s in held:
            s.close()
    until(enc.d, lambda: enc.li.tls_failed == 2 and not enc.li.tcp_conns)


def test_dot_client_that_never_reads_is_paused_then_cut_off(make_enc: Callable[..., Enc]) -> None:
    enc = make_enc(tcp_idle_timeout="2s", tcp_max_queries_in_flight=20)
    wire = query_wire(BIG, "TXT")
    assert "status: NOERROR" in kdig(enc, enc.dot, "+tls", BIG, "TXT")    # cached now
    flood = (struct.pack("!H", len(wire)) + wire) * 3000
    ctx = enc.ca.client_context()
    raw = socket.create_connection((LOOP, enc.dot), timeout=10)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s = ctx.wrap_socket(raw, server_hostname=NAME)
    sender = threading.Thread(target=lambda: _quiet(s.sendall, flood), daemon=True)
    sender.start()
    try:
        until(enc.d, lambda: enc.li.tcp_paused >= 1)            # stopped reading us
        assert "192.0.2.1" in kdig(enc, enc.dot, "+tls", "-b", "127.0.0.2", "y.example")
        assert wait_closed(s, 15), "a TLS client that reads nothing was kept"
    finally:
        s.close()
        sender.join(10)
    until(enc.d, lambda: enc.li.tcp_stalled == 1 and not enc.li.tcp_conns)


def _quiet(fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(OSError, ValueError):   # cut off by the daemon, or closed by us
        fn(*args)


# --- DoH: the real clients ---------------------------------------------------------------------

def test_kdig_https_post_and_get(enc: Enc) -> None:
    post = kdig(enc, enc.doh, "+https", "post.example")
    get = kdig(enc, enc.doh, "+https-get", "get.example")
    for out, method in ((post, "POST"), (get, "GET")):
        assert f"HTTP/2-{method}" in out and "status: NOERROR" in out, out
        assert "192.0.2.1" in out
    assert enc.transport_count("doh") == 2


@pytest.mark.parametrize("version", ["--http2", "--http1.1"])
def test_curl_get_and_post_with_cache_control_from_the_ttl(enc: Enc, version: str) -> None:
    get = f"dns={b64(query_wire('g.example'))}"
    status, http, headers, body = enc.curl("--get", "--data", get, enc.url(), version=version)
    assert (status, http) == (200, "2" if version == "--http2" else "1.1")
    assert headers["content-type"] == "application/dns-message"
    assert headers["cache-control"] == f"max-age={TTL}"
    assert dns.message.from_wire(body).answer[0][0].address == "192.0.2.1"
    (enc.folder / "q").write_bytes(query_wire("nx.test"))
    status, _, headers, body = enc.curl("--data-binary", f"@{enc.folder / 'q'}", "-H",
                                        "content-type: application/dns-message", enc.url(),
                                        version=version)
    assert status == 200 and dns.message.from_wire(body).rcode() == dns.rcode.NXDOMAIN
    assert headers["cache-control"] == "max-age=60"      # the SOA's negative TTL


def test_the_client_is_the_tls_peer_address_for_the_access_list(
        make_enc: Callable[..., Enc]) -> None:
    enc = make_enc(raw={"access": {"allow": ["127.0.0.2/32"]}})
    get = f"dns={b64(query_wire('acl.example'))}"
    inside = enc.curl("--interface", "127.0.0.2", "--get", "--data", get, enc.url())
    outside = enc.curl("--interface", "127.0.0.3", "--get", "--data", get, enc.url())
    assert dns.message.from_wire(inside[3]).rcode() == dns.rcode.NOERROR
    assert dns.message.from_wire(outside[3]).rcode() == dns.rcode.REFUSED
    assert outside[2]["cache-control"] == "max-age=0"
    assert "status: REFUSED" in kdig(enc, enc.dot, "+tls", "-b", "127.0.0.3", "acl.example")
    assert "192.0.2.1" in kdig(enc, enc.dot, "+tls", "-b", "127.0.0.2", "acl.example")


def test_servfail_is_not_cacheable(make_enc: Callable[..., Enc]) -> None:
    enc = make_enc()
    enc.up.mode = "servfail"
    status, _, headers, body = enc.curl(enc.url(f"?dns={b64(query_wire('sf.example'))}"))
    assert status == 200 and dns.message.from_wire(body).rcode() == dns.rcode.SERVFAIL
    assert headers["cache-control"] == "max-age=0"


def test_answer_larger_than_an_http2_frame(enc: Enc) -> None:
    status, _, _, body = enc.curl(enc.url(f"?dns={b64(query_wire(BIG, 'TXT'))}"))
    assert status == 200 and len(body) > 16384 * 1.5
    assert len(dns.message.from_wire(body).answer[0]) == 120


MALFORMED = [
    ("no dns param", ["--get", "--data", "ct=1"], 400),
    ("not base64url", ["--get", "--data", "dns=%21%21%21%21"], 400),
    ("a response, not a query", ["--get", "--data", "dns=" + b64(
        dns.message.make_response(dns.message.make_query("r.example", "A")).to_wire())], 400),
    ("a runt", ["--get", "--data", "dns=" + b64(b"\x00\x01\x02")], 400),
    ("over-long GET", ["--get", "--data", "dns=" + "A" * 15600], 413),
    ("wrong content type", ["--data-binary", "x" * 40, "-H", "content-type: text/plain"], 415),
    ("body over 65535", ["--data-binary", "@BIGFILE", "-H",
                         "content-type: application/dns-message"], 413),
    ("empty body", ["--data-binary", "", "-H", "content-type: application/dns-message"], 400),
    ("method", ["-X", "PUT", "--data-binary", "x", "-H",
                "content-type: application/dns-message"], 405),
]


@pytest.mark.parametrize("version", ["--http2", "--http1.1"])
def test_malformed_requests_get_the_right_4xx(enc: Enc, version: str) -> None:
    big = enc.folder / "big.bin"
    big.write_bytes(b"\0" * 70_000)
    for what, args, want in MALFORMED:
        args = [f"@{big}" if a == "@BIGFILE" else a for a in args]
        status, _, headers, _ = enc.curl(*args, enc.url(), version=version)
        assert status == want, what
        assert headers["cache-control"] == "max-age=0", what
        if want == 405:
            assert headers["allow"] == "GET, POST"
    status, *_ = enc.curl(f"https://{NAME}:{enc.doh}/resolve?dns=AAAA", version=version)
    assert status == 404
    assert enc.li.doh_errors[413] == 2 and enc.li.doh_errors[404] == 1
    # and the listener still answers
    assert enc.curl(enc.url(f"?dns={b64(query_wire('ok.example'))}"), version=version)[0] == 200


# --- DoH: HTTP/2 framing (a real h2 client for what curl never sends) --------------------------

class H2Client:
    """A minimal HTTP/2 client over a verified TLS socket (ALPN h2)."""

    def __init__(self, enc: Enc, window: int = 65535) -> None:
        ctx = enc.ca.client_context()
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(socket.create_connection((LOOP, enc.doh), timeout=10),
                                    server_hostname=NAME)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.flush()
        self.bodies: dict[int, bytearray] = {}
        self.status: dict[int, int] = {}
        self.ended: set[int] = set()
        self.settings: dict[int, int] = {}
        self.window = window

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def get(self, wire: bytes, end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                     (":authority", NAME),
                                     (":path", f"/dns-query?dns={b64(wire)}")], end_stream=end)
        return sid

    def post(self, wire: bytes) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"),
                                     (":authority", NAME), (":path", "/dns-query"),
                                     ("content-type", "application/dns-message"),
                                     ("content-length", str(len(wire)))])
        view = memoryview(wire)
        while view:      # in frames, waiting for the server's WINDOW_UPDATEs as a client must
            n = min(len(view), self.conn.max_outbound_frame_size)
            self.pump(lambda n=n: self.conn.local_flow_control_window(sid) >= n)
            self.conn.send_data(sid, view[:n].tobytes(), end_stream=n == len(view))
            view = view[n:]
            self.flush()
        return sid

    def pump(self, until: Callable[[], bool], ack: bool = True) -> None:
        """Read and handle frames until `until()`; a server that stays silent fails the test
        (the socket's 10 s timeout)."""
        while not until():
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.status[ev.stream_id] = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    self.bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                    assert ev.flow_controlled_length <= self.window
                    if ack:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                            ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.add(ev.stream_id)
                elif isinstance(ev, h2.events.RemoteSettingsChanged):
                    self.settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
            self.flush()

    def close(self) -> None:
        self.sock.close()


def test_answer_held_back_by_a_tiny_flow_control_window_arrives_whole(enc: Enc) -> None:
    c = H2Client(enc, window=100)       # the 700-byte answer needs 7+ window updates
    try:
        enc.up.mode = "big"
        sid = c.get(query_wire("window.example"))
        c.flush()
        c.pump(lambda: sid in c.ended)
        assert c.status[sid] == 200
        assert len(dns.message.from_wire(bytes(c.bodies[sid])).answer[0]) == 40
    finally:
        c.close()


def test_request_bodies_past_the_connection_window_keep_flowing(enc: Enc) -> None:
    """The daemon hands the client's window back as it reads: five 20 KB queries (EDNS
    padding, RFC 7830) are more than HTTP/2's initial 64 KiB connection window."""
    c = H2Client(enc)
    try:
        answered = []
        for i in range(5):
            q = dns.message.make_query(f"pad{i}.example", "A", use_edns=0, pad=20000)
            sid = c.post(q.to_wire(max_size=65535))
            c.flush()
            c.pump(lambda sid=sid: sid in c.ended)
            answered.append(c.status[sid])
        assert answered == [200] * 5
    finally:
        c.close()


def test_streams_reset_at_once_cost_no_upstream_work(make_enc: Callable[..., Enc]) -> None:
    """The "rapid reset" attack: open a stream, reset it, repeat. A stream reset in the same
    read as its request is never resolved; any other holds one of `tcp_max_queries_in_flight`
    slots, and with all of them busy the daemon stops reading the connection."""
    inflight = 4
    enc = make_enc(tcp_max_queries_in_flight=inflight)
    c = H2Client(enc)
    try:
        c.pump(lambda: h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in c.settings)
        assert c.settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == inflight
        for i in range(500):
            sid = c.get(query_wire(f"reset{i}.example"))
            c.conn.reset_stream(sid)
            if i % 50 == 49:
                c.flush()
        sid = c.get(query_wire("after.example"))     # the same connection still answers
        c.flush()
        c.pump(lambda: sid in c.ended)
        assert c.status[sid] == 200
        assert dns.message.from_wire(bytes(c.bodies[sid])).answer
    finally:
        c.close()
    names = {str(q.question[0].name).lower() for _, q, _ in enc.up.queries}
    assert len(names - {"after.example."}) <= inflight
    assert len(enc.li.tasks) <= inflight


# --- the certificate ---------------------------------------------------------------------------

def s_client(enc: Enc, port: int, alpn: str, ca: str) -> str:
    p = run([tool("openssl"), "s_client", "-connect", f"{LOOP}:{port}", "-servername", NAME,
             "-verify_hostname", NAME, "-CAfile", ca, "-verify_return_error", "-alpn", alpn])
    return p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


@pytest.mark.parametrize("kind,alpn", [("dot", "dot"), ("doh", "h2"), ("doh", "http/1.1")])
def test_openssl_verifies_the_chain_and_alpn(enc: Enc, kind: str, alpn: str) -> None:
    out = s_client(enc, enc.dot if kind == "dot" else enc.doh, alpn, enc.ca.ca_pem_path)
    assert "Verify return code: 0 (ok)" in out, out
    assert f"ALPN protocol: {alpn}" in out
    other = TestCA()
    try:
        assert "Verify return code: 0 (ok)" not in s_client(enc, enc.dot, "dot",
                                                             other.ca_pem_path)
    finally:
        other.close()


def peer_der(enc: Enc, ctx: ssl.SSLContext, port: int) -> bytes:
    with socket.create_connection((LOOP, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=NAME) as s:
        return s.getpeercert(binary_form=True)


def test_reload_swaps_the_certificate_for_new_connections_and_a_bad_pair_keeps_it(
        enc: Enc) -> None:
    ca2 = TestCA()
    trust_both = enc.ca.client_context()
    trust_both.load_verify_locations(ca2.ca_pem_path)
    old = socket.create_connection((LOOP, enc.dot), timeout=10)
    old = trust_both.wrap_socket(old, server_hostname=NAME)
    try:
        assert old.getpeercert(binary_form=True) == enc.der
        cert2, key2, der2 = issue(ca2, enc.folder, "2")
        Path(enc.certs.cert_file).write_bytes(cert2.read_bytes())
        Path(enc.certs.key_file).write_bytes(key2.read_bytes())
        assert enc.d.call(_async(enc.certs.reload))            # what SIGHUP will call
        for port in (enc.dot, enc.doh):
            assert peer_der(enc, trust_both, port) == der2      # new connections: new cert
        assert "Verify return code: 0 (ok)" in s_client(enc, enc.doh, "h2", ca2.ca_pem_path)
        wire = query_wire("still.example")                     # the open one keeps going
        old.sendall(struct.pack("!H", len(wire)) + wire)
        assert dns.message.from_wire(tcp_recv(old)).answer

        # a bad pair (the key of another certificate) keeps the current one
        _c3, key3, _ = issue(ca2, enc.folder, "3")
        Path(enc.certs.key_file).write_bytes(key3.read_bytes())
        assert not enc.d.call(_async(enc.certs.reload))
        assert enc.certs.failures == 1
        assert peer_der(enc, trust_both, enc.dot) == der2
        assert "192.0.2.1" in kdig_ca(enc, ca2, "after.example")
        # a file watch retries only once a file changes again
        assert not enc.certs.reload_if_changed()
        Path(enc.certs.key_file).write_bytes(key2.read_bytes())
        assert enc.d.call(_async(enc.certs.reload_if_changed))
        assert enc.certs.failures == 1
    finally:
        old.close()
        ca2.close()


def kdig_ca(enc: Enc, ca: TestCA, name: str) -> str:
    p = run([tool("kdig"), f"@{LOOP}", "-p", str(enc.dot), "+tls", f"+tls-ca={ca.ca_pem_path}",
             f"+tls-hostname={NAME}", "+timeout=5", "+retry=0", name])
    return p.stdout.decode()


async def _async(fn: Callable[[], Any]) -> Any:
    """Run `fn` on the daemon's loop, where SIGHUP's reload runs."""
    return fn()


def test_first_load_of_a_bad_pair_is_a_startup_error(tmp_path: Path) -> None:
    with TestCA() as ca:
        cert, _key, _ = issue(ca, tmp_path)
        _c2, other_key, _ = issue(ca, tmp_path, "2")
        with pytest.raises(StartupError, match="tls"):
            CertStore(str(cert), str(other_key))
        with pytest.raises(StartupError):
            CertStore(str(tmp_path / "missing.pem"), str(other_key))
        store = CertStore(str(cert), str(_key))
        assert store.name == NAME and store.expires > 0     # the leaf's first DNS name
        assert CertStore(str(cert), str(_key), name="resolver.lan").name == "resolver.lan"


# --- DDR ---------------------------------------------------------------------------------------

def ddr(rdtype: str = "SVCB", **kw: Any) -> Any:
    return parse_query(dns.message.make_query("_dns.resolver.arpa", rdtype, **kw).to_wire())


ENDPOINTS = ddr_endpoints(NAME, [HostPort("10.0.0.2", 853)],
                          [HostPort("10.0.0.2", 443), HostPort("fd00::2", 443)])


def test_ddr_svcb_records_name_our_endpoints() -> None:
    m = dns.message.from_wire(ddr_answer(ddr(use_edns=0), ENDPOINTS))
    assert m.rcode() == dns.rcode.NOERROR and m.question[0].rdtype == dns.rdatatype.SVCB
    assert m.edns == 0 and m.payload == 1232
    rrs = sorted(m.answer[0], key=lambda r: r.priority)
    assert [r.priority for r in rrs] == [1, 2]
    keys = dns.rdtypes.svcbbase.ParamKey
    dot, doh = rrs
    assert dot.target.to_text() == f"{NAME}." and doh.target.to_text() == f"{NAME}."
    assert dot.params[keys.ALPN].ids == (b"dot",) and dot.params[keys.PORT].port == 853
    assert dot.params[keys.IPV4HINT].addresses == ("10.0.0.2",)
    assert keys.DOHPATH not in dot.params
    assert doh.params[keys.ALPN].ids == (b"h2",) and doh.params[keys.PORT].port == 443
    assert doh.params[keys.DOHPATH].value == b"/dns-query{?dns}" == DOH_PATH.encode()
    assert doh.params[keys.IPV6HINT].addresses == ("fd00::2",)
    assert m.answer[0].ttl == 300


def test_ddr_other_types_are_nodata_and_big_sets_truncate() -> None:
    m = dns.message.from_wire(ddr_answer(ddr("A"), ENDPOINTS))
    assert m.rcode() == dns.rcode.NOERROR and not m.answer
    assert m.authority[0].rdtype == dns.rdatatype.SOA and m.edns == -1
    many = tuple(Endpoint(("h2",), 8000 + i, "a-rather-long-name.resolver.example.lan",
                          DOH_PATH) for i in range(10))
    q = ddr()
    assert dns.message.from_wire(ddr_answer(q, many)).flags & dns.flags.TC == 0   # TCP size
    t = dns.message.from_wire(ddr_answer(q, many, limit=512))
    assert t.flags & dns.flags.TC and not t.answer


def test_ddr_endpoints_from_wildcard_listeners_need_given_hints() -> None:
    eps = ddr_endpoints(NAME, [HostPort("0.0.0.0", 853), HostPort("::", 853)], [])
    assert len(eps) == 1 and eps[0].ipv4hint == () and eps[0].ipv6hint == ()
    eps = ddr_endpoints(NAME, [HostPort("0.0.0.0", 853)], [], hints=["192.168.1.2"])
    assert eps[0].ipv4hint == ("192.168.1.2",)
