"""Fetching lists by URL: conditional GET, bounded streaming to disk, the last good copy.

A download lands in a *candidate* beside the last good copy. Only when the caller has parsed
it does `promote` make it the good copy, together with the ETag/Last-Modified of that very
download: a truncated body or an HTML error page never replaces a good list (not even across
a restart), and the validators always describe the copy we hold (a bad body's ETag would
otherwise be answered 304 forever). Errors are outcomes, never exceptions: the scheduler logs,
counts and backs off. Header values from `headers_file` are secrets and URLs may carry keys in
their query or user part, so no error text or log line holds a header value, a query string or
a userinfo.

Network I/O runs on the event loop through one ClientSession; every file write, fsync and
JSON parse goes to a worker thread. One fetch at a time per list (the scheduler's job).
`promote` and `discard` do blocking renames and deletes: call them from a thread (a MISP
folder may hold thousands of files).

Layout, in <state_dir>/feeds/<list>/: current[.ext] (current.d/ for a MISP feed), state.json,
candidate[.ext] / candidate.d/ between fetch and promote, .tmp-* while downloading.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError, ContentLengthError
from multidict import CIMultiDict
from yarl import URL

from sinkhole import __version__
from sinkhole.config.schema import Blocklist
from sinkhole.errors import SinkholeError

log = logging.getLogger(__name__)

USER_AGENT = f"sinkhole/{__version__}"
MAX_REDIRECTS = 5
MIN_RETRY = 30.0            # a feed that is down is never asked more often than this
JITTER = 0.10               # up to 10 % added to every delay: feeds of a fleet do not align
READ_CHUNK = 64 << 10
WRITE_BATCH = 1 << 20       # bytes buffered before one thread hop writes them
MISP_PARALLEL = 4           # event files in flight per MISP feed
MAX_HEADERS_FILE = 64 << 10
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")   # RFC 9110 field-name
# Framing and conditional headers are ours: a headers_file line cannot change how we read.
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection",
                       "if-none-match", "if-modified-since"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EXT = re.compile(r"\.[A-Za-z0-9]{1,10}")
_STATE_TYPES: dict[str, Any] = {"failures": int, "bytes": int, "last_success": (int, float),
                                "last_attempt": (int, float)}


class FetchError(SinkholeError):
    """A fetch failed; the text is safe to show (no header value, no query string)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class FeedState:
    """What we know of one feed; persisted as JSON beside the body, so it survives restarts.
    `etag`/`last_modified`/`sha256` belong to the last good copy, never to a candidate."""

    url: str                           # without query string or userinfo
    etag: str | None = None
    last_modified: str | None = None
    last_success: float | None = None  # last good copy promoted, or confirmed unchanged
    last_attempt: float | None = None  # when the last fetch ended
    last_error: str | None = None
    failures: int = 0                  # consecutive: drives the backoff
    bytes: int = 0                     # size of the last good copy
    sha256: str | None = None          # of the good body (the manifest, for MISP)


@dataclass
class FetchResult:
    outcome: str                       # "changed" | "not_modified" | "error"
    candidate: Path | None = None      # the new body (a folder for MISP), not yet the good copy
    error: str | None = None
    status: int | None = None
    bytes: int = 0
    seconds: float = 0.0
    etag: str | None = None            # the validators of this download, kept by promote
    last_modified: str | None = None
    sha256: str | None = None


