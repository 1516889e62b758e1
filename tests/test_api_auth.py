"""The admin API: a bearer token from a file, required off loopback; health and metrics open."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sinkhole.config import ConfigError, parse_config
from tests.conftest import sinkhole_cmd, subprocess_env, write_config

TOKEN = "s3cret-token-0123456789abcdef"


def request(url: str, method: str = "GET", token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_token_required_when_configured(make_daemon, upstream, tmp_path: Path) -> None:
    tf = tmp_path / "token"
    tf.write_text(TOKEN + "\n")
    d = make_daemon({"upstreams": [upstream.url()], "api": {"token_file": str(tf)}})
    assert request(d.http + "/api/v1/reload", "POST") == 401
    assert request(d.http + "/api/v1/reload", "POST", token="wrong" * 5) == 401
    assert request(d.http + "/api/v1/reload", "POST", token=TOKEN) == 200
    assert request(d.http + "/api/v1/lists", token=TOKEN) == 200
    assert request(d.http + "/metrics") == 200
    assert request(d.http + "/healthz") == 200


def test_non_loopback_http_without_token_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"listen": {"http": "0.0.0.0:9153"}})
    assert exc.value.errors[0].startswith("api.token_file: required when listen.http")
    parse_config({"listen": {"http": "0.0.0.0:9153"}, "api": {"token_file": "/x"}})


def test_daemon_refuses_to_start_without_token(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"listen": {"dns": ["127.0.0.1:0"], "http": "0.0.0.0:0"}})
    res = subprocess.run([*sinkhole_cmd(), "run", "-c", str(cfg)], capture_output=True,
                         text=True, timeout=30, env=subprocess_env(), check=False)
    assert res.returncode == 2 and "api.token_file: required" in res.stderr
    cfg = write_config(tmp_path, {"listen": {"dns": ["127.0.0.1:0"], "http": "0.0.0.0:0"},
                                  "api": {"token_file": str(tmp_path / "missing")}})
    res = subprocess.run([*sinkhole_cmd(), "run", "-c", str(cfg)], capture_output=True,
                         text=True, timeout=30, env=subprocess_env(), check=False)
    assert res.returncode == 2 and "cannot read" in res.stderr
