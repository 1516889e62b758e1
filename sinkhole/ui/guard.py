"""The console's gate: who may see a page (session), which POST is genuine (CSRF), and the
headers that keep a hostile query name from ever running as script in the browser.

Every response under /ui/ passes here, error pages included, so the Content-Security-Policy
is never missing: no inline script, nothing from another origin, no framing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .sessions import AUTHED_TTL, COOKIE, Session, Sessions, same

PREFIX = "/ui"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PUBLIC = (f"{PREFIX}/login", f"{PREFIX}/static/")
SESSIONS_KEY: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)
TOKEN_KEY: web.AppKey[str] = web.AppKey("token", str)
SESSION: web.RequestKey[Any] = web.RequestKey("session", object)   # a Session or None
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site sends it), Secure when
    the page came over TLS, and expiring with the session."""
    response.set_cookie(COOKIE, session.id, max_age=int(AUTHED_TTL), path=f"{PREFIX}/",
                        httponly=True, samesite="Strict", secure=request.secure)


def safe_next(target: str | None) -> str:
    """Only a console path: a login link must not send the user to another site."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//") \
            and "\\" not in target and "//" not in target:
        return target
    return f"{PREFIX}/"


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _checked(request, handler)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    sessions = request.app[SESSIONS_KEY]
    token = request.app.get(TOKEN_KEY)
    session = sessions.get(request.cookies.get(COOKIE))
    if request.path.startswith(PUBLIC):
        request[SESSION] = session
        if request.method == "POST":
            await _check_csrf(request, session)
        return await handler(request)
    fresh = None
    if session is None or not session.authed:
        if token:
            if request.method != "GET":
                raise web.HTTPForbidden(text="not logged in (or the session ended)")
            raise web.HTTPSeeOther(f"{PREFIX}/login?next={quote(request.path_qs)}")
        # No token file on a loopback listener: the console is open, as the API is; the
        # session still exists, so that forms carry a CSRF token like everywhere else.
        if request.method != "GET":
            raise web.HTTPForbidden(text="missing CSRF token: reload the page")
        session = fresh = sessions.create(authed=True)
    request[SESSION] = session
    if request.method == "POST":
        await _check_csrf(request, session)
    response = await handler(request)
    if fresh is not None:
        set_cookie(request, response, fresh)
    return response


async def _check_csrf(request: web.Request, session: Session | None) -> None:
    """A POST must carry the token of the session it comes with: a page on another site
    can make the browser post, but cannot read our page to learn the token."""
    form = await request.post()
    given = form.get("csrf")
    if session is None or not isinstance(given, str) or not same(given, session.csrf):
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page and retry")


def template_context(request: web.Request) -> dict[str, Any]:
    """What every template may use: the CSRF token, whether a logout makes sense."""
    session = request.get(SESSION)
    return {"csrf": session.csrf if session is not None else "",
            "logged_in": bool(session is not None and session.authed),
            "token_required": bool(request.app.get(TOKEN_KEY)),
            "path": request.path}
