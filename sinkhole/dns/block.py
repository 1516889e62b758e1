"""Answers for blocked names: NXDOMAIN+SOA, null or sinkhole addresses, NODATA, REFUSED,
RPZ local data, each with an Extended DNS Error 15 (Blocked) naming the list (RFC 8914).

Everything that does not depend on the query is built once per config or per list: the
address records, the EDE-carrying OPT records. Per query we only join bytes.
"""

from __future__ import annotations

from struct import pack

from sinkhole.dns.reply import (
    EDE_BLOCKED,
    address_rdata,
    answer_rr,
    ede_option,
    error_reply,
    opt_record,
    reply_flags,
    soa_rr,
    truncated_reply,
)
from sinkhole.dns.wire import (
    NOERROR,
    NXDOMAIN,
    REFUSED,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_CNAME,
    Query,
)


class BlockAnswers:
    """Builds the reply for a blocked query from a policy verdict."""

    def __init__(self, ipv4: str, ipv6: str, ttl: int) -> None:
        self.ttl = ttl
        self._addr = {
            ("null", TYPE_A): answer_rr(TYPE_A, ttl, address_rdata(TYPE_A, "0.0.0.0")),
            ("null", TYPE_AAAA): answer_rr(TYPE_AAAA, ttl, address_rdata(TYPE_AAAA, "::")),
            ("sinkhole", TYPE_A): answer_rr(TYPE_A, ttl, address_rdata(TYPE_A, ipv4)),
            ("sinkhole", TYPE_AAAA): answer_rr(TYPE_AAAA, ttl, address_rdata(TYPE_AAAA, ipv6)),
        }
        self._opts: dict[tuple[str, bool], bytes] = {}
        self._local: dict[tuple[tuple[int, str], ...], dict[int, list[bytes]]] = {}

    def _opt(self, label: str, do: bool) -> bytes:
        """Our OPT with EDE 15 and the list name; cached per (list, DO) as lists are few."""
        key = (label, do)
        opt = self._opts.get(key)
        if opt is None:
            if len(self._opts) > 4096:
                self._opts.clear()
            opt = self._opts[key] = opt_record(do, ede_option(EDE_BLOCKED, f"blocked by {label}"))
        return opt

    def answer(self, q: Query, action: str, label: str, suffix: str, limit: int,
               local: tuple[tuple[int, str], ...] = ()) -> bytes:
        """The reply for `q` blocked with `action` by list `label` on rule `suffix`."""
        if action == "refused":
            return error_reply(q, REFUSED, ede_option(EDE_BLOCKED, f"blocked by {label}")
                               if q.edns else b"")
        answers: list[bytes] = []
        rcode = NOERROR
        if action == "nxdomain":
            rcode = NXDOMAIN
        elif action in ("null", "sinkhole"):
            qtypes = (TYPE_A, TYPE_AAAA) if q.qtype == TYPE_ANY else (q.qtype,)
            answers = [rr for t in qtypes if (rr := self._addr.get((action, t))) is not None]
        elif action == "local":
            records = self._local_records(local)
            answers = records.get(q.qtype) or records.get(TYPE_CNAME, [])
        authority = b"" if answers else soa_rr(self._owner(q, suffix), self.ttl)
        tail = b""
        if q.edns:   # no label: a built-in policy answer, not a block worth an EDE
            tail = self._opt(label, q.do) if label else opt_record(q.do)
        out = (pack("!6H", q.txid, reply_flags(q.flags, rcode), 1, len(answers),
                    0 if answers else 1, 1 if q.edns else 0)
               + q.question + b"".join(answers) + authority + tail)
        if len(out) > limit:
            return truncated_reply(q, rcode)
        return out

    def _owner(self, q: Query, suffix: str) -> int:
        """Wire offset of the matched rule's name inside the question (the SOA owner).

        Walks the question's labels on the wire: a dotted-string index would be wrong when a
        label holds a literal dot. Falls back to the whole question name (offset 12).
        """
        if suffix == q.qname or not q.qname.endswith(suffix):   # whole name, or a CNAME's rule
            return 12
        data, off, end = q.data, 12, q.qend - 4
        while off < end and data[off]:
            off += data[off] + 1
            if off < end and data[off] and \
                    _dotted(data, off, end) == suffix:
                return off
        return 12

    def _local_records(self, local: tuple[tuple[int, str], ...]) -> dict[int, list[bytes]]:
        """RPZ local data (A/AAAA) as ready records, built on first use per rule."""
        cached = self._local.get(local)
        if cached is None:
            cached = {}
            for qtype, text in local:
                try:
                    rdata = encode_name(text) if qtype == TYPE_CNAME else address_rdata(qtype, text)
                except ValueError:
                    continue
                cached.setdefault(qtype, []).append(answer_rr(qtype, self.ttl, rdata))
            if len(self._local) > 4096:
                self._local.clear()
            self._local[local] = cached
        return cached


def _dotted(data: bytes, off: int, end: int) -> str:
    labels = []
    while off < end and data[off]:
        labels.append(data[off + 1:off + 1 + data[off]])
        off += data[off] + 1
    return b".".join(labels).lower().decode("latin-1")


def encode_name(name: str) -> bytes:
    """Dotted name to uncompressed wire form (RPZ CNAME local data)."""
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"
