"""The upstream pool: one Upstream per configured URL, failover in health order, one deadline.

The client's whole wait is bounded by `upstream_timeout`: each attempt gets a share of what is
left, so with every upstream down the client still gets SERVFAIL (or a stale answer) in time.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Sequence

from sinkhole.config.values import UpstreamURL, parse_upstream
from sinkhole.dns.message import Reply, build_query
from sinkhole.dns.wire import REFUSED, SERVFAIL
from sinkhole.errors import AllUpstreamsFailed, UpstreamError, UpstreamRcode, UpstreamTimeout
from sinkhole.upstream.doh import DohUpstream
from sinkhole.upstream.stream import StreamUpstream
from sinkhole.upstream.udp import udp_exchange

__all__ = ["AllUpstreamsFailed", "Upstream", "UpstreamPool", "default_upstreams"]

# How long a failed upstream is tried only after the healthy ones.
PENALTY_SECONDS = 30.0
_FAILURE_RCODES = {SERVFAIL: "rcode SERVFAIL", REFUSED: "rcode REFUSED"}


class Upstream:
    """One configured upstream and its transport(s)."""

    def __init__(self, url: UpstreamURL, ssl_ctx: ssl.SSLContext | None,
                 on_forged: Callable[[str], None] | None) -> None:
        self.url = url
        self.name = url.url
        self.family = socket.AF_INET6 if ":" in url.host else socket.AF_INET
        self.addr = (url.host, url.port)
        self.on_forged = on_forged
        self.failed_at = 0.0
        self.stream: StreamUpstream | None = None
        self.doh: DohUpstream | None = None
        if url.proto == "https":
            self.doh = DohUpstream(url.url, ssl_ctx or ssl.create_default_context(), on_forged)
        elif url.proto in ("tcp", "tls", "udp"):
            # udp upstreams get a TCP stream too, used only to retry truncated answers
            tls = ssl_ctx if url.proto == "tls" else None
            self.stream = StreamUpstream(url.host, url.port, tls, url.tls_name, on_forged)

    async def query(self, question: bytes, do: bool, cd: bool, timeout: float) -> Reply:
        """`question` is lower-case (the cache key's); 0x20 mixes its case on UDP only, where
        spoofing is possible: a stream (TCP, TLS, HTTPS) is not blind-spoofable."""
        if self.doh is not None:
            txid = secrets.randbits(16)
            return await self.doh.exchange(build_query(txid, question, do, cd), txid, question,
                                           timeout)
        assert self.stream is not None
        if self.url.proto == "udp":
            start = time.monotonic()
            reply = await udp_exchange(self.addr, self.family, question, do, cd,
                                       self.url.randomize_case, timeout, self.on_forged)
            if not reply.truncated:
                return reply
            timeout -= time.monotonic() - start   # RFC 7766: retry the truncated answer on TCP
            if timeout <= 0:
                raise UpstreamTimeout()
        return await self.stream.exchange(lambda t: build_query(t, question, do, cd), question,
                                          timeout)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.close()
        if self.doh is not None:
            await self.doh.close()


class UpstreamPool:
    """Forward a question, failing over across upstreams within one deadline."""

    def __init__(self, urls: Sequence[UpstreamURL], timeout: float, *,
                 ca_file: str | None = None,
                 on_result: Callable[[str, str, float], None] | None = None,
                 on_forged: Callable[[str], None] | None = None) -> None:
        ctx = None
        if any(u.proto in ("tls", "https") for u in urls):
            ctx = ssl.create_default_context()
            if ca_file:
                ctx.load_verify_locations(ca_file)
        self.upstreams = [Upstream(u, ctx, on_forged) for u in urls]
        self.timeout = timeout
        self.on_result = on_result

    def _order(self, now: float) -> list[Upstream]:
        """Healthy upstreams first, in config order; recently failed ones after them."""
        return sorted(self.upstreams, key=lambda u: now - u.failed_at < PENALTY_SECONDS)

    async def resolve(self, question: bytes, do: bool, cd: bool) -> Reply:
        """The first real answer; AllUpstreamsFailed when every upstream timed out, failed or
        said SERVFAIL/REFUSED (so the resolver can serve stale instead of relaying a failure).
        `timed_out` is set only when every failure was a timeout (the EDE code tells them apart).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        order = self._order(time.monotonic())
        reason, tried, timeouts = "no upstreams configured", 0, 0
        for i, up in enumerate(order):
            left = deadline - loop.time()
            if left <= 0.005:
                break
            share = left / (len(order) - i)
            start = loop.time()
            try:
                reply = await up.query(question, do, cd, share)
                failed = _FAILURE_RCODES.get(reply.flags & 0xF)
                if failed is not None:   # this upstream's failure, not an answer: the next
                    raise UpstreamRcode(failed, reply.flags & 0xF)
            except (UpstreamError, OSError) as err:   # any socket surprise: this upstream failed
                up.failed_at = time.monotonic()
                reason = f"{up.name}: {err}"
                tried += 1
                timeouts += isinstance(err, UpstreamTimeout)
                self._report(up.name, _outcome(err), loop.time() - start)
                continue
            up.failed_at = 0.0
            self._report(up.name, "ok", loop.time() - start)
            return reply
        raise AllUpstreamsFailed(reason, tried > 0 and timeouts == tried)

    def _report(self, name: str, outcome: str, seconds: float) -> None:
        if self.on_result is not None:
            self.on_result(name, outcome, seconds)

    async def close(self) -> None:
        await asyncio.gather(*(u.close() for u in self.upstreams), return_exceptions=True)


def _outcome(err: BaseException) -> str:
    """The on_result outcome label of one failed attempt."""
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    if isinstance(err, UpstreamRcode):
        return "servfail" if err.rcode == SERVFAIL else "refused"
    return "error"


def default_upstreams(own: Sequence[tuple[str, int]],
                      resolv_conf: str = "/etc/resolv.conf") -> list[UpstreamURL]:
    """The system's resolvers (never our own listening address), else public ones."""
    found = []
    try:
        with open(resolv_conf, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    host = parts[1].split("%", 1)[0]
                    if (host, 53) not in own and ("0.0.0.0", 53) not in own:
                        found.append(host)
    except OSError:
        pass
    urls = []
    for host in found:
        try:
            urls.append(parse_upstream(f"udp://[{host}]:53" if ":" in host else f"udp://{host}:53"))
        except ValueError:
            continue
    return urls or [parse_upstream("udp://9.9.9.9:53"), parse_upstream("udp://1.1.1.1:53")]
