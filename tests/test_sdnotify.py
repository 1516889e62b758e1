"""sd_notify against a real AF_UNIX datagram socket standing in for systemd, and the privilege
drop in a real root subprocess that binds a low port first."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinkhole import privdrop, sdnotify

ROOT = Path(__file__).resolve().parent.parent
RECV_TIMEOUT = 5.0
SYSTEMD_VARS = ("NOTIFY_SOCKET", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID")


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from a process that is not under systemd, whatever runs the suite."""
    for var in SYSTEMD_VARS:
        monkeypatch.delenv(var, raising=False)


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(RECV_TIMEOUT)
    return sock


@pytest.fixture
def path_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's notify socket as a path; a short temp dir keeps it under sun_path's 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="sdn") as folder:
        address = os.path.join(folder, "notify")
        with _receiver(address) as sock:
            monkeypatch.setenv("NOTIFY_SOCKET", address)
            yield sock


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"sinkhole-test-{uuid.uuid4().hex}"
    with _receiver("\0" + name) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield sock


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


@pytest.mark.parametrize(("send", "expected"), [
    (sdnotify.ready, "READY=1"),
    (sdnotify.stopping, "STOPPING=1"),
    (lambda: sdnotify.notify("WATCHDOG=1"), "WATCHDOG=1"),
    (lambda: sdnotify.status("3 lists, 1204 names"), "STATUS=3 lists, 1204 names"),
    (lambda: sdnotify.ready("serving"), "READY=1\nSTATUS=serving"),
    (lambda: sdnotify.extend_timeout(2.5), "EXTEND_TIMEOUT_USEC=2500000"),
])
def test_datagrams_reach_a_path_socket(path_socket: socket.socket, send, expected: str) -> None:
    assert send() is True
    assert received(path_socket) == expected


def test_abstract_socket(abstract_socket: socket.socket) -> None:
    assert sdnotify.ready() is True
    assert received(abstract_socket) == "READY=1"
    assert sdnotify.stopping() is True
    assert received(abstract_socket) == "STOPPING=1"


def test_reloading_carries_the_monotonic_clock(path_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(path_socket).split("\n")
    assert first == "RELOADING=1"
    key, _, usec = second.partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(usec) <= after


def test_status_cannot_inject_assignments(path_socket: socket.socket) -> None:
    assert sdnotify.status("line one\nREADY=1")
    assert received(path_socket) == "STATUS=line one READY=1"


@pytest.mark.parametrize("value", [None, "", "relative/path", "@", "vsock:2:1234"])
def test_no_usable_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch,
                                           value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False


def test_unreachable_socket_returns_false(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.ready() is False


def test_unencodable_text_returns_false(path_socket: socket.socket) -> None:
    assert sdnotify.status("bad \udcff surrogate") is False


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    (None, None, None),
    ("30000000", None, 30.0),
    ("30000000", "self", 30.0),
    ("30000000", "other", None),      # meant for the process that spawned us
    ("500", None, 0.0005),
    ("0", None, None),
    ("-5", None, None),
    ("30s", None, None),
    ("30000000", "not-a-pid", None),
])
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None,
                           expected: float | None) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        own = os.getpid()
        monkeypatch.setenv("WATCHDOG_PID", {"self": str(own), "other": str(own + 1)}.get(pid, pid))
    assert sdnotify.watchdog_interval() == expected


async def _recv(sock: socket.socket, timeout: float) -> str | None:
    """One datagram within `timeout`, or None: waiting on the socket, never sleeping."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), timeout)
    except TimeoutError:
        return None
    return data.decode()


def test_watchdog_pings_only_while_healthy(path_socket: socket.socket,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # pings every 50 ms
    path_socket.setblocking(False)
    healthy = [True]

    async def scenario() -> None:
        task = asyncio.create_task(sdnotify.watchdog_loop(lambda: healthy[0]))
        try:
            assert await _recv(path_socket, RECV_TIMEOUT) == "WATCHDOG=1"
            assert await _recv(path_socket, RECV_TIMEOUT) == "WATCHDOG=1"
            healthy[0] = False
            # At most one ping was already on its way when the check turned unhealthy.
            while await _recv(path_socket, 0.3) is not None:
                pass
            healthy[0] = True
            assert await _recv(path_socket, RECV_TIMEOUT) == "WATCHDOG=1"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())


def test_watchdog_withheld_when_the_check_raises(path_socket: socket.socket) -> None:
    path_socket.setblocking(False)

    def broken() -> bool:
        raise RuntimeError("store unreachable")

    async def scenario() -> None:
        task = asyncio.create_task(sdnotify.watchdog_loop(broken, interval=0.05))
        try:
            assert await _recv(path_socket, 0.3) is None
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_watchdog_loop_returns_when_no_watchdog_is_set() -> None:
    asyncio.run(asyncio.wait_for(sdnotify.watchdog_loop(lambda: True), RECV_TIMEOUT))


# --- privilege drop --------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

# Runs as root in a child, so a bug can never leave the test process itself unprivileged.
# Everything is imported before the drop: the interpreter's files may be unreadable afterwards.
DROP_SCRIPT = r"""
import errno, json, os, socket, sys
from sinkhole import privdrop

