"""Reading a feed's JSON one array element at a time: bounded memory for a 64 MiB bundle.

`json.loads` of a 64 MiB STIX bundle peaks at 3.5 times the file in RSS (measured by
bench/feed_parse.py), and even holding the decoded text costs the file again; a feed parser
needs one indicator at a time. `Cursor` reads the file through a window of about 1 MiB of
text, walks the outer objects and arrays the caller names, and decodes each element with the
C decoder: the peak is the window plus one element. Nesting deeper than the recursion limit, a
truncated file or a wrong type where an object or array must be are `ListLoadError`s: a file
we cannot walk is not a version of the feed.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sinkhole.lists.loader import BINARY_SNIFF, ListLoadError

MAX_JSON_BYTES = 64 << 20  # the fetcher's default max_size: the biggest document we read
CHUNK = 1 << 20
_WS = re.compile(r"[ \t\n\r]*")
_TYPES = {"{": "an object", "[": "an array", '"': "a string"}


class Cursor:
    """A pull reader over one JSON document. `members()` and `elements()` yield at each key
    or element; the caller reads the value with `value()`, walks into it, or ignores it (it
    is skipped). `values()` yields an array's elements decoded. Hands the GIL back every 1,024
    elements: parsing runs in a thread beside the event loop.

    Bad UTF-8 becomes U+FFFD, reported per value by the name checks: one bad byte in a
    description must not lose the feed.
    """

    def __init__(self, path: Path, raw: IO[bytes] | None = None, text: str = "",
                 limit: int = MAX_JSON_BYTES) -> None:
        self.path, self.raw, self.limit = path, raw, limit
        self.buf, self.pos, self.base = text, 0, 0  # base: offset of buf[0] in the document
        self.eof = raw is None
        self.read_bytes = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._decode = json.JSONDecoder().raw_decode
        self._ticks = 0

    @classmethod
    def open(cls, path: Path, limit: int = MAX_JSON_BYTES) -> Cursor:
        """A cursor over the file at `path` (close it, or use it as a context manager)."""
        try:
            raw = open(path, "rb")  # noqa: SIM115 - the cursor owns it
            size = os.fstat(raw.fileno()).st_size
        except OSError as err:
            raise ListLoadError(path, err.strerror or str(err)) from err
        cursor = cls(path, raw, limit=limit)
        try:
            if size > limit:
                raise ListLoadError(path, f"larger than {_size(limit)}")
            cursor._fill(max(CHUNK, BINARY_SNIFF))
            if "\x00" in cursor.buf[:BINARY_SNIFF]:
                raise ListLoadError(path, "binary file (a NUL byte in its first 8 KiB)")
        except BaseException:
            cursor.close()
            raise
        return cursor

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()

    # --- reading ---------------------------------------------------------------------------

    def peek(self) -> str:
        """The first character of the next value ('' at the end)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos:self.pos + 1]
            self._fill(CHUNK)

    def value(self) -> Any:
        """Decode the next value whole."""
        self.peek()
        more = CHUNK
        while True:
            try:
                value, end = self._decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                if self.eof:
                    raise self.error(f"invalid JSON: {err.msg}", err.pos) from err
            except RecursionError as err:
                raise self.error("JSON nested too deeply") from err
            else:
                # A value ending at the window's edge may be a number cut in two.
                if end < len(self.buf) or self.eof:
                    self.pos = end
                    return value
            self._fill(more)  # the value runs past the window: widen it, geometrically
            more *= 2

    def values(self, what: str) -> Iterator[Any]:
        """The elements of the array at the cursor, decoded (the hot loop: two whitespace
        skips and one C decode per element)."""
        self._open("[", what)
        if self._close("]"):
            return
        while True:
            yield self.value()
            self._tick()
            char = self.peek()
            if char == "]":
                self.pos += 1
                return
            if char != ",":
                raise self.error(f"{what}: expected ',' or the closing bracket")
            self.pos += 1

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
            start = self._mark()
            yield key
            if self._mark() == start:
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
            start = self._mark()
            yield index
            if self._mark() == start:
                self.value()
            index += 1
            self._tick()
            if self._close("]"):
                return
            self._comma(what)

    def end(self) -> None:
        """Only whitespace may follow the document."""
        if self.peek():
            raise self.error("data after the JSON document")

    def error(self, reason: str, pos: int | None = None) -> ListLoadError:
        where = self.base + (self.pos if pos is None else pos)
        return ListLoadError(self.path, f"{reason} (at character {where:,})")

    # --- internals -------------------------------------------------------------------------

    def _tick(self) -> None:
        self._ticks += 1
        if not self._ticks & 0x3FF:
            time.sleep(0)

    def _mark(self) -> int:
        self.peek()
        return self.base + self.pos

    def _fill(self, size: int) -> None:
        """Drop what was consumed and append at least `size` more bytes' worth of text."""
        assert self.raw is not None
        data = self.raw.read(size)
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise ListLoadError(self.path, f"larger than {_size(self.limit)}")
        self.eof = not data
        self.buf = self.buf[self.pos:] + self._utf8.decode(data, final=self.eof)
        self.base += self.pos
        self.pos = 0

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


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if not limit & 0xFFFFF else f"{limit:,} bytes"
