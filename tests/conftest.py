"""Shared fixtures: the real daemon on loopback port 0, real upstream peers, real clients."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
import yaml
from prometheus_client import CollectorRegistry

from sinkhole.config import parse_config
from sinkhole.daemon import Daemon
from tests.peers.dnsserver import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent


class DaemonThread:
    """A daemon started through its own Daemon.start()/stop() in a thread with its own loop,
    so tests stay synchronous and query it with dnspython and dig like any client."""

    def __init__(self, raw: dict[str, Any], clock: Any = None) -> None:
        self.tmp = tempfile.mkdtemp(prefix="sinkhole-test-")
        storage = {"path": os.path.join(self.tmp, "sinkhole.db"), **raw.get("storage", {})}
        raw = {"listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"}, **raw,
               "storage": storage}
        self.config = parse_config(raw)
        self.registry = CollectorRegistry()
        self.loop = asyncio.new_event_loop()
        self.daemon = Daemon(self.config, registry=self.registry, clock=clock)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> DaemonThread:
        self._thread.start()
        self.call(self.daemon.start())
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the daemon's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_soon(self, coro: Any) -> Any:
        """Start a coroutine on the daemon's loop; returns a concurrent Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Stop the daemon (idempotent: a test may stop it early, the fixture again)."""
        if self.loop.is_closed():
            return
        try:
            self.call(self.daemon.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def port(self) -> int:
        return self.daemon.dns_bound[0].port

    @property
    def http(self) -> str:
        hp = self.daemon.http_bound
        return f"http://{hp.host}:{hp.port}"

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def query(self, name: str, rdtype: str = "A", *, tcp: bool = False, source: str = "127.0.0.1",
              timeout: float = 5, **kw: Any) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **kw)
        fn = dns.query.tcp if tcp else dns.query.udp
        return fn(q, "127.0.0.1", port=self.port, timeout=timeout, source=source)


class FakeClock:
    """The daemon's clocks, moved by the test: TTLs expire when the test says, not after a
    sleep. `monotonic()` drives the cache and rate limits; `time()` the timestamps."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.mono = start
        self.wall = time.time()

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def make_daemon() -> Iterator[Any]:
    started: list[DaemonThread] = []

    def make(raw: dict[str, Any] | None = None, clock: Any = None) -> DaemonThread:
        d = DaemonThread(raw or {}, clock)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        d.stop()


@pytest.fixture
def daemon(make_daemon: Any, upstream: FakeUpstream) -> DaemonThread:
    return make_daemon({"upstreams": [upstream.url()], "upstream_timeout": "1s"})


def dig(port: int, *args: str, timeout: float = 10) -> str:
    """Run the real `dig` against the daemon on loopback; returns its output."""
    exe = shutil.which("dig")
    if exe is None:
        pytest.fail("dig is not installed: the test command installs dnsutils")
    cmd = [exe, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=3", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False).stdout


def write_config(tmp_path: Path, raw: dict[str, Any]) -> Path:
    """A config file for a `sinkhole` child process; its database goes next to it."""
    storage = {"path": str(tmp_path / "state" / "sinkhole.db"), **raw.get("storage", {})}
    raw = {**raw, "storage": storage}
    path = tmp_path / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def service_dir() -> Iterator[Path]:
    """A folder an unprivileged user can read: the daemon run as root by a test drops to
    `nobody` after binding (as in production), and must still read its lists."""
    path = Path(tempfile.mkdtemp(prefix="sinkhole-svc-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def sinkhole_cmd() -> list[str]:
    return [sys.executable, "-m", "sinkhole.cli"]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    """A failed test must not leave a `sinkhole run` child behind (by PID, ours only)."""
    yield
    from tests.test_process import Proc
    for proc in Proc.live:
        if proc.p.poll() is None:
            proc.p.kill()
            proc.p.wait(10)
    Proc.live.clear()


def load_soak() -> Any:
    """bench/soak.py (a script, not a package): the daemon child, dnsperf runner and /proc
    readers that the fault and soak tests share with the benchmark."""
    import importlib.util
    name = "sinkhole_bench_soak"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "soak.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
