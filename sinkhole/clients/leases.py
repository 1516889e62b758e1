"""DHCP lease files (dnsmasq, ISC dhcpd, Kea CSV): which name holds which address until when.

Parsing is pure and clock-free: every lease keeps its expiry, and the caller drops expired
ones against its own clock, so a lease that runs out between two reads of an unchanged file
still disappears. A malformed entry is skipped and counted, never raised; only a file that
cannot be a lease file at all (too big, a Kea file without its header) raises ValueError.
"""

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sinkhole.clients.access import canonical_ip

LeaseFormat = Literal["auto", "dnsmasq", "isc", "kea"]
LEASE_FORMATS: tuple[LeaseFormat, ...] = ("auto", "dnsmasq", "isc", "kea")

# Lease files are rewritten in full by their servers; a file this big is not one we should read
# into memory every refresh. dhcpd's append-only log is compacted hourly, far below this.
MAX_LEASE_FILE_BYTES = 64 * 1024 * 1024
MAX_NAME_LENGTH = 253  # a DNS name's limit; lease names are client-chosen, so we bound them
_KEA_INFINITE = 0xFFFF_FFFF  # Kea's valid_lifetime for a lease that never expires


@dataclass(frozen=True, slots=True)
class Lease:
    """One address with the name its DHCP client gave; ``expires`` is epoch s, inf = never."""

    ip: str
    name: str
    expires: float


@dataclass(frozen=True, slots=True)
class ParsedLeases:
    """What one file yielded: its format, the current named leases, and skipped entries."""

    format: str
    leases: tuple[Lease, ...]
    malformed: int


@dataclass(frozen=True, slots=True)
class _Entry:
    ip: str
    name: str | None
    expires: float
    active: bool


def clean_name(raw: str) -> str | None:
    """A client-supplied name made safe to show: printable, no trailing dot, bounded; or None.

    DHCP hostnames come from the devices themselves, and ours end up in logs, alerts and
    Slack: a newline or escape sequence in one must not forge a log line.
    """
    name = "".join(ch for ch in raw if ch.isprintable()).strip().rstrip(".")
    return name[:MAX_NAME_LENGTH] or None


def _finish(fmt: str, entries: dict[str, _Entry], malformed: int) -> ParsedLeases:
    """Keep the entries that are current and named (``entries`` holds the last one per ip)."""
    leases = tuple(Lease(e.ip, e.name, e.expires) for e in entries.values() if e.active and e.name)
    return ParsedLeases(fmt, leases, malformed)


# --- dnsmasq: "expiry mac ip hostname clientid", expiry 0 = infinite, hostname "*" = none ---


def parse_dnsmasq(text: str) -> ParsedLeases:
    """Parse dnsmasq's leases file (IPv4 lines, and IPv6 lines after its ``duid`` line)."""
    entries: dict[str, _Entry] = {}
    malformed = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "duid":
            continue
        entry = _dnsmasq_entry(fields)
        if entry is None:
            malformed += 1
        else:
            entries[entry.ip] = entry
    return _finish("dnsmasq", entries, malformed)


def _dnsmasq_entry(fields: list[str]) -> _Entry | None:
    if len(fields) < 4:
        return None
    try:
        expiry = int(fields[0])
        ip = canonical_ip(fields[2])
    except ValueError:
        return None
    if expiry < 0:
        return None
    name = None if fields[3] == "*" else clean_name(fields[3])
    return _Entry(ip, name, math.inf if expiry == 0 else float(expiry), True)


# --- Kea memfile CSV: a header names the columns; later rows for an address replace earlier ---


def parse_kea(text: str) -> ParsedLeases:
    """Parse a Kea lease4/lease6 CSV; raises ValueError when the header is missing.

    Kea appends on every change and writes a deleted lease with valid_lifetime 0, so the last
    row per address is the truth; state 0 is the only active ("default") state.
    """
    lines = iter(text.splitlines())
    header = next((line for line in lines if line.strip()), None)
    columns = header.strip().split(",") if header else []
    if "address" not in columns or "expire" not in columns:
        raise ValueError("not a Kea lease file: no header with 'address' and 'expire'")
    index = {name: pos for pos, name in enumerate(columns)}
    entries: dict[str, _Entry] = {}
    malformed = 0
    for line in lines:
        if not line.strip():
            continue
        entry = _kea_entry(line.strip().split(","), index)
        if entry is None:
            malformed += 1
        else:
            entries[entry.ip] = entry
    return _finish("kea", entries, malformed)


def _kea_entry(fields: list[str], index: dict[str, int]) -> _Entry | None:
    def field(name: str, default: str) -> str:
        pos = index.get(name)
        return default if pos is None else fields[pos]

    if len(fields) < len(index):
        return None
    try:
        ip = canonical_ip(field("address", ""))
        expire = int(field("expire", ""))
        lifetime = int(field("valid_lifetime", "1"))
        state = int(field("state", "0") or "0")
    except ValueError:
        return None
    # Kea escapes commas inside a field as "&#x2c"; the hostname is the only one we keep.
    name = clean_name(field("hostname", "").replace("&#x2c", ","))
    expires = math.inf if lifetime == _KEA_INFINITE else float(expire)
    return _Entry(ip, name, expires, state == 0 and lifetime != 0)


# --- ISC dhcpd: "lease IP { ...; binding state active; ends ...; client-hostname "x"; }" ---

_ISC_TOKEN = re.compile(
    r'(?P<space>\s+|\#[^\n]*)|"(?P<string>(?:[^"\\]|\\.)*)"|(?P<punct>[{};])'
    r'|(?P<word>[^\s{};"#]+)|(?P<bad>.)',
    re.DOTALL,
)
_ISC_ESCAPE = re.compile(r"\\([0-7]{3}|.)", re.DOTALL)


