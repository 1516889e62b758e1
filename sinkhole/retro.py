"""Retro-hunt: when a list gains names, who asked for them before we knew they were bad?

Kaspersky's advice for the Triangulation indicators was to check "historical information in
DNS logs"; this does it by itself on every reload, and once at start-up for names that came in
while the daemon was down. The search runs in a worker thread on its own read connection, and
each (client, name) is reported once: a retro hit already stored is not found again.

Two searches, because they start from different ends: a reload knows which names it added, so
it seeks those in the history (index ranges, cheap for any history size); the start-up load has
nothing to diff against, so it walks the history's distinct names and asks the current policy
about each. History holds only answered queries, so a history name that a list now blocks was
asked before it was listed.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sinkhole.store.queries import (
    history_names,
    open_reader,
    recorded_retro,
    retrohunt,
    retrohunt_ids,
)

log = logging.getLogger("sinkhole.hit")


def hunt(db_path: str, added: Mapping[str, Iterable[str]], infos: Mapping[str, Any],
         since: float, names: Any = None) -> list[dict[str, Any]]:
    """Search the history for `added` names per list; returns hit dicts (kind 'retro') for
    pairs never reported before. Blocking: run it in a thread, after `Store.flush_history`
    (the writer keeps the newest counts in memory for up to a minute)."""
    conn = open_reader(db_path)
    try:
        finds: list[dict[str, Any]] = []
        for list_name, list_names in added.items():
            info = infos.get(list_name)
            if info is None:
                continue
            wanted = [n[2:] if n.startswith("*.") else n for n in list_names]
            rows = _unreported(conn, retrohunt(conn, wanted, since=since))
            finds += [_find(row, info, names) for row in rows]
        return finds
    finally:
        conn.close()


def hunt_policy(db_path: str, policy: Any, since: float,
                names: Any = None) -> list[dict[str, Any]]:
    """Every (client, name) in the history since `since` that `policy` now blocks and that was
    never reported; the same hit dicts as `hunt`. Blocking: run it in a thread.

    One pass over the distinct names (bounded by the history's retention), one `policy.match`
    each; allow verdicts (allowlists, `@@` rules) are not hits."""
    conn = open_reader(db_path)
    try:
        matched: dict[int, tuple[str, str]] = {}
        lists: dict[str, Any] = {}
        for nid, name in history_names(conn, since=since):
            found = policy.match(name)
            if found is None or found[0].action == "allow" or found[0].list is None:
                continue
            matched[nid] = (name, found[1])
            lists[name] = found[0].list
        rows = _unreported(conn, retrohunt_ids(conn, matched, since=since))
        return [_find(row, lists[row["qname"]], names) for row in rows]
    finally:
        conn.close()


def _unreported(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows not already stored as retro hits: each (client, name) is reported once."""
    return [row for row in rows if not recorded_retro(conn, row["client_ip"], row["qname"])]


def _find(row: Mapping[str, Any], info: Any, names: Any) -> dict[str, Any]:
    client = row["client_ip"]
    return {
        "event": "hit", "kind": "retro", "time": time.time(), "client": client,
        "client_name": names(client) if names is not None else None,
        "qname": row["qname"], "qtype": "ANY", "list": info.name, "category": info.category,
        "severity": info.severity, "rule": row["matched"], "action": "retro",
        "transport": None, "first_seen": row["first_seen"], "last_seen": row["last_seen"],
        "count": row["count"],
    }


def log_find(find: Mapping[str, Any]) -> None:
    log.warning("retro-hunt: %s asked for %s before it was listed (list %s, %d times)",
                find["client"], find["qname"], find["list"], find["count"],
                extra={k: v for k, v in find.items() if k != "time"})
