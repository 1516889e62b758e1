"""The systemd notify protocol (sd_notify): readiness, reload, stop, status and the watchdog.

Written against the protocol, not libsystemd, so the daemon gains no dependency: a notification
is one datagram of `KEY=VALUE` lines sent to the AF_UNIX socket named by `$NOTIFY_SOCKET`.
Outside systemd (no `$NOTIFY_SOCKET`) every call is a cheap no-op returning False, so the daemon
calls these unconditionally. Nothing here raises: failing to report readiness must never be
what takes a working resolver down; failures are logged at DEBUG and reported as False.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# systemd reads the socket promptly; a bound on the send keeps a wedged manager from stalling
# the event loop for long (a missed WATCHDOG=1 is recovered by the next one).
_SEND_TIMEOUT = 1.0


def notify(state: str) -> bool:
    """Send `state` (newline-separated `KEY=VALUE` assignments) to the service manager.

    Returns True when the datagram was sent, False when not under systemd or on any error.
    """
    address = _socket_address(os.environ.get("NOTIFY_SOCKET", ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(_SEND_TIMEOUT)
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except (OSError, ValueError) as err:  # ValueError: NUL in the path, unencodable text
        log.debug("sd_notify %r to %r failed: %s", state, address, err)
        return False
    return True


def _socket_address(raw: str) -> str | None:
    """Map `$NOTIFY_SOCKET` to a socket address: a path, or `@name` for the abstract namespace.

    Other forms (systemd 254's `vsock:`) are not ours to support on a DNS box: None, logged.
    """
    if not raw:
        return None
    if raw.startswith("/"):
        return raw
    if raw.startswith("@") and len(raw) > 1:
        return "\0" + raw[1:]
    log.debug("NOTIFY_SOCKET %r is not a path or abstract socket; not notifying", raw)
    return None


def ready(status_text: str | None = None) -> bool:
    """Tell systemd start-up (or a reload) is complete: listeners bound, lists loaded."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(status_text)}" if status_text else ""))


def reloading() -> bool:
    """Tell systemd a reload started; send `ready()` when it is done.

    MONOTONIC_USEC lets systemd ≥ 253 (Type=notify-reload) match this to the reload it asked
    for; older managers ignore the unknown key and still see RELOADING=1.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    """Tell systemd the daemon is draining, so `systemctl status` says so and no restart races."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """Set the one-line status `systemctl status sinkhole` shows (e.g. lists and counts)."""
    return notify(f"STATUS={_one_line(text)}")


def extend_timeout(seconds: float) -> bool:
    """Ask for more start/stop time, for a first load of very large lists (systemd ≥ 236)."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")


def _one_line(text: str) -> str:
    # A newline would start a new assignment: a status must never be able to inject READY=1.
    return " ".join(text.splitlines())


def watchdog_interval() -> float | None:
    """The watchdog period in seconds systemd expects pings within, or None if it is off.

    `$WATCHDOG_PID`, when set, names the process the watchdog is meant for; a child that
    inherited the environment must not ping on its parent's behalf.
    """
    raw = os.environ.get("WATCHDOG_USEC", "")
    if not raw:
        return None
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        if pid and int(pid) != os.getpid():
            return None
        usec = int(raw)
    except ValueError:
        log.debug("ignoring malformed WATCHDOG_USEC=%r WATCHDOG_PID=%r", raw, pid)
        return None
    return usec / 1_000_000 if usec > 0 else None


async def watchdog_loop(is_healthy: Callable[[], bool], *, interval: float | None = None) -> None:
    """Ping the watchdog every half period while `is_healthy()` is true, until cancelled.

    Running on the event loop is the point: a blocked loop stops the pings and systemd restarts
    the daemon. An unhealthy (or raising) check withholds the ping for the same outcome. Returns
    at once when no watchdog is configured; `interval` overrides the environment (tests).
    """
    period = interval if interval is not None else watchdog_interval()
    if period is None:
        return
    was_healthy = True
    while True:
        healthy = _check(is_healthy)
        if healthy:
            notify("WATCHDOG=1")
        elif was_healthy:
            log.warning("health check failed; withholding the systemd watchdog ping",
                        extra={"event": "watchdog_withheld"})
        was_healthy = healthy
        await asyncio.sleep(period / 2)


def _check(is_healthy: Callable[[], bool]) -> bool:
    try:
        return bool(is_healthy())
    except Exception as err:  # a broken health check means unhealthy, never a dead loop
        log.debug("health check raised: %r", err)
        return False
