"""The schedule of the URL lists: fetch, parse the download through a reload, keep or drop it.

One loop per feed, started after the start-up load (which used each feed's last good copy, so
a restart while the feed or the internet is down still blocks). A download becomes the feed's
version only if it parses into a good version (ListManager reports no error for it); else it is
discarded and the last good copy stays, on disk and in the policy. Failures back off
(FeedFetcher.next_delay), are counted, and alert once per outage, not once per retry.

Everything here awaits I/O or runs the parse in the manager's worker thread: a fetch never
delays an answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


class FeedRefresher:
    """Owns the refresh loops of every blocklist with a `url`."""

    def __init__(self, specs: Sequence[Any], fetcher: Any, lists: Any, metrics: Any, *,
                 on_outage: Callable[[str, str], None],
                 clock: Callable[[], float]) -> None:
        self.specs = [s for s in specs if getattr(s, "url", "")]
        self.fetcher = fetcher
        self.lists = lists
        self.metrics = metrics
        self.on_outage = on_outage
        self.clock = clock
        self.next_refresh: dict[str, float] = {}
        self._failing: set[str] = set()
        self._lock = asyncio.Lock()

    async def run(self, spec: Any) -> None:
        """One feed's loop, forever (cancelled at stop). The first delay counts from the last
        attempt before a restart, so a restart does not fetch every feed at once."""
        while True:
            delay = self.fetcher.next_delay(spec)
            self.next_refresh[spec.name] = self.clock() + delay
            await asyncio.sleep(delay)
            await self.refresh([spec], "feed refresh")

    async def refresh(self, specs: Sequence[Any] | None = None, reason: str = "feed refresh",
                      ) -> tuple[Any, dict[str, str]]:
        """Fetch `specs` (default: every feed) at once, then one reload with every new
        download. Returns that reload's result (None when no feed changed) and the feeds that
        failed, with why."""
        specs = self.specs if specs is None else list(specs)
        errors: dict[str, str] = {}
        if not specs:
            return None, errors
        async with self._lock:   # a timer and an API reload never fetch the same feed twice
            results = await asyncio.gather(*(self.fetcher.fetch(s) for s in specs))
            fetched = {}
            for spec, res in zip(specs, results, strict=True):
                if res.outcome == "changed":
                    fetched[spec.name] = (spec, res)
                elif res.outcome == "not_modified":
                    self._succeeded(spec)
                else:
                    errors[spec.name] = res.error or "download failed"
                    self._failed(spec, errors[spec.name])
            if not fetched:
                return None, errors
            result = await self.lists.reload(
                reason, candidates={name: res.candidate for name, (_s, res) in fetched.items()})
            reports = {r.name: r for r in result.reports}
            for name, (spec, res) in fetched.items():
                report = reports.get(name)
                error = report.error if report is not None else "not in the reload report"
                if error:
                    await asyncio.to_thread(self.fetcher.discard, spec, res, error)
                    errors[name] = error
                    self._failed(spec, error)
                else:
                    await asyncio.to_thread(self.fetcher.promote, spec, res)
                    self._succeeded(spec)
            return result, errors

    def _succeeded(self, spec: Any) -> None:
        self.metrics.list_last_success.labels(spec.name).set(self.clock())
        if spec.name in self._failing:
            self._failing.discard(spec.name)
            log.info("feed %s is back", spec.name,
                     extra={"event": "feed_recovered", "list": spec.name})

    def _failed(self, spec: Any, error: str) -> None:
        self.metrics.list_fetch_errors.labels(spec.name).inc()
        kept = "keeping the last good copy" if self.fetcher.has_good(spec) else \
            "no copy yet: the list is empty until a download succeeds"
        log.error("feed %s failed (%s): %s", spec.name, kept, error,
                  extra={"event": "feed_error", "list": spec.name})
        if spec.name not in self._failing:   # once per outage, not once per retry
            self._failing.add(spec.name)
            self.on_outage(spec.name, error)
