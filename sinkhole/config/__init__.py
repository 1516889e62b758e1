"""Config: load a YAML file (or the embedded defaults) into validated, frozen settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sinkhole.config.loader import ConfigError, build, read_yaml, to_plain
from sinkhole.config.schema import Config

__all__ = ["Config", "ConfigError", "load_config", "parse_config", "to_plain"]


def parse_config(raw: Any, source: str = "config") -> Config:
    """Validate already-parsed YAML; raises ConfigError listing every problem."""
    errors: list[str] = []
    cfg = build(Config, raw, "", errors)
    if errors:
        raise ConfigError(errors)
    return cfg


def load_config(path: str | Path | None) -> Config:
    """The config in `path`, or the embedded defaults when `path` is None."""
    if path is None:
        return Config()
    return parse_config(read_yaml(path), str(path))
