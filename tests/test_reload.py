"""Reload: SIGHUP, the API, file changes, `update-lists` with a real git pull; a broken file
keeps the old policy; `sinkhole check` names the rule."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import dns.rcode

from tests.conftest import sinkhole_cmd, subprocess_env, write_config
from tests.peers.dnsserver import FakeUpstream
from tests.test_process import Proc


def is_blocked(d, name: str) -> bool:
    return d.query(name, "A").rcode() == dns.rcode.NXDOMAIN


def post(url: str) -> dict:
    req = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:
        return json.load(err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reload_via_api_reports_diff(make_daemon, upstream: FakeUpstream, tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text("one.test\ntwo.test\n")
    d = make_daemon({"upstreams": [upstream.url()], "reload": {"watch": False},
                     "blocklists": [{"name": "l", "path": str(lst)}]})
    assert not is_blocked(d, "three.test")
    lst.write_text("two.test\nthree.test\nfour.test\nbad line here\n")
    body = post(d.http + "/api/v1/reload")
    rep = body["lists"][0]
    assert body["ok"] and rep["entries"] == 3 and rep["added"] == 2 and rep["removed"] == 1
    assert rep["parse_errors"] == 1 and "l.txt:4" in rep["first_errors"][0]
    assert is_blocked(d, "three.test") and not is_blocked(d, "one.test")


def test_broken_file_keeps_last_good_version(make_daemon, upstream: FakeUpstream,
                                             tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text("keep.test\n")
    d = make_daemon({"upstreams": [upstream.url()], "reload": {"watch": False},
                     "blocklists": [{"name": "l", "path": str(lst)}]})
    lst.write_bytes(b"\x00\x01\x02binary\x00" * 100)
    body = post(d.http + "/api/v1/reload")
    assert not body["ok"] and "binary" in body["lists"][0]["error"]
    assert is_blocked(d, "keep.test")
    lst.unlink()
    body = post(d.http + "/api/v1/reload")
    assert not body["ok"] and is_blocked(d, "keep.test")
    assert d.metric("sinkhole_list_reload_errors_total", {"list": "l"}) == 2
    assert d.metric("sinkhole_list_entries", {"list": "l"}) == 1


def test_file_change_reloads_once_after_debounce(make_daemon, upstream: FakeUpstream,
                                                 tmp_path: Path) -> None:
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "a.txt").write_text("a.test\n")
    d = make_daemon({"upstreams": [upstream.url()],
                     "reload": {"watch": True, "poll_interval": "100ms", "debounce": "300ms"},
                     "blocklists": [{"name": "f", "path": str(folder)}]})
    gen = d.daemon.lists.generation
    for i in range(5):        # a git pull writing several files: one reload
        (folder / f"n{i}.txt").write_text(f"new{i}.test\n")
    d.call(d.daemon.lists.wait_generation(gen + 1), timeout=10)
    assert all(is_blocked(d, f"new{i}.test") for i in range(5))
    assert d.metric("sinkhole_list_reloads_total", {"reason": "file change"}) == 1


def answer_version(name: str, blocked: bool) -> str:
    """Which version of the rewritten list an answer belongs to: `old*` names are blocked only
    by the old version, `new*` names only by the new one."""
    return "old" if name.startswith("old") == blocked else "new"


def test_queries_during_reload_never_see_a_half_loaded_list(make_daemon, upstream: FakeUpstream,
                                                            tmp_path: Path) -> None:
    """A 200k-name list rewritten with a different set: while the reload parses, diffs and
    swaps, queries for old and new names (first, middle and last line) each get an answer of
    the complete old version or of the complete new one, and once a query has seen the new
    version no later one sees the old. A policy swapped in half-built, or the old one emptied
    before the swap, answers some name as neither version does: the sequence goes back."""
    n = 200_000
    lst = tmp_path / "big.txt"
    lst.write_text("".join(f"old{i}.big.test\n" for i in range(n)))
    d = make_daemon({"upstreams": [upstream.url()], "reload": {"watch": False},
                     "blocklists": [{"name": "big", "path": str(lst)}]})
    probes = [f"{v}{i}.big.test" for i in (0, n // 2, n - 1) for v in ("old", "new")]
    lst.write_text("".join(f"new{i}.big.test\n" for i in range(n)))
    fut = d.call_soon(d.daemon.reload("api"))
    seen: list[tuple[str, str]] = []        # (name, version its answer belongs to), in order
    while not fut.done():
        seen += [(name, answer_version(name, is_blocked(d, name))) for name in probes]
    rep = fut.result().reports[0]
    assert fut.result().ok and rep.added == n and rep.removed == n
    during = len(seen)
    seen += [(name, answer_version(name, is_blocked(d, name))) for name in probes]
    versions = [v for _, v in seen]
    assert "old" in versions[:during], "no query overlapped the reload: the test proved nothing"
    first_new = versions.index("new")
    back = [(i, name) for i, (name, v) in enumerate(seen) if v == "old" and i > first_new]
    assert not back, f"first new-version answer at query {first_new} ({seen[first_new][0]}), " \
                     f"then old-version answers at {back[:5]} of {len(seen)}"


def test_sighup_reloads(service_dir: Path) -> None:
    tmp_path = service_dir
    lst = tmp_path / "l.txt"
    lst.write_text("before.test\n")
    with FakeUpstream() as up:
        cfg = write_config(tmp_path, {
            "listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"}, "upstreams": [up.url()],
            "log": {"format": "json"}, "reload": {"watch": False},
            "blocklists": [{"name": "l", "path": "l.txt"}]})   # relative to the config file
        proc = Proc(cfg)
        import dns.message
        import dns.query

        def rcode(name: str) -> int:
            q = dns.message.make_query(name, "A")
            return dns.query.udp(q, "127.0.0.1", port=proc.port, timeout=5).rcode()

        assert rcode("before.test") == dns.rcode.NXDOMAIN
        lst.write_text("after.test\n")
        proc.p.send_signal(signal.SIGHUP)
        rec = proc.wait_event("list_reload", "list_error")
        while rec.get("reason") != "sighup":
            rec = proc.wait_event("list_reload", "list_error")
        assert rec["event"] == "list_reload", rec
        assert rec["added"] == 1 and rec["removed"] == 1
        assert rcode("after.test") == dns.rcode.NXDOMAIN
        assert rcode("before.test") == dns.rcode.NOERROR
        proc.p.send_signal(signal.SIGTERM)
        assert proc.finish()[0] == 0


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.test"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=env).stdout


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*sinkhole_cmd(), *args], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(), check=False)


def test_update_lists_pulls_validates_and_reloads(make_daemon, upstream: FakeUpstream,
                                                  tmp_path: Path) -> None:
    bare, work, live = tmp_path / "lists.git", tmp_path / "work", tmp_path / "live"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    (work / "c2.txt").write_text("old-c2.test\n")
    git("add", ".", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    git("clone", "-q", "-b", "main", str(bare), str(live), cwd=tmp_path)
    port = free_port()
    raw = {"listen": {"dns": ["127.0.0.1:0"], "http": f"127.0.0.1:{port}"},
           "upstreams": [upstream.url()], "reload": {"watch": False},
           "blocklists": [{"name": "c2", "path": str(live / "c2.txt")}]}
    d = make_daemon(raw)
    cfg = write_config(tmp_path, raw)
    assert not is_blocked(d, "new-c2.test")

    (work / "c2.txt").write_text("old-c2.test\nnew-c2.test\n")
    git("commit", "-qam", "new indicator", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    res = run_cli("update-lists", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "c2: 2 entries (+1 -0)" in res.stdout
    assert is_blocked(d, "new-c2.test")

    # a conflicting local change: the pull fails, exit 1, policy untouched
    (live / "c2.txt").write_text("local-edit.test\n")
    git("commit", "-qam", "local", cwd=live)
    (work / "c2.txt").write_text("other.test\n")
    git("commit", "-qam", "diverge", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    gen = d.daemon.lists.generation
    res = run_cli("update-lists", "-c", str(cfg))
    assert res.returncode == 1 and "git pull" in res.stderr
    assert d.daemon.lists.generation == gen and is_blocked(d, "new-c2.test")


def test_update_lists_not_a_git_checkout(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("x.test\n")
    cfg = write_config(tmp_path, {"blocklists": [{"name": "l", "path": "l.txt"}]})
    res = run_cli("update-lists", "-c", str(cfg))
    assert res.returncode == 1 and "not a git checkout" in res.stderr


def test_update_lists_daemon_not_running(tmp_path: Path) -> None:
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    (tmp_path / "l.txt").write_text("x.test\n")
    cfg = write_config(tmp_path, {"listen": {"http": f"127.0.0.1:{free_port()}"},
                                  "blocklists": [{"name": "l", "path": "l.txt"}]})
    res = run_cli("update-lists", "-c", str(cfg))   # no upstream remote: the pull fails
    assert res.returncode == 1


def test_check_names_list_and_rule(tmp_path: Path) -> None:
    (tmp_path / "c2.txt").write_text("# category: c2\n\nevil.test\n")
    (tmp_path / "allow.txt").write_text("fine.evil.test\n")
    cfg = write_config(tmp_path, {"blocklists": [{"name": "c2", "path": "c2.txt",
                                                  "severity": "critical"}],
                                  "allowlists": [{"path": "allow.txt"}]})
    res = run_cli("check", "-c", str(cfg), "www.Evil.test.")
    assert res.returncode == 0
    assert "www.evil.test: blocked by list c2" in res.stdout
    assert f"{tmp_path / 'c2.txt'}:3: evil.test" in res.stdout
    res = run_cli("check", "-c", str(cfg), "fine.evil.test")
    assert "allowed" in res.stdout and "allow.txt:1" in res.stdout
    res = run_cli("check", "-c", str(cfg), "example.test")
    assert "not blocked" in res.stdout
    assert run_cli("check", "-c", str(cfg), "bad name!").returncode == 2
