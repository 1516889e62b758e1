"""A throwaway certificate authority, so the DoT/DoH test peers present verifiable certificates."""

import contextlib
import os
import ssl
import tempfile
import weakref
from types import TracebackType

import trustme


def _unlink(path: str) -> None:
    """Remove the CA file; a second call (explicit close, then GC) must not fail."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class TestCA:
    """A trustme CA whose certificate also lives in a PEM file, because the daemon is configured
    with a path (like a real deployment), not with an in-memory context."""

    __test__ = False  # the name starts with "Test": keep pytest from collecting it

    def __init__(self) -> None:
        self.ca = trustme.CA()
        fd, path = tempfile.mkstemp(prefix="sinkhole-test-ca-", suffix=".pem")
        os.close(fd)
        self.ca.cert_pem.write_to_path(path)
        self.ca_pem_path: str = path
        self._finalizer = weakref.finalize(self, _unlink, path)

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, for clients that take PEM bytes rather than a path."""
        return self.ca.cert_pem.bytes()

    def server_context(
        self, hostname: str = "dns.test", ip: str | None = "127.0.0.1"
    ) -> ssl.SSLContext:
        """A server context with a fresh leaf for `hostname` (DNS SAN) and `ip` (IP SAN), so clients
        can verify either by name (SNI/server_hostname) or by the loopback address they dial."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        identities = [hostname] if ip is None else [hostname, ip]
        self.ca.issue_cert(*identities).configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA (the tests' own clients use it)."""
        ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(ctx)
        return ctx

    def close(self) -> None:
        """Delete the PEM file now instead of at garbage collection."""
        self._finalizer()

    def __enter__(self) -> "TestCA":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
