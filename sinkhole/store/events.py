"""The values that cross into and out of the store: hit events, outbox rows, queued writer ops,
and the escaping that makes stored names safe to print.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sinkhole.events import Hit

# The store takes the pipeline's typed Hit as it is (one row per Hit).
HitEvent = Hit


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One (alert, sink) delivery as stored; ``payload`` is the decoded JSON object."""

    id: int
    created: float
    sink: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None
    delivered_at: float | None


# Writer ops.  They share one FIFO with hits so an alert is never committed before the hit that
# caused it, and a flush marker is signalled only when everything queued before it is on disk.
@dataclass(slots=True)
class AlertOp:
    """Insert one outbox row per sink; tell the caller the ids once they are committed."""

    created: float
    payload_json: str
    sinks: tuple[str, ...]
    on_durable: Callable[[list[int]], None] | None


@dataclass(slots=True)
class MarkOp:
    """A delivery outcome for one outbox row: 'delivered', 'failed' or 'expired'."""

    outbox_id: int
    state: str
    at: float
    error: str | None = None
    next_attempt: float | None = None


@dataclass(slots=True)
class FlushOp:
    """Signals ``done`` after the transaction that holds it (and all before it) commits."""

    done: threading.Event = field(default_factory=threading.Event)


def escape_name(name: str) -> str:
    """Render a stored name in DNS presentation form, non-printables as ``\\DDD``.

    Names are stored byte-for-byte as asked (the wire decoder maps bytes to latin-1 code
    points), so a control character or a space in a name must be escaped wherever it is shown,
    or it breaks a table or a log line.  A backslash becomes ``\\\\`` so the form is unambiguous.
    """
    if name.isascii() and name.isprintable() and " " not in name and "\\" not in name:
        return name
    out: list[str] = []
    for ch in name:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 32 < code < 127:
            out.append(ch)
        elif code < 256:
            out.append(f"\\{code:03d}")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte smuggled in by 'surrogateescape'
            out.append(f"\\{code - 0xDC00:03d}")
        else:
            out.extend(f"\\{b:03d}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def storable(text: str | None) -> str | None:
    """Text SQLite can take: a lone surrogate cannot be UTF-8 encoded, so it is escaped.

    Without this one odd name would fail its whole batch on every retry, forever.
    """
    if text is None or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return escape_name(text)
    return text
