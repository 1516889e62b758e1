"""What every console page shares: the admin handle, rendering, form values, and times.

Times are shown and typed in UTC: a security team correlates with logs from other systems,
and a console whose times moved with the viewer's browser would make that harder.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from sinkhole.config.loader import parse_duration
from sinkhole.store import StoreError, escape_name

from .graphs import RateRing
from .guard import template_context

ADMIN_KEY: web.AppKey[Any] = web.AppKey("console_admin", object)
RING_KEY: web.AppKey[RateRing] = web.AppKey("console_ring", RateRing)
PAGE = 50


def admin_of(request: web.Request) -> Any:
    return request.app[ADMIN_KEY]


def render(request: web.Request, template: str, context: dict[str, Any],
           status: int = 200) -> web.Response:
    """Render with the gate's values (CSRF token, login state) taken now, not before the
    handler ran: a login form's session is created by its handler."""
    return aiohttp_jinja2.render_template(template, request,
                                          {**template_context(request), **context},
                                          status=status)


def see_other(path: str) -> web.HTTPSeeOther:
    """After a POST, the browser goes back with a GET (no re-post on reload)."""
    return web.HTTPSeeOther(path)


class BadInput(web.HTTPBadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(text=message)


def parse_when(value: str | None, *, now: float | None = None) -> float | None:
    """A Unix time (a bare number), '24h' (that long ago), or '2024-05-01T12:00' /
    '2024-05-01 12:00:00' (UTC); None for an empty value."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return (time.time() if now is None else now) - parse_duration(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace(" ", "T").removesuffix("Z"))
    except ValueError:
        raise BadInput(f"{value!r} is neither a duration (24h, 7d) nor a UTC time "
                       "(2024-05-01T12:00)") from None
    return dt.replace(tzinfo=UTC).timestamp() if dt.tzinfo is None else dt.timestamp()


def int_arg(value: str | None, default: int, low: int, high: int) -> int:
    try:
        n = int(value) if value not in (None, "") else default
    except ValueError:
        raise BadInput(f"{value!r} is not a number") from None
    return max(low, min(high, n))


def when(ts: float | None) -> str:
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str:
    """For datetime-local inputs and links (minute precision, UTC)."""
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M")


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    seconds = (time.time() if now is None else now) - ts
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def dns(name: Any) -> str:
    """A stored name in presentation form (control bytes as \\DDD); the template engine then
    escapes it for HTML, so a name like <script> is shown, never run."""
    return "" if name is None else escape_name(str(name))


FILTERS = {"when": when, "iso": iso, "ago": ago, "dns": dns}


@web.middleware
async def store_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A store that cannot be read (being migrated, disk gone) is a 503 page, not a crash."""
    try:
        return await handler(request)
    except StoreError as err:
        return render(request, "error.html", {"title": "Store unavailable",
                                              "message": str(err)}, status=503)
