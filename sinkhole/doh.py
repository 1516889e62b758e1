"""DNS over HTTPS (RFC 8484): HTTP/2 and HTTP/1.1 on one TLS port, picked by ALPN.

Why `h2` (sans-IO) under our own connection loop, not hypercorn and an ASGI app: the connection
is then the listeners' own (server.py) — admitted against the same caps before TLS, the same
idle timeout, the same back-pressure (a client that does not read stops being read) — and a
request answered from the cache or the policy is one function call, no task, no ASGI scope.
hypercorn with the smallest ASGI app in front of the same pipeline cost 1.8x the CPU per query
(bench/encrypted.py --hypercorn). HTTP/1.1 is `h11`, the same project's sans-IO parser.

Bounds per connection: at most `tcp_inflight` requests answered at once (HTTP/2's
MAX_CONCURRENT_STREAMS, and a slot per request that waits upstream, so reading stops while
all are taken); a stream reset in the same read as its request is not resolved at all (the
"rapid reset" attack); request bodies handed back to the client's window only once complete,
so what one connection buffers of them is its 64 KiB window; header blocks of MAX_HEAD bytes;
a DNS message of 65535 bytes (413 beyond). Answers HTTP/2 flow control holds back belong to
open streams, so the stream limit bounds them as the in-flight limit bounds TCP's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11

from sinkhole.dns.message import parse_reply
from sinkhole.dns.wire import read_qname

log = logging.getLogger(__name__)

PATH = b"/dns-query"
DNS_MESSAGE = b"application/dns-message"
MAX_MESSAGE = 65535        # the largest DNS message (no length prefix over HTTP)
MAX_HEAD = 16 * 1024       # a request's header block; a GET's ?dns= of 65535 bytes needs more:
MAX_GET = MAX_HEAD - 1024  # such a query is 413 (POST it), as every DoH client does past ~2 KiB
READ_SIZE = 65536
DISCARD = 4 * MAX_MESSAGE  # body bytes dropped after a 413 before the stream is reset
_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_REASONS = {400: b"bad request", 404: b"not found: the DoH path is /dns-query",
            405: b"method not allowed: GET or POST", 413: b"DNS message too large",
            415: b"content-type must be application/dns-message",
            431: b"request head too large", 500: b"internal error"}


def judge(method: bytes, target: bytes, ctype: bytes | None,
          body: bytes) -> tuple[int, bytes]:
    """(0, the DNS query) for a well-formed DoH request, else (HTTP status, b"")."""
    path, _, query = target.partition(b"?")
    if path != PATH:
        return 404, b""
    if method == b"GET":
        return _from_param(query)
    if method != b"POST":
        return 405, b""
    if ctype is None or ctype.split(b";", 1)[0].strip().lower() != DNS_MESSAGE:
        return 415, b""
    if not body:
        return 400, b""
    return 0, body


def _from_param(query: bytes) -> tuple[int, bytes]:
    """The `dns` parameter: base64url without padding (RFC 8484 4.1); padding is tolerated."""
    for part in query.split(b"&"):
        if part.startswith(b"dns="):
            value = part[4:].rstrip(b"=")
            if len(value) > MAX_GET:
                return 413, b""
            if not value or _B64URL.fullmatch(value) is None or len(value) % 4 == 1:
                return 400, b""
            return 0, base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    return 400, b""


def max_age(reply: bytes) -> int:
    """Cache-Control max-age (RFC 8484 5.1): the answer's lifetime as our cache sees it — the
    smallest TTL of its records, the SOA's for a negative answer — and 0 for errors (SERVFAIL,
    REFUSED, FORMERR, truncated) and anything that does not parse."""
    try:
        _name, off = read_qname(reply, 12)
        question = reply[12:off].lower() + reply[off:off + 4]
        ttl = parse_reply(reply, (reply[0] << 8) | reply[1], question).ttl
    except (ValueError, IndexError):
        return 0
    return ttl if ttl > 0 else 0


def _response(status: int, reply: bytes | None) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers (no :status) and body for a DNS answer (status 200) or an HTTP error."""
    if status == 200 and reply is not None:
        return [(b"content-type", DNS_MESSAGE), (b"content-length", b"%d" % len(reply)),
                (b"cache-control", b"max-age=%d" % max_age(reply))], reply
    body = _REASONS.get(status, b"error") + b"\n"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)),
               (b"cache-control", b"max-age=0")]
    if status == 405:
        headers.append((b"allow", b"GET, POST"))
    return headers, body


