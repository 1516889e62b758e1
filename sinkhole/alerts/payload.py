"""Alert payloads: the documented JSON an alert is stored and sent as, and how it is signed.

This generic form is what the outbox stores and the webhook sink sends as is; the Slack and
Alertmanager renderers (render.py) derive from it, so a stored alert renders the same after a
restart. Schema version 1 (a key is only ever added; a change of meaning bumps ``version``):

    version       1
    id            hex, unique per alert: delivery is at least once (a crash between the
                  receiver's 2xx and our commit re-sends), so receivers dedupe on it
    kind          hit | retro | list-error | digest | test
    severity      info | warning | critical
    time          when the alert was raised (RFC 3339, UTC)
    instance      which sinkhole raised it (alerts.instance, default the host name)
    client        {"ip": "10.0.0.5", "name": "alice-iphone" or null} or null
    domain        the name asked, in DNS presentation form (odd bytes as \\DDD) or null
    list, category, rule          the list that blocked it, its category, the matching rule
    first_seen, last_seen         the episode (retro: the span found in the history)
    count         hits in the episode (digest: hits covered, omitted ones included)
    repeats, repeats_since        hits since the previous alert for this episode, which that
                                  alert could not report yet ("+N more since ...")
    error         list-error: why the list could not be loaded (its last good version is kept)
    advice        the list file's `advice` header: what to do about it
    more          a command showing more, e.g. `sinkhole hits --client 10.0.0.5 --since 24h`
    summary       one line for humans
    items         digest: the grouped alerts, each with the keys from client to summary
    omitted       digest: alerts beyond those listed, counted only
    reason        digest: burst (many at once) or rate (the sink's max_per_minute was reached)

Signature (webhook with secret_file): ``X-Sinkhole-Signature: sha256=<hex HMAC-SHA256 of the
raw body>``; ``X-Sinkhole-Timestamp`` is the send time. The signed body carries ``time`` and
``id``, so a receiver can reject stale or replayed deliveries from signed data alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import shlex
import time
from collections.abc import Mapping
from typing import Any

from sinkhole.alerts.model import Alert, Item
from sinkhole.hits import escape

SCHEMA_VERSION = 1
Meta = Mapping[str, Mapping[str, str]]


def iso(t: float | None) -> str | None:
    """RFC 3339 in UTC with milliseconds: what Alertmanager and most SIEMs parse."""
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def build_payload(alert: Alert, *, instance: str, meta: Meta, alert_id: str) -> dict[str, Any]:
    """The generic JSON of one alert (see the module docstring for every key)."""
    items = [_item_dict(i, meta, alert.created) for i in alert.items]
    head: dict[str, Any] = {"version": SCHEMA_VERSION, "id": alert_id, "kind": alert.kind,
                            "severity": alert.severity, "time": iso(alert.created),
                            "instance": escape(instance)}
    if alert.kind != "digest":
        body = items[0]
        if alert.kind == "test":
            body["summary"] = (f"test alert from sinkhole on {escape(instance)}: "
                               "alerts reach this sink")
        return {**head, **body, "items": [], "omitted": 0, "reason": None}
    lists = {i.list for i in alert.items if i.list}
    only = next(iter(lists)) if len(lists) == 1 else None
    first = min(i.first_seen for i in alert.items)
    more = ["sinkhole", "hits", "--since", _since(first, alert.created)]
    if only:
        more += ["--list", only]
    return {**head, "client": None, "domain": None, "list": only,
            "category": _common(i.category for i in alert.items), "rule": None,
            "first_seen": iso(first), "last_seen": iso(max(i.last_seen for i in alert.items)),
            "count": sum(_new_hits(i) for i in alert.items) + alert.omitted_hits,
            "repeats": 0, "repeats_since": None, "error": None,
            "advice": _advice(meta, only) if only else None,
            "more": shlex.join(more), "summary": _digest_summary(alert),
            "items": items, "omitted": alert.omitted, "reason": alert.reason}


def render_webhook(payload: Any) -> bytes:
    """ASCII JSON: escaped names stay readable, and no byte can upset a strict parser."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=True,
                      separators=(",", ":")).encode("ascii")


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does (and the tests): constant-time compare of the signature header."""
    return hmac.compare_digest(sign(secret, body), header)


# ----------------------------------------------------------------- internals
def _item_dict(item: Item, meta: Meta, now: float) -> dict[str, Any]:
    client = None
    if item.client:
        client = {"ip": escape(item.client),
                  "name": escape(item.client_name) if item.client_name else None}
    return {
        "kind": item.kind, "severity": item.severity, "client": client,
        "domain": escape(item.domain) if item.domain else None,
        "list": item.list or None, "category": item.category or None,
        "rule": escape(item.rule) if item.rule else None,
        "first_seen": iso(item.first_seen or None), "last_seen": iso(item.last_seen or None),
        "count": item.count, "repeats": item.repeats, "repeats_since": iso(item.repeats_since),
        "error": item.error or None,
        "advice": _advice(meta, item.list) if item.list else None,
        "more": _more(item, now), "summary": _summary(item),
    }


def _advice(meta: Meta, list_name: str) -> str | None:
    return (meta.get(list_name) or {}).get("advice") or None


def _who(item: Item) -> str:
    name = f" ({escape(item.client_name)})" if item.client_name else ""
    return f"{escape(item.client)}{name}"


def _short(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t or 0))


def _summary(item: Item) -> str:
    where = f"list {item.list}" + (f" ({item.category}, {item.severity})" if item.category
                                   else f" ({item.severity})")
    if item.kind == "list-error":
        return f"list {item.list} could not be loaded (last good version kept): {item.error}"
    if item.kind == "retro":
        span = f"{_short(item.first_seen)} .. {_short(item.last_seen)}"
        return (f"retro-hunt: {_who(item)} asked for {escape(item.domain)} {item.count}x "
                f"({span}), now on {where}")
    if item.kind == "test":
        return "test alert"
    if item.kind == "connect":
        return (f"{_who(item)} tried to connect to {escape(item.domain or '?')} on the sinkhole "
                f"({escape(item.rule)}), {where}: the device acts on the C2 name")
    if item.kind == "suspicion":
        return (f"suspicious: {_who(item)} asked for {escape(item.domain)} {item.count}x "
                f"({item.category}; {escape(item.rule)}); no list names it yet")
    text = f"{_who(item)} asked for {escape(item.domain)}, {where}"
    if item.repeats:
        text += f" +{item.repeats} more since {_short(item.repeats_since)}"
    if item.count > 1:
        text += f"; {item.count} hits since {_short(item.first_seen)}"
    return text


def _digest_summary(alert: Alert) -> str:
    clients = {i.client for i in alert.items if i.client}
    names = {i.domain for i in alert.items if i.domain}
    lists = sorted({i.list for i in alert.items if i.list})
    total = len(alert.items) + alert.omitted
    why = "at once" if alert.reason == "burst" else "held back by the sink's rate limit"
    more = f" (+{alert.omitted} not listed)" if alert.omitted else ""
    return (f"{total} alerts {why}: {len(clients)} clients, {len(names)} names{more}; "
            f"lists: {', '.join(lists) or '-'}")


def _since(first: float, now: float) -> str:
    """A `--since` covering the episode, at least a day (context around it helps)."""
    hours = max(24, math.ceil((now - first) / 3600) + 1)
    return f"{hours}h" if hours <= 72 else f"{math.ceil(hours / 24)}d"


def _more(item: Item, now: float) -> str:
    if item.kind == "list-error":
        return shlex.join(["journalctl", "-u", "sinkhole", "-g", f"list {item.list}"])
    if item.kind == "test":
        return "sinkhole test-alert"
    if item.kind == "suspicion":
        return shlex.join(["sinkhole", "suspicions", "--since", _since(item.first_seen, now)])
    cmd = ["sinkhole", "hits", "--client", item.client]
    if item.kind == "retro":
        cmd += ["--list", item.list]
    else:
        cmd += ["--since", _since(item.first_seen, now)]
    return shlex.join(cmd)


def _new_hits(item: Item) -> int:
    """Hits an item tells about for the first time (a retro find: all it found)."""
    return item.count if item.kind == "retro" else item.repeats + 1


def _common(values: Any) -> str | None:
    found = {v for v in values if v}
    return next(iter(found)) if len(found) == 1 else None
