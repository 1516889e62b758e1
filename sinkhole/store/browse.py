"""Read side for browsing (the console and the HTTP API): hits with every filter, devices with
their names over time, the alert outbox per sink, and the one write a person makes on the
outbox (resend).

Each query is shaped for an index the schema has, so a page stays fast on a million hits:
hits filtered by one field walk that field's (field, time) index in time order and stop at the
page; counts are not taken (a page asks for one row more to know whether a next page exists).
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from .findings import SEVERITY_RANK
from .findings import hit_findings as findings_of
from .queries import HIT_KEYS, _filters, _where, history_names, retrohunt, retrohunt_ids
from .schema import write_one

HIT_KINDS = ("query", "cname", "flood", "retro")
SEEK_NAMES_MAX = 20_000   # past this, walking the history beats one index range per name
OUTBOX_STATES = ("pending", "failing", "delivered", "expired")
OUTBOX_KEYS = ("id", "created", "sink", "payload", "state", "attempts", "next_attempt",
               "last_error", "delivered_at")


def search_hits(conn: sqlite3.Connection, *, since: float | None = None,
                until: float | None = None, client: str | None = None,
                client_ip: str | None = None, list_name: str | None = None,
                qname: str | None = None, kind: str | None = None, limit: int = 100,
                offset: int = 0) -> list[dict[str, Any]]:
    """Hits newest first.  ``client`` is an address or the name the client had at the time
    (as the CLI's --client); either way one (field, time) index is walked in time order and
    the walk stops at the page, where "address OR name" would sort every hit of the device."""
    client_name = None
    if client:
        if _is_ip(client):
            client_ip = client_ip or client
        else:
            client_name = client
    where, args = _filters(since=since, list_name=list_name, qname=qname)
    for clause, value in (("time < ?", until), ("kind = ?", kind), ("client_ip = ?", client_ip),
                          ("client_name = ?", client_name)):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = (f"SELECT {', '.join(HIT_KEYS)} FROM hits {_where(where)} "
           "ORDER BY time DESC, id DESC LIMIT ? OFFSET ?")
    return [dict(zip(HIT_KEYS, row, strict=True))
            for row in conn.execute(sql, [*args, limit, offset])]


def recent_devices(conn: sqlite3.Connection, *, since: float) -> list[dict[str, Any]]:
    """Devices with hits since ``since``: worst severity, lists, hits, newest name and time.

    Grouped in SQLite over one range of the hits_time index (a day holds tens of thousands of
    rows at most: a flooding client's hits are folded into one row per list and second); the
    newest name is then one seek per device."""
    devices: dict[str, dict[str, Any]] = {}
    # INDEXED BY: without statistics SQLite would rather walk hits_client for the grouping
    # order and read every hit (seconds on a million) than sort a day's index entries.
    rows = conn.execute("SELECT client_ip, list, severity, sum(count), min(time), max(time) "
                        "FROM hits INDEXED BY hits_time_devices WHERE time >= ? "
                        "GROUP BY client_ip, list, severity", (since,))
    for ip, list_name, severity, count, first, last in rows:
        d = devices.get(ip)
        if d is None:
            d = devices[ip] = {"client_ip": ip, "client_name": None, "lists": set(),
                               "severity": "info", "hits": 0, "first": first, "last": last}
        d["lists"].add(list_name)
        d["hits"] += count
        if SEVERITY_RANK.get(severity or "", 1) > SEVERITY_RANK[d["severity"]]:
            d["severity"] = severity
        d["first"], d["last"] = min(d["first"], first), max(d["last"], last)
    for ip, d in devices.items():
        d["lists"] = sorted(d["lists"])
        row = conn.execute("SELECT client_name FROM hits WHERE client_ip = ? "
                           "ORDER BY time DESC LIMIT 1", (ip,)).fetchone()
        d["client_name"] = row[0] if row else None
    return list(devices.values())


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def device_names(conn: sqlite3.Connection, client_ip: str) -> list[dict[str, Any]]:
    """The names this address had at its hits, and every address each of those names had:
    DHCP moves devices between addresses, and the name is what follows the phone."""
    names = [r for r in conn.execute(
        "SELECT client_name, min(time), max(time), sum(count) FROM hits WHERE client_ip = ? "
        "GROUP BY client_name ORDER BY max(time) DESC", (client_ip,))]
    out = []
    for name, first, last, count in names:
        out.append({"client_ip": client_ip, "client_name": name, "first": first, "last": last,
                    "hits": count})
        if name is None:
            continue
        for ip, o_first, o_last, o_count in conn.execute(
                "SELECT client_ip, min(time), max(time), sum(count) FROM hits "
                "WHERE client_name = ? AND client_ip != ? GROUP BY client_ip", (name, client_ip)):
            out.append({"client_ip": ip, "client_name": name, "first": o_first, "last": o_last,
                        "hits": o_count})
    return sorted(out, key=lambda r: -r["last"])


def device_summary(conn: sqlite3.Connection, client_ip: str) -> dict[str, Any]:
    """First and last hit, hits and names asked (from the sightings: one key range)."""
    first, last, count, names = conn.execute(
        "SELECT min(first_seen), max(last_seen), sum(count), count(*) FROM sightings "
        "WHERE client_ip = ?", (client_ip,)).fetchone()
    known = conn.execute("SELECT 1 FROM clients WHERE ip = ?", (client_ip,)).fetchone()
    return {"first_hit": first, "last_hit": last, "hits": count or 0, "names": names,
            "in_history": known is not None}


def known_devices(conn: sqlite3.Connection, text: str = "", *,
                  name_for: Callable[[str], str | None] | None = None,
                  hit_findings: Iterable[Mapping[str, Any]] | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
    """Devices whose address, name at their newest hit, or current name (``name_for``: the
    DHCP leases and static map) contains ``text``.  Devices with hits come from the hit
    findings (``hit_findings``: pass the cached ones, or they are grouped from the sightings);
    every other device that asked anything from the history's client table (small)."""
    needle = text.strip().lower()
    devices: dict[str, dict[str, Any]] = {}
    if hit_findings is None:
        hit_findings = findings_of(conn)
    for f in hit_findings:
        d = devices.setdefault(f["client_ip"], {"client_ip": f["client_ip"],
                                                "client_name": None, "hits": 0, "last_hit": 0})
        d["hits"] += f["count"]
        d["last_hit"] = max(d["last_hit"], f["last_seen"])
    for ip, d in devices.items():
        row = conn.execute("SELECT client_name FROM hits WHERE client_ip = ? "
                           "ORDER BY time DESC LIMIT 1", (ip,)).fetchone()
        d["client_name"] = row[0] if row else None
    for (ip,) in conn.execute("SELECT ip FROM clients"):
        devices.setdefault(ip, {"client_ip": ip, "client_name": None, "hits": 0,
                                "last_hit": None})
    found = []
    for d in devices.values():
        d["current_name"] = name_for(d["client_ip"]) if name_for is not None else None
        words = (d["client_ip"], d["client_name"] or "", d["current_name"] or "")
        if not needle or any(needle in w.lower() for w in words):
            found.append(d)
    found.sort(key=lambda d: (-(d["last_hit"] or 0), d["client_ip"]))
    return found[:limit]


def outbox_summary(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """sink -> {pending, failing, delivered, expired}: 'failing' is pending after a failed
    attempt.  Read from the (state, sink) index, not the payloads."""
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute("SELECT sink, state, count(*), sum(attempts > 0) FROM outbox "
                        "GROUP BY state, sink")
    for sink, state, count, tried in rows:
        row = out.setdefault(sink, dict.fromkeys(OUTBOX_STATES, 0))
        if state == "pending":
            row["failing"] += tried or 0
            row["pending"] += count - (tried or 0)
        elif state in row:
            row[state] += count
    return out


def outbox_rows(conn: sqlite3.Connection, *, sink: str | None = None, state: str | None = None,
                limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Outbox rows newest first; ``state`` 'failing' is pending with attempts behind it."""
    where: list[str] = []
    args: list[Any] = []
    if sink:
        where.append("sink = ?")
        args.append(sink)
    if state == "failing":
        where.append("state = 'pending' AND attempts > 0")
    elif state == "pending":
        where.append("state = 'pending' AND attempts = 0")
    elif state:
        where.append("state = ?")
        args.append(state)
    sql = (f"SELECT {', '.join(OUTBOX_KEYS)} FROM outbox {_where(where)} "
           "ORDER BY id DESC LIMIT ? OFFSET ?")
    out = []
    for row in conn.execute(sql, [*args, limit, offset]):
        r = dict(zip(OUTBOX_KEYS, row, strict=True))
        if r["state"] == "pending" and r["attempts"]:
            r["state"] = "failing"
        out.append(r)
    return out


def resend_alert(path: str, outbox_id: int, now: float) -> bool:
    """Put one outbox row back to pending, due now; False if there is no such row.

    ``created`` restarts too: the sender expires rows older than alerts.max_age, so an expired
    alert sent again would expire at once (the alert's own time stays in its payload).  Its own
    short transaction, beside the writer: the sender picks the row up on its next fetch."""
    cur = write_one(path, "UPDATE outbox SET state = 'pending', next_attempt = ?, created = ?, "
                    "attempts = 0, delivered_at = NULL, last_error = 'resent from the console' "
                    "WHERE id = ?", (now, now, outbox_id), f"resend alert #{outbox_id}")
    return cur.rowcount == 1


def retrohunt_names(conn: sqlite3.Connection, names: Collection[str], *,
                    since: float) -> list[dict[str, Any]]:
    """Who asked for any of ``names`` or their subdomains since ``since`` (``*.x`` as x).

    A few names are sought by index (``retrohunt``); a whole big list is matched the other
    way round, walking the history's distinct names once and testing each suffix against the
    set, which costs the history's size instead of one index range per listed name."""
    wanted = {n[2:] if n.startswith("*.") else n for n in names if n}
    if len(wanted) <= SEEK_NAMES_MAX:
        return retrohunt(conn, wanted, since=since)
    matched: dict[int, tuple[str, str]] = {}
    for nid, name in history_names(conn, since=since):
        suffix = name
        while True:
            if suffix in wanted:
                matched[nid] = (name, suffix)
                break
            dot = suffix.find(".")
            if dot < 0:
                break
            suffix = suffix[dot + 1:]
    return retrohunt_ids(conn, matched, since=since)
