"""The security console on a real daemon, over real HTTP: login and logout (the session ends on
the server), CSRF, the CSP, hostile names shown as text, every page with data, triage that
reopens on a new hit, the findings API, and resending an alert through a real receiver."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import time
import urllib.error
import urllib.request
from http.cookiejar import Cookie, CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import DaemonThread
from tests.peers.dnsserver import FakeUpstream
from tests.peers.receiver import Receiver
from tests.test_hits import raw_query

TOKEN = "console-token-0123456789abcdef"
HOSTILE_LABEL = b"<script>alert(1)</script>"
HOSTILE_QNAME = "<script>alert(1)</script>.evil.test"
HOSTILE_HOST = "<img/src=x/onerror=alert(2)>"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


class Page:
    def __init__(self, status: int, headers: Any, body: str) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.body)
        assert found, "the page has no CSRF field"
        return found.group(1)


class Browser:
    """A cookie-keeping HTTP client that does not follow redirects (the tests look at them)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _NoRedirect)

    def get(self, path: str) -> Page:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict[str, str]) -> Page:
        data = urlencode(fields).encode()
        return self._open(urllib.request.Request(self.base + path, data=data, method="POST"))

    def login(self, token: str = TOKEN) -> Page:
        form = self.get("/ui/login")
        return self.post("/ui/login", {"csrf": form.csrf, "token": token, "next": "/ui/"})

    def cookie(self) -> str | None:
        return next((c.value for c in self.jar if c.name == "sinkhole_session"), None)

    def set_cookie(self, value: str) -> None:
        host = self.base.split("//")[1].split(":")[0]
        self.jar.set_cookie(Cookie(0, "sinkhole_session", value, None, False, host, False,
                                   False, "/ui/", True, False, None, False, None, None, {}))

    def _open(self, req: urllib.request.Request) -> Page:
        try:
            with self.opener.open(req, timeout=20) as resp:
                return Page(resp.status, resp.headers, resp.read().decode())
        except urllib.error.HTTPError as err:
            return Page(err.code, err.headers, err.read().decode())


def start(make_daemon: Any, upstream: FakeUpstream, tmp_path: Path, *, token: bool = True,
          **extra: Any) -> DaemonThread:
    (tmp_path / "c2.txt").write_text("evil.test\nother-c2.test\n")
    raw: dict[str, Any] = {
        "upstreams": [upstream.url()], "reload": {"watch": False},
        "blocklists": [{"name": "c2", "path": str(tmp_path / "c2.txt"), "category": "c2",
                        "severity": "critical"}], **extra}
    if token:
        (tmp_path / "token").write_text(TOKEN + "\n")
        raw["api"] = {"token_file": str(tmp_path / "token")}
    return make_daemon(raw)


def logged_in(d: DaemonThread) -> Browser:
    b = Browser(d.http)
    assert b.login().status == 303
    return b


