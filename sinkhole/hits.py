"""Hit recording: told about every blocked query once the pipeline has decided.

An observer, not a stage: it never changes the answer. Per hit it bumps the list's counter,
builds one typed `Hit`, writes one structured WARNING log line with stable field names (for
journald/SIEM), hands the Hit to the store and then, only if the store took it, to alerting.

The rule when the store's queue is full: the hit is dropped *and so is its alert*, both counted
(`sinkhole_hits_dropped_total`) and logged at most once a minute. An alert must always point at
a hit that `sinkhole hits` can show; an alert about a row that does not exist sends the
security team looking for evidence that was never kept. (The queue holds 100k events by
default: it fills only when the disk has been failing for a long time, which is alerted on
through `sinkhole_store_write_errors_total`.)

Flood guard: each client gets `detail_rate` detailed hits per second (token bucket, burst
`detail_burst`). Past that, hits are still counted (metrics, the clients gauge) and folded
into one `flood` Hit per (client, list) per second carrying the count and the last name, so
`sum(count)` in the store is still every hit, while a device spraying thousands of blocked
names a second (DNS tunnelling, a DGA, a benchmark) cannot make every answer pay for a log
line, an SQLite row and an alert decision.

Every table keyed by client address is bounded here, on the hit path itself, never by a
Prometheus scrape: a spoofed-source flood cannot grow memory between scrapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sinkhole.events import Hit
from sinkhole.lists.matcher import Verdict
from sinkhole.metrics import QTYPES, Metrics

log = logging.getLogger("sinkhole.hit")

RECENT_WINDOW = 86400.0          # the "clients with hits" gauge: distinct clients in 24 h
MAX_RECENT_CLIENTS = 65_536      # per (list, severity); oldest forgotten first beyond it
MAX_BUCKETS = 100_000            # flood-guard buckets; cleared (all refill) beyond it
DROP_LOG_INTERVAL = 60.0


def qtype_name(qtype: int) -> str:
    return QTYPES.get(qtype) or f"TYPE{qtype}"


class HitRecorder:
    """Fans one hit out to metrics, the log, the store and (after the store) alerting."""

    def __init__(self, metrics: Metrics, names: Callable[[str], str | None] | None = None,
                 detail_rate: float = 0.0, detail_burst: float = 1000.0, *,
                 store: Callable[[Hit], bool] | None = None,
                 alert: Callable[[Hit], None] | None = None,
                 alert_retro: Callable[[list[Hit]], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.names = names
        self.store = store          # returns False when it could not take the hit
        self.alert = alert
        self.alert_retro = alert_retro
        self.clock = clock
        self._children: dict[str, Any] = {}
        self.rate, self.burst = detail_rate, detail_burst
        self._buckets: dict[str, list[float]] = {}
        self._floods: dict[tuple[str, str], list[Any]] = {}
        # (list, severity) -> client -> time of its last hit, oldest first: the gauge that
        # alerting watches ("infected devices").
        self._recent: dict[tuple[str, str], dict[str, float]] = {}
        self.dropped = 0
        self._dropped_logged = 0.0
        self._sinkholed: dict[str, Hit] = {}
        metrics.watch_hits(self.recent_clients)

    def set_lists(self, lists: Any) -> None:
        """After a reload: every list shows in the gauge (at 0 until its first hit)."""
        for info in lists:
            self._recent.setdefault((info.name, info.severity or "none"), {})

    def seed(self, list_name: str, severity: str, client: str, when: float) -> None:
        """Start-up: hits of the last 24 h from the store, so a restart does not reset the gauge
        that alerting watches. Rows come oldest first, which keeps the recency order."""
        self._saw((list_name, severity or "none"), client, when)

    def _saw(self, key: tuple[str, str], client: str, now: float) -> None:
        clients = self._recent.get(key)
        if clients is None:
            clients = self._recent[key] = {}
        if clients.pop(client, None) is None and len(clients) >= MAX_RECENT_CLIENTS // 2:
            _forget_before(clients, now - RECENT_WINDOW, MAX_RECENT_CLIENTS - 1)
        clients[client] = now

    def recent_clients(self, window: float = RECENT_WINDOW) -> dict[tuple[str, str], int]:
        cutoff = self.clock() - window
        out = {}
        for key, clients in self._recent.items():
            _forget_before(clients, cutoff, MAX_RECENT_CLIENTS)
            out[key] = len(clients)
        return out

    def _detailed(self, client: str, now: float) -> bool:
        """Token bucket per client: may this hit be recorded in full?"""
        b = self._buckets.get(client)
        if b is None:
            if len(self._buckets) >= MAX_BUCKETS:   # bounded under a spoofed-source flood
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
            hit = Hit(first, client, self._name(client), qname, qtype_name(qtype), info.name,
                      info.category, info.severity, rule, action, transport, "flood",
                      count=count)
            self._keep(hit, alert=False)
            log.warning("hit flood: %s made %d more hits on list %s (last: %s)", client, count,
                        info.name, escape(qname), extra=log_fields(hit))

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
        now = self.clock()
        self._saw((info.name, info.severity or "none"), client, now)
        if self.rate and not self._detailed(client, now):
            agg = self._floods.get((client, info.name))
            if agg is None:
                self._floods[(client, info.name)] = [1, q.qname, info, verdict.action, rule,
                                                     q.qtype, transport, now]
            else:
                agg[0] += 1
                agg[1] = q.qname
            return
        hit = Hit(now, client, self._name(client), q.qname, qtype_name(q.qtype), info.name,
                  info.category, info.severity, rule, verdict.action, transport, kind)
        log.warning("hit: %s asked for %s (list %s)", client, escape(q.qname), info.name,
                    extra=log_fields(hit))
        if verdict.action == "sinkhole":
            self._remember_sinkholed(client, hit)
        self._keep(hit, alert=True)

    def _remember_sinkholed(self, client: str, hit: Hit) -> None:
        """The last name each client got the sinkhole address for: the hit a connection to
        that address follows (bounded like every table keyed by client)."""
        if len(self._sinkholed) >= MAX_BUCKETS:
            self._sinkholed.clear()
        self._sinkholed[client] = hit

    def on_connect(self, ev: Any) -> None:
        """The sinkhole listener saw `ev` (a ConnectEvent): the device acts on the answer it
        got, it did not just ask. A hit of kind 'connect' naming what it tried to reach (SNI
        or Host, else the name it was last sinkholed for), stored and alerted on its own."""
        before = self._sinkholed.get(ev.client_ip)
        host = ev.host.rsplit(":", 1)[0] if ev.host and not ev.host.startswith("[") \
            else ev.host
        name = (ev.sni or host or (before.qname if before is not None else "")).lower()
        self.metrics.connects.labels(ev.proto).inc()
        detail = f"{ev.proto} port {ev.port}" + (f" sni={ev.sni}" if ev.sni else "") + \
            (f" alpn={','.join(ev.alpn)}" if ev.alpn else "") + \
            (f" {ev.request_line}" if ev.request_line else "")
        hit = Hit(ev.time, ev.client_ip, self._name(ev.client_ip), name, "TCP",
                  before.list if before is not None else "sinkhole",
                  before.category if before is not None else None,
                  before.severity if before is not None else "critical",
                  escape(detail)[:300], "connect", "tcp", "connect",
                  sni=ev.sni, host=host, port=ev.port)
        log.warning("connect: %s tried to connect to %s on the sinkhole (port %d)",
                    ev.client_ip, escape(name or "?"), ev.port, extra=log_fields(hit))
        self._keep(hit, alert=True)

    def on_retro(self, finds: list[Hit]) -> None:
        """Retro-hunt finds: stored, then alerted together (one digest decision)."""
        kept = [hit for hit in finds if self._keep(hit, alert=False)]
        if kept and self.alert_retro is not None:
            self.alert_retro(kept)

    def _name(self, client: str) -> str | None:
        return self.names(client) if self.names is not None else None

    def _keep(self, hit: Hit, *, alert: bool) -> bool:
        """Store first; alert only on what the store took (see the module docstring)."""
        if self.store is not None and not self.store(hit):
            self.dropped += 1
            self.metrics.hits_dropped.inc()
            now = time.monotonic()
            if now - self._dropped_logged >= DROP_LOG_INTERVAL:
                self._dropped_logged = now
                log.error("store queue full: hit and its alert dropped (client %s, %s); "
                          "%d dropped so far", hit.client_ip, escape(hit.qname), self.dropped,
                          extra={"event": "hit_dropped", "dropped": self.dropped})
            return False
        if alert and self.alert is not None:
            self.alert(hit)
        return True


def _forget_before(clients: dict[str, float], cutoff: float, keep: int) -> None:
    """Drop entries older than `cutoff` (they sit at the front: oldest first), then the oldest
    until at most `keep` remain."""
    while clients:
        first = next(iter(clients))
        if clients[first] >= cutoff and len(clients) <= keep:
            return
        del clients[first]


def log_fields(hit: Hit) -> dict[str, Any]:
    """The structured fields of a hit's log line (stable names; JSON logs and journald)."""
    out = {"event": "hit", "client": hit.client_ip, "client_name": hit.client_name,
           "qname": escape(hit.qname), "qtype": hit.qtype, "list": hit.list,
           "category": hit.category, "severity": hit.severity, "rule": hit.rule,
           "action": hit.action, "transport": hit.transport, "kind": hit.kind}
    if hit.count != 1:
        out["count"] = hit.count
    if hit.kind == "connect":
        out.update(sni=escape(hit.sni) if hit.sni else None,
                   host=escape(hit.host) if hit.host else None, port=hit.port)
    return out


def hit_from_mapping(ev: Mapping[str, Any]) -> Hit:
    """A Hit from a plain mapping with the log field names (retro-hunt rows, JSON imports)."""
    return Hit(time=ev["time"], client_ip=ev["client"], client_name=ev.get("client_name"),
               qname=ev["qname"], qtype=ev.get("qtype", "ANY"), list=ev["list"],
               category=ev.get("category"), severity=ev.get("severity"), rule=ev.get("rule"),
               action=ev.get("action"), transport=ev.get("transport"),
               kind=ev.get("kind", "query"), first_seen=ev.get("first_seen"),
               last_seen=ev.get("last_seen"), count=ev.get("count", 1))


def escape(name: str) -> str:
    """Render any bytes of a name printable (DNS presentation \\DDD escapes), so a hostile
    name can never break a log line, a table or a JSON consumer that expects text."""
    if name.isascii() and name.isprintable():
        return name
    return "".join(c if " " < c < "\x7f" else f"\\{ord(c):03d}" for c in name)
