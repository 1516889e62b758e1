"""The store: SQLite (WAL) holding hits, per-client sightings, passive-DNS history for
retro-hunt, and the durable alert outbox.

``Store`` is the writing side (one writer thread, fed without blocking from the event loop);
the functions of ``queries`` are the reading side for the CLI and the HTTP API.
"""

from .events import HitEvent, OutboxRow, escape_name
from .queries import (
    history_names,
    open_reader,
    query_clients,
    query_history,
    query_hits,
    recorded_retro,
    retrohunt,
    retrohunt_ids,
)
from .schema import SCHEMA_VERSION, SchemaError, StoreError
from .writer import Store

__all__ = [
    "SCHEMA_VERSION",
    "HitEvent",
    "OutboxRow",
    "SchemaError",
    "Store",
    "StoreError",
    "escape_name",
    "history_names",
    "open_reader",
    "query_clients",
    "query_hits",
    "query_history",
    "recorded_retro",
    "retrohunt",
    "retrohunt_ids",
]
