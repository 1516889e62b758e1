"""CLI commands about lists: `check NAME`, `lists`, and `update-lists` (git pull, validate,
reload: the daemon then fetches the URL lists at once)."""

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
from sinkhole.lists.loader import ListError, load_path
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
    from sinkhole.lists.feeds import FeedFetcher
    fetcher = FeedFetcher(config.storage.folder)
    lists, allows, problems = configured_lists(config, fetcher)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    found = build_policy(lists, allows).match(name)
    if found is None:
        print(f"{name}: not blocked (no list matches)")
        return EXIT_OK
    verdict, rule = found
    specs = [s for s in config.blocklists if verdict.list and s.name == verdict.list.name] \
        or [*config.allowlists, *config.blocklists]
    where = [f"{f}:{_at(at)}: {text}" for s in specs for f, at, text in _rules(s, name, fetcher)]
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


def configured_lists(config: Config, fetcher: object) -> tuple[list, list, list[str]]:
    """Every configured list parsed as the daemon parses it (a feed from its last good copy):
    (blocklists as (spec, parsed), allowlists, problems), for a Policy built outside the
    daemon (`check`, `import`)."""
    lists, allows, problems = [], [], []
    for spec in config.blocklists:
        try:
            parsed = _load_spec(spec, fetcher)
        except ListError as err:
            problems.append(f"list {spec.name}: {err}")
            continue
        if parsed is None:
            problems.append(f"list {spec.name}: {spec.source} not downloaded yet")
        else:
            lists.append((spec, parsed))
    for spec in config.allowlists:
        try:
            allows.append(load_path(spec.path))
        except ListError as err:
            problems.append(f"allowlist {spec.path}: {err}")
    return lists, allows, problems


def _at(where: object) -> str:
    """`file:12` for a line, `file:indicator--…` for a feed object."""
    text = str(where)
    return text[5:] if text.startswith("line ") else text


def _rules(spec: object, name: str, fetcher: object) -> list[tuple[str, object, str]]:
    """Where the rules covering `name` are: file:line, or a feed object's id and text."""
    from sinkhole.lists.formats import find_feed_rule
    path = getattr(spec, "path", "")
    if getattr(spec, "url", ""):
        if not fetcher.has_good(spec):          # type: ignore[attr-defined]
            return []
        path = str(fetcher.good_path(spec))     # type: ignore[attr-defined]
    try:
        return find_feed_rule(path, getattr(spec, "format", "auto"), name,
                              column=getattr(spec, "column", ""),
                              to_ids_only=getattr(spec, "to_ids_only", True))
    except ListError:
        return []


def cmd_update_lists(config: Config, args: Namespace) -> int:
    """git pull --ff-only every list checkout, validate every list, reload the daemon.

    Any failure exits 1 with the reason, and the running policy is untouched (the daemon is
    only asked to reload once every step before it succeeded).
    """
    repos = _repos(config)
    feeds = [s for s in config.blocklists if s.url]
    if not repos and not feeds:
        print("sinkhole: no list path is inside a git checkout and no list has a url; "
              "nothing to update", file=sys.stderr)
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
        if not spec.path:
            continue        # a feed: the daemon fetches and validates it on the reload
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
        if not spec.path:
            continue
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
    url = _api_url(config, "/api/v1/reload")
    if url is None:
        print("sinkhole: listen.http is off; send SIGHUP to the daemon to reload",
              file=sys.stderr)
        return EXIT_RUNTIME
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


LIST_COLUMNS = ("name", "source", "format", "entries", "last_success", "last_error",
                "next_refresh")


def cmd_lists(config: Config, args: Namespace) -> int:
    """One row per list: from the running daemon when it answers, else read offline (entries
    parsed from the files and the feeds' last good copies; no schedule to show)."""
    rows = _daemon_rows(config)
    if rows is None:
        print("note: the daemon is not reachable; showing the lists as they are on disk",
              file=sys.stderr)
        rows = _offline_rows(config)
    if args.json:
        json.dump(rows, sys.stdout, indent=1, sort_keys=True)
        print()
        return EXIT_OK
    from sinkhole.cli_data import print_table
    shown = [{**r, "last_success": _when(r["last_success"]),
              "next_refresh": _when(r["next_refresh"])} for r in rows]
    print_table(shown, LIST_COLUMNS)
    return EXIT_OK