def _start(li: Any, packet: bytes, client: str) -> tuple[int, bytes | None] | Any:
    """The pipeline's answer as (HTTP status, reply) when it has one at once (cache, policy,
    errors: most queries), else the coroutine that will resolve it (see `_finish`). No answer
    (a response packet, a runt, an outsider past its refusal rate) is a 400, a bug a 500."""
    try:
        res = li.handler(packet, client, "doh")
    except Exception:
        log.exception("bug: handler raised on a DoH query")
        return 500, None
    if res is None:
        return 400, None
    return (200, res) if isinstance(res, bytes) else res


async def _finish(pending: Any) -> tuple[int, bytes | None]:
    try:
        res = await pending
    except Exception:
        log.exception("bug: handler raised on a DoH query")
        return 500, None
    return (400, None) if res is None else (200, res)


async def _resolve(li: Any, packet: bytes, client: str) -> tuple[int, bytes | None]:
    started = _start(li, packet, client)
    return started if isinstance(started, tuple) else await _finish(started)


def _count(li: Any, status: int) -> None:
    if status != 200:
        li.doh_errors[status] = li.doh_errors.get(status, 0) + 1


async def serve(li: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                client: str, slots: asyncio.Semaphore) -> None:
    """Serve one TLS connection until idle, EOF, a protocol error or shutdown.

    `li` is the server.Listeners it belongs to (handler, caps, timeouts, back-pressure)."""
    ssl_object = writer.get_extra_info("ssl_object")
    alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    if alpn == "h2":
        await _H2(li, reader, writer, client, slots).run()
    else:   # "http/1.1", or a client that sent no ALPN
        await _H1(li, reader, writer, client).run()


