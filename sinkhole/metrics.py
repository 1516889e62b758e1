"""Every Prometheus metric of the daemon, defined in one place, on an injectable registry.

Label values are bounded sets (transport, a fixed list of query types, result, upstream URL,
list name): never a client address or a query name, which belong in hits and logs. The per-query
counters and the latency histogram are plain ints bumped on the event loop and turned into
samples at scrape time (the scrape runs on the same loop, so no locks): a prometheus-client
Counter.inc() plus Histogram.observe() per query would cost several microseconds.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from sinkhole import __version__
from sinkhole.pipeline.answer import RESULTS

QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
          33: "SRV", 64: "SVCB", 65: "HTTPS", 255: "ANY"}
TRANSPORTS = ("udp", "tcp", "dot", "doh")
REQUEST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The daemon's metrics; each test builds its own on a fresh registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.stats = QueryStats()
        r.register(_QueryCollector(self.stats))
        self.malformed = Counter("sinkhole_malformed_packets",
                                 "Packets that were not well-formed queries, by reason",
                                 ["transport", "reason"], registry=r)
        self.upstream_requests = Counter("sinkhole_upstream_requests",
                                         "Queries sent to upstreams, by outcome",
                                         ["upstream", "outcome"], registry=r)
        self.upstream_latency = Histogram("sinkhole_upstream_request_duration_seconds",
                                          "Upstream round-trip time", ["upstream"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.forged = Counter("sinkhole_upstream_forged_replies",
                              "Upstream datagrams dropped for not matching the question asked "
                              "(txid, question, source)", registry=r)
        self.tcp_connections = Gauge("sinkhole_tcp_connections", "Open client TCP connections",
                                     registry=r)
        self.tcp_rejected = Counter("sinkhole_tcp_connections_rejected",
                                    "TCP connections closed at once: over the total or "
                                    "per-client connection cap", registry=r)
        self.connects = Counter("sinkhole_sinkhole_connections", "Devices connecting to the "
                                "sinkhole address after a sinkholed answer, by protocol seen",
                                ["proto"], registry=r)
        self.hits_dropped = Counter("sinkhole_hits_dropped",
                                    "Hits (and so their alerts) dropped because the store's "
                                    "write queue was full", registry=r)
        self.blocked = Counter("sinkhole_blocked_queries", "Queries answered by a blocklist",
                               ["list", "category", "severity"], registry=r)
        self.list_entries = Gauge("sinkhole_list_entries", "Rules in the active version of a list",
                                  ["list"], registry=r)
        self.list_parse_errors = Gauge("sinkhole_list_parse_errors",
                                       "Lines skipped as unparseable in the active version",
                                       ["list"], registry=r)
        self.list_last_reload = Gauge("sinkhole_list_last_reload_timestamp_seconds",
                                      "When the list was last loaded successfully", ["list"],
                                      registry=r)
        self.list_reload_errors = Counter("sinkhole_list_reload_errors",
                                          "Reloads that could not read the list (last good "
                                          "version kept)", ["list"], registry=r)
        self.list_fetch_errors = Counter("sinkhole_list_fetch_errors",
                                         "Feed downloads that failed or did not parse (the last "
                                         "good copy kept)", ["list"], registry=r)
        self.list_last_success = Gauge("sinkhole_list_last_success_timestamp_seconds",
                                       "When a feed was last confirmed current (a download "
                                       "that parsed, or a 304); 0: never", ["list"], registry=r)
        self.suspicions = Counter("sinkhole_suspicions", "Hunting suspicions created or raised, "
                                  "by signal", ["signal"], registry=r)
        self.suspicion_alerts = Counter("sinkhole_suspicion_alerts", "Suspicions at or above "
                                        "hunt.alert_score that raised an alert", registry=r)
        self.reloads = Counter("sinkhole_list_reloads", "Policy reloads, by trigger",
                               ["reason"], registry=r)
        self.reload_duration = Gauge("sinkhole_list_reload_duration_seconds",
                                     "Time the last reload took (parse and build)", registry=r)
        self.build = Info("sinkhole_build", "Version of the running daemon", registry=r)
        self.build.info({"version": __version__})
        self.upstream_up = Gauge("sinkhole_upstream_up", "1 if the upstream's last attempt "
                                 "succeeded, 0 after a failure", ["upstream"], registry=r)
        self.alerts = Counter("sinkhole_alerts", "Alert deliveries by sink and outcome",
                              ["sink", "outcome"], registry=r)
        self.outbox_pending = Gauge("sinkhole_alert_outbox_pending",
                                    "Alerts written to the outbox and not yet delivered",
                                    registry=r)
        self.outbox_oldest = Gauge("sinkhole_alert_outbox_oldest_age_seconds",
                                   "Age of the oldest undelivered alert (0 if none)", registry=r)
        self._malformed: dict[tuple[str, str], Counter] = {}
        self.query = self.stats.record

    def on_reload(self, result: Any) -> None:
        """Export one ReloadResult: per-list entries, freshness, errors."""
        now = time.time()
        self.reloads.labels(result.reason).inc()
        self.reload_duration.set(result.seconds)
        for rep in result.reports:
            self.list_entries.labels(rep.name).set(rep.entries)
            if rep.error:
                self.list_reload_errors.labels(rep.name).inc()
            else:
                self.list_parse_errors.labels(rep.name).set(rep.parse_errors)
                self.list_last_reload.labels(rep.name).set(now)

    def bad_packet(self, transport: str, reason: str) -> None:
        """Reasons are our own fixed WireError strings, so the label set stays bounded."""
        child = self._malformed.get((transport, reason))
        if child is None:
            child = self._malformed[(transport, reason)] = self.malformed.labels(transport, reason)
        child.inc()

    def upstream(self, name: str, outcome: str, seconds: float) -> None:
        self.upstream_requests.labels(name, outcome).inc()
        self.upstream_up.labels(name).set(1 if outcome == "ok" else 0)
        if outcome == "ok":
            self.upstream_latency.labels(name).observe(seconds)

    def watch_hits(self, recent: Any) -> None:
        """`recent()` -> {(list, severity): distinct clients with a hit in the last 24 h}."""
        self.registry.register(_HitsCollector(recent))

    def prime(self, lists: Any, sinks: Any = ()) -> None:
        """Create series at 0 before their first event: increase() misses the first event of a
        series that appears already non-zero."""
        for info in lists:
            self.blocked.labels(info.name, info.category or "none", info.severity or "none")
            self.list_reload_errors.labels(info.name)
        for sink in sinks:
            for outcome in ("delivered", "failed", "expired"):
                self.alerts.labels(sink, outcome)

    def prime_feeds(self, names_and_times: Any) -> None:
        """Feeds at start: errors at 0, last success from the persisted feed state (0 if
        never), so a stale-feed alert works from the first scrape after a restart."""
        for name, when in names_and_times:
            self.list_fetch_errors.labels(name)
            self.list_last_success.labels(name).set(when or 0)

    def watch_listeners(self, listeners: Any) -> None:
        """TCP back-pressure, read at scrape time from the listeners' own counters."""
        self.registry.register(_ListenerCollector(listeners))

    def watch_hunt(self, hunt: Any) -> None:
        """The hunter thread's counters, read at scrape time."""
        self.registry.register(_HuntCollector(hunt))

    def watch_tls(self, certs: Any) -> None:
        """The DoT/DoH certificate: when it expires, and pairs refused on reload."""
        self.registry.register(_TlsCollector(certs))

    def watch_capture(self, capture: Any) -> None:
        """The sinkhole listener's outcomes and malformed input, at scrape time."""
        self.registry.register(_CaptureCollector(capture))

    def watch_store(self, store: Any) -> None:
        """Store counters live in the writer (its own thread); read them at scrape time."""
        self.registry.register(_StoreCollector(store))

    def watch_cache(self, cache: Any) -> None:
        """Cache statistics are plain ints bumped on the hot path and read at scrape time:
        cheaper than a locked Counter.inc() per lookup."""
        self.registry.register(_CacheCollector(cache))


