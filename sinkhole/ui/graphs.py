"""The overview's query-rate and blocked-rate graph: a small ring of counter samples taken from
the metrics registry, drawn on the server as SVG.

Why not a chart library: the console must work offline with nothing fetched, and under a CSP
without inline script; a polyline computed here is a few hundred bytes of markup.  Why the
registry: the per-query counters already exist there; sampling them costs one collect every
few seconds and nothing on the DNS path.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SAMPLE_EVERY = 10.0
RING = 360                      # one hour at 10 s
WIDTH, HEIGHT, PAD = 600, 160, 4


def query_totals(registry: Any) -> tuple[float, float]:
    """(all queries, blocked queries) from the registry's `sinkhole_queries` counter."""
    total = blocked = 0.0
    for family in registry.collect():
        if family.name != "sinkhole_queries":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
                if sample.labels.get("result") == "blocked":
                    blocked += sample.value
    return total, blocked


class RateRing:
    """The last RING samples of (time, queries, blocked); rates are per second between
    samples, taken by the console's timer."""

    def __init__(self, read: Callable[[], tuple[float, float]], *, size: int = RING,
                 clock: Callable[[], float] = time.time) -> None:
        self.read, self.clock = read, clock
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=size)

    def sample(self) -> None:
        now = self.clock()
        total, blocked = self.read()
        self.samples.append((now, total, blocked))

    def rates(self, live: bool = True) -> list[tuple[float, float, float]]:
        """(time, queries/s, blocked/s) for each pair of consecutive samples; `live` adds the
        counters as they are now as a last point (not kept), so the graph ends at 'now'."""
        out = []
        points = list(self.samples)
        if live and points and self.clock() > points[-1][0]:
            points.append((self.clock(), *self.read()))
        pairs = zip(points, points[1:], strict=False)
        for (t0, q0, b0), (t1, q1, b1) in pairs:
            dt = t1 - t0
            if dt > 0 and q1 >= q0:     # a counter reset (restart) starts a new line
                out.append((t1, (q1 - q0) / dt, max(0.0, b1 - b0) / dt))
        return out


@dataclass(frozen=True)
class Graph:
    """What the template draws: polyline point strings, the scale, the time span."""

    queries: str
    blocked: str
    peak: float
    start: float | None
    end: float | None
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not self.queries


def build_graph(rates: Iterable[tuple[float, float, float]]) -> Graph:
    points = list(rates)
    if not points:
        return Graph("", "", 0.0, None, None)
    t0, t1 = points[0][0], points[-1][0]
    span = max(t1 - t0, 1e-9)
    peak = max(max(q for _, q, _ in points), 1.0)

    def line(index: int) -> str:
        xy = []
        for p in points:
            x = PAD + (WIDTH - 2 * PAD) * ((p[0] - t0) / span if len(points) > 1 else 1.0)
            y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * (p[index] / peak)
            xy.append(f"{x:.1f},{y:.1f}")
        if len(xy) == 1:      # one rate: a flat segment, so the line is visible
            xy.insert(0, f"{PAD:.1f},{xy[0].split(',')[1]}")
        return " ".join(xy)

    return Graph(line(1), line(2), peak, t0, t1)
