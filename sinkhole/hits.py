"""Hit recording: told about every blocked query once the pipeline has decided.

An observer, not a stage: it never changes the answer. Per hit it bumps the list's counter,
writes one structured WARNING log line with stable field names (for journald/SIEM), and hands
the event to the store and alerting when they are configured. It runs on the event loop, so
everything here is non-blocking: the store takes events with put_nowait.

Flood guard: each client gets `detail_rate` detailed hits per second (token bucket, burst
`detail_burst`). Past that, hits are still counted (metrics, the clients gauge) and folded
into one `flood` event per (client, list) per second carrying the count and the last name, so
`sum(count)` in the store is still every hit, while a device spraying thousands of blocked
names a second (DNS tunnelling, a DGA, a benchmark) cannot make every answer pay for a log
line, an SQLite row and an alert decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sinkhole.lists.matcher import Verdict
from sinkhole.metrics import QTYPES, Metrics
from sinkhole.store.events import HitEvent

log = logging.getLogger("sinkhole.hit")


def qtype_name(qtype: int) -> str:
    return QTYPES.get(qtype) or f"TYPE{qtype}"


class HitRecorder:
    """Fans one hit out to metrics, the log, and the sinks added with `subscribe`."""

    def __init__(self, metrics: Metrics, names: Callable[[str], str | None] | None = None,
                 detail_rate: float = 0.0, detail_burst: float = 1000.0) -> None:
        self.metrics = metrics
        self.names = names
        self._children: dict[str, Any] = {}
        self.sinks: list[Callable[[dict[str, Any]], None]] = []
        self.flood_sinks: list[Callable[[dict[str, Any]], None]] = []
        self.rate, self.burst = detail_rate, detail_burst
        self._buckets: dict[str, list[float]] = {}
        self._floods: dict[tuple[str, str], list[Any]] = {}
        # (list, severity) -> client -> time of its last hit: the "infected devices" gauge
        self._recent: dict[tuple[str, str], dict[str, float]] = {}
        metrics.watch_hits(self.recent_clients)

    def set_lists(self, lists: Any) -> None:
        """After a reload: every list shows in the gauge (at 0 until its first hit)."""
        for info in lists:
            self._recent.setdefault((info.name, info.severity or "none"), {})

    def seed(self, list_name: str, severity: str, client: str, when: float) -> None:
        """Start-up: hits of the last 24 h from the store, so a restart does not reset the gauge
        that alerting watches."""
        self._recent.setdefault((list_name, severity or "none"), {})[client] = when

    def recent_clients(self, window: float = 86400.0) -> dict[tuple[str, str], int]:
        cutoff = time.time() - window
        out = {}
        for key, clients in self._recent.items():
            for ip in [ip for ip, t in clients.items() if t < cutoff]:
                del clients[ip]
            out[key] = len(clients)
        return out

    def subscribe(self, sink: Callable[[dict[str, Any]], None], floods: bool = False) -> None:
        """`sink(event)` for every detailed hit; with `floods`, also for aggregated ones."""
        self.sinks.append(sink)
        if floods:
            self.flood_sinks.append(sink)

    def _detailed(self, client: str, now: float) -> bool:
        """Token bucket per client: may this hit be recorded in full?"""
        b = self._buckets.get(client)
        if b is None:
            if len(self._buckets) > 100_000:   # bounded under a spoofed-source flood
                self._buckets.clear()
            b = self._buckets[client] = [self.burst, now]
        tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if tokens < 1.0:
            b[0] = tokens
            return False
        b[0] = tokens - 1.0
        return True

    def flush_floods(self) -> None:
        """Emit the aggregated hits of the last period (called every second, and at stop)."""
        floods, self._floods = self._floods, {}
        for (client, _list), (count, qname, info, action, rule, qtype, transport, first) in \
                floods.items():
            event = {
                "event": "hit", "time": first, "client": client,
                "client_name": self.names(client) if self.names is not None else None,
                "qname": qname, "qtype": qtype_name(qtype), "list": info.name,
                "category": info.category, "severity": info.severity, "rule": rule,
                "action": action, "transport": transport, "kind": "flood", "count": count,
            }
            for sink in self.flood_sinks:
                sink(event)
            log.warning("hit flood: %s made %d more hits on list %s (last: %s)", client, count,
                        info.name, escape(qname),
                        extra={k: (escape(v) if k == "qname" else v) for k, v in event.items()
                               if k != "time"})

    def on_hit(self, q: Any, client: str, transport: str, verdict: Verdict, rule: str,
               kind: str) -> None:
        info = verdict.list
        if info is None:
            return
        child = self._children.get(info.name)
        if child is None:
            child = self._children[info.name] = self.metrics.blocked.labels(
                info.name, info.category or "none", info.severity or "none")
        child.inc()
        now = time.time()
        self._recent.setdefault((info.name, info.severity or "none"), {})[client] = now
        if self.rate and kind != "retro" and not self._detailed(client, now):
            agg = self._floods.get((client, info.name))
            if agg is None:
                self._floods[(client, info.name)] = [1, q.qname, info, verdict.action, rule,
                                                     q.qtype, transport, now]
            else:
                agg[0] += 1
                agg[1] = q.qname
            return
        client_name = self.names(client) if self.names is not None else None
        event = {
            "event": "hit", "time": now, "client": client, "client_name": client_name,
            "qname": q.qname, "qtype": qtype_name(q.qtype), "list": info.name,
            "category": info.category, "severity": info.severity, "rule": rule,
            "action": verdict.action, "transport": transport, "kind": kind,
        }
        for sink in self.sinks:
            sink(event)
        log.warning("hit: %s asked for %s (list %s)", client, escape(q.qname), info.name,
                    extra={k: (escape(v) if k == "qname" else v) for k, v in event.items()
                           if k != "time"})


def store_event(ev: Mapping[str, Any]) -> HitEvent:
    """The store's record of one hit event dict (query, cname, flood or retro)."""
    return HitEvent(time=ev["time"], client_ip=ev["client"], client_name=ev["client_name"],
                    qname=ev["qname"], qtype=ev["qtype"], list=ev["list"],
                    category=ev["category"], severity=ev["severity"], rule=ev["rule"],
                    action=ev["action"], transport=ev["transport"], kind=ev["kind"],
                    first_seen=ev.get("first_seen"), last_seen=ev.get("last_seen"),
                    count=ev.get("count", 1))


def escape(name: str) -> str:
    """Render any bytes of a name printable (DNS presentation \\DDD escapes), so a hostile
    name can never break a log line, a table or a JSON consumer that expects text."""
    if name.isascii() and name.isprintable():
        return name
    return "".join(c if " " < c < "\x7f" else f"\\{ord(c):03d}" for c in name)
