"""One exception root for the package, with the subclasses callers actually branch on.

Callers catch a class, never compare message text: `except UpstreamTimeout` instead of
`str(err) == "timeout"`. Every error the daemon raises on purpose derives from SinkholeError,
so the CLI and the composition root can tell "we refused" from "we have a bug".
"""

from __future__ import annotations


class SinkholeError(Exception):
    """Root of every error sinkhole raises on purpose."""


class UpstreamError(SinkholeError):
    """An upstream attempt failed (broken connection, bad reply, refused); try the next one."""


class UpstreamTimeout(UpstreamError):
    """An upstream attempt ran out of its share of the deadline."""

    def __init__(self, message: str = "timeout") -> None:
        super().__init__(message)


class UpstreamRcode(UpstreamError):
    """An upstream answered SERVFAIL or REFUSED: a failure of that upstream, not an answer."""

    def __init__(self, message: str, rcode: int) -> None:
        super().__init__(message)
        self.rcode = rcode


class AllUpstreamsFailed(SinkholeError):
    """No upstream answered in time; `reason` is the last failure (for the EDE text)."""

    def __init__(self, reason: str, timed_out: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class Overloaded(SinkholeError):
    """A global bound (in-flight upstream queries) is reached: shed this query, count it."""


class StartupError(SinkholeError):
    """The daemon cannot start with this config and environment (exit code 2)."""
