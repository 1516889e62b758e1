"""The reference servers the conformance tests run beside sinkhole: knotd (authoritative, our
zones) and unbound (the resolver we compare with), each a child process in a temp dir, on a
free loopback port, stopped by its own PID.

Why real servers: the question is "does a client see what it would see from a mainstream
resolver?", and only a mainstream resolver answers that. Knot serves the edge cases from zone
files (tests/conformance/zones/), so the authoritative truth is data, not code of ours.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

ZONES = Path(__file__).resolve().parent / "zones"
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def require(binary: str) -> str:
    """Path of `binary`. Missing: a skip on a developer box, a failure in CI (tests/run.sh
    installs knot and unbound there, so a missing one means the rig is broken)."""
    path = shutil.which(binary) or next(
        (p for d in _SBIN if os.access(p := os.path.join(d, binary), os.X_OK)), None)
    if path is None:
        msg = f"{binary} not found: install Debian packages knot and unbound (tests/run.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (a server binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port for UDP and TCP")


def ask(port: int, name: str, rdtype: str, *, tcp: bool = False, timeout: float = 2,
        **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=timeout)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout, ignore_trailing=True)


class Server:
    """A child process with a log file; `start()` returns once it answers a probe query."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, probe: tuple[str, str], timeout: float = 20) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.dir)
        self.wait(lambda: ask(self.port, *probe, timeout=0.5).rcode() != dns.rcode.REFUSED,
                  timeout, f"{self.name} answering {probe}")

    def wait(self, ok: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ok()` until it holds, the process dies, or the deadline passes."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.logtext()}")
            try:
                if ok():
                    return
            except (OSError, dns.exception.DNSException) as err:
                last = err
            time.sleep(0.05)   # poll interval of a deadline-bounded wait, not synchronisation
        raise RuntimeError(f"timed out waiting for {what} ({last}):\n{self.logtext()}")

    def logtext(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


class Knot(Server):
    """knotd serving the zone files in `zones` (name -> file under ZONES, or text).

    `signed` zones are signed by knotd at load (ECDSA P-256, one CSK, NSEC3 with no salt and
    no extra iterations per RFC 9276); keys live in the temp dir's KASP database. Every zone
    accepts dynamic updates from loopback, so a test can change data mid-run.
    """

    name = "knot"

    def __init__(self, workdir: Path, zones: dict[str, str | Path],
                 signed: Iterable[str] = ()) -> None:
        super().__init__(workdir)
        self.exe = require("knotd")
        self.zones = zones
        self.signed = set(signed)
        zdir = self.dir / "zones"
        zdir.mkdir(exist_ok=True)
        for origin, src in zones.items():
            text = src.read_text() if isinstance(src, Path) else src
            (zdir / f"{origin}zone").write_text(text)
        (self.dir / "run").mkdir(exist_ok=True)
        (self.dir / "db").mkdir(exist_ok=True)
        self.conf = self.dir / "knot.conf"
        self.conf.write_text(self._config(zdir))

    def _config(self, zdir: Path) -> str:
        zone_lines = []
        for origin in self.zones:
            zone_lines.append(f"  - domain: {origin}\n    file: {origin}zone\n    acl: update")
            if origin in self.signed:
                zone_lines.append("    dnssec-signing: on\n    dnssec-policy: quick")
        return f"""server:
    rundir: "{self.dir / 'run'}"
    listen: 127.0.0.1@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{self.dir / 'db'}"
log:
  - target: stderr
    any: info
acl:
  - id: update
    address: 127.0.0.0/8
    action: update
policy:
  - id: quick
    algorithm: ecdsap256sha256
    single-type-signing: on
    nsec3: on
    nsec3-iterations: 0
    nsec3-salt-length: 0
template:
  - id: default
    storage: "{zdir}"
    zonefile-sync: -1
    journal-content: none
zone:
{chr(10).join(zone_lines)}
"""

    def command(self) -> list[str]:
        return [self.exe, "-c", str(self.conf)]

    def start(self, probe: tuple[str, str] | None = None, timeout: float = 20) -> Knot:
        first = next(iter(self.zones))
        super().start(probe or (first, "SOA"), timeout)
        for origin in self.zones:   # a zone file knotd rejects is not served: fail here
            self.wait(lambda o=origin: ask(self.port, o, "SOA", tcp=True).rcode() == 0,
                      timeout, f"zone {origin} loaded")
        for origin in self.signed:   # signing happens after load: wait for the signatures
            self.wait(lambda o=origin: any(
                r.rdtype == dns.rdatatype.RRSIG
                for r in ask(self.port, o, "DNSKEY", want_dnssec=True, tcp=True).answer),
                timeout, f"{origin} signed")
        return self


class Unbound(Server):
    """unbound forwarding everything to `upstream` (knotd): a caching resolver in forward mode,
    one thread, no remote control, defaults otherwise (minimal-responses, harden-*, the
    validator module). Validates only under `anchors` (trust-anchor lines); none: no
    validation at all, every answer insecure."""

    name = "unbound"

    def __init__(self, workdir: Path, upstream: int, anchors: Iterable[str] = ()) -> None:
        super().__init__(workdir)
        self.exe = require("unbound")
        anchor_lines = "".join(f'    trust-anchor: "{a}"\n' for a in anchors)
        self.conf = self.dir / "unbound.conf"
        self.conf.write_text(f"""server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    num-threads: 1
    so-reuseport: no
    username: ""
    chroot: ""
    directory: "{self.dir}"
    pidfile: "{self.dir / 'unbound.pid'}"
    use-syslog: no
    logfile: ""
    verbosity: 1
    log-servfail: yes
    val-log-level: 2
    do-not-query-localhost: no
    # allow_snoop: answer RD=0 queries from the cache (plain allow REFUSES them)
    access-control: 127.0.0.0/8 allow_snoop
    val-permissive-mode: no
{anchor_lines}remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{upstream}
""")

    def command(self) -> list[str]:
        return [self.exe, "-d", "-c", str(self.conf)]

    def start(self, probe: tuple[str, str] = ("example.", "SOA"), timeout: float = 20) -> Unbound:
        # unbound-checkconf first: a config unbound rejects fails with its message, at once
        check = os.path.join(os.path.dirname(self.exe), "unbound-checkconf")
        if os.access(check, os.X_OK):
            res = subprocess.run([check, str(self.conf)], capture_output=True, text=True,
                                 check=False)
            if res.returncode:
                raise RuntimeError(f"unbound config rejected: {res.stdout}{res.stderr}")
        super().start(probe, timeout)
        return self

