"""Domain-name normalisation for list rules: one canonical key per name, and the stricter
checks a feed indicator gets (pure)."""

from __future__ import annotations

import functools
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


# --- feed indicators: stricter than list lines ----------------------------------------------
# A line list is written by a person for a resolver; a feed value is an indicator extracted
# from a URL, a CSV cell or a JSON field by a machine, so it gets the checks a person would
# have made: not an address, more than a TLD, and not a shared suffix whose blocking would take
# a registry (or every customer of a hosting domain) with it.

PUBLIC_SUFFIX = "public suffix: would block a whole registry"


# Already a key, two labels at least, a TLD starting with a letter (so not an address): most
# feed values, which then skip the general checks.
_KEY_RE = re.compile(r"(?:[a-z0-9_-]{1,63}\.)+[a-z][a-z0-9-]{0,62}")


def validate_name(text: str) -> str:
    """A feed indicator as a rule key (normalised, a leading `*.` kept), or ValueError saying
    why it is not a name we should block."""
    if len(text) <= 253 and _KEY_RE.fullmatch(text):
        prefix, name = "", text
    else:
        prefix = "*." if text.startswith("*.") else ""
        name = _general_checks(text[len(prefix):])
    if "xn--" in name:
        _check_a_labels(name)
    if is_public_suffix(name):
        raise ValueError(PUBLIC_SUFFIX)
    return prefix + name


def _general_checks(text: str) -> str:
    if "\ufffd" in text:
        raise ValueError("invalid UTF-8 (or U+FFFD)")
    if is_ip(text.strip("[]")):
        raise ValueError("an IP address, not a name")
    name = normalise_name(text)
    if "." not in name and not is_public_suffix(name):  # "com": the public suffix reason
        raise ValueError("a single label, not a host name")
    if name.rpartition(".")[2].isdigit():
        raise ValueError("an all-numeric top-level label, not a host name")
    return name


def _check_a_labels(name: str) -> None:
    """An `xn--` label must decode (and re-encode) as IDNA: a mangled A-label from a feed
    would never match what a client's resolver sends."""
    for label in name.split("."):
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError as err:
                raise ValueError(f"invalid IDNA label {label!r}") from err


def is_public_suffix(name: str) -> bool:
    """True if `name` (normalised) is itself a public suffix: `com`, `co.uk`, `github.io`.

    The Public Suffix List snapshot shipped with the `publicsuffixlist` package, ICANN and
    private sections both (blocking `s3.amazonaws.com`, the host of many URLhaus URLs, would
    break every bucket). Read once from disk, never fetched; three set probes per name instead
    of the package's ~5 µs lookup, which would double the parse time of a million-name feed.
    """
    exact, wild, exceptions = _suffix_rules()
    if name in exceptions:
        return False
    return name in exact or name.partition(".")[2] in wild


@functools.cache
def _suffix_rules() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(exact suffixes, parents of `*.` rules, `!` exceptions), all as A-labels. The parent of
    a wildcard rule is a suffix too (`*.kawasaki.jp` makes `kawasaki.jp` one)."""
    from publicsuffixlist import PSLFILE

    exact: set[str] = set()
    wild: set[str] = set()
    exceptions: set[str] = set()
    with open(PSLFILE, encoding="utf-8") as rules:
        for line in rules:
            rule = line.strip().split(" ", 1)[0].lower()
            if not rule or rule.startswith("//"):
                continue
            if not rule.isascii():
                rule = rule.encode("idna").decode("ascii")
            if rule.startswith("!"):
                exceptions.add(rule[1:])
            elif rule.startswith("*."):
                wild.add(rule[2:])
                exact.add(rule[2:])
            else:
                exact.add(rule)
    return frozenset(exact), frozenset(wild), frozenset(exceptions)


def covering_keys(name: str) -> set[str]:
    """The rule keys that cover the normalised `name`: itself, every parent, and `*.parent`
    for every strict parent (what `sinkhole check` looks for)."""
    labels = name.split(".")
    suffixes = [".".join(labels[i:]) for i in range(len(labels))]
    return set(suffixes) | {"*." + s for s in suffixes[1:]}


# The public name of the Public Suffix List loader (hunting and the daemon's start-up use it).
suffix_rules = _suffix_rules
