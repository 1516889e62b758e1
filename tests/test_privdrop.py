"""Started as root: what the daemon gives the unprivileged user, and what it checks first.

Every test runs the real `sinkhole run` as a root child process, as an admin would, and looks
at the file system and at DNS from outside. Run as root, the daemon must change the owner of
nothing but what it created itself, and must refuse to start when the user it drops to could
not read a file it re-reads later (a reload would fail hours afterwards).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from sinkhole import privdrop
from tests.conftest import ROOT, sinkhole_cmd, subprocess_env
from tests.peers.dnsserver import FakeUpstream
from tests.test_process import Proc, config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests start the daemon as root")

TOKEN = "0123456789abcdef0123456789abcdef\n"


@pytest.fixture(scope="module")
def target() -> privdrop.Target:
    """Whom the daemon drops to here: 'sinkhole' if that user exists, else 'nobody'."""
    return privdrop.resolve_target()


@pytest.fixture
def upstream() -> Any:
    with FakeUpstream() as up:
        yield up


def ident(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def run_refused(cfg: Path) -> subprocess.CompletedProcess[str]:
    """`sinkhole run` that must exit by itself (a daemon that starts is killed at the timeout)."""
    return subprocess.run([*sinkhole_cmd(), "run", "-c", str(cfg)], capture_output=True,
                          text=True, timeout=20, env=subprocess_env(), check=False)


def started(cfg: Path) -> Proc:
    proc = Proc(cfg)
    proc.wait_event("privileges_dropped")    # hand-over and drop are done
    # An answer means the loop runs again after serve() set its signal handlers.
    answer(proc, "ready.test")
    return proc


def answer(proc: Proc, name: str) -> int:
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=proc.port,
                          timeout=5)
    return reply.rcode()


def stop(proc: Proc) -> list[str]:
    proc.p.send_signal(signal.SIGTERM)
    code, lines = proc.finish()
    assert code == 0, lines
    return lines


def blocked(proc: Proc, name: str = "evil.test") -> bool:
    return answer(proc, name) == dns.rcode.NXDOMAIN


def test_root_gives_away_only_the_database_files(service_dir: Path, upstream: FakeUpstream,
                                                 target: privdrop.Target) -> None:
    # The database next to the config and a root-only token, as in /etc/sinkhole: the folder
    # and its other files must stay root's.
    token = service_dir / "api-token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    (service_dir / "notes.txt").write_text("not the daemon's\n")
    (service_dir / "c2.txt").write_text("evil.test\n")
    db = service_dir / "sinkhole.db"
    cfg = config(service_dir, upstream, storage={"path": str(db), "commit_interval": "100ms"},
                 blocklists=[{"name": "c2", "path": "c2.txt"}])
    bystanders = [service_dir, token, service_dir / "notes.txt", service_dir / "c2.txt", cfg]
    before = {p: ident(p) for p in bystanders}
    proc = started(cfg)
    assert {p: ident(p) for p in bystanders} == before
    for name in ("sinkhole.db", "sinkhole.db-wal", "sinkhole.db-shm"):
        assert ident(service_dir / name)[:2] == (target.uid, target.gid), name
    assert blocked(proc)
    stop(proc)                                  # flushes the hit to the store
    res = subprocess.run([*sinkhole_cmd(), "hits", "--json", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60, env=subprocess_env(),
                         check=False)
    assert res.returncode == 0, res.stderr
    assert [h["qname"] for h in json.loads(res.stdout)] == ["evil.test"]
    assert {p: ident(p) for p in bystanders} == before


def test_folders_the_daemon_creates_are_the_users(service_dir: Path, upstream: FakeUpstream,
                                                  target: privdrop.Target) -> None:
    state = service_dir / "state"
    db = state / "deeper" / "s.db"
    cfg = config(service_dir, upstream, storage={"path": str(db)})
    parent = ident(service_dir)
    for _ in range(2):         # the second start finds them the user's and starts as well
        stop(started(cfg))
        for folder in (state, state / "deeper"):
            assert ident(folder) == (target.uid, target.gid, 0o700), folder
        assert ident(db) == (target.uid, target.gid, 0o600)
    assert ident(service_dir) == parent


def _lists(d: Path) -> dict[str, Any]:
    (d / "lists").mkdir()
    (d / "lists" / "a.txt").write_text("fine.test\n")
    (d / "lists" / "b.txt").write_text("secret.test\n")
    return {"blocklists": [{"name": "base", "path": "base.txt"},
                           {"name": "folder", "path": "lists"}]}


# (case, what to add to the config, the file that only root can read)
UNREADABLE = [
    ("blocklist", lambda d: {"blocklists": [{"name": "base", "path": "base.txt"},
                                            {"name": "c2", "path": "c2.txt"}]}, "c2.txt"),
    ("file in a list folder", _lists, "lists/b.txt"),
    ("allowlist", lambda d: {"allowlists": [{"path": str(d / "allow.txt")}]}, "allow.txt"),
    ("lease file", lambda d: {"clients": {"leases": [str(d / "dnsmasq.leases")]}},
     "dnsmasq.leases"),
    ("token file", lambda d: {"api": {"token_file": str(d / "token")}}, "token"),
    ("webhook secret", lambda d: {"alerts": {"sinks": [{
        "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret_file": str(d / "key")}]}},
     "key"),
]


@pytest.mark.parametrize(("extra", "unreadable"), [c[1:] for c in UNREADABLE],
                         ids=[c[0] for c in UNREADABLE])
def test_a_file_only_root_can_read_refuses_the_start(service_dir: Path, upstream: FakeUpstream,
                                                     target: privdrop.Target, extra: Any,
                                                     unreadable: str) -> None:
    (service_dir / "base.txt").write_text("evil.test\n")
    raw = {"blocklists": [{"name": "base", "path": "base.txt"}], **extra(service_dir)}
    path = service_dir / unreadable
    if not path.exists():
        path.write_text(TOKEN)
    path.chmod(0o600)
    cfg = config(service_dir, upstream, **raw)
    res = run_refused(cfg)
    assert res.returncode == 2, res.stderr
    assert str(path) in res.stderr and f"user {target.user!r}" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (service_dir / "state").exists()   # refused before creating anything
    path.chmod(0o644)                             # what the message suggests: let it read
    proc = started(cfg)
    assert blocked(proc)
    stop(proc)


def test_a_database_root_owns_is_not_taken_over(service_dir: Path, upstream: FakeUpstream,
                                                target: privdrop.Target) -> None:
    db = service_dir / "state" / "sinkhole.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    cfg = config(service_dir, upstream)
    res = run_refused(cfg)
    assert res.returncode == 2, res.stderr
    assert str(db) in res.stderr and f"chown {target.user}:" in res.stderr, res.stderr
    assert ident(db)[:2] == (0, 0) and ident(db.parent)[:2] == (0, 0)
    os.chown(db, target.uid, target.gid)         # the fix the message names
    stop(started(cfg))


def test_a_linked_database_is_refused(service_dir: Path, upstream: FakeUpstream) -> None:
    real = service_dir / "elsewhere.db"
    real.write_text("root's own file\n")
    db = service_dir / "state" / "sinkhole.db"
    db.parent.mkdir()
    db.symlink_to(real)
    res = run_refused(config(service_dir, upstream))
    assert res.returncode == 2, res.stderr
    assert f"{db} is a symbolic link" in res.stderr, res.stderr
    assert ident(real)[:2] == (0, 0) and real.read_text() == "root's own file\n"


def test_under_systemd_nothing_is_dropped_or_chowned(service_dir: Path, upstream: FakeUpstream,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")   # the unit chose the identity
    (service_dir / "c2.txt").write_text("evil.test\n")
    (service_dir / "c2.txt").chmod(0o600)                     # fine: we stay who we are
    cfg = config(service_dir, upstream, blocklists=[{"name": "c2", "path": "c2.txt"}])
    proc = Proc(cfg)
    assert blocked(proc)         # also: serve() has set its signal handlers
    lines = stop(proc)
    assert not [x for x in lines if "privileges_dropped" in x]
    assert ident(service_dir / "state")[:2] == (0, 0)
    assert ident(service_dir / "state" / "sinkhole.db")[:2] == (0, 0)


# `sinkhole run -c FILE` hands serve() the path once the CLI passes it; until then, the check
# is exercised through serve() itself, the entry point the CLI calls.
SERVE_SCRIPT = """
import asyncio, sys
from sinkhole.config import load_config
from sinkhole.daemon import serve
from sinkhole.errors import StartupError

async def at_once():
    return None

path = sys.argv[1]
try:
    asyncio.run(serve(load_config(path), config_path=path, shutdown_trigger=at_once))
except StartupError as err:
    print(err, file=sys.stderr)
    sys.exit(2)
"""


def test_a_config_file_only_root_can_read_refuses_the_start(
        service_dir: Path, upstream: FakeUpstream, target: privdrop.Target) -> None:
    cfg = config(service_dir, upstream)
    cfg.chmod(0o600)

    def serve() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(cfg)], cwd=ROOT,
                              capture_output=True, text=True, timeout=30,
                              env=subprocess_env(), check=False)
    res = serve()
    assert res.returncode == 2, res.stderr
    assert f"{cfg} (the config file" in res.stderr and repr(target.user) in res.stderr
    cfg.chmod(0o644)
    res = serve()
    assert res.returncode == 0, res.stderr