def bare_url(url: str | URL) -> str:
    """The URL as it may be shown: scheme, host, port and path (keys live in the rest)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port   # yarl fills in the default port


def is_misp_manifest(spec: Blocklist) -> bool:
    return spec.format == "misp" and urlsplit(spec.url).path.endswith("manifest.json")


class _Budget:
    """The decompressed bytes a fetch may still write (shared by a MISP feed's files)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        self.check(n)
        self.used += n

    def check(self, n: int) -> None:
        if self.used + n > self.limit:
            raise FetchError(f"larger than max_size ({self.limit} bytes decompressed)")


class FeedFetcher:
    def __init__(self, state_dir: str | Path, *, default_ca_file: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(state_dir) / "feeds"
        self.state_dir = Path(state_dir)
        self.default_ca_file = default_ca_file
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._states: dict[str, FeedState] = {}
        self._contexts: dict[str | None, ssl.SSLContext] = {}

    # -- where things are -----------------------------------------------------------------------

    def _dir(self, spec: Blocklist) -> Path:
        # quote keeps [A-Za-z0-9._-] and is injective; a leading dot (".", "..") is escaped so
        # every list gets a plain, visible folder of its own inside feeds/
        stem = quote(spec.name, safe="-_.")
        return self.root / (("%2E" + stem[1:]) if stem.startswith(".") else stem)

    def _ext(self, spec: Blocklist) -> str:
        if is_misp_manifest(spec):
            return ".d"
        ext = PurePosixPath(urlsplit(spec.url).path).suffix
        return ext if _EXT.fullmatch(ext) else ""   # kept for humans and format sniffing

    def good_path(self, spec: Blocklist) -> Path:
        """The last good copy: a file, or a folder (manifest.json + events) for MISP."""
        return self._dir(spec) / f"current{self._ext(spec)}"

    def _candidate_path(self, spec: Blocklist) -> Path:
        return self._dir(spec) / f"candidate{self._ext(spec)}"

    def has_good(self, spec: Blocklist) -> bool:
        good = self.good_path(spec)
        previous = good.with_name("previous.d")
        if is_misp_manifest(spec) and not good.exists() and previous.is_dir():
            os.rename(previous, good)   # a crash between promote's two renames: undo the first
        return good.is_dir() if is_misp_manifest(spec) else good.is_file()

    # -- state ----------------------------------------------------------------------------------

    def state(self, spec: Blocklist) -> FeedState:
        """A copy of the feed's state (read from disk once, then kept in memory)."""
        return replace(self._state(spec))

    def _state(self, spec: Blocklist) -> FeedState:
        st = self._states.get(spec.name)
        if st is None:
            st = self._states[spec.name] = _load_state(self._dir(spec) / "state.json", spec)
        return st

    def _save(self, spec: Blocklist) -> None:
        folder = self._dir(spec)
        self._mkdirs(folder)
        data = json.dumps(asdict(self._state(spec)), indent=1).encode()
        _write_atomic(folder / "state.json", [data])

    def _mkdirs(self, folder: Path) -> None:
        # 0700 for what we create (the bodies may be licensed or private intel); an existing
        # state dir keeps the mode its admin (or systemd's StateDirectory=) gave it
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.mkdir(mode=0o700, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)

    # -- fetching -------------------------------------------------------------------------------

    async def fetch(self, spec: Blocklist) -> FetchResult:
        """Download the feed into a candidate (or learn it has not changed); never raises."""
        started = time.monotonic()
        st = self._state(spec)
        try:
            async with asyncio.timeout(spec.timeout):
                result = await self._fetch(spec, st)
        except Exception as err:  # errors are outcomes: the scheduler must keep running
            reason, status = _reason(err, spec)
            result = FetchResult("error", error=f"{spec.name}: {bare_url(spec.url)}: {reason}",
                                 status=status)
        result.seconds = time.monotonic() - started
        st.last_attempt = self.clock()
        if result.outcome == "error":
            st.last_error = result.error
            st.failures += 1
        elif result.outcome == "not_modified":
            self._succeeded(spec, st)
            # A 304 may restate validators (RFC 9110 15.4.5); absent ones leave ours alone.
            st.etag = result.etag or st.etag
            st.last_modified = result.last_modified or st.last_modified
        await asyncio.to_thread(self._save, spec)
        log.debug("feed %s: %s, %d bytes, %.3f s", spec.name, result.outcome, result.bytes,
                  result.seconds)
        return result

    async def _fetch(self, spec: Blocklist, st: FeedState) -> FetchResult:
        configured = await asyncio.to_thread(_read_headers, spec.headers_file)
        ctx = await self._context(spec.ca_file or self.default_ca_file)
        cond = {}
        if st.url == bare_url(spec.url) and self.has_good(spec):
            if st.etag:
                cond["If-None-Match"] = st.etag
            if st.last_modified:
                cond["If-Modified-Since"] = st.last_modified
        folder = self._dir(spec)
        tmp = Path(await asyncio.to_thread(self._fresh_tmp, folder))
        try:
            async with self._get(spec.url, configured, cond, ctx) as resp:
                if resp.status == 304:
                    if not cond:
                        raise FetchError("HTTP 304 to a request that was not conditional", 304)
                    return self._unchanged(resp)
                manifest = is_misp_manifest(spec)
                budget = _Budget(spec.max_size)
                body = tmp / ("manifest.json" if manifest else "body")
                digest = await _save_body(resp, body, budget)
                result = FetchResult("changed", status=resp.status, sha256=digest,
                                     etag=resp.headers.get("ETag"),
                                     last_modified=resp.headers.get("Last-Modified"))
            if digest == st.sha256 and self.has_good(spec):   # a server without validators
                result.outcome = "not_modified"
                return result
            if manifest:
                await self._fetch_events(spec, body, configured, ctx, budget)
            result.bytes = budget.used
            result.candidate = self._candidate_path(spec)
            await asyncio.to_thread(_install, body if not manifest else tmp, result.candidate)
            return result
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, tmp, True))

    def _fresh_tmp(self, folder: Path) -> str:
        """A new temp folder for this download. Leftovers (a crash, a download cut by its
        timeout while a thread was still moving it) are removed first: a candidate is only
        ever used between the fetch that made it and its promote or discard."""
        self._mkdirs(folder)
        for old in [*folder.glob(".tmp-*"), *folder.glob("candidate*")]:
            _remove(old)
        return tempfile.mkdtemp(prefix=".tmp-", dir=folder)

    @staticmethod
    def _unchanged(resp: aiohttp.ClientResponse) -> FetchResult:
        return FetchResult("not_modified", status=304, etag=resp.headers.get("ETag"),
                           last_modified=resp.headers.get("Last-Modified"))

    def _succeeded(self, spec: Blocklist, st: FeedState) -> None:
        """The good copy is current: the error is over and the backoff starts again."""
        st.url = bare_url(spec.url)
        st.last_success = self.clock()
        st.last_error = None
        st.failures = 0

    @contextlib.asynccontextmanager
    async def _get(self, url: str, configured: CIMultiDict[str], cond: dict[str, str],
                   ctx: ssl.SSLContext) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET, following redirects ourselves so every hop is checked: never https -> http,
        and the configured (secret) headers go only to the configured URL's origin."""
        session = self._get_session()
        target = URL(url)
        origin = _origin(target)
        for _hop in range(MAX_REDIRECTS + 1):
            headers = CIMultiDict({"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"})
            if _origin(target) == origin:
                headers.update(configured)
            headers.update(cond)
            resp = await session.get(target, headers=headers, ssl=ctx, allow_redirects=False)
            if resp.status not in _REDIRECT_CODES:
                try:
                    yield resp
                finally:
                    resp.release()
                return
            resp.release()
            location = resp.headers.get("Location")
            if not location:
                raise FetchError(f"HTTP {resp.status} redirect without a Location", resp.status)
            nxt = target.join(URL(location))
            if nxt.scheme not in ("http", "https"):
                raise FetchError(f"redirect to a {nxt.scheme}: URL refused", resp.status)
            if target.scheme == "https" and nxt.scheme == "http":
                raise FetchError(f"redirect from https to http refused ({bare_url(nxt)})",
                                 resp.status)
            target = nxt
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    async def _fetch_events(self, spec: Blocklist, manifest_path: Path,
                            configured: CIMultiDict[str], ctx: ssl.SSLContext,
                            budget: _Budget) -> None:
        """Every event file the manifest lists, beside it; an event whose manifest entry (its
        timestamp) is unchanged is linked from the good copy instead of downloaded again."""
        manifest = await asyncio.to_thread(_read_manifest, manifest_path)
        folder = manifest_path.parent
        reused = await asyncio.to_thread(_reuse_events, manifest, self.good_path(spec), folder)
        budget.take(sum(reused.values()))
        todo = iter(sorted(set(manifest) - set(reused)))
        base = URL(spec.url)

        async def worker() -> None:
            for key in todo:   # one shared iterator: each event is taken by one worker
                url = str(base.with_name(f"{key}.json"))
                if base.raw_query_string:   # a key in the manifest's query goes along, as is
                    url += "?" + base.raw_query_string
                async with self._get(url, configured, {}, ctx) as resp:
                    await _save_body(resp, folder / f"{key}.json", budget)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(MISP_PARALLEL):
                    group.create_task(worker())
        except ExceptionGroup as failed:   # the first failing event fails the whole feed
            raise failed.exceptions[0] from None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=16, limit_per_host=MISP_PARALLEL),
                cookie_jar=aiohttp.DummyCookieJar(),   # no state carried between feeds
                # exactly our headers: no Accept, no aiohttp User-Agent, gzip only
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
                timeout=aiohttp.ClientTimeout(total=None),   # fetch() bounds the whole download
            )
        return self._session

    async def _context(self, ca_file: str | None) -> ssl.SSLContext:
        """The verifying TLS context (system trust plus `ca_file`), built once per CA file in a
        thread: loading the system store takes milliseconds."""
        ctx = self._contexts.get(ca_file)
        if ctx is None:
            ctx = self._contexts[ca_file] = await asyncio.to_thread(_make_context, ca_file)
        return ctx

    # -- after the parse ------------------------------------------------------------------------

    def promote(self, spec: Blocklist, result: FetchResult) -> None:
        """The candidate parsed: it becomes the last good copy, with its own validators."""
        if result.outcome != "changed" or result.candidate is None:
            raise ValueError(f"promote needs a 'changed' result, not {result.outcome!r}")
        good = self.good_path(spec)
        if result.candidate.is_dir():
            previous = good.with_name("previous.d")
            shutil.rmtree(previous, ignore_errors=True)
            if good.exists():
                os.rename(good, previous)
            os.rename(result.candidate, good)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(result.candidate, good)
        _fsync_dir(good.parent)
        for other in good.parent.glob("current*"):   # the list changed between file and folder
            if other != good:
                _remove(other)
        st = self._state(spec)
        st.etag, st.last_modified = result.etag, result.last_modified
        st.sha256, st.bytes = result.sha256, result.bytes
        self._succeeded(spec, st)
        self._save(spec)

    def discard(self, spec: Blocklist, result: FetchResult, error: str) -> None:
        """The candidate did not parse (`error` says why): delete it, keep the good copy and
        its validators, record the error and count a failure (the retry backs off)."""
        if result.candidate is not None:
            _remove(result.candidate)
        st = self._state(spec)
        st.last_error = f"{spec.name}: {bare_url(spec.url)}: {error}"
        st.failures += 1
        self._save(spec)

    def next_delay(self, spec: Blocklist, rng: Any = random) -> float:
        """Seconds from now until the feed is due: `refresh` after a success, after failures
        30 s, 60 s, 120 s... up to `refresh`; each plus 0-10 % jitter. Counted from the end of
        the last attempt, so a restarted daemon does not fetch every feed at once (0: never
        fetched)."""
        st = self._state(spec)
        if st.last_attempt is None:
            return 0.0
        base = spec.refresh
        if st.failures:
            base = min(spec.refresh, MIN_RETRY * 2 ** min(st.failures - 1, 32))
        interval = base * (1 + rng.uniform(0, JITTER))
        return min(interval, max(0.0, st.last_attempt + interval - self.clock()))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _save_body(resp: aiohttp.ClientResponse, dest: Path, budget: _Budget) -> str:
    """Stream a 200 body (decompressed) into `dest`, within `budget`; returns its sha256. The
    size is checked per chunk, so a gzip bomb is cut at max_size, never held in memory."""
    if resp.status != 200:
        raise FetchError(f"HTTP {resp.status}", resp.status)
    if resp.content_length is not None and "Content-Encoding" not in resp.headers:
        budget.check(resp.content_length)   # too big already: do not read a byte of it
    digest = hashlib.sha256()
    batch: list[bytes] = []
    batched = 0
    with await asyncio.to_thread(open, dest, "xb") as out:
        async for chunk in resp.content.iter_chunked(READ_CHUNK):
            budget.take(len(chunk))
            digest.update(chunk)
            batch.append(chunk)
            batched += len(chunk)
            if batched >= WRITE_BATCH:
                await asyncio.to_thread(out.writelines, batch)
                batch, batched = [], 0
        await asyncio.to_thread(_finish, out, batch)
    return digest.hexdigest()


