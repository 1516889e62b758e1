"""The Grafana dashboard and the alert rules, proven against real tools.

promtool checks and unit-tests the Prometheus rule file; the Grafana alert rules must carry the
same PromQL; and a real Prometheus, scraping a running daemon after real DNS queries and hits,
must answer every expression of the dashboard and the rules without error, with data where the
queries sent make data certain.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
import yaml

from tests.peers.dnsserver import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARD = GRAFANA / "dashboard.json"
RULES = GRAFANA / "prometheus-rules.yml"
RULE_TESTS = GRAFANA / "prometheus-rules.test.yml"
GRAFANA_RULES = GRAFANA / "provisioning" / "alerting" / "sinkhole-rules.yaml"
GRAFANA_DATASOURCES = GRAFANA / "provisioning" / "datasources" / "sinkhole.yaml"
GRAFANA_DASHBOARDS = GRAFANA / "provisioning" / "dashboards" / "sinkhole.yaml"

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# What Grafana puts in place of its variables, for a 5-minute view of every instance.
GRAFANA_VARS = {"instance": ".*", "__rate_interval": "1m", "__interval": "1m", "__range": "5m"}
VAR_RE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
RATE_RE = re.compile(r"\b(?:rate|irate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")
METRIC_RE = re.compile(r"\bsinkhole_[a-z0-9_]+")
COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
WAIT = 30.0   # bound on each wait for Prometheus (start-up, a scrape, a rule evaluation)

C2_DOMAINS = ("evil-c2.test", "beacon.c2.test", "update.c2.test")
# Panels whose every query must return data once the daemon has forwarded, cached and blocked
# queries. The other panels count events this test cannot cause (alert sinks, store faults,
# malformed packets, reload errors) or show feeds, which it does not configure (no list has a
# `url:`): they must still be valid PromQL. Series primed at 0 (hits dropped, overloaded
# queries, stalled connections) must be there from the first scrape.
MUST_HAVE_DATA = {
    "Queries/s", "Blocked share", "Cache hit ratio now", "Upstreams", "Version",
    "Queries/s by result", "Request latency", "Queries/s by type", "p99 latency by result",
    "Upstream requests/s by outcome", "Upstream latency", "Cache hit ratio", "Cache",
    "Cache memory", "TCP write buffer", "Overloaded queries/s",
    "Clients with critical hits (24 h)", "Clients with hits (24 h)", "Blocked queries",
    "Critical blocked queries", "Hits by list", "Clients with hits in the last 24 h",
    "Top lists", "List freshness", "List entries", "Alert outbox", "Hits dropped",
}


# ---------------------------------------------------------------------------- reading the files


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def prometheus_rules() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in load_yaml(RULES)["groups"] for r in g["rules"]}


def grafana_rules() -> dict[str, dict[str, Any]]:
    return {r["title"]: r for g in load_yaml(GRAFANA_RULES)["groups"] for r in g["rules"]}


def grafana_query(rule: dict[str, Any]) -> dict[str, Any]:
    """The Prometheus query (refId A) of a Grafana rule."""
    return next(d for d in rule["data"] if d["refId"] == "A")


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query in the dashboard."""
    return [(p["title"], t["refId"], t["expr"]) for p in walk_panels(dashboard()["panels"])
            for t in p.get("targets", [])]


def all_expressions() -> list[tuple[str, str]]:
    """(where, expr) for every dashboard query and every rule."""
    out = [(f"panel {title!r} {ref}", expr) for title, ref, expr in dashboard_targets()]
    out += [(f"rule {name}", r["expr"]) for name, r in prometheus_rules().items()]
    return out


def substitute(expr: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in GRAFANA_VARS:
            raise AssertionError(f"unknown Grafana variable ${name} in {expr}")
        return GRAFANA_VARS[name]

    return VAR_RE.sub(repl, expr)


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: the test command installs Debian's prometheus")
    return exe


# ---------------------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    res = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 7 rules found" in res.stdout


def test_promtool_rule_unit_tests() -> None:
    res = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_rule_has_firing_and_silent_cases() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for t in case.get("alert_rule_test", []):
            (firing if t.get("exp_alerts") else silent).add(t["alertname"])
    assert firing == silent == set(prometheus_rules())


def test_rules_carry_severity_and_useful_annotations() -> None:
    for name, rule in prometheus_rules().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert "$labels.instance" in rule["annotations"]["description"], name


# ---------------------------------------------------------------------------- Grafana alerting


def test_grafana_alert_rules_use_the_same_promql() -> None:
    prom, graf = prometheus_rules(), grafana_rules()
    assert set(graf) == set(prom)
    for name, rule in graf.items():
        assert grafana_query(rule)["model"]["expr"] == prom[name]["expr"], name
        assert rule["labels"]["severity"] == prom[name]["labels"]["severity"], name
        assert _seconds(rule["for"]) == _seconds(prom[name].get("for", "0s")), name


def test_grafana_alert_rules_are_complete() -> None:
    doc = load_yaml(GRAFANA_RULES)
    assert doc["apiVersion"] == 1
    ds_uid = load_yaml(GRAFANA_DATASOURCES)["datasources"][0]["uid"]
    uids = [r["uid"] for r in grafana_rules().values()]
    assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)
    for name, rule in grafana_rules().items():
        refs = {d["refId"]: d for d in rule["data"]}
        assert grafana_query(rule)["datasourceUid"] == ds_uid, name
        assert refs["B"]["datasourceUid"] == refs["C"]["datasourceUid"] == "__expr__", name
        assert refs["B"]["model"]["type"] == "reduce" and refs["B"]["model"]["expression"] == "A"
        assert refs["C"]["model"]["type"] == "threshold" and refs["C"]["model"]["expression"] == "B"
        assert rule["condition"] == "C", name
        assert rule["noDataState"] == "OK" and rule["execErrState"] == "Error", name
        assert {"summary", "description"} <= set(rule["annotations"]), name


