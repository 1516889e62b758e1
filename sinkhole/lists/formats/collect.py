"""Where a feed reader's findings go: into a ParsedList (`Collector`) or, for `sinkhole check`,
into the list of indicators that cover one name (`Finder`).

Each format module walks its document once and reports every indicator through the same few
calls, so loading and finding share one reader per format, and every value gets the same
checks (`names.validate_name`) whichever format it came from.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sinkhole.lists.names import covering_keys, is_ip, validate_name
from sinkhole.lists.parse import MAX_ERRORS, MAX_TEXT, ParsedList, ParseError

Where = int | str  # a line number (CSV), or an object's id: "indicator--…", "attribute <uuid>"


def host_of(value: str) -> str:
    """The host a URL, `host:port` or `host/path` value names (maybe an IP address)."""
    text = value.strip()
    if "/" not in text and ":" not in text:
        return text  # a bare name: most values
    if "://" in text:
        try:
            host = urlsplit(text).hostname
        except ValueError as err:  # a malformed [IPv6] netloc
            raise ValueError(f"unreadable URL: {err}") from err
        if not host:
            raise ValueError("a URL without a host")
        return host
    head = text.split("/", 1)[0]
    if head.startswith("[") and "]" in head:  # [2001:db8::1]:443
        return head[1:head.index("]")]
    name, colon, port = head.partition(":")
    # One colon and digits after it: a port. More colons: an IPv6 literal, left whole.
    return name if colon and port.isdigit() else head


class Sink:
    """The calls a format reader makes. `name` is for fields typed as a domain (an IP there
    is an error); `host` is for free-form values, URLs and CSV cells (an IP is skipped: feeds
    mix address indicators in, and a DNS sinkhole cannot act on them)."""

    wants_text = False  # True: rule texts are shown, so readers may annotate them

    def __init__(self) -> None:
        self.lines = 0  # records read: CSV lines, STIX indicators, MISP attributes
        self.meta: dict[str, str] = {}

    def name(self, file: str, where: Where, value: str, text: str) -> None:
        try:
            key = validate_name(value)
        except ValueError as err:
            self.error(file, where, str(err), text)
        else:
            self.add(key, file, where, text)

    def host(self, file: str, where: Where, value: str, text: str) -> None:
        try:
            host = host_of(value)
        except ValueError as err:
            return self.error(file, where, str(err), text)
        if is_ip(host):
            return self.skip()
        self.name(file, where, host, text)

    def add(self, key: str, file: str, where: Where, text: str) -> None:
        raise NotImplementedError

    def skip(self) -> None:
        """A valid record we do not act on: another observable, revoked, expired, not to_ids."""

    def error(self, file: str, where: Where, reason: str, text: str) -> None:
        """A record we could not read."""


class Collector(Sink):
    """Loads a feed: names into `out.block`, skips into `out.unsupported`, errors kept."""

    def __init__(self, out: ParsedList) -> None:
        super().__init__()
        self.out = out
        self.meta = out.meta
        self._add = out.block.add

    def add(self, key: str, file: str, where: Where, text: str) -> None:
        self._add(key)
        if key[0] == "*":
            self.out.wildcard.add(key)

    def skip(self) -> None:
        self.out.unsupported += 1

    def error(self, file: str, where: Where, reason: str, text: str) -> None:
        out = self.out
        out.error_count += 1
        if len(out.errors) < MAX_ERRORS:
            # ParseError has a line number; a JSON object has an id instead, so the id leads
            # the reason and the line is 0 ("feed.json:0: indicator--…: why").
            if isinstance(where, int):
                out.errors.append(ParseError(file, where, reason, text[:MAX_TEXT]))
            else:
                out.errors.append(ParseError(file, 0, f"{where}: {reason}", text[:MAX_TEXT]))


class Finder(Sink):
    """Finds the records whose name covers one query name: (file, where, rule text)."""

    wants_text = True

    def __init__(self, qname: str) -> None:
        super().__init__()
        self.covering = covering_keys(qname)
        self.found: list[tuple[str, str, str]] = []

    def add(self, key: str, file: str, where: Where, text: str) -> None:
        if key in self.covering:
            label = f"line {where}" if isinstance(where, int) else where
            self.found.append((file, label, text[:MAX_TEXT]))
