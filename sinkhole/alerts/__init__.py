"""Alerting: dedup/cooldown/digest policy, the documented payload, durable delivery to
webhook, Slack-compatible and Alertmanager sinks, and `sinkhole test-alert`."""

from sinkhole.alerts.manager import AlertManager
from sinkhole.alerts.payload import SCHEMA_VERSION, build_payload, sign, verify
from sinkhole.alerts.policy import AlertPolicy
from sinkhole.alerts.sinks import AlertSetupError, build_sinks, sink_names

__all__ = ["SCHEMA_VERSION", "AlertManager", "AlertPolicy", "AlertSetupError", "build_payload",
           "build_sinks", "sign", "sink_names", "verify"]
