"""Reading list files and folders from disk into ParsedLists, and finding a rule's line.

Blocking file I/O: call it from a thread (it shares no state, so any thread will do), never
from the event loop. Files are streamed line by line with a bounded line length, so a huge or
hostile file costs time, not memory.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

from sinkhole.lists.names import normalise_name
from sinkhole.lists.parse import MAX_LINE, MAX_TEXT, ParsedList, iter_rules, parse_lines

BINARY_SNIFF = 8192  # a NUL in the first 8 KiB: an image, archive or UTF-16 file, not a list


class ListError(Exception):
    """Base of the errors of the lists package."""


class ListLoadError(ListError):
    """A list file or folder could not be read as a whole: the caller keeps the last good
    version (a broken list must never empty the policy)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def list_files(path: str | Path) -> list[Path]:
    """The files a configured path stands for: itself, or a folder's list files (sorted, one
    level of subfolders; hidden files and READMEs skipped, so a git checkout works as is)."""
    root = Path(path)
    try:
        if not root.is_dir():
            if not root.is_file():
                raise ListLoadError(root, "no such file or folder")
            return [root]
        files: list[Path] = []
        for entry in sorted(root.iterdir()):
            if _skipped(entry):
                continue
            if entry.is_dir():
                files.extend(f for f in sorted(entry.iterdir()) if f.is_file() and not _skipped(f))
            elif entry.is_file():
                files.append(entry)
    except OSError as err:
        raise ListLoadError(root, err.strerror or str(err)) from err
    if not files:
        # An emptied checkout must not silently unblock everything: treat it as broken.
        raise ListLoadError(root, "folder holds no list files")
    return files


def _skipped(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name.upper().startswith("README") or name.endswith(".md")


def read_lines(path: Path) -> Iterator[str]:
    """Decoded lines, each at most MAX_LINE + 1 characters: a longer line is cut there (the
    parser reports it) and the rest of it is read and dropped, never held in memory."""
    try:
        with open(path, "rb") as raw:
            if b"\x00" in raw.read(BINARY_SNIFF):
                raise ListLoadError(path, "binary file (a NUL byte in its first 8 KiB)")
            raw.seek(0)
            with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace") as text:
                readline = text.readline
                n = 0
                while line := readline(MAX_LINE + 1):
                    yield line
                    n += 1
                    if not n & 0x3FF:
                        # Parsing runs in a worker thread beside the event loop: hand over
                        # the GIL every 1,024 lines so queries are not starved by a reload.
                        time.sleep(0)
                    if len(line) > MAX_LINE and not line.endswith("\n"):
                        while (rest := readline(MAX_LINE + 1)) and not rest.endswith("\n"):
                            pass
    except OSError as err:
        raise ListLoadError(path, err.strerror or str(err)) from err


def load_path(path: str | Path) -> ParsedList:
    """Parse a list file, or every list file of a folder into one ParsedList.

    Raises ListLoadError if any file cannot be read or is binary: half a folder is not a
    good version of a list. Bad lines inside a readable file are only `errors`.
    """
    files = list_files(path)
    out = ParsedList(source=str(path))
    for file in files:
        parse_lines(read_lines(file), str(file), into=out)
    return out


def find_rule(path: str | Path, name: str) -> list[tuple[str, int, str]]:
    """(file, line, text) of every rule in `path` that covers `name`: the name itself, a
    parent, or a `*.parent` wildcard. For `sinkhole check`; rescans the files."""
    qname = normalise_name(name)
    labels = qname.split(".")
    suffixes = [".".join(labels[i:]) for i in range(len(labels))]
    covering = set(suffixes) | {"*." + s for s in suffixes[1:]}
    found = []
    for file in list_files(path):
        for lineno, text, (_, key, _) in iter_rules(read_lines(file), str(file)):
            if key in covering:
                found.append((str(file), lineno, text[:MAX_TEXT]))
    return found