class _CacheCollector(Collector):
    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Any]:
        c = self.cache
        yield GaugeMetricFamily("sinkhole_cache_entries", "Answers in the cache", value=len(c))
        yield GaugeMetricFamily("sinkhole_cache_bytes", "Bytes of cached answers, per-entry "
                                "overhead included", value=c.bytes)
        for name, doc, value in (
            ("sinkhole_cache_hits", "Cache lookups answered fresh", c.hits),
            ("sinkhole_cache_misses", "Cache lookups that missed", c.misses),
            ("sinkhole_cache_stale_hits", "Expired answers served because upstreams failed",
             c.stale_hits),
            ("sinkhole_cache_evictions", "Entries evicted to stay within max_entries and max_bytes",
             c.evictions),
        ):
            yield CounterMetricFamily(name, doc, value=value)


class _ListenerCollector(Collector):
    def __init__(self, listeners: Any) -> None:
        self.listeners = listeners

    def collect(self) -> Iterator[Any]:
        li = self.listeners
        yield GaugeMetricFamily("sinkhole_tcp_write_buffer_bytes", "Replies written to TCP "
                                "clients and not yet taken by them", value=li.tcp_buffered())
        yield CounterMetricFamily("sinkhole_tcp_connections_stalled", "TCP connections cut "
                                  "off for not reading their replies within the idle timeout",
                                  value=li.tcp_stalled)
        yield CounterMetricFamily("sinkhole_tls_handshake_failures", "DoT/DoH connections "
                                  "whose TLS handshake failed or timed out",
                                  value=li.tls_failed)
        doh = CounterMetricFamily("sinkhole_doh_errors", "DoH requests answered with an HTTP "
                                  "error, by status", labels=["status"])
        for status, n in sorted(li.doh_errors.items()):
            doh.add_metric([str(status)], n)
        yield doh


