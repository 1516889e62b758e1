"""The daemon as a process: `sinkhole run` logs, drains on SIGTERM and exits 0."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query

from tests.conftest import sinkhole_cmd, subprocess_env, write_config
from tests.peers.dnsserver import FakeUpstream


class Proc:
    """`sinkhole run` in a child process; reads its JSON log to learn the bound ports."""

    live: list[Proc] = []      # killed after each test by conftest, even when it failed

    def __init__(self, cfg: Path, *extra: str) -> None:
        self.p = subprocess.Popen([*sinkhole_cmd(), "run", "-c", str(cfg), *extra],
                                  stderr=subprocess.PIPE, text=True, env=subprocess_env())
        Proc.live.append(self)
        self.lines: list[str] = []
        self._seen = 0
        self._cond = threading.Condition()
        self._eof = False
        # Drain stderr all the time, as journald would: a pipe nobody reads fills up.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.started = self.wait_event("started")

    def _read(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_event(self, *events: str, timeout: float = 30) -> dict[str, Any]:
        """The next log record (after those already returned) whose event is in `events`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._seen < len(self.lines):
                    line = self.lines[self._seen]
                    self._seen += 1
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get("event") in events:
                        return rec
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    raise AssertionError(f"no {events!r} from the daemon: {''.join(self.lines)}")
                self._cond.wait(left)

    @property
    def port(self) -> int:
        return int(self.started["dns"][0].rsplit(":", 1)[1])

    def finish(self, timeout: float = 15) -> tuple[int, list[str]]:
        code = self.p.wait(timeout)
        self._reader.join(timeout)
        return code, list(self.lines)


def config(tmp_path: Path, up: FakeUpstream, **extra: Any) -> Path:
    raw = {"listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"}, "upstreams": [up.url()],
           "log": {"format": "json", "level": "info"}, **extra}
    return write_config(tmp_path, raw)


def test_sigterm_answers_in_flight_then_exits_0(service_dir: Path) -> None:
    with FakeUpstream(delay=0.8) as up:
        proc = Proc(config(service_dir, up))
        q = dns.message.make_query("inflight.test", "A")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(dns.query.udp, q, "127.0.0.1", timeout=5, port=proc.port)
            up.wait_queries(1)               # the query is now in flight upstream
            proc.p.send_signal(signal.SIGTERM)
            reply = fut.result()
        assert reply.answer, "the in-flight query was answered during the drain"
        code, lines = proc.finish()
        assert code == 0
        events = [json.loads(x).get("event") for x in lines if x.startswith("{")]
        assert events[-2:] == ["draining", "stopped"]


def test_no_log_line_per_query_at_info(service_dir: Path) -> None:
    with FakeUpstream() as up:
        proc = Proc(config(service_dir, up))
        for i in range(20):
            dns.query.udp(dns.message.make_query(f"q{i}.test", "A"), "127.0.0.1", timeout=5,
                          port=proc.port)
        proc.p.send_signal(signal.SIGINT)
        code, lines = proc.finish()
        assert code == 0
        # start-up, privilege drop (tests run as root), drain, stop: nothing per query
        assert len(lines) <= 6, lines
        assert not [x for x in lines if ".test" in x], lines


def test_port_in_use_is_a_runtime_failure(service_dir: Path) -> None:
    with FakeUpstream() as up:
        cfg = write_config(service_dir, {"listen": {"dns": [f"127.0.0.1:{up.port}"]},
                                      "upstreams": [up.url()]})
        res = subprocess.run([*sinkhole_cmd(), "run", "-c", str(cfg)], capture_output=True,
                             text=True, timeout=30, env=subprocess_env(), check=False)
        assert res.returncode == 1
        assert "cannot start" in res.stderr and "Traceback" not in res.stderr


def test_json_log_keeps_tracebacks(capsys) -> None:
    import logging

    from sinkhole.logsetup import setup_logging, stop_logging
    setup_logging("info", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("sinkhole.test").exception("it failed")
    stop_logging()
    logging.getLogger().handlers.clear()
    rec = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert rec["msg"] == "it failed" and "ValueError: boom" in rec["exc"]