def _when(value: float | None) -> str | None:
    if value is None:
        return None
    from datetime import UTC, datetime
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _daemon_rows(config: Config) -> list[dict] | None:
    url = _api_url(config, "/api/v1/lists")
    if url is None:
        return None
    req = urllib.request.Request(url, headers=_auth_headers(config))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)["items"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None


def _offline_rows(config: Config) -> list[dict]:
    from sinkhole.lists.feeds import FeedFetcher
    fetcher = FeedFetcher(config.storage.folder)
    rows = []
    for name, spec in [(b.name, b) for b in config.blocklists] + \
            [(f"allowlist[{i}]", a) for i, a in enumerate(config.allowlists)]:
        url = getattr(spec, "url", "")
        row = {"name": name, "source": getattr(spec, "source", spec.path),
               "format": getattr(spec, "format", "auto"), "entries": 0,
               "last_success": None, "last_error": None, "next_refresh": None}
        try:
            parsed = _load_spec(spec, fetcher)
        except ListError as err:
            row["last_error"] = str(err)
        else:
            row["entries"] = parsed.rules if parsed is not None else 0
        if url:
            st = fetcher.state(spec)
            row["last_success"] = st.last_success
            row["last_error"] = st.last_error if st.failures else row["last_error"]
        rows.append(row)
    return rows


def _load_spec(spec: object, fetcher: object) -> object:
    """Parse a configured list as the daemon does: its path, or a feed's last good copy
    (None when a feed was never downloaded)."""
    from sinkhole.lists.formats import load_feed
    path = getattr(spec, "path", "")
    if getattr(spec, "url", ""):
        if not fetcher.has_good(spec):          # type: ignore[attr-defined]
            return None
        path = str(fetcher.good_path(spec))     # type: ignore[attr-defined]
    return load_feed(path, getattr(spec, "format", "auto"), column=getattr(spec, "column", ""),
                     to_ids_only=getattr(spec, "to_ids_only", True),
                     max_bytes=max(getattr(spec, "max_size", 0), 64 << 20))


def _api_url(config: Config, path: str) -> str | None:
    hp = config.listen.http
    if hp is None:
        return None
    host = "127.0.0.1" if hp.host == "0.0.0.0" else "::1" if hp.host == "::" else hp.host
    return f"http://{HostPort(host, hp.port).display()}{path}"


def path_problems(config: Config) -> list[str]:
    """Every configured list path that does not exist or cannot be read, by its key."""
    from sinkhole.lists.loader import list_files
    out = []
    specs = [(f"blocklists[{i}] ({b.name}).path", b.path) for i, b in enumerate(config.blocklists)
             if b.path] + [(f"allowlists[{i}].path", a.path)
                           for i, a in enumerate(config.allowlists)]
    for key, path in specs:
        try:
            for file in list_files(path):
                with open(file, "rb") as f:
                    f.read(1)
        except ListError as err:
            out.append(f"{key}: {err.reason}: {path}")
        except OSError as err:
            out.append(f"{key}: cannot read {err.filename or path}: {err.strerror}")
    return out


def fetch_once(config: Config) -> int:
    """`check-config --fetch`: download each URL list once into a scratch folder (the
    daemon's copies are not touched), parse it, print what came; exit 1 if any failed."""
    import asyncio
    import tempfile

    from sinkhole.lists.feeds import FeedFetcher
    from sinkhole.lists.formats import load_feed

    feeds = [b for b in config.blocklists if b.url]
    if not feeds:
        print("no list has a url: nothing to fetch")
        return EXIT_OK

    async def run(folder: str) -> int:
        fetcher = FeedFetcher(folder, default_ca_file=config.upstream_ca_file)
        failed = 0
        try:
            for spec in feeds:
                res = await fetcher.fetch(spec)
                if res.outcome != "changed" or res.candidate is None:
                    print(f"{spec.name}: {res.error or res.outcome}", file=sys.stderr)
                    failed += 1
                    continue
                try:
                    parsed = await asyncio.to_thread(
                        load_feed, res.candidate, spec.format, column=spec.column,
                        to_ids_only=spec.to_ids_only)
                except ListError as err:
                    print(f"{spec.name}: downloaded {res.bytes} bytes, unusable: {err}",
                          file=sys.stderr)
                    failed += 1
                    continue
                print(f"{spec.name}: {res.bytes} bytes, {parsed.rules} names, "
                      f"{parsed.error_count} bad entries, {parsed.unsupported} skipped")
                if parsed.rules == 0:
                    failed += 1
        finally:
            await fetcher.close()
        return EXIT_RUNTIME if failed else EXIT_OK

    with tempfile.TemporaryDirectory(prefix="sinkhole-fetch-") as folder:
        return asyncio.run(run(folder))
