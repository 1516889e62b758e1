"""`sinkhole import` on day one: another resolver's month of logs goes into the history on its
own timestamps, the configured lists are retro-hunted over it, and the hunting signals run on
the log's clock (its learning period starts at the log's first line)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.conftest import ROOT, sinkhole_cmd, subprocess_env, write_config

DAY = 86400.0


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*sinkhole_cmd(), *args], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(), check=False)


def test_import_retro_hunts_the_lists_and_hunts_on_the_logs_clock(tmp_path: Path) -> None:
    start = time.time() - 20 * DAY
    lines = []

    def ask(t: float, client: str, name: str) -> None:
        lines.append(json.dumps({"time": t, "client": client, "qname": name, "qtype": "A"}))

    for day in range(10):                               # ten ordinary days, three devices
        for i, client in enumerate(("10.0.0.5", "10.0.0.6", "10.0.0.7")):
            for name in ("www.example.com", "mail.example.org", "news.example.net"):
                ask(start + day * DAY + i * 60 + hash(name) % 600, client, name)
    t = start + 9 * DAY + 3600
    ask(t, "10.0.0.5", "backuprabbit.com")              # a Triangulation C2, unknown then
    t = start + 10 * DAY                                # after the 7-day learning period
    ask(t, "10.0.0.6", "p9-identity.ess.apple.com")
    ask(t + 20, "10.0.0.6", "p9-content.icloud.com")
    ask(t + 50, "10.0.0.6", "weatherstatsfeed.com")
    ask(t + 90, "10.0.0.6", "cdn.tinyupdatesvc.net")
    log = tmp_path / "resolver.jsonl"
    log.write_text("\n".join(lines) + "\nnot json at all\n")

    cfg = write_config(tmp_path, {"blocklists": [{
        "name": "triangulation", "path": str(ROOT / "blocklists" / "triangulation.txt"),
        "category": "c2", "severity": "critical"}]})
    res = cli("import", "--format", "jsonl", str(log), "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    assert f"{len(lines) + 1:,} lines, {len(lines):,} queries imported" in res.stdout
    assert "1 bad lines" in res.stdout and f"line {len(lines) + 1}" in res.stderr
    assert "retro-hunt: 10.0.0.5 asked for backuprabbit.com" in res.stdout

    hits = json.loads(cli("hits", "--json", "-c", str(cfg)).stdout)
    assert [(h["client_ip"], h["qname"], h["kind"]) for h in hits] == \
        [("10.0.0.5", "backuprabbit.com", "retro")]
    rows = json.loads(cli("suspicions", "--json", "--min-score", "80", "-c", str(cfg)).stdout)
    assert {(r["client_ip"], r["domain"]) for r in rows} >= {
        ("10.0.0.6", "weatherstatsfeed.com"), ("10.0.0.6", "tinyupdatesvc.net")}, rows
    assert all(abs(r["first_seen"] - (t + 50)) < 60 or r["domain"] != "weatherstatsfeed.com"
               for r in rows)                            # the log's time, not ours

    again = cli("import", "--format", "jsonl", str(log), "-c", str(cfg))   # idempotent finds
    assert "retro-hunt: 0 finds" in again.stdout
