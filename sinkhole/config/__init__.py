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
        return embedded_default()
    cfg = parse_config(read_yaml(path), str(path))
    base = Path(path).resolve().parent
    storage = cfg.storage
    if not Path(storage.path).is_absolute():
        storage = dataclasses.replace(storage, path=str(base / storage.path))
    clients = dataclasses.replace(cfg.clients, leases=tuple(
        str(base / p) if not Path(p).is_absolute() else p for p in cfg.clients.leases))
    return dataclasses.replace(cfg, blocklists=tuple(_absolute(base, cfg.blocklists)),
                               allowlists=tuple(_absolute(base, cfg.allowlists)),
                               storage=storage, clients=clients)


def embedded_default() -> Config:
    """`sinkhole run` with no config file: the defaults, plus the Operation Triangulation C2
    list shipped inside the package (critical, NXDOMAIN), so the first run already sinkholes
    and records who asked. A config file names its own lists (this one included, if wanted)."""
    from sinkhole.config.schema import Blocklist
    shipped = Path(__file__).resolve().parent.parent / "data" / "triangulation.txt"
    return Config(blocklists=(Blocklist(name="triangulation", path=str(shipped), category="c2",
                                        severity="critical", action="nxdomain"),))


def _absolute(base: Path, specs: Any) -> list[Any]:
    out = []
    for s in specs:
        changes = {}
        if s.path and not Path(s.path).is_absolute():
            changes["path"] = str(base / s.path)
        for key in ("headers_file", "ca_file"):
            value = getattr(s, key, None)
            if value and not Path(value).is_absolute():
                changes[key] = str(base / value)
        out.append(dataclasses.replace(s, **changes) if changes else s)
    return out
