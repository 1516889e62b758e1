"""CLI commands about lists: `check NAME` and `update-lists` (git pull, validate, reload)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from argparse import Namespace
from pathlib import Path

from sinkhole.config import Config
from sinkhole.config.values import HostPort
from sinkhole.lists.loader import ListError, find_rule, load_path
from sinkhole.lists.matcher import build_policy
from sinkhole.lists.parse import normalise_name

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def cmd_check(config: Config, args: Namespace) -> int:
    """Say which list and rule (file:line) blocks or allows NAME, or that none does."""
    try:
        name = normalise_name(args.name)
    except ValueError as err:
        print(f"sinkhole: {args.name!r} is not a domain name: {err}", file=sys.stderr)
        return EXIT_USAGE
    lists, allows, problems = [], [], []
    for spec in config.blocklists:
        try:
            lists.append((spec, load_path(spec.path)))
        except ListError as err:
            problems.append(f"list {spec.name}: {err}")
    for spec in config.allowlists:
        try:
            allows.append(load_path(spec.path))
        except ListError as err:
            problems.append(f"allowlist {spec.path}: {err}")
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    found = build_policy(lists, allows).match(name)
    if found is None:
        print(f"{name}: not blocked (no list matches)")
        return EXIT_OK
    verdict, rule = found
    paths = [s.path for s in config.blocklists if verdict.list and s.name == verdict.list.name] \
        or [s.path for s in config.allowlists] + [s.path for s in config.blocklists]
    where = [f"{f}:{line}: {text}" for p in paths for f, line, text in _rules(p, name)]
    if verdict.action == "allow":
        print(f"{name}: allowed by rule {rule!r}"
              + (f" in list {verdict.list.name}" if verdict.list else " (allowlist)"))
    else:
        info = verdict.list
        print(f"{name}: blocked by list {info.name} (category {info.category}, severity "
              f"{info.severity}), rule {rule!r}, action {verdict.action}")
    for line in where:
        print(f"  {line}")
    return EXIT_OK


def _rules(path: str, name: str) -> list[tuple[str, int, str]]:
    try:
        return find_rule(path, name)
    except ListError:
        return []


def cmd_update_lists(config: Config, args: Namespace) -> int:
    """git pull --ff-only every list checkout, validate every list, reload the daemon.

    Any failure exits 1 with the reason, and the running policy is untouched (the daemon is
    only asked to reload once every step before it succeeded).
    """
    repos = _repos(config)
    if not repos:
        print("sinkhole: no list path is inside a git checkout; nothing to pull",
              file=sys.stderr)
        return EXIT_RUNTIME
    for repo in repos:
        res = subprocess.run(["git", "-C", str(repo), "pull", "--ff-only", "--quiet"],
                             capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            why = (res.stderr or res.stdout).strip().splitlines()
            print(f"sinkhole: git pull in {repo} failed: {' / '.join(why[-3:])}",
                  file=sys.stderr)
            return EXIT_RUNTIME
        print(f"pulled {repo}")
    for spec in [*config.blocklists, *config.allowlists]:
        try:
            parsed = load_path(spec.path)
        except ListError as err:
            print(f"sinkhole: {err}; not reloading", file=sys.stderr)
            return EXIT_RUNTIME
        if parsed.error_count:
            print(f"warning: {spec.path}: {parsed.error_count} lines skipped", file=sys.stderr)
    if args.no_reload:
        return EXIT_OK
    return reload_daemon(config)


def _repos(config: Config) -> list[Path]:
    seen: list[Path] = []
    for spec in [*config.blocklists, *config.allowlists]:
        p = Path(spec.path)
        folder = p if p.is_dir() else p.parent
        res = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=30, check=False)
        if res.returncode == 0:
            top = Path(res.stdout.strip())
            if top not in seen:
                seen.append(top)
        else:
            print(f"warning: {folder} is not a git checkout; not pulled", file=sys.stderr)
    return seen


def reload_daemon(config: Config) -> int:
    """POST /api/v1/reload to the daemon this config describes; print its report."""
    hp = config.listen.http
    if hp is None:
        print("sinkhole: listen.http is off; send SIGHUP to the daemon to reload",
              file=sys.stderr)
        return EXIT_RUNTIME
    host = "127.0.0.1" if hp.host == "0.0.0.0" else "::1" if hp.host == "::" else hp.host
    url = f"http://{HostPort(host, hp.port).display()}/api/v1/reload"
    req = urllib.request.Request(url, method="POST", headers=_auth_headers(config))
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as err:
        print(f"sinkhole: reload failed: HTTP {err.code} {err.read()[:200]!r}", file=sys.stderr)
        return EXIT_RUNTIME
    except (urllib.error.URLError, OSError) as err:
        print(f"sinkhole: cannot reach the daemon at {url}: {err}", file=sys.stderr)
        return EXIT_RUNTIME
    for rep in body.get("lists", []):
        print(f"{rep['name']}: {rep['entries']} entries (+{rep['added']} -{rep['removed']}), "
              f"{rep['parse_errors']} bad lines" + (f", ERROR {rep['error']}" if rep["error"]
                                                     else ""))
    return EXIT_OK if body.get("ok") else EXIT_RUNTIME


def _auth_headers(config: Config) -> dict[str, str]:
    token_file = config.api.token_file
    if not token_file:
        return {}
    try:
        token = Path(token_file).read_text().strip()
    except OSError:
        return {}
    return {"Authorization": f"Bearer {token}"}