def api(d: DaemonThread, path: str) -> Any:
    req = urllib.request.Request(d.http + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


# ----------------------------------------------------------------- who may see the console
def test_login_logout_and_the_old_cookie_is_dead(make_daemon, upstream, tmp_path) -> None:
    d = start(make_daemon, upstream, tmp_path)
    b = Browser(d.http)
    assert b.get("/").headers["Location"] == "/ui/"
    first = b.get("/ui/devices?q=x")
    assert first.status == 303 and first.headers["Location"].startswith("/ui/login?next=")
    form = b.get("/ui/login")
    assert 'type="password" name="token"' in form.body
    wrong = b.post("/ui/login", {"csrf": form.csrf, "token": "not-the-token-at-all"})
    assert wrong.status == 401 and "Wrong token" in wrong.body
    ok = b.post("/ui/login", {"csrf": form.csrf, "token": TOKEN, "next": "/ui/devices"})
    assert ok.status == 303 and ok.headers["Location"] == "/ui/devices"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=" in cookie
    assert "Path=/ui/" in cookie and "Secure" not in cookie       # plain HTTP here
    session = b.cookie()
    page = b.get("/ui/")
    assert page.status == 200 and "Devices to check" in page.body
    assert b.post("/ui/logout", {"csrf": page.csrf}).status == 303
    assert b.get("/ui/").status == 303
    b.set_cookie(session or "")                 # the old cookie, kept by an attacker
    assert b.get("/ui/").status == 303 and b.get("/ui/hits").status == 303


def test_open_console_on_loopback_without_a_token(make_daemon, upstream, tmp_path) -> None:
    d = start(make_daemon, upstream, tmp_path, token=False)
    b = Browser(d.http)
    page = b.get("/ui/")
    assert page.status == 200 and "Devices to check" in page.body
    assert b.get("/ui/login").headers["Location"] == "/ui/"
    assert b.post("/ui/lists/reload", {}).status == 403                 # still needs CSRF
    assert b.post("/ui/lists/reload", {"csrf": b.get("/ui/lists").csrf}).status == 200


def test_post_without_csrf_is_refused(make_daemon, upstream, tmp_path) -> None:
    d = start(make_daemon, upstream, tmp_path)
    d.query("evil.test")
    assert d.daemon.store.flush()
    b = logged_in(d)
    other = logged_in(d)
    mark = {"client_ip": "127.0.0.1", "kind": "hit", "key": "c2", "state": "cleared",
            "note": "n", "next": "/ui/triage"}
    assert b.post("/ui/triage", mark).status == 403
    assert b.post("/ui/triage", {**mark, "csrf": other.get("/ui/").csrf}).status == 403
    assert b.post("/ui/lists/reload", {"csrf": "forged"}).status == 403
    assert b.post("/ui/alerts/1/resend", {}).status == 403
    assert Browser(d.http).post("/ui/login", {"token": TOKEN}).status == 403
    assert api(d, "/api/v1/findings")["items"][0]["state"] == "open"   # nothing was marked
    assert b.post("/ui/triage", {**mark, "csrf": b.get("/ui/").csrf}).status == 303
    assert api(d, "/api/v1/findings")["items"][0]["state"] == "cleared"


def test_strict_headers_and_no_external_assets(make_daemon, upstream, tmp_path) -> None:
    d = start(make_daemon, upstream, tmp_path)
    b = logged_in(d)
    for path in ("/ui/", "/ui/login", "/ui/nowhere", "/ui/hits?kind=bogus"):
        page = b.get(path)
        csp = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
    body = b.get("/ui/").body
    assert not re.search(r'(src|href)="(https?:)?//', body), "an external asset"
    assert "<script>" not in body and not re.search(r"<script(?![^>]*\bsrc=)", body)
    assert not re.search(r"<[^>]+\son[a-z]+=", body), "an inline event handler"
    css = [m for m in re.findall(r'href="(/ui/static/[^"]+)"', body)]
    assert css and b.get(css[0]).status == 200


# ----------------------------------------------------------------- hostile text
def test_hostile_names_render_as_text(make_daemon, upstream, tmp_path) -> None:
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(f"4102444800 aa:bb:cc:dd:ee:01 127.0.0.2 {HOSTILE_HOST} *\n")
    d = start(make_daemon, upstream, tmp_path, clients={"leases": [str(leases)]})
    raw_query(d.port, bytes([len(HOSTILE_LABEL)]) + HOSTILE_LABEL + b"\x04evil\x04test\x00")
    d.query("evil.test", source="127.0.0.2")
    assert d.daemon.store.flush()
    b = logged_in(d)
    hit = api(d, "/api/v1/hits?qname=" + urllib.request.quote(HOSTILE_QNAME))["items"][0]
    pages = ["/ui/", "/ui/hits", "/ui/devices/127.0.0.1", "/ui/devices?q=",
             "/ui/devices/127.0.0.2", "/ui/triage",
             f"/ui/devices/127.0.0.1/timeline?at={hit['time']}"]
    for path in pages:
        body = b.get(path).body
        assert "<script>alert(1)" not in body and "<img/src=x" not in body, path
    assert html.escape(HOSTILE_QNAME, quote=False) in b.get("/ui/hits").body
    assert html.escape(HOSTILE_HOST, quote=False) in b.get("/ui/devices/127.0.0.2").body
    rows = list(csv.DictReader(io.StringIO(b.get("/ui/hits.csv").body)))
    assert HOSTILE_QNAME in {r["qname"] for r in rows}


def test_csv_export_defuses_spreadsheet_formulas(make_daemon, upstream, tmp_path) -> None:
    d = start(make_daemon, upstream, tmp_path)
    label = b"=cmd|calc"
    raw_query(d.port, bytes([len(label)]) + label + b"\x04evil\x04test\x00")
    assert d.daemon.store.flush()
    rows = list(csv.DictReader(io.StringIO(logged_in(d).get("/ui/hits.csv").body)))
    assert [r["qname"] for r in rows] == ["'=cmd|calc.evil.test"]


# ----------------------------------------------------------------- pages with data
def test_every_page_shows_the_data(make_daemon, upstream, tmp_path) -> None:
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text("4102444800 aa:bb:cc:dd:ee:01 127.0.0.2 bob-phone *\n")
    d = start(make_daemon, upstream, tmp_path, clients={"leases": [str(leases)]})
    d.query("c2.evil.test", source="127.0.0.2")
    leases.write_text("4102444800 aa:bb:cc:dd:ee:01 127.0.0.3 bob-phone *\n")
    d.daemon.client_names.refresh()
    d.query("other-c2.test", source="127.0.0.3")
    d.query("harmless.example", source="127.0.0.4")
    for i in range(55):
        d.query(f"n{i}.evil.test", source="127.0.0.5")
    assert d.daemon.store.flush()
    b = logged_in(d)

    overview = b.get("/ui/").body
    assert "bob-phone" in overview and "127.0.0.5" in overview and "<svg" in overview
    assert 'class="sev sev-critical"' in overview and "c2" in overview
    assert "No device had a hit" not in overview
    assert "up" in overview and upstream.url().split("//")[-1] in overview   # upstream health

    assert "127.0.0.4" in b.get("/ui/devices?q=127.0.0.4").body     # asked, no hit
    found = b.get("/ui/devices?q=bob").body
    assert "127.0.0.3" in found and "127.0.0.5" not in found
    device = b.get("/ui/devices/127.0.0.3").body
    assert "other-c2.test" in device
    assert "/ui/devices/127.0.0.2" in device      # the same name had another address before

    hits = b.get("/ui/hits?" + urlencode({"client": "bob-phone"})).body
    assert "c2.evil.test" in hits and "other-c2.test" in hits and "n1.evil.test" not in hits
    assert "c2.evil.test" not in b.get("/ui/hits?kind=retro&client=bob-phone").body
    assert "c2.evil.test" in b.get("/ui/hits?kind=query&client=bob-phone").body
    assert "c2.evil.test" in b.get("/ui/hits?" + urlencode({"qname": "c2.evil.test",
                                                            "since": "1h"})).body
    assert "c2.evil.test" not in b.get("/ui/hits?until=2001-01-01T00:00").body
    page1 = b.get("/ui/hits?client=127.0.0.5").body
    assert 'rel="next"' in page1 and "n54.evil.test" in page1 and "n0.evil.test" not in page1
    page2 = b.get("/ui/hits?client=127.0.0.5&page=2").body
    assert "n0.evil.test" in page2 and 'rel="next"' not in page2
    exported = json.loads(b.get("/ui/hits.json?client=127.0.0.5").body)
    assert len(exported) == 55 and exported[0]["qname"] == "n54.evil.test"
    assert len(list(csv.DictReader(io.StringIO(b.get("/ui/hits.csv?list=c2").body)))) == 57

    lists = b.get("/ui/lists?check=x.c2.evil.test").body
    assert "blocked by list <b>c2</b>" in lists and "c2.txt:1: evil.test" in lists
    assert "not blocked" in b.get("/ui/lists?check=harmless.example").body
    page = b.get("/ui/lists")
    report = b.post("/ui/lists/reload", {"csrf": page.csrf})
    assert report.status == 200 and "Reload report: ok" in report.body

    assert "Alerts" in b.get("/ui/alerts").body
    retro = b.get("/ui/retro")
    found = b.post("/ui/retro", {"csrf": retro.csrf, "names": "harmless.example\nbad name!",
                                 "since": "24h"}).body
    assert "127.0.0.4" in found and "harmless.example" in found and "bad name!" in found


def test_timeline_shows_the_queries_around_a_hit_at_once(make_daemon, upstream,
                                                        tmp_path) -> None:
    """The history writer keeps counts in memory for a minute; the timeline must not wait."""
    d = start(make_daemon, upstream, tmp_path)
    d.query("before.example", source="127.0.0.2")
    d.query("evil.test", source="127.0.0.2")
    assert d.daemon.store.flush()                  # the hit (and the hour so far) on disk
    d.query("after.example", source="127.0.0.2")   # only in the writer's memory now
    d.query("someone-else.example", source="127.0.0.3")
    b = logged_in(d)
    hit = api(d, "/api/v1/hits?qname=evil.test")["items"][0]
    body = b.get(f"/ui/devices/127.0.0.2/timeline?at={hit['time']}&qname=evil.test").body
    assert "before.example" in body and "after.example" in body
    assert "someone-else.example" not in body
    assert re.search(r'class="timeline-hit marked">[^<]*<b>blocked</b>\s*<code class="qname">'
                     r'evil.test</code>', body)
    wide = b.get(f"/ui/devices/127.0.0.2/timeline?at={hit['time']}&span=6").body
    assert wide.count('<section class="hour') == 13


def test_findings_reopen_after_a_new_hit(make_daemon, upstream, tmp_path) -> None:
    d = start(make_daemon, upstream, tmp_path)
    d.query("evil.test", source="127.0.0.2")
    assert d.daemon.store.flush()
    b = logged_in(d)
    [f] = api(d, "/api/v1/findings")["items"]
    assert (f["client_ip"], f["kind"], f["key"], f["state"]) == ("127.0.0.2", "hit", "c2", "open")
    page = b.get("/ui/triage")
    assert "127.0.0.2" in page.body
    mark = {"csrf": page.csrf, "client_ip": "127.0.0.2", "kind": "hit", "key": "c2",
            "state": "cleared", "note": "reimaged the phone", "next": "/ui/triage?state=all"}
    res = b.post("/ui/triage", mark)
    assert res.status == 303 and res.headers["Location"] == "/ui/triage?state=all"
    [f] = api(d, "/api/v1/findings")["items"]
    assert f["state"] == "cleared" and f["note"] == "reimaged the phone" and f["marked_at"]
    assert api(d, "/api/v1/findings?state=open")["items"] == []
    assert "127.0.0.2" not in b.get("/ui/triage").body             # nothing open
    assert "reimaged the phone" in b.get("/ui/devices/127.0.0.2").body

    d.query("evil.test", source="127.0.0.2")                       # re-infected
    assert d.daemon.store.flush()
    [f] = api(d, "/api/v1/findings?state=reopened")["items"]
    assert f["note"] == "reimaged the phone"
    assert "state-reopened" in b.get("/ui/").body
    assert api(d, "/api/v1/findings?state=open&state=cleared")["count"] == 0
    with pytest.raises(urllib.error.HTTPError) as err:
        api(d, "/api/v1/findings?state=nonsense")
    assert err.value.code == 400
    req = urllib.request.Request(d.http + "/api/v1/findings")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401                                    # the API's token still rules


def test_resend_delivers_an_alert_again(make_daemon, upstream, tmp_path) -> None:
    rx = Receiver().start()
    try:
        d = start(make_daemon, upstream, tmp_path, alerts={
            "sinks": [{"type": "webhook", "url": rx.url(), "name": "hook"}],
            "digest_window": "0s"})
        d.query("evil.test", source="127.0.0.2")
        [first] = rx.wait_for(1)
        b = logged_in(d)
        page = _wait_page(d, b, "/ui/alerts", "state-delivered")
        row_id = re.search(r'id="alert-(\d+)"', page.body).group(1)
        res = b.post(f"/ui/alerts/{row_id}/resend", {"csrf": page.csrf})
        assert res.status == 303
        again = rx.wait_for(2)[1]
        assert again.json["id"] == first.json["id"]
        assert "state-delivered" in _wait_page(d, b, "/ui/alerts?state=delivered",
                                               f'id="alert-{row_id}"').body
        assert b.post("/ui/alerts/99999/resend", {"csrf": page.csrf}).status == 404
    finally:
        rx.stop()


def _wait_page(d: DaemonThread, b: Browser, path: str, text: str,
               timeout: float = 10.0) -> Page:
    """The outbox mark of a delivery is queued just after the send: wait on its commit."""
    deadline = time.monotonic() + timeout
    while True:
        page = b.get(path)
        if text in page.body:
            return page
        assert time.monotonic() < deadline, f"{text!r} never appeared on {path}"
        d.daemon.store.flush(1.0)


def test_suspicions_show_once_the_hunting_db_exists(make_daemon, upstream, tmp_path) -> None:
    """The console works without hunt.db, and shows what the real Hunter wrote once it is
    there (the daemon's own hunting is off here, so the test decides when the file appears)."""
    from sinkhole.config.schema import Hunt
    from sinkhole.events import Observation
    from sinkhole.hunt.engine import Hunter

    d = start(make_daemon, upstream, tmp_path, hunt={"enabled": False})
    b = logged_in(d)
    assert "No device had a hit or a suspicion" in b.get("/ui/").body
    path = str(Path(d.config.storage.path).parent / "hunt.db")
    now = time.time()
    hunter = Hunter(Hunt(learning=3600.0), path, clock=time.time)
    hunter.observe(Observation(now - 7200, "127.0.0.9", "www.example.com", "A", rcode=0))
    hunter.observe(Observation(now - 60, "127.0.0.9", "www.img-new.example",
                               "A", rcode=0))
    hunter.close()
    overview = b.get("/ui/").body
    assert "127.0.0.9" in overview and "img-new.example" in overview
    device = b.get("/ui/devices/127.0.0.9").body
    assert "newly_seen" in device and "img-new.example" in device
    [f] = api(d, "/api/v1/findings")["items"]
    assert (f["kind"], f["key"], f["state"]) == ("suspicion", "img-new.example", "open")
    page = b.get("/ui/triage")
    mark = {"csrf": page.csrf, "client_ip": "127.0.0.9", "kind": "suspicion",
            "key": "img-new.example", "state": "investigating", "note": "asked the owner"}
    assert b.post("/ui/triage", mark).status == 303
    assert api(d, "/api/v1/findings?state=investigating")["items"][0]["note"] == "asked the owner"