# -- blocking helpers (run in worker threads) ----------------------------------------------------


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _finish(out: Any, batch: Iterable[bytes]) -> None:
    out.writelines(batch)
    out.flush()
    os.fsync(out.fileno())


def _install(src: Path, dest: Path) -> None:
    """Move a complete download into the candidate's place (replacing an older candidate)."""
    if dest.is_dir():
        shutil.rmtree(dest)
    os.replace(src, dest)
    _fsync_dir(dest.parent)


def _write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            _finish(out, chunks)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_state(path: Path, spec: Blocklist) -> FeedState:
    """The saved state, or a fresh one (no file, or a file we cannot trust: a fresh state only
    costs one unconditional download)."""
    fresh = FeedState(url=bare_url(spec.url))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return fresh
    except (OSError, ValueError) as err:
        log.warning("feed %s: state file %s unreadable (%s): starting afresh", spec.name, path,
                    type(err).__name__)
        return fresh
    if not isinstance(data, dict):
        return fresh
    for f in fields(FeedState):   # a value of the wrong type is dropped, not trusted
        value = data.get(f.name)
        if isinstance(value, _STATE_TYPES.get(f.name, str)) and not isinstance(value, bool):
            setattr(fresh, f.name, value)
    return fresh


def _read_headers(path: str | None) -> CIMultiDict[str]:
    """`Name: value` lines (blank lines and # comments skipped). Errors name the file and the
    line, never a value: the values are keys."""
    headers: CIMultiDict[str] = CIMultiDict()
    if not path:
        return headers
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_HEADERS_FILE + 1)
    except OSError as err:
        raise FetchError(f"headers_file {path}: {err.strerror or type(err).__name__}") from None
    if len(raw) > MAX_HEADERS_FILE:
        raise FetchError(f"headers_file {path}: over {MAX_HEADERS_FILE} bytes")
    for n, line in enumerate(raw.split(b"\n"), 1):
        text = line.strip()
        if not text or text.startswith(b"#"):
            continue
        name_b, sep, value_b = text.partition(b":")
        name, value = name_b.strip().decode("latin-1"), value_b.strip()
        if not sep or not _TOKEN.fullmatch(name) or not value or \
                not all(32 <= b < 127 for b in value):
            raise FetchError(f"headers_file {path}: line {n} is not 'Name: value' (printable "
                             "ASCII)")
        if name.lower() in _RESERVED:
            raise FetchError(f"headers_file {path}: line {n}: {name} is set by sinkhole")
        headers.add(name, value.decode("ascii"))
    return headers


