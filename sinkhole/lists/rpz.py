"""RPZ zone-file records (origin, owners, policy CNAMEs, local data) to list rules (pure).

Follows the RPZ draft (draft-vixie-dnsop-dns-rpz): `CNAME .` is NXDOMAIN, `CNAME *.` is NODATA,
`CNAME rpz-passthru.` allows, A/AAAA/other CNAMEs are local data. One difference, on purpose:
as everywhere in sinkhole, a trigger `name` covers its subdomains too (RPZ matches it exactly);
for a sinkhole that over-blocks a C2 name's children rather than missing them.
"""

from __future__ import annotations

import ipaddress
import re

from sinkhole.lists.names import normalise_name

RR_TYPES = frozenset(
    {"A", "AAAA", "CNAME", "SOA", "NS", "TXT", "MX", "PTR", "SRV", "DNAME", "CAA", "HTTPS",
     "SVCB", "NAPTR", "DS", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "HINFO", "LOC", "SSHFP", "TLSA"}
)
QTYPES = {"A": 1, "CNAME": 5, "AAAA": 28}  # the local data we can answer with
CLASSES = frozenset({"IN", "CH", "HS"})
MAX_PAREN_LINES = 20  # an SOA needs 6; an unclosed '(' must not swallow the rest of a file
_TTL_RE = re.compile(r"\d+[smhdw]?(?:\d+[smhdw])*", re.IGNORECASE)

# What a record means: (kind, key, local data). Kinds: the ParsedList sets, "local",
# "unsupported" (counted), "ignore" (zone bookkeeping).
Rule = tuple[str, str, tuple[int, str] | None]
_IGNORE: Rule = ("ignore", "", None)
_UNSUPPORTED: Rule = ("unsupported", "", None)


def is_record(tokens: list[str]) -> bool:
    """A line is a zone-file record if a type appears where one can (after owner/TTL/class)."""
    return any(t.upper() in RR_TYPES for t in tokens[:4])


def _field(token: str) -> str:
    up = token.upper()
    if up in RR_TYPES:
        return "type"
    return "meta" if up in CLASSES or _TTL_RE.fullmatch(token) else ""


class ZoneReader:
    """Zone-file state of one file: `$ORIGIN`, the previous owner, an open '(' block."""

    def __init__(self) -> None:
        self.origin = ""
        self.owner: str | None = None
        self.in_parens = False
        self._paren_lines = 0

    def directive(self, tokens: list[str]) -> Rule:
        """`$ORIGIN` and `$TTL`; `$INCLUDE` / `$GENERATE` are unsupported (no I/O here)."""
        word = tokens[0].upper()
        if word not in ("$ORIGIN", "$TTL"):
            return _UNSUPPORTED
        if len(tokens) != 2:
            raise ValueError(f"{word} needs one value")
        if word == "$ORIGIN":
            self.origin = self._absolute(tokens[1])
        return _IGNORE

    def paren_line(self, tokens: list[str]) -> None:
        """A continuation line of a multi-line record (an SOA): only watch for the ')'.

        ValueError if none came after MAX_PAREN_LINES lines; normal parsing then resumes.
        """
        self._paren_lines += 1
        if sum(t.count(")") - t.count("(") for t in tokens) > 0:
            self.in_parens = False
        elif self._paren_lines >= MAX_PAREN_LINES:
            self.in_parens = False
            raise ValueError(f"no ')' within {MAX_PAREN_LINES} lines of a '('")

    def record(self, tokens: list[str], indented: bool) -> Rule:
        """One record line (comments removed) -> Rule; ValueError when it makes no sense."""
        # Zone-file rule: an indented record repeats the previous owner.
        owner, i = (None, 0) if indented and _field(tokens[0]) else (tokens[0], 1)
        while i < len(tokens) - 1 and i < 3 and _field(tokens[i]) == "meta":
            i += 1
        rtype = tokens[i].upper()
        if rtype not in RR_TYPES:
            raise ValueError("unrecognised zone-file record")
        if sum(t.count("(") - t.count(")") for t in tokens) > 0:
            self.in_parens, self._paren_lines = True, 0
        rdata = [t for t in tokens[i + 1:] if t not in ("(", ")")]
        if rtype == "SOA" and owner is not None and owner.endswith(".") and not self.origin:
            self.origin = normalise_name(owner)  # the SOA owner is the zone apex
        trigger = self._trigger(owner) if owner is not None else self.owner
        if trigger is None:
            raise ValueError("record without an owner name")
        self.owner = trigger
        if not trigger:
            if rtype in ("SOA", "NS"):
                return _IGNORE
            raise ValueError("rule at the zone apex")
        if rtype not in QTYPES or trigger.rsplit(".", 1)[-1].startswith("rpz-"):
            return _UNSUPPORTED  # other types; rpz-ip, rpz-nsdname, rpz-client-ip triggers
        if len(rdata) != 1:
            raise ValueError(f"{rtype} record needs one value")
        return self._action(trigger, rtype, rdata[0])

    def _absolute(self, name: str) -> str:
        if name.endswith(".") or not self.origin:
            return normalise_name(name)
        return normalise_name(name) + "." + self.origin

    def _trigger(self, owner: str) -> str:
        """Owner -> rule key; '' is the zone apex. Absolute names outside the origin are taken
        as they are, so a feed without `$ORIGIN` (origin set in named.conf) still works."""
        if owner == "@":
            return ""
        if owner == "*" or owner.startswith("*."):
            base = self._trigger(owner[2:] or "@")
            if base.startswith("*."):
                raise ValueError("nested wildcard owner")
            if not base:
                raise ValueError("a wildcard over the whole zone would match every name")
            return "*." + base
        name = normalise_name(owner)
        if owner.endswith(".") and self.origin:
            return "" if name == self.origin else name.removesuffix("." + self.origin)
        return name

    def _action(self, trigger: str, rtype: str, value: str) -> Rule:
        if rtype != "CNAME":
            cls = ipaddress.IPv4Address if rtype == "A" else ipaddress.IPv6Address
            try:
                return ("local", trigger, (QTYPES[rtype], str(cls(value))))
            except ValueError as err:
                raise ValueError(f"invalid {rtype} address {value!r}") from err
        target = value.lower()
        if target in (".", "*."):
            return ("nxdomain" if target == "." else "nodata", trigger, None)
        if target == "rpz-passthru.":
            return ("allow", trigger, None)
        if target.startswith("rpz-"):
            return _UNSUPPORTED  # rpz-drop., rpz-tcp-only.
        target = normalise_name(self._absolute(target))   # the target must be a valid name too
        if target == trigger:
            return ("allow", trigger, None)  # the draft's older passthru form
        return ("local", trigger, (QTYPES["CNAME"], target))