def _isc_tokens(text: str) -> Iterator[str]:
    """Words and punctuation; a quoted string becomes one word (its leading quote dropped)."""
    for match in _ISC_TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "string":
            yield '"' + _ISC_ESCAPE.sub(_isc_unescape, match.group("string"))
        elif kind != "space":
            yield match.group()


def _isc_unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    return chr(int(code, 8)) if len(code) == 3 else code


def parse_isc(text: str) -> ParsedLeases:
    """Parse ISC dhcpd's ``dhcpd.leases``; the last declaration of an address is current.

    Only ``lease`` blocks name clients; other blocks (``host``, ``failover``, DHCPv6 ``ia-na``
    which carry no client hostname) are skipped whole. A block cut off at the end of the file
    (dhcpd appends, so a read can race a write) counts as malformed.
    """
    tokens = list(_isc_tokens(text))
    entries: dict[str, _Entry] = {}
    malformed = 0
    pos = 0
    while pos < len(tokens):
        head, end, pos = _isc_statement(tokens, pos)
        if end == "{":
            close = _isc_block_end(tokens, pos)
            if close is None:
                return _finish("isc", entries, malformed + 1)
            if head[:1] == ["lease"]:
                entry = _isc_lease(head, tokens[pos:close])
                if entry is None:
                    malformed += 1
                else:
                    entries[entry.ip] = entry
            pos = close + 1
        elif end == "}" or (end is None and head):
            malformed += 1
    return _finish("isc", entries, malformed)


def _isc_statement(tokens: list[str], pos: int) -> tuple[list[str], str | None, int]:
    """Words up to the next ``;``, ``{`` or ``}``; returns them, the terminator, the next pos."""
    words: list[str] = []
    while pos < len(tokens):
        token = tokens[pos]
        pos += 1
        if token in ("{", "}", ";"):
            return words, token, pos
        words.append(token)
    return words, None, pos


def _isc_block_end(tokens: list[str], pos: int) -> int | None:
    """Index of the ``}`` closing the block whose body starts at ``pos``, or None if cut off."""
    depth = 1
    for index in range(pos, len(tokens)):
        if tokens[index] == "{":
            depth += 1
        elif tokens[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


def _isc_lease(head: list[str], body: list[str]) -> _Entry | None:
    if len(head) != 2:
        return None
    try:
        ip = canonical_ip(head[1])
    except ValueError:
        return None
    state: str | None = None
    expires: float | None = None
    name: str | None = None
    pos = 0
    while pos < len(body):
        words, end, pos = _isc_statement(body, pos)
        if end == "{":  # e.g. "on commit { ... }": nothing we need, skip it whole
            close = _isc_block_end(body, pos)
            pos = len(body) if close is None else close + 1
        elif words[:2] == ["binding", "state"] and len(words) == 3:
            state = words[2]
        elif words[:1] == ["ends"]:
            expires = _isc_time(words[1:])
        elif words[:1] == ["client-hostname"] and len(words) == 2:
            name = clean_name(words[1].removeprefix('"'))
    if expires is None:  # no "ends", or one we cannot read: we cannot tell if it is current
        return None
    return _Entry(ip, name, expires, state == "active")


def _isc_time(words: list[str]) -> float | None:
    """``never``, ``epoch N`` or ``W YYYY/MM/DD HH:MM:SS`` (UTC); None when unreadable."""
    try:
        if words == ["never"]:
            return math.inf
        if len(words) == 2 and words[0] == "epoch":
            return float(int(words[1]))
        if len(words) == 3:
            when = datetime.strptime(f"{words[1]} {words[2]}", "%Y/%m/%d %H:%M:%S")
            return when.replace(tzinfo=UTC).timestamp()
    except ValueError:
        pass
    return None


# --- format detection and file loading ---

_ISC_START = re.compile(
    r"(lease|host|group|subgroup|class|subclass|failover|server-duid|authoring-byte-order"
    r"|ia-na|ia-ta|ia-pd)\b"
)


def detect_format(text: str) -> str:
    """Guess the format from the first non-blank line; an empty file is an empty dnsmasq file.

    Kea always writes its header first and dhcpd its comment banner or a declaration; dnsmasq
    lines start with a number (or ``duid``), so nothing else needs guessing.
    """
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("address,"):
            return "kea"
        if stripped.startswith("#") or _ISC_START.match(stripped):
            return "isc"
        return "dnsmasq"
    return "dnsmasq"


def parse_leases(text: str, fmt: LeaseFormat = "auto") -> ParsedLeases:
    """Parse lease text in the given format, or the detected one for ``auto``."""
    chosen = detect_format(text) if fmt == "auto" else fmt
    if chosen == "kea":
        return parse_kea(text)
    if chosen == "isc":
        return parse_isc(text)
    if chosen == "dnsmasq":
        return parse_dnsmasq(text)
    raise ValueError(f"unknown lease format {fmt!r}; expected one of {LEASE_FORMATS}")


def load_lease_file(path: str, fmt: LeaseFormat = "auto") -> ParsedLeases:
    """Read and parse one lease file; raises OSError, or ValueError for a non-lease file."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_LEASE_FILE_BYTES + 1)
    if len(data) > MAX_LEASE_FILE_BYTES:
        raise ValueError(f"larger than {MAX_LEASE_FILE_BYTES} bytes; not read")
    return parse_leases(data.decode("utf-8", errors="replace"), fmt)
