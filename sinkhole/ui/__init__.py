"""The security console: server-rendered pages under /ui/ where the security team finds the
device (overview, devices, timeline, triage, hits, alerts, lists, retro-hunt).

It reads the store through the same functions as the JSON API, on read-only connections in
worker threads; its only writes are a person's actions (triage marks, an alert resend, a
reload), each its own short transaction or the daemon's own reload.
"""

from .app import build_console

__all__ = ["build_console"]
