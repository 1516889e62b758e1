"""The console in a real browser: Debian's headless Chromium driven by Selenium (tests/run.sh
installs both), against a real daemon on loopback.

What only a browser shows: that the CSP lets our own script and styles work while a hostile
query name stays text (no dialog opens), that a form stripped of its CSRF token is refused,
and that logging out ends the session on the server.  Each page visited is saved as a
screenshot (SINKHOLE_SCREENSHOTS, default build/screenshots/; the README shows a few).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, DaemonThread
from tests.peers.dnsserver import FakeUpstream
from tests.test_hits import raw_query

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "browser-token-0123456789abcdef"
HOSTILE_LABEL = b"<script>alert(1)</script>"
HOSTILE_TEXT = "<script>alert(1)</script>.evil.test"
SHOTS = Path(os.environ.get("SINKHOLE_SCREENSHOTS", ROOT / "build" / "screenshots"))
WAIT = 10.0


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _missing()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {why}")
        pytest.skip(f"browser tests skipped: {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"         # Selenium Manager must never try to download
    profile = tempfile.mkdtemp(prefix="sinkhole-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
                "--window-size=1280,860"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def console() -> Iterator[DaemonThread]:
    """One daemon for the module: a phone with a hit between two ordinary queries, and a
    hostile query name from another client."""
    tmp = Path(tempfile.mkdtemp(prefix="sinkhole-browser-"))
    (tmp / "c2.txt").write_text("evil.test\n")
    (tmp / "token").write_text(TOKEN + "\n")
    with FakeUpstream() as up:
        d = DaemonThread({
            "upstreams": [up.url()], "reload": {"watch": False},
            "api": {"token_file": str(tmp / "token")},
            "clients": {"names": {"127.0.0.2": "bob-phone", "127.0.0.3": "alice-laptop",
                                  "127.0.0.4": "printer-2f"}},
            "blocklists": [{"name": "c2", "path": str(tmp / "c2.txt"), "category": "c2",
                            "severity": "critical"}]}).start()
        try:
            for name in ("mail.example", "cdn.example", "c2.evil.test", "update.example"):
                d.query(name, source="127.0.0.2")
            for i, source in enumerate(("127.0.0.3", "127.0.0.4", "127.0.0.5")):
                d.query(f"news{i}.example", source=source)
                d.query("cdn.example", source=source)
            d.query("beacon.evil.test", source="127.0.0.4")
            raw_query(d.port, bytes([len(HOSTILE_LABEL)]) + HOSTILE_LABEL
                      + b"\x04evil\x04test\x00")
            assert d.daemon.store.flush()
            yield d
        finally:
            d.stop()
            shutil.rmtree(tmp, ignore_errors=True)


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def wait_for(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT).until(ec.presence_of_element_located((By.CSS_SELECTOR,
                                                                             css)))


def no_dialog(driver: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException
    try:
        _ = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def log_in(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By
    driver.get(base + "/ui/")
    wait_for(driver, "input[name=token]")
    assert "/ui/login" in driver.current_url
    shot(driver, "login")
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "login").click()
    wait_for(driver, "#devices")


def test_console_in_a_browser(browser: Any, console: DaemonThread) -> None:
    """Log in, find the hit's device on the overview, open its timeline around the hit and
    see the neighbouring queries, then run a retro-hunt from its form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    driver, base = browser, console.http
    log_in(driver, base)
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#devices tr.device-row")
               if "bob-phone" in r.text)
    assert "critical" in row.text and "c2" in row.text
    assert driver.find_element(By.CSS_SELECTOR, "link[rel=stylesheet]")
    assert driver.find_element(By.CSS_SELECTOR, "header.top").value_of_css_property(
        "display") == "flex", "the stylesheet did not load"
    shot(driver, "overview")
    row.find_element(By.CSS_SELECTOR, "a.device").click()
    wait_for(driver, "#hits")
    assert "127.0.0.2" in driver.find_element(By.TAG_NAME, "h1").text
    shot(driver, "device")
    driver.find_element(By.CSS_SELECTOR, "#hits a.timeline-link").click()
    wait_for(driver, "#timeline")
    text = driver.find_element(By.ID, "timeline").text
    assert "mail.example" in text and "update.example" in text
    marked = driver.find_element(By.CSS_SELECTOR, "li.timeline-hit.marked")
    assert "c2.evil.test" in marked.text
    # The page's own script (served by the daemon, allowed by the CSP) filters the names.
    driver.find_element(By.ID, "name-filter").send_keys("mail")
    rows = driver.find_elements(By.CSS_SELECTOR, "#timeline tr.name-row")
    assert [r.text for r in rows if r.is_displayed()] == ["1 mail.example"]
    driver.find_element(By.ID, "name-filter").clear()
    Select(driver.find_element(By.ID, "span")).select_by_value("3")
    wait_for(driver, "#span option[value='3'][selected]")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline section.hour")) == 7
    shot(driver, "timeline")

    driver.get(base + "/ui/retro")
    driver.find_element(By.ID, "retro-names").send_keys("cdn.example\nnobody.example")
    Select(driver.find_element(By.ID, "retro-since")).select_by_value("7d")
    driver.find_element(By.ID, "retro-run").click()
    wait_for(driver, "#retro-results")
    results = driver.find_element(By.ID, "retro-results").text
    assert "bob-phone" in results and "cdn.example" in results
    assert "nobody.example" not in results
    shot(driver, "retro")


def test_hostile_name_is_text_and_forged_post_refused(browser: Any,
                                                      console: DaemonThread) -> None:
    from selenium.webdriver.common.by import By
    driver, base = browser, console.http
    driver.get(base + "/ui/hits?list=c2")
    if "/ui/login" in driver.current_url:
        log_in(driver, base)
        driver.get(base + "/ui/hits?list=c2")
    wait_for(driver, "table.hits")
    assert no_dialog(driver), "the hostile name ran as script"
    names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "table.hits code.qname")]
    assert HOSTILE_TEXT in names
    shot(driver, "hits")
    driver.get(base + "/ui/devices/127.0.0.1")
    wait_for(driver, "#findings")
    assert no_dialog(driver) and HOSTILE_TEXT in driver.find_element(By.ID, "findings").text
    # A forged form: the same fields, no CSRF token (what another site could make us post).
    driver.execute_script("document.querySelectorAll('input[name=csrf]')"
                          ".forEach(e => e.remove())")
    driver.find_element(By.CSS_SELECTOR, "form.triage button[value=cleared]").click()
    wait_for(driver, "body")
    assert "CSRF" in driver.find_element(By.TAG_NAME, "body").text
    driver.get(base + "/ui/triage?state=all")
    assert "cleared" not in driver.find_element(By.CSS_SELECTOR, "table.findings").text


def test_logout_ends_the_session_on_the_server(browser: Any, console: DaemonThread) -> None:
    from selenium.webdriver.common.by import By
    driver, base = browser, console.http
    driver.get(base + "/ui/")
    if "/ui/login" in driver.current_url:
        log_in(driver, base)
    old = driver.get_cookie("sinkhole_session")
    assert old is not None and old["httpOnly"] and old["sameSite"] == "Strict"
    driver.find_element(By.ID, "logout").click()
    wait_for(driver, "input[name=token]")
    driver.add_cookie({"name": "sinkhole_session", "value": old["value"], "path": "/ui/"})
    driver.get(base + "/ui/alerts")
    wait_for(driver, "input[name=token]")
    assert "/ui/login" in driver.current_url
