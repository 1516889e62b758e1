"""The TLS ClientHello's server name (SNI) and ALPN, read from a connection's first bytes.

Only parsed, never answered: the sinkhole listener wants to know which name a device meant to
reach at the sinkhole address, and completing a handshake would mean presenting a certificate
for it. Every length is checked against the bytes at hand, so hostile input ends in Malformed
(a fixed reason, safe as a counter key) or "need more bytes" (None), never anything else.
A ClientHello may span several TLS records (large post-quantum key shares do): they are joined.
"""

from __future__ import annotations

import re

MAX_HELLO = 16 * 1024 - 4     # a ClientHello larger than the listener reads is not one
_RECORD_MAX = 16384 + 2048    # RFC 8446 5.1 (plus the slack TLS 1.2 allows)
_HOST = re.compile(rb"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_EXT_SNI, _EXT_ALPN = 0, 16
MAX_ALPN = 16


class Malformed(ValueError):
    """Bytes that are not what they claim to be; `reason` is one of this module's literals."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def host_name(raw: bytes, what: str) -> str:
    """A lower-case host name, or Malformed: what ends up in hits and alerts must be one."""
    if len(raw) > 253 or _HOST.fullmatch(raw) is None:
        raise Malformed(f"{what} is not a host name")
    return raw.rstrip(b".").lower().decode("ascii")


def parse_client_hello(data: bytes) -> tuple[str | None, tuple[str, ...]] | None:
    """(SNI or None, ALPN ids) of the ClientHello at the start of `data`; None: need more."""
    hs = bytearray()
    off = 0
    while len(data) - off >= 5:
        if data[off] != 22:
            raise Malformed("not a TLS handshake record")
        if data[off + 1] != 3:
            raise Malformed("bad TLS record version")
        length = (data[off + 3] << 8) | data[off + 4]
        if not 0 < length <= _RECORD_MAX:
            raise Malformed("bad TLS record length")
        hs += data[off + 5:off + 5 + length]
        if len(hs) >= 4:
            if hs[0] != 1:
                raise Malformed("not a ClientHello")
            need = 4 + int.from_bytes(hs[1:4], "big")
            if need > MAX_HELLO + 4:
                raise Malformed("ClientHello too large")
            if len(hs) >= need:
                return _hello(memoryview(hs)[4:need])
        off += 5 + length
    return None


class _Reader:
    __slots__ = ("b", "pos")

    def __init__(self, b: memoryview) -> None:
        self.b, self.pos = b, 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.b):
            raise Malformed("truncated ClientHello")
        out = self.b[self.pos:end]
        self.pos = end
        return out

    def vector(self, size_len: int) -> memoryview:
        return self.take(int.from_bytes(self.take(size_len), "big"))

    @property
    def left(self) -> int:
        return len(self.b) - self.pos


def _hello(body: memoryview) -> tuple[str | None, tuple[str, ...]]:
    r = _Reader(body)
    r.take(2 + 32)                       # legacy_version, random
    if len(r.vector(1)) > 32:
        raise Malformed("session id longer than 32 bytes")
    suites = r.vector(2)
    if not suites or len(suites) % 2:
        raise Malformed("bad cipher suite list")
    if not r.vector(1):
        raise Malformed("no compression methods")
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    if r.left == 0:                      # no extensions (SSL 3 / TLS 1.0 style)
        return sni, alpn
    ext = _Reader(r.vector(2))
    while ext.left:
        kind = int.from_bytes(ext.take(2), "big")
        value = _Reader(ext.vector(2))
        if kind == _EXT_SNI and sni is None:
            sni = _server_name(_Reader(value.vector(2)))
        elif kind == _EXT_ALPN and not alpn:
            alpn = _alpn(_Reader(value.vector(2)))
    return sni, alpn


def _server_name(names: _Reader) -> str | None:
    while names.left:
        name_type = names.take(1)[0]
        raw = names.vector(2)
        if name_type == 0:               # host_name: the only type defined (RFC 6066 3)
            return host_name(bytes(raw), "SNI")
    return None


def _alpn(ids: _Reader) -> tuple[str, ...]:
    """Printable ids only (a GREASE or binary id is skipped, not recorded), at most MAX_ALPN."""
    out: list[str] = []
    while ids.left:
        raw = bytes(ids.vector(1))
        if raw and len(out) < MAX_ALPN and all(0x21 <= c <= 0x7E for c in raw):
            out.append(raw.decode("ascii"))
    return tuple(out)
