"""The feed fetcher against a real loopback HTTP(S) server that misbehaves on demand:
conditional GET, errors as outcomes that keep the last good copy (and its validators), bounded
and verified downloads, secrets that never show, MISP folders, and the retry schedule.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sinkhole import __version__
from sinkhole.config.schema import Blocklist
from sinkhole.lists.feeds import FeedFetcher, FetchResult
from tests.conftest import FakeClock
from tests.peers.feedserver import FeedServer
from tests.peers.tlsca import TestCA

V1 = b"# feed v1\nevil.example\nc2.example\n"
V2 = b"# feed v2\nevil.example\nc2.example\nnew.example\n"
SECRET = "s3cr3t-Bearer-0xDEADBEEF"
QUERY_KEY = "q-key-8c1f77"
LM1 = "Wed, 21 Oct 2015 07:28:00 GMT"


class SyncFetcher:
    """A FeedFetcher on a loop of its own, so tests read top to bottom; the async parts run on
    that loop, the rest (promote, discard, state) is called as the daemon would."""

    def __init__(self, state_dir: Path, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.inner = FeedFetcher(state_dir, **kwargs)

    def fetch(self, spec: Blocklist) -> FetchResult:
        return self.loop.run_until_complete(self.inner.fetch(spec))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        self.loop.run_until_complete(self.inner.close())
        self.loop.close()


def feed(url: str, **kwargs: Any) -> Blocklist:
    kwargs.setdefault("name", "intel")
    kwargs.setdefault("format", "plain")
    kwargs.setdefault("timeout", 5.0)
    return Blocklist(url=url, **kwargs)


def files_of(f: SyncFetcher, spec: Blocklist) -> set[str]:
    return {p.name for p in f.good_path(spec).parent.iterdir()}


@pytest.fixture(scope="module")
def ca() -> Iterator[TestCA]:
    with TestCA() as ca:
        yield ca


@pytest.fixture
def server(ca: TestCA) -> Iterator[FeedServer]:
    with FeedServer(ca) as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fetcher(tmp_path: Path, clock: FakeClock) -> Iterator[SyncFetcher]:
    f = SyncFetcher(tmp_path / "state", clock=clock.time)
    yield f
    f.close()


def good_fetch(f: SyncFetcher, spec: Blocklist) -> FetchResult:
    result = f.fetch(spec)
    assert result.outcome == "changed", result.error
    f.promote(spec, result)
    return result


# ---------------------------------------------------------------- conditional GET


def test_etag_makes_the_next_fetch_conditional_and_a_304_writes_nothing(
        server: FeedServer, fetcher: SyncFetcher) -> None:
    server.serve("/list.txt", V1, etag='"v1"')
    spec = feed(server.url("/list.txt"))
    first = fetcher.fetch(spec)
    assert first.outcome == "changed" and first.status == 200 and first.bytes == len(V1)
    assert first.candidate is not None and first.candidate.read_bytes() == V1
    assert not fetcher.has_good(spec)   # a candidate is not a good copy until promoted
    fetcher.promote(spec, first)
    assert fetcher.good_path(spec).read_bytes() == V1 and not first.candidate.exists()

    second = fetcher.fetch(spec)
    sent = [s.headers.get("If-None-Match") for s in server.seen("/list.txt")]
    assert sent == [None, '"v1"']
    assert (second.outcome, second.candidate, second.status) == ("not_modified", None, 304)
    assert files_of(fetcher, spec) == {"current.txt", "state.json"}
    assert fetcher.state(spec).etag == '"v1"' and fetcher.state(spec).failures == 0


def test_last_modified_is_sent_back_as_if_modified_since(
        server: FeedServer, fetcher: SyncFetcher, clock: FakeClock) -> None:
    server.serve("/list.txt", V1, last_modified=LM1)
    spec = feed(server.url("/list.txt"))
    good_fetch(fetcher, spec)
    clock.advance(3600)
    again = fetcher.fetch(spec)
    assert server.seen("/list.txt")[-1].headers.get("If-Modified-Since") == LM1
    assert again.outcome == "not_modified" and again.candidate is None
    assert fetcher.state(spec).last_success == clock.time()   # a stale-feed alert stays quiet


def test_a_server_without_validators_sending_the_same_body_is_not_modified(
        server: FeedServer, fetcher: SyncFetcher) -> None:
    served = server.serve("/list.txt", V1)
    spec = feed(server.url("/list.txt"))
    good_fetch(fetcher, spec)
    assert fetcher.fetch(spec).outcome == "not_modified"   # same bytes: nothing to re-parse
    served.body = V2
    changed = fetcher.fetch(spec)
    assert changed.outcome == "changed" and changed.candidate.read_bytes() == V2


def test_gzip_is_asked_for_and_the_candidate_is_decompressed(
        server: FeedServer, fetcher: SyncFetcher) -> None:
    body = V1 * 2000
    server.serve("/list.txt", body, gzip=True)
    result = fetcher.fetch(feed(server.url("/list.txt")))
    assert server.seen()[0].headers["Accept-Encoding"] == "gzip"
    assert result.candidate.read_bytes() == body and result.bytes == len(body)


# ---------------------------------------------------------------- failures keep the good copy


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BOMB = bytes(32 << 20)   # 32 MiB of zeros: ~150 KiB as gzip


@pytest.mark.parametrize("mode, fields, max_size, expected, status", [
    ("error", {}, None, "HTTP 500", 500),
    ("error", {"status": 404}, None, "HTTP 404", 404),
    ("truncate", {}, None, "truncated body", None),
    ("truncate", {"gzip": True}, None, "truncated body", None),
    ("bad_gzip", {}, None, "not valid gzip", None),
    ("ok", {}, len(V2) - 1, "larger than max_size", None),
    ("ok", {"body": BOMB, "gzip": True}, 1 << 20, "larger than max_size", None),
])
def test_a_failed_download_is_an_outcome_and_keeps_the_last_good_copy(
        server: FeedServer, fetcher: SyncFetcher, mode: str, fields: dict[str, Any],
        max_size: int | None, expected: str, status: int | None) -> None:
    url = server.url("/list.txt") + f"?key={QUERY_KEY}"
    served = server.serve("/list.txt", V1, etag='"v1"')
    good_fetch(fetcher, feed(url))
    # a new version is published, and its download goes wrong
    served.body, served.etag = V2, '"v2"'
    for key, value in {"mode": mode, **fields}.items():
        setattr(served, key, value)
    spec = feed(url, max_size=max_size or 64 << 20)
    result = fetcher.fetch(spec)
    assert result.outcome == "error" and result.candidate is None and result.status == status
    assert expected in result.error
    assert result.error.startswith(f"intel: {server.url('/list.txt')}: ")
    assert QUERY_KEY not in result.error
    assert fetcher.good_path(spec).read_bytes() == V1
    st = fetcher.state(spec)
    assert (st.etag, st.failures, st.last_error) == ('"v1"', 1, result.error)
    assert files_of(fetcher, spec) == {"current.txt", "state.json"}   # no partial file left


def test_a_gzip_bomb_is_cut_at_max_size_without_holding_it_in_memory(
        server: FeedServer, fetcher: SyncFetcher) -> None:
    server.serve("/bomb.txt", BOMB, gzip=True)
    wire = len(gzip.compress(BOMB, compresslevel=1))
    spec = feed(server.url("/bomb.txt"), max_size=1 << 20)
    tracemalloc.start()
    try:
        result = fetcher.fetch(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert wire < 1 << 20 and "larger than max_size" in result.error
    assert peak < 8 << 20, f"peak {peak} bytes for a {len(BOMB)}-byte bomb"


def test_a_hanging_server_times_out_within_the_feeds_timeout(
        server: FeedServer, fetcher: SyncFetcher) -> None:
    server.serve("/list.txt", V1, mode="hang")
    result = fetcher.fetch(feed(server.url("/list.txt"), timeout=0.3))
    assert server.hung.is_set()
    assert result.outcome == "error" and "timed out after 0.3 s" in result.error
    assert 0.3 <= result.seconds < 3


def test_connection_refused_is_an_error_outcome(fetcher: SyncFetcher) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/list.txt"
    result = fetcher.fetch(feed(url))
    assert result.outcome == "error"
    assert result.error == f"intel: {url}: cannot connect: Connection refused"


# ---------------------------------------------------------------- TLS and redirects


def test_https_is_verified_with_the_feeds_ca_file_or_the_default(
        server: FeedServer, ca: TestCA, tmp_path: Path) -> None:
    server.serve("/list.txt", V1)
    url = server.url("/list.txt", tls=True)
    plain = SyncFetcher(tmp_path / "a")
    default = SyncFetcher(tmp_path / "b", default_ca_file=ca.ca_pem_path)
    try:
        refused = plain.fetch(feed(url))
        assert refused.outcome == "error" and "TLS certificate not trusted" in refused.error
        assert plain.fetch(feed(url, ca_file=ca.ca_pem_path)).outcome == "changed"
        assert default.fetch(feed(url)).outcome == "changed"
    finally:
        plain.close()
        default.close()


def test_a_redirect_from_https_to_http_is_refused(
        server: FeedServer, fetcher: SyncFetcher, ca: TestCA) -> None:
    server.serve("/list.txt", V1)
    server.serve("/moved", mode="redirect", location=server.url("/list.txt"))
    result = fetcher.fetch(feed(server.url("/moved", tls=True), ca_file=ca.ca_pem_path))
    assert result.outcome == "error" and result.status == 302
    assert "redirect from https to http refused" in result.error
    assert server.seen("/list.txt") == []   # the downgraded URL was never asked


def test_other_redirects_are_followed(
        server: FeedServer, fetcher: SyncFetcher, ca: TestCA) -> None:
    server.serve("/list.txt", V1)
    server.serve("/up", mode="redirect", status=301, location=server.url("/list.txt", tls=True))
    result = fetcher.fetch(feed(server.url("/up"), ca_file=ca.ca_pem_path))
    assert result.outcome == "changed" and result.candidate.read_bytes() == V1
    assert [s.scheme for s in server.seen("/list.txt")] == ["https"]


# ---------------------------------------------------------------- headers_file is a secret


def test_headers_file_is_sent_and_nothing_else_but_ours(
        server: FeedServer, fetcher: SyncFetcher, tmp_path: Path) -> None:
    headers = tmp_path / "feed-headers"
    headers.write_text(f"# MISP key\nAuthorization: {SECRET}\n\nX-Feed-Client: sinkhole-test\n")
    server.serve("/list.txt", V1)
    fetcher.fetch(feed(server.url("/list.txt"), headers_file=str(headers)))
    got = server.seen("/list.txt")[0].headers
    assert got["Authorization"] == SECRET and got["X-Feed-Client"] == "sinkhole-test"
    assert got["User-Agent"] == f"sinkhole/{__version__}"
    assert {k.lower() for k in got} == {"host", "user-agent", "accept-encoding",
                                        "authorization", "x-feed-client"}


def test_headers_file_values_appear_in_no_error_and_no_log_record(
        server: FeedServer, fetcher: SyncFetcher, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    headers = tmp_path / "feed-headers"
    headers.write_text(f"Authorization: {SECRET}\n")
    spec = feed(server.url("/list.txt"), headers_file=str(headers), timeout=0.3)
    served = server.serve("/list.txt", V1)
    errors = []
    for mode in ("error", "truncate", "bad_gzip", "hang"):
        served.mode = mode
        errors.append(fetcher.fetch(spec).error)
    headers.write_text(f"Authorization {SECRET}\n")    # no colon: a broken line
    errors.append(fetcher.fetch(spec).error)
    headers.unlink()
    errors.append(fetcher.fetch(spec).error)
    assert "line 1 is not 'Name: value'" in errors[-2]
    assert f"headers_file {headers}: No such file or directory" in errors[-1]
    assert all(e for e in errors) and not any(SECRET in e for e in errors)
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert logged and not any(SECRET in text for text in logged)
    assert SECRET not in (fetcher.good_path(spec).parent / "state.json").read_text()


def test_secret_headers_do_not_follow_a_redirect_to_another_origin(
        server: FeedServer, fetcher: SyncFetcher, tmp_path: Path) -> None:
    headers = tmp_path / "feed-headers"
    headers.write_text(f"Authorization: {SECRET}\n")
    with FeedServer() as cdn:
        cdn.serve("/list.txt", V1)
        server.serve("/list.txt", mode="redirect", location=cdn.url("/list.txt"))
        result = fetcher.fetch(feed(server.url("/list.txt"), headers_file=str(headers)))
        assert result.outcome == "changed"
        assert server.seen()[0].headers["Authorization"] == SECRET
        assert "Authorization" not in cdn.seen()[0].headers


# ---------------------------------------------------------------- promote, discard, restart


def test_discard_keeps_the_good_copy_and_its_validators(
        server: FeedServer, fetcher: SyncFetcher) -> None:
    served = server.serve("/list.txt", V1, etag='"v1"')
    spec = feed(server.url("/list.txt"))
    good_fetch(fetcher, spec)
    served.body, served.etag = b"<html>Please log in</html>", '"v2"'
    bad = fetcher.fetch(spec)
    assert bad.outcome == "changed"
    fetcher.discard(spec, bad, "no valid names")
    assert not bad.candidate.exists() and fetcher.good_path(spec).read_bytes() == V1
    st = fetcher.state(spec)
    assert (st.etag, st.failures) == ('"v1"', 1) and "no valid names" in st.last_error
    # the validators are the good copy's: the bad body is not answered 304 now
    again = fetcher.fetch(spec)
    assert server.seen()[-1].headers["If-None-Match"] == '"v1"' and again.outcome == "changed"
    served.body, served.etag = V2, '"v3"'
    good_fetch(fetcher, spec)
    st = fetcher.state(spec)
    assert (st.etag, st.failures, st.last_error) == ('"v3"', 0, None)
    assert fetcher.good_path(spec).read_bytes() == V2


def test_validators_are_sent_only_for_the_copy_we_hold(
        server: FeedServer, fetcher: SyncFetcher) -> None:
    server.serve("/list.txt", V1, etag='"v1"')
    server.serve("/moved.txt", V1, etag='"v1"')
    spec = feed(server.url("/list.txt"))
    good_fetch(fetcher, spec)
    fetcher.good_path(spec).unlink()   # the body is lost: a 304 would leave us with nothing
    assert fetcher.fetch(spec).outcome == "changed"
    moved = feed(server.url("/moved.txt"))   # another URL: our ETag means nothing there
    assert fetcher.fetch(moved).outcome == "changed"
    assert [s.headers.get("If-None-Match") for s in server.seen()] == [None, None, None]


def test_state_and_good_copy_survive_a_restart_while_the_feed_is_down(
        server: FeedServer, tmp_path: Path, clock: FakeClock) -> None:
    server.serve("/list.txt", V1, etag='"v1"', last_modified=LM1)
    spec = feed(server.url("/list.txt"))
    before = SyncFetcher(tmp_path / "state", clock=clock.time)
    try:
        good_fetch(before, spec)
    finally:
        before.close()
    after = SyncFetcher(tmp_path / "state", clock=clock.time)
    try:
        assert after.has_good(spec) and after.good_path(spec).read_bytes() == V1
        st = after.state(spec)
        assert (st.etag, st.last_modified, st.last_success) == ('"v1"', LM1, clock.time())
        assert after.fetch(spec).outcome == "not_modified"
        assert server.seen()[-1].headers["If-None-Match"] == '"v1"'
        server.stop()
        assert after.fetch(spec).outcome == "error"
        assert after.has_good(spec) and after.good_path(spec).read_bytes() == V1
    finally:
        after.close()


def test_a_corrupt_state_file_costs_one_unconditional_download(
        server: FeedServer, fetcher: SyncFetcher, tmp_path: Path) -> None:
    server.serve("/list.txt", V1, etag='"v1"')
    spec = feed(server.url("/list.txt"))
    good_fetch(fetcher, spec)
    (fetcher.good_path(spec).parent / "state.json").write_text('{"etag": 42, "failures": "x"')
    fresh = SyncFetcher(tmp_path / "state")
    try:
        assert fresh.state(spec).etag is None and fresh.has_good(spec)
        assert fresh.fetch(spec).outcome == "changed"
        assert server.seen()[-1].headers.get("If-None-Match") is None
    finally:
        fresh.close()


def test_the_state_dir_is_private_and_list_names_stay_inside_it(
        server: FeedServer, tmp_path: Path) -> None:
    server.serve("/list.txt", V1)
    f = SyncFetcher(tmp_path / "new" / "state")
    try:
        for name in ("..", ".", "a", "a.d"):
            good_fetch(f, feed(server.url("/list.txt"), name=name))
        feeds = tmp_path / "new" / "state" / "feeds"
        for path in (feeds.parent, feeds):
            assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert sorted(p.name for p in feeds.iterdir()) == ["%2E", "%2E.", "a", "a.d"]
        assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["state"]
    finally:
        f.close()


# ---------------------------------------------------------------- MISP feeds

UUIDS = ["5f3a0b2c-0000-4000-8000-00000000000" + str(i) for i in range(1, 4)]


def _event(uuid: str, domain: str) -> bytes:
    return json.dumps({"Event": {"uuid": uuid, "Attribute": [
        {"type": "domain", "value": domain, "to_ids": True}]}}).encode()


def _serve_misp(server: FeedServer, events: dict[str, str], etag: str) -> None:
    manifest = {u: {"info": f"event {u[-1]}", "timestamp": ts} for u, ts in events.items()}
    server.serve("/misp/manifest.json", json.dumps(manifest).encode(), etag=etag)
    for uuid, ts in events.items():
        server.serve(f"/misp/{uuid}.json", _event(uuid, f"c2-{ts}.example"))


def test_a_misp_manifest_is_fetched_with_its_events_into_a_folder(
        server: FeedServer, fetcher: SyncFetcher) -> None:
    a, b, c = UUIDS
    _serve_misp(server, {a: "100", b: "200"}, '"m1"')
    spec = feed(server.url("/misp/manifest.json") + f"?authkey={QUERY_KEY}", format="misp")
    first = fetcher.fetch(spec)
    assert first.outcome == "changed" and first.candidate.is_dir()
    assert sorted(p.name for p in first.candidate.iterdir()) == \
        sorted(["manifest.json", f"{a}.json", f"{b}.json"])
    assert (first.candidate / f"{a}.json").read_bytes() == _event(a, "c2-100.example")
    assert first.bytes == sum(p.stat().st_size for p in first.candidate.iterdir())
    assert server.seen(f"/misp/{a}.json")[0].query == f"authkey={QUERY_KEY}"
    fetcher.promote(spec, first)
    good = fetcher.good_path(spec)
    assert fetcher.has_good(spec) and good.is_dir() and (good / f"{b}.json").is_file()

    # unchanged manifest: a 304, and no event file is asked for
    assert fetcher.fetch(spec).outcome == "not_modified"
    assert len(server.seen(f"/misp/{a}.json")) == 1 and len(server.seen()) == 4

    # b updated, c new: only those two are downloaded, a is kept from the good copy
    _serve_misp(server, {a: "100", b: "300", c: "400"}, '"m2"')
    second = fetcher.fetch(spec)
    assert second.outcome == "changed"
    assert [len(server.seen(f"/misp/{u}.json")) for u in (a, b, c)] == [1, 2, 1]
    assert (second.candidate / f"{b}.json").read_bytes() == _event(b, "c2-300.example")
    assert (second.candidate / f"{a}.json").read_bytes() == _event(a, "c2-100.example")
    fetcher.promote(spec, second)
    assert sorted(p.name for p in good.iterdir()) == \
        sorted(["manifest.json", f"{a}.json", f"{b}.json", f"{c}.json"])
    assert files_of(fetcher, spec) == {"current.d", "state.json"}


@pytest.mark.parametrize("breakage, expected", [
    ("event_500", "HTTP 500"),
    ("traversal", "is not an event uuid"),
    ("too_big", "larger than max_size"),
])
def test_a_broken_misp_feed_fails_whole_and_keeps_the_good_folder(
        server: FeedServer, fetcher: SyncFetcher, breakage: str, expected: str) -> None:
    a, b, c = UUIDS
    _serve_misp(server, {a: "100"}, '"m1"')
    url = server.url("/misp/manifest.json")
    good_fetch(fetcher, feed(url, format="misp"))
    max_size = 64 << 20
    _serve_misp(server, {a: "100", b: "200", c: "300"}, '"m2"')
    if breakage == "event_500":
        server.feeds[f"/misp/{c}.json"].mode = "error"
    elif breakage == "traversal":
        server.serve("/misp/manifest.json", json.dumps({"../../etc/passwd": {}}).encode())
    else:   # each file fits, the three together do not
        max_size = len(server.feeds["/misp/manifest.json"].body) + 2 * len(_event(a, "x")) + 40
    spec = feed(url, format="misp", max_size=max_size)
    result = fetcher.fetch(spec)
    assert result.outcome == "error" and expected in result.error and result.candidate is None
    good = fetcher.good_path(spec)
    assert sorted(p.name for p in good.iterdir()) == sorted(["manifest.json", f"{a}.json"])
    assert fetcher.state(spec).etag == '"m1"'
    assert files_of(fetcher, spec) == {"current.d", "state.json"}


# ---------------------------------------------------------------- the retry schedule


class Jitter:
    """An rng whose uniform() always gives the low or the high end."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, lo: float, hi: float) -> float:
        return hi if self.high else lo


def test_backoff_retries_soon_then_less_often_and_refresh_after_a_success(
        server: FeedServer, fetcher: SyncFetcher, clock: FakeClock) -> None:
    down = feed(f"http://127.0.0.1:{_closed_port()}/list.txt", refresh=3600.0)
    assert fetcher.next_delay(down) == 0.0   # never fetched: due now
    delays = []
    for _ in range(9):
        fetcher.fetch(down)
        delays.append(fetcher.next_delay(down, Jitter(high=False)))
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert fetcher.next_delay(down, Jitter(high=True)) == pytest.approx(3960)

    server.serve("/list.txt", V1)
    up = feed(server.url("/list.txt"), refresh=3600.0)
    good_fetch(fetcher, up)
    assert fetcher.next_delay(up, Jitter(high=False)) == 3600
    assert fetcher.next_delay(up, Jitter(high=True)) == pytest.approx(3960)
    clock.advance(1000)   # e.g. a restart 1000 s after the last fetch
    assert fetcher.next_delay(up, Jitter(high=False)) == 2600
    clock.advance(5000)
    assert fetcher.next_delay(up, Jitter(high=False)) == 0.0
