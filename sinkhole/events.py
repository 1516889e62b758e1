"""The typed events that leave the pipeline: one blocked (or retro-found) query as a `Hit`.

The pipeline decides; observers record. A Hit is built once, by the hit recorder, and the very
same object goes to the store (one row) and to alerting (one decision), so the two can never
disagree about what happened, and a misspelt dict key cannot silently drop a field.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hit:
    """One blocked query, as the pipeline decided it (or a retro-hunt find).

    ``client_name`` is the name the client had *at the time of the query*: addresses move
    between devices, so it is resolved when the hit happens, not when it is read.
    ``first_seen``/``last_seen`` are set only for ``kind='retro'`` (from the history);
    ``count`` is above 1 only for ``kind='flood'`` (hits folded into one row by the flood guard).
    """

    time: float
    client_ip: str
    client_name: str | None
    qname: str
    qtype: str
    list: str
    category: str | None
    severity: str | None
    rule: str | None
    action: str | None
    transport: str | None
    kind: str = "query"          # query | cname | flood | retro | connect
    first_seen: float | None = None
    last_seen: float | None = None
    count: int = 1
    # kind 'connect' (a device connected to the sinkhole address): what it sent first
    sni: str | None = None       # the TLS ClientHello's server name
    host: str | None = None      # the HTTP Host header
    port: int | None = None      # the sinkhole port it connected to


@dataclass(frozen=True, slots=True)
class Observation:
    """One query the network resolved, as hunting and the history see it: from the live
    pipeline (stamped by our clock) or from an imported log (stamped by *its* clock).

    ``qtype`` is the type's name ("A", "TXT", "NULL", "TYPE65534"); ``rcode`` the answer's
    (0 NOERROR, 3 NXDOMAIN), None when the source does not say.
    """

    time: float
    client_ip: str
    qname: str
    qtype: str = "A"
    client_name: str | None = None
    rcode: int | None = None
