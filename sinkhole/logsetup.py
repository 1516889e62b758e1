"""Logging: configured once, text or JSON lines on stderr (journald and SIEM forwarders)."""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else passed via `extra=` is a structured field.
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line with stable keys: time, level, logger, msg, plus extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:   # formatted already by the queue handler (see prepare)
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    """Human lines; structured extras appended as key=value so nothing is lost in text mode."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}"
                  for k, v in vars(record).items() if k not in _STD and not k.startswith("_")]
        return f"{line} {' '.join(extras)}" if extras else line


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread without ever blocking the event loop.

    If stderr stalls (a slow journald, a full pipe), the bounded queue fills and records are
    dropped and counted: a stuck log must never stall DNS answers (the Pi-hole FTL lesson).
    """

    def __init__(self, q: queue.Queue) -> None:
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Format the message now (args may change later) but keep extras for the formatter.
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


_listener: logging.handlers.QueueListener | None = None


def setup_logging(level: str, fmt: str, debug: bool = False, queue_size: int = 10_000) -> None:
    """Configure the root logger once: records go through a bounded queue to a thread that
    writes them to stderr."""
    global _listener
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if _listener is not None:
        _listener.stop()
    q: queue.Queue = queue.Queue(queue_size)
    root.addHandler(DroppingQueueHandler(q))
    _listener = logging.handlers.QueueListener(q, stream)
    _listener.start()
    atexit.register(stop_logging)
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper()))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def stop_logging() -> None:
    """Write out what is queued (at exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None
