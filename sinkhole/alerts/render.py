"""Per-sink renderings of the generic alert payload: Slack-compatible and Alertmanager API v2.

Both take the stored generic payload (payload.py), never the live objects, so an alert that
waited in the outbox across a restart renders exactly like a fresh one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinkhole.alerts.payload import iso

TITLES = {"hit": "Blocked query", "retro": "Retro-hunt find", "list-error": "List error",
          "suspicion": "Suspicious domain (hunting)", "connect": "Connection to the sinkhole",
          "digest": "Alert digest",
          "test": "Test alert"}
ICONS = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
ALERTNAMES = {"hit": "SinkholeHit", "retro": "SinkholeRetroHit",
              "list-error": "SinkholeListError", "suspicion": "SinkholeSuspicion",
              "connect": "SinkholeConnect",
              "test": "SinkholeTest"}
SLACK_TEXT_MAX = 2900      # Slack rejects a section text over 3000 characters
SLACK_DIGEST_LINES = 15


# ----------------------------------------------------------------- Slack (and Mattermost...)
def mrkdwn(text: Any) -> str:
    """Slack's required escaping: &, <, > are control characters of its markup (links,
    mentions); anything else is shown as is."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: Any) -> str:
    """A code span: a C2 name shown as a code span is never turned into a clickable link."""
    return "`" + mrkdwn(text).replace("`", "'") + "`"


def _cut(text: str) -> str:
    return text if len(text) <= SLACK_TEXT_MAX else text[:SLACK_TEXT_MAX - 1] + "…"


def render_slack(p: Mapping[str, Any]) -> dict[str, Any]:
    """An incoming-webhook message: `text` carries everything (Mattermost and Rocket.Chat show
    only it), `blocks` lay it out for Slack."""
    title = (f"{ICONS.get(p['severity'], '')} *{TITLES.get(p['kind'], p['kind'])}* "
             f"({p['severity']}) on {mrkdwn(p['instance'])}")
    blocks: list[dict[str, Any]] = [_section(f"{title}\n{mrkdwn(p['summary'])}")]
    fields = _slack_fields(p)
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if p["kind"] == "digest":
        blocks.append(_section(_digest_lines(p)))
    if p.get("advice"):
        blocks.append(_section(f"*What to do*\n{mrkdwn(p['advice'])}"))
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _cut(f"More: {_code(p['more'])} · alert {p['id']}")}]})
    text = f"{title}\n{mrkdwn(p['summary'])}"
    if p.get("advice"):
        text += f"\n{mrkdwn(p['advice'])}"
    text += f"\nMore: {_code(p['more'])}"
    return {"text": _cut(text), "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text)}}


def _slack_fields(p: Mapping[str, Any]) -> list[dict[str, str]]:
    pairs = []
    client = p.get("client")
    if client:
        name = f" ({mrkdwn(client['name'])})" if client.get("name") else ""
        pairs.append(("Client", f"{mrkdwn(client['ip'])}{name}"))
    if p.get("domain"):
        pairs.append(("Name asked", _code(p["domain"])))
    if p.get("list"):
        cat = f" ({mrkdwn(p['category'])})" if p.get("category") else ""
        pairs.append(("List", f"{mrkdwn(p['list'])}{cat}"))
    if p.get("first_seen") and p["kind"] != "test":
        pairs.append(("Seen", f"{p['count']}x, {p['first_seen']} .. {p['last_seen']}"))
    if p.get("error"):
        pairs.append(("Error", mrkdwn(p["error"])))
    return [{"type": "mrkdwn", "text": _cut(f"*{k}*\n{v}")[:1990]} for k, v in pairs]


def _digest_lines(p: Mapping[str, Any]) -> str:
    lines = []
    for item in p["items"][:SLACK_DIGEST_LINES]:
        who = item["client"]["ip"] if item.get("client") else "-"
        what = _code(item["domain"]) if item.get("domain") else mrkdwn(item.get("error") or "")
        lines.append(f"• {mrkdwn(who)} → {what} ({mrkdwn(item.get('list') or '-')}, "
                     f"{item['count']}x)")
    rest = len(p["items"]) - len(lines) + p.get("omitted", 0)
    if rest > 0:
        lines.append(f"…and {rest} more")
    return "\n".join(lines)


# ----------------------------------------------------------------- Alertmanager API v2
def render_alertmanager(p: Mapping[str, Any], *, now: float, resolve_after: float,
                        generator_url: str | None = None) -> list[dict[str, Any]]:
    """`POST /api/v2/alerts` body: one alert per item, labelled so a fleet is deduplicated.

    ``endsAt`` is counted from the send time, not from ``startsAt``: an alert delivered late
    (after retries, or a retro find whose episode lies in the past) must still arrive firing.
    Labels hold no client name: names change with DHCP, which would split one alert in two.
    """
    items = p["items"] if p["kind"] == "digest" else [p]
    ends = iso(now + resolve_after)
    out = [_am_alert(item, p["instance"], ends, generator_url) for item in items]
    if p["kind"] == "digest" and p.get("omitted"):
        out.append(_am(
            {"alertname": "SinkholeAlertsOmitted", "severity": p["severity"],
             "instance": p["instance"]},
            {"summary": f"{p['omitted']} more alerts were folded into a digest",
             "description": p["summary"], "more": p["more"]},
            p["time"], ends, generator_url))
    return out


def _am_alert(item: Mapping[str, Any], instance: str, ends: str | None,
              generator_url: str | None) -> dict[str, Any]:
    labels = {"alertname": ALERTNAMES.get(item["kind"], "SinkholeAlert"),
              "severity": item["severity"], "instance": instance}
    client = item.get("client")
    for key, value in (("client", client["ip"] if client else None), ("list", item.get("list")),
                       ("domain", item.get("domain")), ("category", item.get("category"))):
        if value:   # an empty label value means "no such label" to Alertmanager anyway
            labels[key] = value
    description = item["summary"]
    if client and client.get("name"):
        description += f"\nclient name: {client['name']}"
    if item.get("first_seen"):
        description += (f"\n{item['count']} hits, first {item['first_seen']}, "
                        f"last {item['last_seen']}")
    annotations = {"summary": item["summary"], "description": description,
                   "more": item["more"]}
    if item.get("advice"):
        annotations["advice"] = item["advice"]
    starts = item.get("first_seen") or item.get("time")
    return _am(labels, annotations, starts, ends, generator_url)


def _am(labels: dict[str, str], annotations: dict[str, str], starts: str | None,
        ends: str | None, generator_url: str | None) -> dict[str, Any]:
    alert: dict[str, Any] = {"labels": labels, "annotations": annotations,
                             "startsAt": starts, "endsAt": ends}
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert
