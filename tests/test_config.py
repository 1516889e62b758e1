"""Config: strict typed loading, errors that name the key, the embedded default."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from sinkhole.config import ConfigError, load_config, parse_config, to_plain
from sinkhole.upstream.pool import default_upstreams
from tests.conftest import sinkhole_cmd, subprocess_env, write_config

BAD = [
    ("upstreams: [udp://9.9.9.9:53, 'udp//x']",
     "upstreams[1]: 'udp//x' is not a valid upstream URL"),
    ("upstreams: ['tls://dns.example:853']", "upstreams[0]: 'tls://dns.example:853': upstream "
     "host must be an IP address"),
    ("listen: {dns: ['127.0.0.1:70000']}", "listen.dns[0]: '127.0.0.1:70000': port"),
    ("listen: {dns: ['localhost:53']}", "listen.dns[0]: 'localhost:53': 'localhost' is not an IP"),
    ("listen: {http: 9153}", "listen.http: 9153 is not an address"),
    ("upstream_timeout: 2x", "upstream_timeout: '2x' is not a duration"),
    ("upstream_timeout: 5m", "upstream_timeout: 5m is outside 50ms-60s"),
    ("cache: {max_entries: -1}", "cache.max_entries: -1 is not a positive integer"),
    ("cache: {max_entries: many}", "cache.max_entries: 'many' is not a positive integer"),
    ("cache: {serve_stale: yes}", "cache.serve_stale: True is not a duration"),
    ("cache: {enabled: 1}", "cache.enabled: expected bool, found an integer 1"),
    ("log: {level: loud}", "log.level: 'loud' is not one of: debug, info, warning, error"),
    ("log: {format: xml}", "log.format: 'xml' is not one of: text, json"),
    ("access: {allow: ['10.0.0.0/33']}", "access.allow[0]: '10.0.0.0/33' is not an IP network"),
    ("cache: 5", "cache: expected a mapping, found an integer"),
    ("listen: {dnss: []}", "listen.dnss: unknown key (known: dns, doh, dot, http)"),
    ("upstream: []", "upstream: unknown key"),
    ("- a list", "config: expected a mapping, found a list"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_config_names_the_key_and_value(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(yaml.safe_load(text))
    assert any(e.startswith(expected) for e in exc.value.errors), exc.value.errors


def test_all_errors_are_reported_together() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(yaml.safe_load("log: {level: x, format: y}\ncache: {max_entries: 0}"))
    assert len(exc.value.errors) == 3


def test_the_documented_shape_loads() -> None:
    text = """
listen:
  dns: ["127.0.0.1:5353", "[::1]:5353"]
  http: "127.0.0.1:9153"
upstreams: ["udp://9.9.9.9:53", "tcp://1.1.1.1:53", "tls://9.9.9.9:853#dns.quad9.net",
            "https://dns.quad9.net/dns-query"]
upstream_timeout: 2s
access:
  allow: ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
cache:
  max_entries: 100000
  serve_stale: 1d
log:
  level: info
  format: json
"""
    cfg = parse_config(yaml.safe_load(text))
    assert [u.proto for u in cfg.upstreams] == ["udp", "tcp", "tls", "https"]
    assert cfg.upstreams[2].tls_name == "dns.quad9.net"
    assert cfg.listen.dns[1].host == "::1"
    assert cfg.cache.serve_stale == 86400
    assert cfg.upstream_timeout == 2.0


def test_embedded_default_is_loopback_only() -> None:
    cfg = load_config(None)
    plain = to_plain(cfg)
    assert plain["listen"] == {"dns": ["127.0.0.1:5353"], "http": "127.0.0.1:9153", "dot": [],
                               "doh": []}
    assert [b["name"] for b in plain["blocklists"]] == ["triangulation"]   # the first run blocks
    assert "0.0.0.0/0" not in plain["access"]["allow"]


def test_default_upstreams_from_resolv_conf(tmp_path) -> None:
    rc = tmp_path / "resolv.conf"
    rc.write_text("# x\nnameserver 10.1.2.3\nnameserver fe80::1%eth0\nsearch lan\n")
    urls = default_upstreams([("127.0.0.1", 5353)], str(rc))
    assert [u.url for u in urls] == ["udp://10.1.2.3:53", "udp://[fe80::1]:53"]


def test_default_upstreams_never_our_own_address(tmp_path) -> None:
    rc = tmp_path / "resolv.conf"
    rc.write_text("nameserver 127.0.0.1\n")
    urls = default_upstreams([("127.0.0.1", 53)], str(rc))
    assert "127.0.0.1" not in [u.host for u in urls]
    assert urls, "falls back to public resolvers"
    assert default_upstreams([], str(tmp_path / "missing"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*sinkhole_cmd(), *args], capture_output=True, text=True, timeout=60,
                          env=subprocess_env(), check=False)


def test_check_config_rejects_with_exit_2(tmp_path) -> None:
    path = write_config(tmp_path, {"upstreams": ["udp//x"], "cache": {"max_entries": 0}})
    res = run_cli("check-config", "-c", str(path))
    assert res.returncode == 2
    assert "upstreams[0]: 'udp//x' is not a valid upstream URL" in res.stderr
    assert "cache.max_entries: 0 is not a positive integer" in res.stderr


def test_run_with_bad_config_starts_nothing(tmp_path) -> None:
    path = write_config(tmp_path, {"listen": {"dns": ["127.0.0.1:0"]}, "bogus": 1})
    res = run_cli("run", "-c", str(path))
    assert res.returncode == 2
    assert "bogus: unknown key" in res.stderr
    assert "serving" not in res.stderr


def test_check_config_prints_effective_config(tmp_path) -> None:
    path = write_config(tmp_path, {"upstreams": ["9.9.9.9"], "upstream_timeout": 1.5})
    res = run_cli("check-config", "-c", str(path))
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["upstreams"] == ["udp://9.9.9.9:53"]
    assert printed["upstream_timeout"] == "1500ms"
    assert printed["cache"]["max_entries"] == 100000


def test_check_config_without_file_shows_embedded_default() -> None:
    res = run_cli("check-config")
    assert res.returncode == 0
    assert yaml.safe_load(res.stdout)["listen"]["dns"] == ["127.0.0.1:5353"]


def test_unreadable_or_invalid_yaml(tmp_path) -> None:
    res = run_cli("check-config", "-c", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2 and "cannot read config" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [\n")
    res = run_cli("check-config", "-c", str(bad))
    assert res.returncode == 2 and "invalid YAML" in res.stderr


def test_version_and_usage() -> None:
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("sinkhole ")
    assert run_cli("frobnicate").returncode == 2
    assert run_cli().returncode == 2
