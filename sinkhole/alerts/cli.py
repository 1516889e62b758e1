"""`sinkhole test-alert`: send one test alert through every configured sink, report each.

Sends directly (not through the outbox), so it works without a running daemon or a store, and
proves the URL, the token and the network path; exit 0 all OK, 1 any failed, 2 none configured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sinkhole.alerts.manager import AlertManager
from sinkhole.alerts.sinks import AlertSetupError, build_sinks


def cmd_test_alert(config: Any, args: argparse.Namespace) -> int:
    cfg = config.alerts
    if not cfg.sinks:
        print("sinkhole: no alert sinks configured (alerts.sinks)", file=sys.stderr)
        return 2
    try:
        sinks = build_sinks(cfg)
    except AlertSetupError as err:
        print(f"sinkhole: {err}", file=sys.stderr)
        return 2
    manager = AlertManager(cfg, store=None, metrics=None, sinks=sinks)
    results = asyncio.run(manager.test_alert())
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        print(f"{name:<{width}}  {'OK' if ok else 'FAILED':<6}  {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1