class _HuntCollector(Collector):
    def __init__(self, hunt: Any) -> None:
        self.hunt = hunt

    def collect(self) -> Iterator[Any]:
        h = self.hunt
        yield CounterMetricFamily("sinkhole_hunt_observations", "Resolved queries the hunting "
                                  "signals have looked at", value=h.observed)
        yield CounterMetricFamily("sinkhole_hunt_dropped", "Resolved queries not hunted: the "
                                  "hunter was too far behind (queue full)", value=h.dropped)
        yield GaugeMetricFamily("sinkhole_hunt_queue_depth", "Resolved queries waiting for the "
                                "hunter", value=len(h.queue))


class _TlsCollector(Collector):
    def __init__(self, certs: Any) -> None:
        self.certs = certs

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily("sinkhole_tls_certificate_expiry_timestamp_seconds", "notAfter "
                                "of the DoT/DoH certificate in use (0: unknown)",
                                value=self.certs.expires)
        yield CounterMetricFamily("sinkhole_tls_certificate_reload_failures", "Certificate "
                                  "pairs refused on reload (the old one kept)",
                                  value=self.certs.failures)


class _CaptureCollector(Collector):
    def __init__(self, capture: Any) -> None:
        self.capture = capture

    def collect(self) -> Iterator[Any]:
        c = self.capture
        out = CounterMetricFamily("sinkhole_capture_connections", "Connections to the sinkhole "
                                  "addresses, by outcome", labels=["outcome"])
        for outcome, n in sorted(c.counts.items()):
            out.add_metric([outcome], n)
        yield out
        bad = CounterMetricFamily("sinkhole_capture_malformed", "Sinkhole-listener input that "
                                  "was neither a TLS ClientHello nor an HTTP request, by reason",
                                  labels=["reason"])
        for reason, n in sorted(c.malformed.items()):
            bad.add_metric([reason], n)
        yield bad
        yield GaugeMetricFamily("sinkhole_capture_open_connections", "Connections to the "
                                "sinkhole listener open now", value=c.open)


class _StoreCollector(Collector):
    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        st = self.store.stats
        yield GaugeMetricFamily("sinkhole_store_queue_depth", "Events waiting to be written",
                                value=st["queue_depth"])
        yield CounterMetricFamily("sinkhole_store_write_errors", "Failed commits (retried; "
                                  "nothing is dropped)", value=st["write_errors"])
        yield CounterMetricFamily("sinkhole_store_committed_hits", "Hits written to the store",
                                  value=st["committed_hits"])
        dropped = CounterMetricFamily("sinkhole_store_dropped", "Events shed because the "
                                      "write queue was full", labels=["kind"])
        dropped.add_metric(["hit"], st["dropped_hits"])
        dropped.add_metric(["query"], st["dropped_queries"])
        yield dropped


class _HitsCollector(Collector):
    def __init__(self, recent: Any) -> None:
        self.recent = recent

    def collect(self) -> Iterator[Any]:
        fam = GaugeMetricFamily("sinkhole_clients_with_hits", "Distinct clients with a hit in "
                                "the last 24 hours, by list", labels=["list", "severity"])
        for (name, severity), n in sorted(self.recent().items()):
            fam.add_metric([name, severity or "none"], n)
        yield fam


class QueryStats:
    """Per-query counts and latency, as plain ints keyed by raw values (hot path)."""

    __slots__ = ("counts", "buckets", "sums")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int, str], int] = {}
        self.buckets = {r: [0] * (len(REQUEST_BUCKETS) + 1) for r in RESULTS}
        self.sums = dict.fromkeys(RESULTS, 0.0)

    def record(self, transport: str, qtype: int, result: str, t0: float = 0.0) -> None:
        # unknown types share one key, so the table stays small whatever clients send
        key = (transport, qtype if qtype in QTYPES else 0, result)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        if t0:
            took = time.perf_counter() - t0
            self.buckets[result][bisect_left(REQUEST_BUCKETS, took)] += 1
            self.sums[result] += took


class _QueryCollector(Collector):
    def __init__(self, stats: QueryStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        totals = {(t, qt, r): 0 for t in TRANSPORTS for qt in (*QTYPES.values(), "other")
                  for r in RESULTS}
        for (t, qtype, r), n in list(self.stats.counts.items()):
            key = (t, QTYPES.get(qtype, "other"), r)
            totals[key] = totals.get(key, 0) + n
        fam = CounterMetricFamily("sinkhole_queries", "DNS queries by transport, type and "
                                  "outcome", labels=["transport", "type", "result"])
        for labels, n in totals.items():
            fam.add_metric(list(labels), n)
        yield fam
        hist = HistogramMetricFamily("sinkhole_request_duration_seconds",
                                     "Time from packet decode to reply, by outcome",
                                     labels=["result"])
        for result, counts in self.stats.buckets.items():
            cumulative, acc = [], 0
            for bound, n in zip((*REQUEST_BUCKETS, float("inf")), counts, strict=True):
                acc += n
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), acc))
            hist.add_metric([result], cumulative, self.stats.sums[result])
        yield hist