def _make_context(ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except OSError as err:
            raise FetchError(f"ca_file {ca_file}: {err.strerror or type(err).__name__}") \
                from None
        except ssl.SSLError:
            raise FetchError(f"ca_file {ca_file}: not a PEM CA bundle") from None
    return ctx


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError:
        raise FetchError("manifest.json is not JSON") from None
    if not isinstance(manifest, dict):
        raise FetchError("manifest.json is not an object of events")
    for key in manifest:
        if not _UUID.fullmatch(key):   # it becomes a file name and a URL: nothing else passes
            raise FetchError(f"manifest.json: {key[:40]!r} is not an event uuid")
    return manifest


def _reuse_events(manifest: dict[str, Any], good: Path, folder: Path) -> dict[str, int]:
    """Link the good copy's event files whose manifest entry is unchanged into `folder`;
    returns their sizes by uuid."""
    try:
        old = json.loads((good / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict):
        return {}
    reused = {}
    for key, entry in manifest.items():
        before = old.get(key)
        src = good / f"{key}.json"
        if not (isinstance(entry, dict) and isinstance(before, dict)
                and entry.get("timestamp") is not None
                and entry.get("timestamp") == before.get("timestamp") and src.is_file()):
            continue
        try:
            os.link(src, folder / src.name)
        except OSError:
            shutil.copyfile(src, folder / src.name)
        reused[key] = src.stat().st_size
    return reused


def _reason(err: Exception, spec: Blocklist) -> tuple[str, int | None]:
    """A short, safe text for a failed fetch. aiohttp's own messages are not used as they are:
    some carry the whole URL (and so a key in its query)."""
    if isinstance(err, FetchError):
        return str(err), err.status
    if isinstance(err, TimeoutError):
        return f"timed out after {spec.timeout:g} s (the whole download)", None
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        why = getattr(err.certificate_error, "verify_message", None) or "verification failed"
        return f"TLS certificate not trusted: {why}", None
    if isinstance(err, aiohttp.ClientSSLError):
        return "TLS handshake failed", None
    if isinstance(err, aiohttp.ClientConnectorError):
        os_error = err.os_error
        why = os.strerror(os_error.errno) if (os_error.errno or 0) > 0 else os_error.strerror
        return f"cannot connect: {why or type(os_error).__name__}", None
    if isinstance(err, aiohttp.ClientPayloadError):
        cause = err.__cause__
        if isinstance(cause, ContentEncodingError):
            return "body is not valid gzip", None
        if isinstance(cause, ContentLengthError):
            return "truncated body (connection closed before Content-Length bytes)", None
        return "truncated body", None
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "server closed the connection without an answer", None
    if isinstance(err, aiohttp.ClientResponseError):
        return f"bad HTTP response ({err.status})", err.status or None
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__, None
    if not isinstance(err, aiohttp.ClientError | ValueError):
        log.error("feed %s: unexpected %s while fetching", spec.name, type(err).__name__,
                  exc_info=log.isEnabledFor(logging.DEBUG))
    return type(err).__name__, None
