"""Retro-hunt: when a list gains names, who asked for them before we knew they were bad?

Kaspersky's advice for the Triangulation indicators was to check "historical information in
DNS logs"; this does it by itself on every reload. The search runs in a worker thread on its
own read connection (index range scans over the passive-DNS history), and each (client, name)
is reported once: a retro hit already stored is not found again on the next reload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sinkhole.store.queries import open_reader, recorded_retro, retrohunt

log = logging.getLogger("sinkhole.hit")


def hunt(db_path: str, added: Mapping[str, Iterable[str]], infos: Mapping[str, Any],
         since: float, names: Any = None) -> list[dict[str, Any]]:
    """Search the history for `added` names per list; returns hit dicts (kind 'retro') for
    pairs never reported before. Blocking: run it in a thread."""
    conn = open_reader(db_path)
    finds: list[dict[str, Any]] = []
    try:
        for list_name, list_names in added.items():
            info = infos.get(list_name)
            if info is None:
                continue
            wanted = [n[2:] if n.startswith("*.") else n for n in list_names]
            for row in retrohunt(conn, wanted, since=since):
                if recorded_retro(conn, row["client_ip"], row["qname"]):
                    continue
                finds.append(_find(row, info, names))
    finally:
        conn.close()
    return finds


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
