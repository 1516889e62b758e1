"""Domain-name normalisation for list rules: one canonical key per name (pure)."""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[a-z0-9_-]{1,63}"  # underscore: real lists carry _dmarc-style and typo'd names
NAME_PATTERN = rf"{_LABEL}(?:\.{_LABEL})*"
_NAME_RE = re.compile(NAME_PATTERN)
_SINK_IPS = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1"})
# Stock /etc/hosts entries that hosts-format blocklists copy verbatim: not rules, not errors.
IGNORED_NAMES = frozenset({"localhost", "localhost.localdomain", "broadcasthost", "local"})


def normalise_name(text: str) -> str:
    """Lower-case A-label form without the trailing dot; ValueError says what is wrong.

    The key must equal what the wire decoder hands the matcher (lower case, no dot, IDN as
    xn--), or a list entry silently never matches.
    """
    name = text[:-1] if text.endswith(".") else text
    if not name:
        raise ValueError("empty name")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except (UnicodeError, ValueError) as err:
            reason = err.__cause__ or err  # the codec wraps the useful message
            raise ValueError(f"cannot convert international name to ASCII: {reason}") from err
    name = name.lower()
    if len(name) <= 253 and _NAME_RE.fullmatch(name):
        return name
    raise ValueError(_why_invalid(name))


def _why_invalid(name: str) -> str:
    if len(name) > 253:
        return "name longer than 253 characters"
    if "*" in name:
        return "a wildcard is only allowed as a leading '*.'"
    for label in name.split("."):
        if not label:
            return "empty label"
        if len(label) > 63:
            return "label longer than 63 characters"
        bad = next((c for c in label if not (c.isascii() and c.isalnum()) and c not in "-_"), "")
        if bad:
            return f"invalid character {bad!r}"
    return "invalid name"


def rule_key(text: str) -> str:
    """A rule name as stored: normalised, keeping a leading `*.` (subdomains only)."""
    if text.startswith("*."):
        return "*." + normalise_name(text[2:])
    return normalise_name(text)


def is_ip(token: str) -> bool:
    """True for an IPv4/IPv6 literal (hosts-file first column, or a stray address line)."""
    if token in _SINK_IPS:
        return True
    if not token or not (token[0].isdigit() or ":" in token):
        return False
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def ignored_host(token: str) -> bool:
    """Stock hosts-file names (localhost, ip6-*, the `0.0.0.0 0.0.0.0` line) we skip quietly."""
    name = token.lower().rstrip(".")
    return name in IGNORED_NAMES or name.startswith("ip6-") or is_ip(name)
