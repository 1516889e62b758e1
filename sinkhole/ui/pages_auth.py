"""Log in with the API token, log out (the session is forgotten on the server)."""

from __future__ import annotations

from aiohttp import web

from .common import render, see_other
from .guard import PREFIX, SESSION, SESSIONS_KEY, TOKEN_KEY, safe_next, set_cookie
from .sessions import COOKIE, same

routes = web.RouteTableDef()


@routes.get("/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    """The form carries a CSRF token of a not-yet-logged-in session, so a page elsewhere
    cannot log a browser into a session of the attacker's choosing."""
    if not request.app.get(TOKEN_KEY):
        raise see_other(f"{PREFIX}/")
    session = request[SESSION]
    if session is not None and session.authed:
        raise see_other(safe_next(request.query.get("next")))   # logged in already
    fresh = session is None
    if fresh:
        session = request.app[SESSIONS_KEY].create(authed=False)
        request[SESSION] = session
    response = render(request, "login.html", {"next": safe_next(request.query.get("next")),
                                              "error": ""})
    if fresh:
        set_cookie(request, response, session)
    return response


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    token = request.app.get(TOKEN_KEY)
    if not token:
        raise see_other(f"{PREFIX}/")
    form = await request.post()
    target = safe_next(str(form.get("next", "")))
    given = form.get("token")
    if not isinstance(given, str) or not same(given.strip(), token):
        return render(request, "login.html", {"next": target, "error": "Wrong token."},
                      status=401)
    sessions = request.app[SESSIONS_KEY]
    sessions.drop(request.cookies.get(COOKIE))   # a new id at login: no session fixation
    session = sessions.create(authed=True)
    response = see_other(target)
    set_cookie(request, response, session)
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS_KEY].drop(request.cookies.get(COOKIE))
    response = see_other(f"{PREFIX}/login" if request.app.get(TOKEN_KEY) else f"{PREFIX}/")
    response.del_cookie(COOKIE, path=f"{PREFIX}/")
    raise response
