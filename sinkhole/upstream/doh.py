"""DNS over HTTPS (RFC 8484): POST application/dns-message through one shared aiohttp session.

One ClientSession for the daemon's life keeps connections (and TLS sessions) alive between
queries, as aiohttp's docs advise; a session per query would pay a handshake every time.
The body is read to its end (it may come in several segments or chunks), bounded by 64 KiB:
no DNS message is longer, so a longer body is a broken upstream, not something to cut and parse.
"""

from __future__ import annotations

import ssl

import aiohttp

from sinkhole.dns.message import ForgedReply, Reply, parse_reply
from sinkhole.errors import UpstreamError, UpstreamTimeout

_CT = "application/dns-message"
_MAX_BODY = 65536


class DohUpstream:
    def __init__(self, url: str, ssl_ctx: ssl.SSLContext, on_forged=None) -> None:
        self.url = url.split("#", 1)[0]
        self.ssl_ctx = ssl_ctx
        self.on_forged = on_forged
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            conn = aiohttp.TCPConnector(ssl=self.ssl_ctx, limit=64, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(connector=conn)
        return self._session

    async def exchange(self, packet: bytes, txid: int, question: bytes, timeout: float) -> Reply:
        session = self._get_session()
        try:
            async with session.post(
                self.url, data=packet, headers={"content-type": _CT, "accept": _CT},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                if resp.status != 200:
                    raise UpstreamError(f"https: HTTP {resp.status}")
                if resp.content_type != _CT:
                    raise UpstreamError(f"https: unexpected content-type {resp.content_type}")
                data = await _read_body(resp)
        except TimeoutError:
            raise UpstreamTimeout() from None
        except (aiohttp.ClientError, EOFError) as err:
            raise UpstreamError(f"https: {err}") from None
        try:
            return parse_reply(data, txid, question)
        except ForgedReply as err:
            if self.on_forged is not None:
                self.on_forged(str(err))
            raise UpstreamError(f"https: {err}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _read_body(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body (one read when Content-Length is sent), UpstreamError past _MAX_BODY."""
    size = resp.content_length
    if size is not None:
        if size > _MAX_BODY:
            raise UpstreamError(f"https: reply body of {size} bytes")
        return await resp.content.readexactly(size)   # short: IncompleteReadError (EOFError)
    data = b""
    while True:   # chunked: read to the end, never past the bound
        more = await resp.content.read(_MAX_BODY + 1 - len(data))
        if not more:
            return data
        data += more
        if len(data) > _MAX_BODY:
            raise UpstreamError(f"https: reply body over {_MAX_BODY} bytes")
