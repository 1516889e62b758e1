"""The servers under test, each started fresh with the same list and the same upstream.

- sinkhole: run as a user runs it (`python -m sinkhole.cli run -c FILE`), metrics, access
  control, rate limiting (loopback exempt, feature on) and the hit log on; storage and alerts
  too when this version's `check-config` accepts them (see `sinkhole_features`).
- dnsmasq: `address=/name/` per listed name (NXDOMAIN for it and its subdomains).
- unbound: one thread, `local-zone: "name." always_nxdomain` per listed name.
Every server listens on 127.0.0.1 only, and forwards to the local responder only.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import measure

READY_NAME = "ready.bench-probe.example"
TARGETS = ("sinkhole", "dnsmasq", "unbound")


@dataclass
class Server:
    """A running target: its process, where it listens, where its stderr goes."""

    name: str
    proc: subprocess.Popen
    port: int
    log_path: Path
    started: float
    ready_at: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def read_names(path: Path) -> list[str]:
    with open(path, encoding="ascii") as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]


class WebhookReceiver:
    """A local alert sink that answers 200 to every POST and counts them (127.0.0.1 only)."""

    def __init__(self) -> None:
        receiver = self
        self.posts = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((measure.SERVER, 0), Handler)
        self.url = f"http://{measure.SERVER}:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sinkhole_config(port: int, http_port: int, upstream: int, list_path: Path, workdir: Path,
                    features: dict[str, bool], webhook: str | None, level: str,
                    ratelimit: bool = True, history: bool = True) -> str:
    """`features` are the optional sections this version accepts (see sinkhole_features). The
    store is always pointed into `workdir`: it is on whether configured or not, and its
    default path is outside the benchmark's folder."""
    lines = [
        f'listen: {{dns: ["{measure.SERVER}:{port}"], http: "{measure.SERVER}:{http_port}"}}',
        f'upstreams: ["udp://{measure.SERVER}:{upstream}"]',
        "upstream_timeout: 2s",
        "cache: {max_entries: 100000}",
        f"log: {{level: {level}, format: json}}",
        f"blocklists: [{{name: bench, path: {list_path}, category: c2, severity: critical, "
        "action: nxdomain}]",
        "reload: {watch: false}",
        f"ratelimit: {{enabled: {'true' if ratelimit else 'false'}}}",
    ]
    if features.get("storage"):
        # its own folder: the daemon gives the store's folder to the user it drops to
        lines.append(f"storage: {{path: {workdir / 'state' / 'sinkhole.db'}}}")
    if features.get("history") and not history:
        lines.append("history: {retention: 0}")   # passive-DNS recording of every query off
    if features.get("alerts") and webhook:
        lines.append(f"alerts: {{sinks: [{{type: webhook, url: '{webhook}'}}]}}")
    return "\n".join(lines) + "\n"


def sinkhole_features(workdir: Path, list_path: Path) -> dict[str, bool]:
    """Which of storage / alerts / history this sinkhole's check-config accepts (each probed
    alone; history is probed with `retention: 0`, the only value the bench writes)."""
    found = {}
    for feature in ("storage", "alerts", "history"):
        cfg = workdir / f"probe-{feature}.yaml"
        cfg.write_text(sinkhole_config(53530, 53531, 53532, list_path, workdir,
                                       {feature: True}, "http://127.0.0.1:9/hook", "warning",
                                       history=False))
        rc = subprocess.run([sys.executable, "-m", "sinkhole.cli", "check-config", "-c",
                             str(cfg)], capture_output=True, timeout=60, check=False).returncode
        found[feature] = rc == 0
    return found


def _spawn(name: str, cmd: list[str], port: int, workdir: Path) -> Server:
    log_path = workdir / f"{name}.stderr"
    with open(log_path, "wb") as err:   # a file, as journald takes it: never a blocking pipe
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, cwd=workdir)
    return Server(name, proc, port, log_path, time.monotonic())


def start_sinkhole(workdir: Path, upstream: int, list_path: Path, features: dict[str, bool],
                   webhook: str | None, level: str = "warning", ratelimit: bool = True,
                   history: bool = True, wrapper: tuple[str, ...] = ()) -> Server:
    """As a user runs it; `wrapper` (diagnostics only) runs it through bench/gcstats.py."""
    port, http_port = measure.free_port(), measure.free_port()
    cfg = workdir / "sinkhole.yaml"
    cfg.write_text(sinkhole_config(port, http_port, upstream, list_path, workdir, features,
                                   webhook, level, ratelimit, history))
    entry = list(wrapper) if wrapper else ["-m", "sinkhole.cli"]
    server = _spawn("sinkhole", [sys.executable, *entry, "run", "-c", str(cfg)], port, workdir)
    server.extra["http_port"] = http_port
    return server


def start_dnsmasq(workdir: Path, upstream: int, names: list[str]) -> Server:
    port = measure.free_port()
    conf = workdir / "dnsmasq.conf"
    with open(conf, "w", encoding="ascii") as f:
        f.write(f"port={port}\nlisten-address={measure.SERVER}\nbind-interfaces\n"
                f"no-resolv\nno-hosts\nserver={measure.SERVER}#{upstream}\n"
                "dns-forward-max=1000\ncache-size=10000\n")
        f.writelines(f"address=/{n}/\n" for n in names)
    cmd = ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--pid-file=",
           "--user=root", "--log-facility=-"]
    return _spawn("dnsmasq", cmd, port, workdir)


def start_unbound(workdir: Path, upstream: int, names: list[str]) -> Server:
    port = measure.free_port()
    conf = workdir / "unbound.conf"
    with open(conf, "w", encoding="ascii") as f:
        f.write(f"""server:
  interface: {measure.SERVER}@{port}
  port: {port}
  num-threads: 1
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{workdir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
""")
        f.writelines(f'  local-zone: "{n}." always_nxdomain\n' for n in names)
        f.write(f"""remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: {measure.SERVER}@{upstream}
""")
    return _spawn("unbound", ["unbound", "-d", "-c", str(conf)], port, workdir)


def wait_ready(server: Server, timeout: float = 120.0) -> Server:
    try:
        server.ready_at = measure.wait_answer(server.port, READY_NAME, 0,
                                              time.monotonic() + timeout, server.alive)
    except (RuntimeError, TimeoutError) as err:
        server.stop()
        tail = server.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{server.name} did not start: {err}\n{tail}") from err
    return server


def log_lines(path: Path) -> int:
    """Lines in a stderr log, read in blocks (the hit log of a blocked run is large)."""
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return n


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def reload_events(path: Path) -> list[dict[str, object]]:
    """sinkhole's `list_reload` log events (info level), in order."""
    events = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"list_reload"' in line:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    return events


def json_event(path: Path, event: str) -> dict[str, object] | None:
    """The last JSON log line of `event` in a stderr log (e.g. gcstats.py's gc_stats)."""
    found = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if f'"{event}"' in line:
                try:
                    found = json.loads(line)
                except ValueError:
                    continue
    return found


# Metric families worth keeping with a run: is the store keeping up, were alerts sent.
SCRAPED = ("sinkhole_store_", "sinkhole_alert", "sinkhole_blocked_queries_total",
           "sinkhole_cache_entries")


def scrape_metrics(http_port: int) -> dict[str, float] | None:
    """A few samples from sinkhole's /metrics (127.0.0.1), summed over their labels."""
    url = f"http://{measure.SERVER}:{http_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(SCRAPED) and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name.endswith("_created"):   # counters' creation timestamps, not counts
                continue
            try:
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return out