def test_dashboard_provider_points_at_a_folder() -> None:
    provider = load_yaml(GRAFANA_DASHBOARDS)["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", str(duration)))


# ---------------------------------------------------------------------------- dashboard shape


def test_dashboard_uses_the_datasource_variable_everywhere() -> None:
    d = dashboard()
    assert d["schemaVersion"] >= 36
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    inst = variables["instance"]
    assert inst["query"] == "label_values(sinkhole_build_info, instance)"
    assert inst["includeAll"] and inst["datasource"] == DATASOURCE_REF
    for p in walk_panels(d["panels"]):
        assert p["datasource"] == DATASOURCE_REF, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"] == DATASOURCE_REF, p["title"]
    assert _uids(d) - {d["uid"]} == {"${datasource}"}, "no hard-coded datasource uid"


def _uids(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["uid"]} if isinstance(node.get("uid"), str) else set()
        return own.union(*(_uids(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_uids(v) for v in node))
    return set()


def test_dashboard_panels_are_unique_and_placed() -> None:
    panels = list(walk_panels(dashboard()["panels"]))
    ids = [p["id"] for p in panels]
    titles = [p["title"] for p in panels]
    assert len(set(ids)) == len(ids) and len(set(titles)) == len(titles)
    assert all({"x", "y", "w", "h"} <= set(p["gridPos"]) for p in panels)
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Resolver health", "Detection", "Pipeline"]
    assert set(titles) >= MUST_HAVE_DATA


def test_rate_and_increase_only_on_counters() -> None:
    for where, expr in all_expressions():
        for metric in RATE_RE.findall(expr):
            assert metric.endswith(COUNTER_SUFFIXES), f"{where}: rate/increase of {metric}"


# ---------------------------------------------------------------------------- the daemon's side


def exported_metrics(text: str) -> dict[str, str]:
    """Sample name -> type, from the # TYPE lines of an exposition (families with no
    children yet are listed too)."""
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
            if kind == "histogram":
                types.update({name + s: "counter" for s in ("_bucket", "_count", "_sum")})
            elif kind == "counter" and not name.endswith("_total"):
                types[name + "_total"] = kind
            elif kind == "info":
                types[name + "_info"] = "gauge"
    return types


def blocklist_config(tmp_path: Path, upstream: FakeUpstream) -> dict[str, Any]:
    lst = tmp_path / "c2.txt"
    lst.write_text("# test indicators\n" + "\n".join(C2_DOMAINS) + "\n", encoding="utf-8")
    return {"upstreams": [upstream.url()], "upstream_timeout": "1s", "reload": {"watch": False},
            "blocklists": [{"name": "c2", "path": str(lst), "category": "c2",
                            "severity": "critical"}]}


def test_every_metric_referenced_is_exported(make_daemon, upstream: FakeUpstream,
                                             tmp_path: Path) -> None:
    d = make_daemon(blocklist_config(tmp_path, upstream))
    with urllib.request.urlopen(d.http + "/metrics", timeout=5) as resp:
        types = exported_metrics(resp.read().decode())
    for where, expr in all_expressions():
        for metric in METRIC_RE.findall(expr):
            assert metric in types, f"{where}: {metric} is not exported by the daemon"
        for metric in RATE_RE.findall(expr):
            assert types.get(metric) == "counter", f"{where}: {metric} is not a counter"


# ---------------------------------------------------------------------------- a real Prometheus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A real Prometheus scraping one target every second, with the rule file loaded."""

    def __init__(self, tmp_path: Path, target: str) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            pytest.fail("prometheus is not installed: the test command installs Debian's package")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "sinkhole",
                                "static_configs": [{"targets": [target]}]}],
        }))
        self.log = tmp_path / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:   # 400/422 carry the PromQL error as JSON
            return json.loads(err.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("/api/v1/query", query=expr)

    def wait(self, what: str, probe: Callable[[], Any]) -> Any:
        """Poll the external process until probe() is truthy; fail with its log at WAIT."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                found = probe()
            except OSError:          # not listening yet
                found = None
            if found:
                return found
            time.sleep(0.2)
        pytest.fail(f"prometheus: timed out waiting for {what}\n{self.log.read_text()}")

    def wait_for_data(self, expr: str) -> list[dict[str, Any]]:
        return self.wait(expr, lambda: self.query(expr).get("data", {}).get("result"))


@pytest.fixture
def observed(make_daemon, upstream: FakeUpstream,
             tmp_path: Path) -> Iterator[tuple[Any, Prometheus]]:
    """A daemon with a critical c2 list, and a Prometheus that has scraped it once."""
    d = make_daemon(blocklist_config(tmp_path, upstream))
    prom = Prometheus(tmp_path, d.http.removeprefix("http://"))
    try:
        prom.wait("readiness", lambda: prom.api("/api/v1/status/buildinfo").get("status"))
        prom.wait_for_data('up{job="sinkhole"} == 1')
        yield d, prom
    finally:
        prom.stop()


def send_traffic(d: Any, round_: int) -> None:
    """Forwarded, cached and blocked queries, over UDP and TCP."""
    name = f"host{round_}.example.test"
    assert d.query(name, "A").answer                        # forwarded
    assert d.query(name, "A").answer                        # cached
    assert d.query(name, "AAAA", tcp=True).answer           # forwarded over TCP
    for domain in C2_DOMAINS[:2]:
        assert d.query(domain, "A").rcode() == dns.rcode.NXDOMAIN   # blocked


def test_prometheus_answers_every_expression(observed: tuple[Any, Prometheus]) -> None:
    d, prom = observed
    # Two rounds, each waited for in Prometheus: series the daemon creates on the first event
    # (blocked by list) then have a sample before and after the second, so rate() sees them.
    send_traffic(d, 1)
    prom.wait_for_data('sum(sinkhole_blocked_queries_total{list="c2"}) >= 2')
    send_traffic(d, 2)
    prom.wait_for_data('sum(sinkhole_blocked_queries_total{list="c2"}) >= 4')

    results: dict[str, list[dict[str, Any]]] = {}
    errors, empty = [], []
    for where, expr in all_expressions():
        res = prom.query(substitute(expr))
        if res.get("status") != "success":
            errors.append(f"{where}: {res.get('error')}\n    {substitute(expr)}")
            continue
        results[where] = res["data"]["result"]
        title = where.split("'")[1] if where.startswith("panel") else None
        if title in MUST_HAVE_DATA and not results[where]:
            empty.append(f"{where}: no data\n    {substitute(expr)}")
    assert not errors, "PromQL errors:\n" + "\n".join(errors)
    assert not empty, "expected series missing:\n" + "\n".join(empty)

    by_label = _values(results["panel 'Queries/s by result' A"], "result")
    assert by_label["blocked"] > 0 and by_label["forwarded"] > 0 and by_label["cached"] > 0
    assert _values(results["panel 'Hits by list' A"], "list")["c2"] > 0
    assert _values(results["panel 'List entries' A"], "list")["c2"] == len(C2_DOMAINS)
    outcomes = _values(results["panel 'Upstream requests/s by outcome' A"], "outcome")
    assert outcomes["ok"] > 0
    assert float(results["panel 'Cache hit ratio now' A"][0]["value"][1]) > 0
    assert _values(results["panel 'Top lists' A"], "list")["c2"] > 0

    instances = prom.api("/api/v1/label/instance/values", **{"match[]": "sinkhole_build_info"})
    assert d.http.removeprefix("http://") in instances["data"]   # the $instance variable


def test_prometheus_evaluates_the_rules(observed: tuple[Any, Prometheus]) -> None:
    d, prom = observed
    send_traffic(d, 1)
    alerts = prom.wait_for_data('ALERTS{alertname="SinkholeCriticalHit",alertstate="firing"}')
    assert {a["metric"]["list"] for a in alerts} == {"c2"}

    groups = prom.api("/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules} == set(prometheus_rules())
    for r in rules:
        assert r["health"] == "ok", f"{r['name']}: {r.get('lastError')}"
    active = {a["labels"]["alertname"] for a in prom.api("/api/v1/alerts")["data"]["alerts"]}
    assert active == {"SinkholeCriticalHit"}


def _values(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in result}


def test_promtool_check_metrics_on_a_live_scrape(make_daemon, upstream, tmp_path: Path) -> None:
    """Every metric the daemon exposes follows Prometheus naming (units, _total counters):
    `promtool check metrics` lints a real scrape taken after traffic of every kind."""
    import urllib.request

    (tmp_path / "c2.txt").write_text("evil.test\n")
    d = make_daemon({"upstreams": [upstream.url()], "reload": {"watch": False},
                     "blocklists": [{"name": "c2", "path": str(tmp_path / "c2.txt")}]})
    d.query("evil.test", "A")
    d.query("fine.example", "A")
    d.query("fine.example", "A")
    with urllib.request.urlopen(d.http + "/metrics", timeout=10) as resp:
        scrape = resp.read()
    res = subprocess.run([promtool(), "check", "metrics"], input=scrape, capture_output=True,
                         timeout=60, check=False)
    out = (res.stdout + res.stderr).decode()
    assert res.returncode == 0 and not out.strip(), out
