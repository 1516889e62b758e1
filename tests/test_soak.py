"""The soak of bench/soak.py, shortened to ~30 s: dnsperf at 2,000 q/s (blocked, cached and
forwarded names) against `sinkhole run` with its store and a webhook sink, the blocklist
rewritten and reloaded every 4 s. The real one: `python bench/soak.py --minutes 10`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_soak

ROOT = Path(__file__).resolve().parent.parent


soak = load_soak()

# 50,000 names leave and 50,000 arrive at each of ~7 reloads: enough for a reload that keeps
# the old list alive to show in RSS, well above what filling the 5,000-entry cache costs.
SETTINGS = {"seconds": 30.0, "qps": 2_000, "chunk": 10.0, "reload_every": 4.0,
            "sample_every": 1.0, "cache_entries": 5_000, "rotating_names": 50_000}
SETTLE = 12.0            # seconds: the cache is full by then (400 new names/s)
RSS_TOLERANCE_MB = 20.0


@pytest.fixture(scope="module")
def soaked() -> Any:
    try:
        soak.require_dnsperf()
    except RuntimeError as err:
        pytest.fail(f"{err} (the test command installs it)")
    result = soak.run_soak(soak.SoakSettings(**SETTINGS), say=lambda _line: None)
    print("\n" + soak.render_markdown(result))
    return result


@pytest.mark.timeout(180)
def test_short_soak_answers_everything_and_loses_nothing(soaked: Any) -> None:
    problems = soak.verdict(soaked, loss_tolerance=0.001, rss_tolerance_mb=float("inf"))
    assert not problems, problems
    assert soaked.sent >= 0.95 * SETTINGS["qps"] * SETTINGS["seconds"]
    assert len(soaked.reloads) >= 5
    assert soaked.blocked_answered > 10_000 and soaked.hits_in_db == soaked.blocked_answered
    assert soaked.alerts_received >= 1
    assert soaked.p99_ms > 0


@pytest.mark.timeout(180)
def test_short_soak_rss_flat_across_reloads(soaked: Any) -> None:
    """A reload must free the old list: before parse_lines broke the _Parser <-> bound
    method cycle, tune_gc()'s thresholds kept every old version alive (+38 MB here)."""
    growth = soaked.rss_growth_mb(SETTLE)
    assert growth <= RSS_TOLERANCE_MB, f"RSS grew {growth:.1f} MB: {soaked.rss}"
