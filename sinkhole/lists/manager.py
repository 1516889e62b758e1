"""The live policy: loads every configured list, swaps a new Policy in atomically, watches files.

A reload parses in a worker thread while queries keep using the old Policy, then replaces the
reference in one assignment: no query ever sees a half-loaded list. A list that cannot be read
keeps its last good version (never an empty policy because of a bad file), and the reload
reports, per list, entries, names added and removed, parse errors and time taken.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinkhole.lists.formats import load_feed
from sinkhole.lists.loader import ListError, list_files
from sinkhole.lists.matcher import Policy, build_policy, diff_names, drain, stale_tables
from sinkhole.lists.parse import ParsedList

log = logging.getLogger(__name__)

# A feed that listed at least this many rules and now lists none is taken for a broken
# download (an emptied export, a login page), not for "every threat is gone".
EMPTY_FEED_GUARD = 10
# JSON feeds are parsed up to max(the list's max_size, this): a list file on disk has no
# max_size of its own, and the shipped default (64 MiB) is what the formats assume.
FEED_PARSE_MIN = 64 << 20


@dataclass
class ListReport:
    """What one reload did to one list (shown by the API, logged, exported as metrics)."""

    name: str
    path: str
    kind: str                      # 'block' or 'allow'
    entries: int = 0
    added: int = 0
    removed: int = 0
    parse_errors: int = 0
    unsupported: int = 0
    seconds: float = 0.0
    error: str | None = None       # the file could not be read: last good version kept
    format: str = "auto"
    pending: bool = False          # a feed never downloaded yet: empty, not broken
    first_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}


@dataclass
class ReloadResult:
    reason: str
    reports: list[ListReport]
    added: dict[str, set[str]]     # list name -> names new in this version (for retro-hunt)
    seconds: float
    changed: bool

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.reports)


class ListManager:
    """Owns the current Policy and the last good parse of every list."""

    def __init__(self, blocklists: Sequence[Any], allowlists: Sequence[Any],
                 on_swap: Callable[[Policy, ReloadResult], None], *,
                 feed_copy: Callable[[Any], Path | None] | None = None) -> None:
        self.blocklists = list(blocklists)
        self.allowlists = list(allowlists)
        self.on_swap = on_swap
        # URL lists: where the last good download of a feed lives (None: none yet).
        self.feed_copy = feed_copy or (lambda _spec: None)
        self._candidates: Mapping[str, Path] = {}
        self.policy = Policy()
        self._good: dict[str, ParsedList] = {}
        self._lock = asyncio.Lock()
        self._last_sig: tuple = ()
        self.last_result: ReloadResult | None = None
        self.generation = 0                 # bumped by every completed reload
        self._sigs: dict[str, tuple] = {}      # list key -> signature of its files when parsed
        self._new_sigs: dict[str, tuple] = {}
        self._reloaded = asyncio.Condition()

    # --- loading (worker thread) -----------------------------------------------------------

    def _load_one(self, key: str, spec: Any, kind: str,
                  name: str) -> tuple[ParsedList, ListReport]:
        url = getattr(spec, "url", "")
        report = ListReport(name, spec.source if kind == "block" else spec.path, kind)
        report.format = getattr(spec, "format", "auto")
        start = time.perf_counter()
        if url:
            candidate = self._candidates.get(name)
            if candidate is None and key in self._good:
                # A feed is re-parsed only when a new download arrives, never on a SIGHUP.
                return self._reuse(key, kind, report)
            path = str(candidate or self.feed_copy(spec) or "")
            if not path:
                # Not an error of the list (its first download is on the way, and its failure
                # is reported by the refresher): empty until then.
                report.pending = True
                return ParsedList(source=report.path), report
            sig = None
        else:
            path = spec.path
            sig = self._path_signature(path)
            if key in self._good and sig is not None and self._sigs.get(key) == sig:
                # Unchanged files (a SIGHUP, or a git pull that touched other lists): reuse
                # the parse. Re-parsing a million names costs a second of CPU for nothing.
                self._new_sigs[key] = sig
                return self._reuse(key, kind, report)
        try:
            parsed = load_feed(path, getattr(spec, "format", "auto"),
                               column=getattr(spec, "column", ""),
                               to_ids_only=getattr(spec, "to_ids_only", True),
                               max_bytes=max(getattr(spec, "max_size", 0), FEED_PARSE_MIN))
        except (ListError, OSError) as err:
            report.error = str(err)
            parsed = self._good.get(key) or ParsedList(source=path)
        else:
            last = self._good.get(key)
            if parsed.rules == 0 and last is not None and (
                    parsed.error_count or (url and last.rules >= EMPTY_FEED_GUARD)):
                # every line bad (a truncated download, an HTML error page), or a feed that
                # suddenly lists nothing where it listed many: not a version, keep the last
                report.error = (f"{report.path}: no valid rule ({parsed.error_count} bad "
                                f"lines) where the last good version had {last.rules}")
                report.parse_errors = parsed.error_count
                parsed = last
            else:
                if sig is not None:
                    self._new_sigs[key] = sig
                report.parse_errors = parsed.error_count
                report.unsupported = parsed.unsupported
                report.first_errors = [f"{e.source}:{e.line}: {e.reason}" if e.line
                                       else f"{e.source}: {e.reason}"
                                       for e in parsed.errors[:5]]
        report.entries = _entries(parsed, kind)
        report.seconds = round(time.perf_counter() - start, 4)
        return parsed, report

    def _reuse(self, key: str, kind: str, report: ListReport) -> tuple[ParsedList, ListReport]:
        parsed = self._good[key]
        report.parse_errors, report.unsupported = parsed.error_count, parsed.unsupported
        report.entries = _entries(parsed, kind)
        return parsed, report

    def build(self, reason: str) -> tuple[Policy, ReloadResult, dict[str, ParsedList]]:
        """Parse every changed list and build a new Policy (runs in a worker thread; only
        `reload` swaps shared state, under its lock)."""
        start = time.perf_counter()
        self._new_sigs = {}
        old = self.policy
        good: dict[str, ParsedList] = {}
        reports: list[ListReport] = []
        lists = []
        for spec in self.blocklists:
            parsed, rep = self._load_one(f"block:{spec.name}", spec, "block", spec.name)
            good[f"block:{spec.name}"] = parsed
            reports.append(rep)
            lists.append((spec, parsed))
        allows = []
        for i, spec in enumerate(self.allowlists):
            parsed, rep = self._load_one(f"allow:{i}", spec, "allow", f"allowlist[{i}]")
            good[f"allow:{i}"] = parsed
            reports.append(rep)
            allows.append(parsed)
        policy = build_policy(lists, allows)
        added: dict[str, set[str]] = {}
        for rep in reports:
            if rep.kind != "block":
                continue
            new_names, gone = diff_names(old.names(rep.name), policy.names(rep.name),
                                         pause=_yield)
            rep.added, rep.removed = len(new_names), len(gone)
            if new_names:
                added[rep.name] = new_names
        changed = any(r.added or r.removed for r in reports) or not self._good
        result = ReloadResult(reason, reports, added, round(time.perf_counter() - start, 4),
                              changed)
        return policy, result, good

    # --- swapping (event loop) -------------------------------------------------------------

    async def reload(self, reason: str,
                     candidates: Mapping[str, Path] | None = None) -> ReloadResult:
        """Reload every list off the event loop, then swap. Concurrent calls queue up.

        `candidates`: new feed downloads by list name, parsed instead of that feed's last good
        copy; the caller promotes or discards each by its report's `error`."""
        async with self._lock:
            self._candidates = candidates or {}
            sig = await asyncio.to_thread(self.signature)
            # The parse is CPU-bound Python in a thread: with the default 5 ms GIL switch
            # interval the event loop waits up to 5 ms at every syscall return, so queries
            # crawl during a big reload. A short interval while parsing keeps DNS responsive.
            switch = sys.getswitchinterval()
            sys.setswitchinterval(min(switch, 0.0005))
            try:
                policy, result, good = await asyncio.to_thread(self.build, reason)
            finally:
                sys.setswitchinterval(switch)
                self._candidates = {}
            old_policy = self.policy
            self._good = good
            self._sigs = self._new_sigs
            self._last_sig = sig
            self.policy = policy
            self.last_result = result
            self.on_swap(policy, result)
            self._log(result)
            # Free the replaced version in slices off the loop, not in one GIL-holding dealloc.
            stale = stale_tables(old_policy, policy)
            del old_policy
            if stale:
                await asyncio.to_thread(drain, stale, _yield)
        async with self._reloaded:
            self.generation += 1
            self._reloaded.notify_all()
        return result

    async def wait_generation(self, generation: int) -> None:
        """Wait until `generation` reloads have completed (tests and `update-lists` await
        this instead of sleeping)."""
        async with self._reloaded:
            await self._reloaded.wait_for(lambda: self.generation >= generation)

    def _log(self, result: ReloadResult) -> None:
        for r in result.reports:
            fields = {"event": "list_reload", "list": r.name, "entries": r.entries,
                      "added": r.added, "removed": r.removed, "parse_errors": r.parse_errors,
                      "seconds": r.seconds, "reason": result.reason}
            if r.error:
                log.error("list %s could not be loaded, keeping its last good version: %s",
                          r.name, r.error, extra={**fields, "event": "list_error"})
            elif r.parse_errors:
                log.warning("list %s: %d lines skipped (first: %s)", r.name, r.parse_errors,
                            "; ".join(r.first_errors[:3]), extra=fields)
            else:
                log.info("list %s loaded: %d entries (+%d -%d) in %.3fs", r.name, r.entries,
                         r.added, r.removed, r.seconds, extra=fields)

    @staticmethod
    def _path_signature(path: str) -> tuple | None:
        if is_shipped(path):
            return ("shipped", path)   # part of the installed package: never changes
        try:
            files = list_files(path)
            return tuple((str(f), *_stat(f)) for f in files)
        except (ListError, OSError):
            return None

    # --- watching --------------------------------------------------------------------------

    def signature(self) -> tuple:
        """(path, mtime, size, inode) of every list file: cheap to poll, and catches a git
        checkout replacing files (new inode) as well as in-place edits."""
        sig = []
        for spec in [*self.blocklists, *self.allowlists]:
            if not spec.path or is_shipped(spec.path):   # feeds: by schedule; shipped: fixed
                continue
            try:
                files = list_files(spec.path)
            except (ListError, OSError):
                sig.append((spec.path, None))
                continue
            for f in files:
                try:
                    st = os.stat(f)
                except OSError:
                    sig.append((str(f), None))
                    continue
                sig.append((str(f), st.st_mtime_ns, st.st_size, st.st_ino))
            try:
                st = os.stat(spec.path)
                sig.append((spec.path, st.st_mtime_ns))
            except OSError:
                sig.append((spec.path, None))
        return tuple(sig)

    async def watch(self, poll: float, debounce: float) -> None:
        """Poll list files; after a change, wait until nothing changed for `debounce`, then
        reload once (a `git pull` touching fifty files is one reload)."""
        while True:
            await asyncio.sleep(poll)
            try:
                sig = await asyncio.to_thread(self.signature)
                if sig == self._last_sig:
                    continue
                while True:
                    await asyncio.sleep(debounce)
                    settled = await asyncio.to_thread(self.signature)
                    if settled == sig:
                        break
                    sig = settled
                await self.reload("file change")
            except asyncio.CancelledError:
                raise
            except Exception:   # a watcher must never die: log, back off, continue
                log.exception("list watcher failed; retrying")
                await asyncio.sleep(max(poll, 5.0))


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_shipped(path: str) -> bool:
    """A list shipped inside the package (the embedded default's Triangulation list): read at
    start, never again — it changes only with the code, and started as root the daemon's user
    may not be able to read the package's folder after the drop."""
    return os.path.abspath(path).startswith(_PACKAGE + os.sep)


def _stat(path: Any) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def _yield() -> None:
    """Hand the GIL to the event loop (a reload runs in a worker thread beside it)."""
    time.sleep(0)


def _entries(parsed: ParsedList, kind: str) -> int:
    """What a report and the metrics call a list's size: acting rules, or allow names."""
    return parsed.rules if kind == "block" else len(parsed.block | parsed.allow)
