"""Alert sinks: turning a stored payload into one HTTP POST and its outcome.

All sinks share the one ``aiohttp.ClientSession`` the manager owns (one connection pool, not a
session per alert). A sink never logs and never returns its URL's path or query, nor the HMAC
key: webhook URLs carry tokens, so only ``redact_secret(url)`` (scheme and host) is shown.

Outcomes: 2xx delivered. 408, 429 and 5xx, timeouts and connection errors are transient:
retried with backoff. Any other 4xx or a redirect is *not* treated as permanent: it is nearly
always a wrong or rotated URL or token, which an operator fixes, and the alert must then still
arrive; so it is retried like the rest (up to ``max_age``) but logged as an ERROR that names
the fix. Redirects are not followed: a signed alert must not be forwarded elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from sinkhole import __version__
from sinkhole.alerts.payload import render_webhook, sign
from sinkhole.alerts.render import render_alertmanager, render_slack
from sinkhole.config.loader import redact_secret
from sinkhole.errors import SinkholeError

USER_AGENT = f"sinkhole/{__version__}"
BODY_SNIPPET = 200


class AlertSetupError(SinkholeError):
    """The alert config cannot be used (unreadable secret file, duplicate sink name)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    detail: str                      # safe to log: never the URL's path or a secret
    retry_after: float | None = None  # the receiver's Retry-After (429/503), seconds
    misconfigured: bool = False      # 4xx or redirect: retried, but an operator must act


class Sink:
    """One configured destination; subclasses say how a payload becomes a request."""

    kind = "webhook"

    def __init__(self, name: str, url: str, *, timeout: float, max_per_minute: int) -> None:
        self.name = name
        self.url = url
        self.timeout = timeout
        self.max_per_minute = max_per_minute
        self.where = redact_secret(url)

    def endpoint(self) -> str:
        return self.url

    def request(self, payload: Mapping[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
        return render_webhook(payload), {"Content-Type": "application/json"}

    async def send(self, session: aiohttp.ClientSession, payload: Mapping[str, Any]) -> Outcome:
        """One attempt; never raises for network trouble, returns the outcome instead."""
        body, headers = self.request(payload, time.time())
        try:
            async with session.post(self.endpoint(), data=body, headers=headers,
                                    allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                snippet = (await resp.content.read(BODY_SNIPPET)).decode("utf-8", "replace")
                return _outcome(resp.status, resp.reason, snippet, resp.headers)
        except TimeoutError:
            return Outcome(False, f"no answer within {self.timeout:g}s")
        except aiohttp.ClientError as err:
            return Outcome(False, self._scrub(f"{type(err).__name__}: {err}"))
        except OSError as err:
            return Outcome(False, self._scrub(f"{type(err).__name__}: {err.strerror or err}"))

    def _scrub(self, text: str) -> str:
        """aiohttp puts the URL into some messages; the token must not reach a log."""
        for secret in {self.url, self.endpoint(), self.url.split("://", 1)[-1]}:
            text = text.replace(secret, self.where)
        return text[:300]


class WebhookSink(Sink):
    """Generic JSON, signed with HMAC-SHA256 when a secret file is configured."""

    def __init__(self, name: str, url: str, *, timeout: float, max_per_minute: int,
                 secret: bytes | None = None) -> None:
        super().__init__(name, url, timeout=timeout, max_per_minute=max_per_minute)
        self._secret = secret

    def request(self, payload: Mapping[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
        body, headers = super().request(payload, now)
        headers["X-Sinkhole-Timestamp"] = str(int(now))
        if self._secret is not None:
            headers["X-Sinkhole-Signature"] = sign(self._secret, body)
        return body, headers


class SlackSink(Sink):
    kind = "slack"

    def request(self, payload: Mapping[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
        return render_webhook(render_slack(payload)), {"Content-Type": "application/json"}


class AlertmanagerSink(Sink):
    """Pushes to Alertmanager API v2; alerts resolve ``resolve_after`` seconds after sending
    unless re-sent (the cooldown: an episode still going is re-reported within it)."""

    kind = "alertmanager"

    def __init__(self, name: str, url: str, *, timeout: float, max_per_minute: int,
                 resolve_after: float) -> None:
        super().__init__(name, url, timeout=timeout, max_per_minute=max_per_minute)
        self.resolve_after = resolve_after

    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"

    def request(self, payload: Mapping[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
        alerts = render_alertmanager(payload, now=now, resolve_after=self.resolve_after)
        return render_webhook(alerts), {"Content-Type": "application/json"}


def sink_names(specs: Sequence[Any]) -> list[str]:
    """The configured name, else the type, then type-2, type-3...: appending a sink never
    renames an existing one (its undelivered outbox rows are found by name)."""
    names: list[str] = []
    for spec in specs:
        name = spec.name or spec.type
        n = 2
        while not spec.name and name in names:
            name, n = f"{spec.type}-{n}", n + 1
        if name in names:
            raise AlertSetupError(f"alerts.sinks: two sinks are named {name!r}; names must be "
                                  "unique (they key the outbox and the metrics)")
        names.append(name)
    return names


def build_sinks(cfg: Any) -> list[Sink]:
    """Every configured sink, secrets read now: a missing key fails start-up, not an alert."""
    sinks: list[Sink] = []
    for i, (spec, name) in enumerate(zip(cfg.sinks, sink_names(cfg.sinks), strict=True)):
        common = {"timeout": spec.timeout, "max_per_minute": spec.max_per_minute}
        if spec.type == "slack":
            sinks.append(SlackSink(name, spec.url, **common))
        elif spec.type == "alertmanager":
            sinks.append(AlertmanagerSink(name, spec.url, resolve_after=max(cfg.cooldown, 300.0),
                                          **common))
        else:
            secret = _read_secret(i, spec.secret_file) if spec.secret_file else None
            sinks.append(WebhookSink(name, spec.url, secret=secret, **common))
    return sinks


def _read_secret(index: int, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as err:
        raise AlertSetupError(f"alerts.sinks[{index}].secret_file: cannot read {path}: "
                              f"{err.strerror}") from None
    if not secret:
        raise AlertSetupError(f"alerts.sinks[{index}].secret_file: {path} is empty")
    return secret


def _outcome(status: int, reason: str | None, snippet: str,
             headers: Mapping[str, str]) -> Outcome:
    detail = f"HTTP {status} {reason or ''}".rstrip()
    if 200 <= status < 300:
        return Outcome(True, detail)
    text = " ".join(snippet.split())[:BODY_SNIPPET]
    if text:
        detail += f": {text}"
    if status in (408, 429) or status >= 500:
        return Outcome(False, detail, _retry_after(headers.get("Retry-After")))
    hint = "redirect not followed, fix the URL" if 300 <= status < 400 else \
        "check the sink's URL and token"
    return Outcome(False, f"{detail} ({hint})", misconfigured=True)


def _retry_after(value: str | None) -> float | None:
    try:
        return min(3600.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None   # an HTTP date: our own backoff is good enough


async def send_all(sinks: Sequence[Sink], session: aiohttp.ClientSession,
                   payload: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """One payload through every sink at once, for `test-alert`: (name, ok, detail) each."""
    async def one(sink: Sink) -> tuple[str, bool, str]:
        start = time.monotonic()
        outcome = await sink.send(session, payload)
        took = time.monotonic() - start
        return sink.name, outcome.ok, f"{outcome.detail} in {took:.2f}s ({sink.where})"

    return list(await asyncio.gather(*(one(s) for s in sinks)))
