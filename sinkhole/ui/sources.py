"""Where the console and the JSON API read from: the store (own read-only connection, in a
thread), the hunting state beside it (optional), and the findings built from both.

One place for these, so the API's `/api/v1/findings` and the console's triage page are the
same function, and a page never reads SQLite on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from sinkhole.store.findings import HitFindings, query_findings
from sinkhole.store.queries import open_reader

log = logging.getLogger(__name__)

SUSPICIONS_MAX = 1000
_CACHES: dict[str, HitFindings] = {}
CACHES_MAX = 8


def hit_cache(db_path: str) -> HitFindings:
    """The findings aggregate of one store, kept for the life of the process (a daemon has
    one store; tests and benches a few)."""
    cache = _CACHES.get(db_path)
    if cache is None:
        while len(_CACHES) >= CACHES_MAX:
            _CACHES.pop(next(iter(_CACHES)))
        cache = _CACHES[db_path] = HitFindings()
    return cache


def read_sync(path: str, fn: Callable[..., Any], **kw: Any) -> Any:
    """Run ``fn(conn, **kw)`` on a fresh read-only connection (blocking)."""
    conn = open_reader(path)
    try:
        return fn(conn, **kw)
    finally:
        conn.close()


async def read_store(path: str, fn: Callable[..., Any], **kw: Any) -> Any:
    """``read_sync`` in a worker thread: SQLite must never block the DNS loop."""
    return await asyncio.to_thread(read_sync, path, fn, **kw)


def hunt_path(admin: Any) -> str | None:
    """The hunting database (beside the store, as `sinkhole suspicions` reads it)."""
    config = getattr(admin, "config", None)
    if config is None:
        return None
    return config.storage.hunt_path


def suspicions_sync(path: str | None, since: float | None = None,
                    limit: int = SUSPICIONS_MAX, min_score: int = 0) -> list[dict[str, Any]]:
    """Hunting's suspicions, or [] while hunting is off, not yet run, or not installed: the
    console works without it and shows suspicions as soon as the hunt database exists."""
    if not path or not os.path.exists(path):
        return []
    try:
        from sinkhole.hunt import read_suspicions
    except ImportError:
        return []
    try:
        return list(read_suspicions(path, since=since, min_score=min_score, limit=limit))
    except Exception as err:   # a broken or busy hunt db must not take the console down
        log.warning("cannot read suspicions from %s: %s", path, err)
        return []


async def suspicions(admin: Any, since: float | None = None) -> list[dict[str, Any]]:
    return await asyncio.to_thread(suspicions_sync, hunt_path(admin), since)


async def findings(admin: Any, *, states: Iterable[str] | None = None,
                   client_ip: str | None = None, limit: int | None = None,
                   offset: int = 0) -> dict[str, Any]:
    """The findings (hits per list, suspicions per domain) with their derived triage state:
    {"total", "items" (the page), "by_client"}, as store.findings.query_findings."""
    found = await suspicions(admin)
    return await read_store(admin.db_path, query_findings, suspicions=found,
                            client_ip=client_ip, states=states, limit=limit, offset=offset,
                            cache=hit_cache(admin.db_path))