async def _read(li: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Next bytes from the client; b"" on EOF, idle timeout, reset, or a client that does not
    read its answers (back-pressure first: reading nothing until it does)."""
    if not await li.may_read(writer):
        return b""
    try:
        async with asyncio.timeout(li.tcp_idle):
            return await reader.read(READ_SIZE)
    except OSError:
        return b""


class _Stream:
    """One request as it arrives; `status` is set when its headers already refuse it."""

    __slots__ = ("method", "target", "ctype", "body", "status", "unacked")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = self.target = b""
        self.ctype: bytes | None = None
        self.body = bytearray()
        self.status = 0
        self.unacked = 0          # body bytes not yet handed back to the client's window
        for name, value in headers:
            if name == b":method":
                self.method = value
            elif name == b":path":
                self.target = value
            elif name == b"content-type":
                self.ctype = value
            elif name == b"content-length" and (not value.isdigit() or int(value) > MAX_MESSAGE):
                self.status = 413 if value.isdigit() else 400


class _H2:
    """One HTTP/2 connection: h2's events in, our frames out; answers at once, or as tasks
    when they wait upstream."""

    def __init__(self, li: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 client: str, slots: asyncio.Semaphore) -> None:
        self.li, self.reader, self.writer, self.client, self.slots = (li, reader, writer,
                                                                      client, slots)
        # Our own response headers are constants: not validated again on every response.
        # What clients send is (about a tenth of the CPU per request, kept: defence in depth).
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=True))
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: li.tcp_inflight,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD})
        self.streams: dict[int, _Stream] = {}
        self.reset: set[int] = set()               # streams reset in the current read
        self.discard: dict[int, int] = {}          # refused streams: body bytes still dropped
        self.pending: dict[int, memoryview] = {}   # answer bytes flow control holds back

    async def run(self) -> None:
        self.conn.initiate_connection()
        self.flush()
        while self.li.accepting:
            data = await _read(self.li, self.reader, self.writer)
            if not data:
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as err:   # h2 has queued a GOAWAY
                log.debug("doh: h2 protocol error from %s: %s", self.client, err)
                self.flush()
                return
            # A stream reset in the same read as its request is never resolved: rapid reset
            # (open, reset, repeat) then costs a parse, not an upstream query.
            self.reset = {e.stream_id for e in events if isinstance(e, h2.events.StreamReset)}
            for event in events:
                if isinstance(event, h2.events.ConnectionTerminated):   # the client's GOAWAY
                    log.debug("doh: GOAWAY from %s: %s", self.client, event.error_code)
                    self.flush()
                    await self.settle()
                    return
                await self.on_event(event)
            self.flush()
        await self.settle()

    async def on_event(self, ev: Any) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            st = _Stream(ev.headers)
            if st.status:
                self.refuse(ev.stream_id, st.status)
            else:
                self.streams[ev.stream_id] = st
        elif isinstance(ev, h2.events.DataReceived):
            sid = ev.stream_id
            st = self.streams.get(sid)
            if st is not None:
                # Handed back when the request ends, not as it arrives: the bodies one
                # connection buffers are then bounded by its 64 KiB receive window.
                st.unacked += ev.flow_controlled_length
                st.body += ev.data
                if len(st.body) > MAX_MESSAGE:
                    del self.streams[sid]
                    self.refuse(sid, 413)
                    self.conn.acknowledge_received_data(st.unacked, sid)
                return
            self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            if sid in self.discard:
                self.discard[sid] -= len(ev.data)
                if self.discard[sid] < 0:   # still sending: now it is told to stop
                    del self.discard[sid]
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        self.conn.reset_stream(sid)
        elif isinstance(ev, h2.events.StreamEnded):
            self.discard.pop(ev.stream_id, None)
            st = self.streams.pop(ev.stream_id, None)
            if st is None:
                return
            if st.unacked:
                self.conn.acknowledge_received_data(st.unacked, ev.stream_id)
            if ev.stream_id not in self.reset and not self.writer.is_closing():
                await self.dispatch(ev.stream_id, st)
        elif isinstance(ev, h2.events.StreamReset):
            st = self.streams.pop(ev.stream_id, None)
            if st is not None and st.unacked:   # the connection's window, not the stream's
                self.conn.acknowledge_received_data(st.unacked, ev.stream_id)
            self.discard.pop(ev.stream_id, None)
            self.pending.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.WindowUpdated):
            for sid in ([ev.stream_id] if ev.stream_id else list(self.pending)):
                if sid in self.pending:
                    self.send_body(sid, self.pending.pop(sid))

    def refuse(self, sid: int, status: int) -> None:
        """An error answered before the request's end. The rest of the body is read and
        dropped up to DISCARD bytes, then the stream is reset (RFC 9113 8.1): resetting at
        once is correct but makes curl and others report a framing error, not the 413."""
        self.respond(sid, status, None)
        self.discard[sid] = DISCARD

    async def dispatch(self, sid: int, st: _Stream) -> None:
        status, packet = judge(st.method, st.target, st.ctype, bytes(st.body))
        if status:
            self.respond(sid, status, None)
            return
        started = _start(self.li, packet, self.client)
        if isinstance(started, tuple):   # answered at once (cache, policy): no task
            self.respond(sid, *started)
            self.flush()
            return
        await self.slots.acquire()   # all slots busy: stop reading until one frees
        self.li.spawn(self.answer(sid, started))

    async def answer(self, sid: int, pending: Any) -> None:
        try:
            self.respond(sid, *await _finish(pending))
            self.flush()
        finally:
            self.slots.release()

    def respond(self, sid: int, status: int, reply: bytes | None) -> None:
        _count(self.li, status)
        headers, body = _response(status, reply)
        try:
            self.conn.send_headers(sid, [(b":status", b"%d" % status), *headers])
        except h2.exceptions.ProtocolError:   # the client reset the stream meanwhile
            return
        self.send_body(sid, memoryview(body))

    def send_body(self, sid: int, body: memoryview) -> None:
        """As much as flow control lets through now; the rest waits for a WINDOW_UPDATE."""
        conn = self.conn
        try:
            while True:
                room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if room >= len(body):
                    conn.send_data(sid, body.tobytes(), end_stream=True)
                    return
                if room <= 0:
                    self.pending[sid] = body
                    return
                conn.send_data(sid, body[:room].tobytes())
                body = body[room:]
        except h2.exceptions.ProtocolError:   # stream reset or closed: nothing to send
            self.pending.pop(sid, None)

    def flush(self) -> None:
        """Frames out now. One write per answer, as the TCP listener does: coalescing answers
        into one write saves little and trips dnsperf's DoH client (it takes one answer per
        read, DNS-OARC/dnsperf#240), the tool the benchmark measures with."""
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def settle(self) -> None:
        """Answers still being resolved go out before the GOAWAY (sending on a stream after
        h2 closed the connection is an error), within the idle timeout."""
        held = 0
        try:
            async with asyncio.timeout(self.li.tcp_idle):
                for _ in range(self.li.tcp_inflight):
                    await self.slots.acquire()
                    held += 1
        except TimeoutError:
            pass
        for _ in range(held):
            self.slots.release()
        self.conn.close_connection()
        self.flush()


class _H1:
    """One HTTP/1.1 connection: requests one after another (h11 serialises pipelining)."""

    def __init__(self, li: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 client: str) -> None:
        self.li, self.reader, self.writer, self.client = li, reader, writer, client
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)

    async def run(self) -> None:
        conn = self.conn
        st: _Stream | None = None
        while self.li.accepting:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as err:
                self.respond(err.error_status_hint if err.error_status_hint in _REASONS
                             else 400, None)
                return
            if ev is h11.NEED_DATA:
                data = await _read(self.li, self.reader, self.writer)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(ev, h11.Request):
                st = _Stream([(b":method", ev.method), (b":path", ev.target), *ev.headers])
                if st.status:             # Content-Length over 65535: not kept
                    self.respond(st.status, None)
                    await self.linger()
                    return
                if conn.client_is_waiting_for_100_continue:
                    self.write(h11.InformationalResponse(status_code=100, headers=[]))
            elif isinstance(ev, h11.Data) and st is not None:
                st.body += ev.data
                if len(st.body) > MAX_MESSAGE:
                    self.respond(413, None)
                    await self.linger()
                    return
            elif isinstance(ev, h11.EndOfMessage) and st is not None:
                if not await self.answer(st):
                    return
                st = None
            else:   # ConnectionClosed, PAUSED with the peer done
                return

    async def linger(self) -> None:
        """Read and drop what is left of a refused body (DISCARD bytes at most) before the
        close, so the client reads our 413 instead of a broken pipe."""
        left = DISCARD
        while left > 0 and self.conn.their_state is h11.SEND_BODY:
            data = await _read(self.li, self.reader, self.writer)
            if not data:
                return
            left -= len(data)
            self.conn.receive_data(data)
            with contextlib.suppress(h11.RemoteProtocolError):
                while self.conn.next_event() not in (h11.NEED_DATA, h11.PAUSED):
                    pass

    async def answer(self, st: _Stream) -> bool:
        status, packet = judge(st.method, st.target, st.ctype, bytes(st.body))
        reply = None
        if not status:
            status, reply = await _resolve(self.li, packet, self.client)
        if not self.respond(status, reply):
            return False
        if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is not h11.DONE:
            return False
        self.conn.start_next_cycle()
        return True

    def respond(self, status: int, reply: bytes | None) -> bool:
        """Send a whole response; False if h11 says the connection cannot carry one."""
        _count(self.li, status)
        headers, body = _response(status, reply)
        if status != 200:
            headers.append((b"connection", b"close"))
        try:
            self.write(h11.Response(status_code=status, headers=headers))
            self.write(h11.Data(data=body))
            self.write(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return False
        return status == 200

    def write(self, event: Any) -> None:
        data = self.conn.send(event)
        if data and not self.writer.is_closing():
            self.writer.write(data)