def bind_low_port():
    for port in (853, 953, 1013, 1019, 1023):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", port))
            return sock
        except OSError as err:
            sock.close()
            if err.errno != errno.EADDRINUSE:
                raise
    raise SystemExit("no free low port")

def attempt(fn):
    try:
        fn()
    except PermissionError:
        return "denied"
    return "allowed"

bound = bind_low_port()
user = privdrop.drop_privileges("nobody")
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.sendto(b"still-bound", bound.getsockname())
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print(json.dumps({
    "user": user, "port": bound.getsockname()[1],
    "resuid": os.getresuid(), "resgid": os.getresgid(), "groups": os.getgroups(),
    "setuid0": attempt(lambda: os.setuid(0)), "seteuid0": attempt(lambda: os.seteuid(0)),
    "bind_low": attempt(lambda: other.bind(("127.0.0.1", bound.getsockname()[1] - 1))),
    "received": bound.recv(100).decode(),
    "again": privdrop.drop_privileges("nobody"),
}))
"""


def run_child(script: str, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", script, *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)


@needs_root
def test_root_binds_then_drops_for_good() -> None:
    # What root hands over before the drop (only what it created) is in tests/test_privdrop.py.
    res = run_child(DROP_SCRIPT)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["user"] == "nobody"
    assert out["port"] < 1024
    assert 0 not in out["resuid"] and 0 not in out["resgid"] and 0 not in out["groups"]
    assert out["setuid0"] == out["seteuid0"] == "denied"
    assert out["bind_low"] == "denied"          # no capability survived the drop
    assert out["received"] == "still-bound"     # the socket bound as root keeps serving
    assert out["again"] is None                 # not root any more: a no-op


@needs_root
@pytest.mark.parametrize("var", ["INVOCATION_ID", "NOTIFY_SOCKET"])
def test_under_systemd_nothing_is_dropped(var: str, tmp_path: Path) -> None:
    script = ("import os, sys\nfrom sinkhole import privdrop\nfrom sinkhole.config import "
              "parse_config\ncfg = parse_config({'storage': {'path': sys.argv[1]}})\n"
              "print(privdrop.RootStart.prepare(cfg, None), "
              "privdrop.drop_privileges('nobody'), os.geteuid())")
    res = run_child(script, str(tmp_path / "state" / "s.db"), env={var: "/run/systemd/notify"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["None", "None", "0"]
    assert not (tmp_path / "state").exists()    # nothing created, nothing chowned


@needs_root
def test_missing_user_is_a_clear_error() -> None:
    script = ("import os\nfrom sinkhole import privdrop\n"
              "try:\n    privdrop.drop_privileges('no-such-sinkhole-user')\n"
              "except privdrop.PrivilegeError as err:\n    print('error:', err, os.geteuid())\n")
    res = run_child(script)
    assert res.returncode == 0, res.stderr
    assert "'no-such-sinkhole-user' does not exist" in res.stdout
    assert res.stdout.split()[-1] == "0"   # refused before anything changed


def test_default_user_falls_back_to_nobody() -> None:
    target = privdrop.resolve_target()
    expected = "sinkhole" if _user_exists("sinkhole") else "nobody"
    assert target.user == expected and target.uid != 0 and target.gid != 0


@pytest.mark.parametrize(("user", "group", "message"), [
    ("no-such-sinkhole-user", None, "does not exist"),
    ("nobody", "no-such-sinkhole-group", "group 'no-such-sinkhole-group' does not exist"),
    ("root", None, "is root"),
    ("nobody", "root", "is root"),
])
def test_resolve_target_refuses(user: str, group: str | None, message: str) -> None:
    with pytest.raises(privdrop.PrivilegeError, match=message):
        privdrop.resolve_target(user, group)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
