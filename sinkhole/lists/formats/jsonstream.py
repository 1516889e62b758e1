"""Reading a feed's JSON one array element at a time: bounded memory for a 64 MiB bundle.

`json.loads` of a 64 MiB STIX bundle builds every object at once, ~8 times the file in RSS;
a feed parser only needs one indicator at a time. `Cursor` walks the outer objects and arrays
the caller names and decodes each element (or any other value) with the C decoder, so the
peak is the text plus one element. Nesting deeper than the interpreter's recursion limit, a
truncated file or a wrong type where an object or array must be are `ListLoadError`s: a file
we cannot walk is not a version of the feed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sinkhole.lists.loader import BINARY_SNIFF, ListLoadError

MAX_JSON_BYTES = 64 << 20  # the fetcher's default max_size: the biggest document we decode
_WS = re.compile(r"[ \t\n\r]*")
_TYPES = {"{": "an object", "[": "an array", '"': "a string"}


def read_text(path: Path, limit: int = MAX_JSON_BYTES) -> str:
    """A whole feed file as text: bounded, not binary; bad UTF-8 becomes U+FFFD (reported per
    value by the name checks, so one bad byte in a description does not lose the feed)."""
    try:
        with open(path, "rb") as raw:
            data = raw.read(limit + 1)
    except OSError as err:
        raise ListLoadError(path, err.strerror or str(err)) from err
    if len(data) > limit:
        raise ListLoadError(path, f"larger than {limit >> 20} MiB")
    if b"\x00" in data[:BINARY_SNIFF]:
        raise ListLoadError(path, "binary file (a NUL byte in its first 8 KiB)")
    return data.decode("utf-8-sig", errors="replace")


class Cursor:
    """A pull reader over one JSON text. `members()` and `elements()` yield at each key or
    element; the caller reads the value with `value()`, walks into it, or ignores it (it is
    skipped). Hands the GIL back every 1,024 elements: parsing runs beside the event loop."""

    def __init__(self, text: str, path: Path) -> None:
        self.text, self.path, self.pos = text, path, 0
        self._decode = json.JSONDecoder().raw_decode
        self._ticks = 0

    def peek(self) -> str:
        """The first character of the next value ('' at the end)."""
        self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]
        return self.text[self.pos:self.pos + 1]

    def value(self) -> Any:
        """Decode the next value whole."""
        self.peek()
        try:
            value, self.pos = self._decode(self.text, self.pos)
        except json.JSONDecodeError as err:
            raise self.error(f"invalid JSON: {err.msg}", err.pos) from err
        except RecursionError as err:
            raise self.error("JSON nested too deeply") from err
        return value

    def members(self, what: str) -> Iterator[str]:
        """The keys of the object at the cursor; `what` names it in errors."""
        self._open("{", what)
        if self._close("}"):
            return
        while True:
            if self.peek() != '"':
                raise self.error(f"{what}: expected a key")
            key = self.value()
            if self.peek() != ":":
                raise self.error(f"{what}: expected ':'")
            self.pos += 1
            self.peek()
            start = self.pos
            yield key
            if self.pos == start:
                self.value()  # the caller did not want it
            if self._close("}"):
                return
            self._comma(what)

    def elements(self, what: str) -> Iterator[int]:
        """Indexes of the array at the cursor, one per element."""
        self._open("[", what)
        if self._close("]"):
            return
        index = 0
        while True:
            self.peek()
            start = self.pos
            yield index
            if self.pos == start:
                self.value()
            index += 1
            self._ticks += 1
            if not self._ticks & 0x3FF:
                time.sleep(0)
            if self._close("]"):
                return
            self._comma(what)

    def end(self) -> None:
        """Only whitespace may follow the document."""
        if self.peek():
            raise self.error("data after the JSON document")

    def error(self, reason: str, pos: int | None = None) -> ListLoadError:
        where = self.pos if pos is None else pos
        return ListLoadError(self.path, f"{reason} (at byte {where:,})")

    def _open(self, char: str, what: str) -> None:
        got = self.peek()
        if got != char:
            found = _TYPES.get(got, "the end of the file" if not got else "a scalar")
            raise self.error(f"{what}: expected {_TYPES[char]}, found {found}")
        self.pos += 1

    def _close(self, char: str) -> bool:
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def _comma(self, what: str) -> None:
        if self.peek() != ",":
            raise self.error(f"{what}: expected ',' or the closing bracket")
        self.pos += 1
