"""Config: load a YAML file (or the embedded defaults) into validated, frozen settings."""

from __future__ import annotations

import dataclasses
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
    """The config in `path`, or the embedded defaults when `path` is None.

    Relative list paths are made absolute against the config file's folder, so the daemon
    and the CLI find the same files whatever their working directory.
    """
    if path is None:
        return Config()
    cfg = parse_config(read_yaml(path), str(path))
    base = Path(path).resolve().parent
    storage = cfg.storage
    if not Path(storage.path).is_absolute():
        storage = dataclasses.replace(storage, path=str(base / storage.path))
    return dataclasses.replace(cfg, blocklists=tuple(_absolute(base, cfg.blocklists)),
                               allowlists=tuple(_absolute(base, cfg.allowlists)),
                               storage=storage)


def _absolute(base: Path, specs: Any) -> list[Any]:
    return [dataclasses.replace(s, path=str(base / s.path)) if not Path(s.path).is_absolute()
            else s for s in specs]
