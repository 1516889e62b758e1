"""The certificate of our DoT/DoH endpoints: loaded into SSL contexts, swapped whole on reload.

Why the listeners do not hand a context to `asyncio.start_server(ssl=...)`: a server's context
is fixed when it starts. They accept plain TCP, count the connection against the caps, and only
then start TLS with `context(kind)` — so a reload is one attribute swap on the loop (new
connections get the new certificate, open ones keep theirs), and a flood of half-open handshakes
is bounded by the same caps as plain TCP.

A pair that does not load (a file missing, the key not matching the certificate, broken PEM)
keeps the old contexts: a typo during a renewal must not take encrypted DNS down. Only the
first load raises (StartupError): without a certificate there is nothing to serve.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable

from sinkhole.errors import StartupError

log = logging.getLogger(__name__)

# ALPN (RFC 7301) per listener kind: "dot" is RFC 7858's id; DoH serves HTTP/2 (what phones,
# Windows and browsers speak) and HTTP/1.1 (curl without nghttp2, older stubs).
ALPN = {"dot": ("dot",), "doh": ("h2", "http/1.1")}


def _signature(*paths: str) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is rewritten or a symlink (certbot's live/) is repointed."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


def build_context(cert_file: str, key_file: str, alpn: tuple[str, ...]) -> ssl.SSLContext:
    """A server context for the pair; raises OSError/ssl.SSLError (an OSError) if it is bad.

    TLS 1.2 at least (RFC 8310 for DoT, RFC 9113 9.2 for HTTP/2), no compression and no
    renegotiation (HTTP/2 forbids both)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(cert_file, key_file)   # also checks the key matches the certificate
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def read_leaf(cert_file: str) -> dict:
    """The first certificate of the chain file, decoded (subjectAltName, notAfter...).

    CPython's own decoder (the one its ssl tests use); an interpreter without it gives {}, and
    DDR then needs `tls.name` set."""
    decode: Callable[[str], dict] | None = getattr(getattr(ssl, "_ssl", None),
                                                   "_test_decode_cert", None)
    if decode is None:
        return {}
    try:
        return decode(cert_file)
    except (OSError, ValueError):
        return {}


class CertStore:
    """The current contexts of the pair, by listener kind ("dot", "doh").

    `reload()` is what SIGHUP calls, `reload_if_changed()` what a file watch calls; both return
    True when a new pair is active. `failures` counts pairs refused (for a metric), `loaded_at`
    is when the active one loaded, `expires` its notAfter (epoch seconds, 0 if unknown)."""

    def __init__(self, cert_file: str, key_file: str, name: str | None = None) -> None:
        self.cert_file, self.key_file, self.configured_name = cert_file, key_file, name
        self.failures = 0
        self.loaded_at = 0.0
        self.expires = 0.0
        self.dns_names: tuple[str, ...] = ()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._seen = _signature(cert_file, key_file)
        try:
            self._load()
        except OSError as err:
            raise StartupError(f"tls: cannot load {cert_file} / {key_file}: {err}") from None

    def context(self, kind: str) -> ssl.SSLContext:
        return self._contexts[kind]

    @property
    def name(self) -> str | None:
        """The name clients verify: `tls.name`, else the certificate's first DNS name."""
        if self.configured_name:
            return self.configured_name
        return self.dns_names[0] if self.dns_names else None

    def _load(self) -> None:
        contexts = {kind: build_context(self.cert_file, self.key_file, alpn)
                    for kind, alpn in ALPN.items()}
        leaf = read_leaf(self.cert_file)
        self._contexts = contexts
        self.dns_names = tuple(v for k, v in leaf.get("subjectAltName", ()) if k == "DNS")
        not_after = leaf.get("notAfter")
        self.expires = ssl.cert_time_to_seconds(not_after) if not_after else 0.0
        self.loaded_at = time.time()

    def reload(self) -> bool:
        """Load the files again; a bad pair is logged and counted, the old one stays."""
        self._seen = _signature(self.cert_file, self.key_file)
        try:
            self._load()
        except OSError as err:
            self.failures += 1
            log.error("tls: new certificate %s / %s not loaded, keeping the old one: %s",
                      self.cert_file, self.key_file, err)
            return False
        log.info("tls: certificate %s loaded (expires %s)", self.cert_file,
                 time.strftime("%Y-%m-%d", time.gmtime(self.expires)) if self.expires else "?")
        return True

    def reload_if_changed(self) -> bool:
        """Reload when either file changed since the last attempt (a failed pair is not
        retried until a file changes again: a renewal writing the key after the certificate
        fails once, then loads)."""
        if _signature(self.cert_file, self.key_file) == self._seen:
            return False
        return self.reload()

    async def watch(self, interval: float) -> None:
        """Poll the files every `interval` seconds (run as a task; cancel to stop)."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()
