"""MISP: a feed (a folder holding `manifest.json` and the `<uuid>.json` event files it lists,
as the fetcher stores it), one event (`{"Event": …}`), or an attribute export
(`{"response": {"Attribute": […]}}`, `{"Attribute": […]}`, `{"response": [{"Event": …}]}`).

Attributes of the name types (`domain`, `hostname`, their `|ip` / `|port` pairs, and the host
of a `url`) are taken, in the event and in its objects; with `to_ids_only` only those marked
`to_ids` (MISP's "act on this" flag: an analyst's context attributes are not). Deleted
attributes and objects are skipped. MISP writes flags as booleans or as "0"/"1" strings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sinkhole.lists.formats.collect import Sink
from sinkhole.lists.formats.jsonstream import Cursor
from sinkhole.lists.loader import ListLoadError

MANIFEST = "manifest.json"
# type -> how its value names a host; "a|b" types carry the name on the left
_TYPES = {"domain": "name", "hostname": "name", "domain|ip": "name", "hostname|port": "name",
          "url": "host"}
# True == 1 and False == 0 as dict keys: the JSON numbers 1 and 0 are covered too
_FLAGS = {True: True, False: False, "1": True, "0": False, "true": True, "false": False}
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def is_feed(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def read(path: Path, sink: Sink, *, to_ids_only: bool, limit: int) -> None:
    """Report every attribute of the feed, event or export at `path` to `sink`."""
    reader = _Reader(sink, to_ids_only, limit)
    if path.is_dir():
        reader.feed(path / MANIFEST)
    elif path.name == MANIFEST:
        reader.feed(path)
    else:
        reader.document(path)
    if len(reader.titles) == 1:
        sink.meta.setdefault("title", reader.titles[0])


class _Reader:
    def __init__(self, sink: Sink, to_ids_only: bool, limit: int) -> None:
        self.sink, self.to_ids_only, self.limit = sink, to_ids_only, limit
        self.titles: list[str] = []
        self.file = ""

    def feed(self, manifest: Path) -> None:
        """Every event the manifest lists. A listed event that is missing or unreadable is an
        error, not the end of the feed: the other events still block."""
        with Cursor.open(manifest, self.limit) as cursor:
            uuids = list(cursor.members("the manifest"))
            cursor.end()
        if not uuids:
            raise ListLoadError(manifest, "the manifest lists no event")
        for uuid in uuids:
            if not _UUID.fullmatch(uuid):  # also keeps "../x" out of the path we open
                self.sink.error(str(manifest), f"event {uuid[:60]!r}", "not a UUID", "")
                continue
            event = manifest.parent / f"{uuid}.json"
            try:
                self.document(event)
            except ListLoadError as err:
                self.sink.error(str(event), f"event {uuid}", err.reason, "")

    def document(self, path: Path) -> None:
        self.file = str(path)
        with Cursor.open(path, self.limit) as cursor:
            found = False
            if cursor.peek() == "[":
                for _ in cursor.elements("the events"):
                    found |= self.container(cursor, "an event")
            else:
                found = self.container(cursor, "the document")
            cursor.end()
        if not found:
            raise cursor.error('not a MISP event or attribute export (no "Event", "response" '
                               'or "Attribute")')

    def container(self, cursor: Cursor, what: str) -> bool:
        """An object holding "Event", "Attribute" or "response" (itself one or a list)."""
        found = False
        for key in cursor.members(what):
            if key == "Event":
                found = True
                self.event(cursor)
            elif key == "Attribute":
                found = True
                self.attributes(cursor, deleted=False)
            elif key == "response":
                found = True
                if cursor.peek() == "[":
                    for _ in cursor.elements("response"):
                        self.container(cursor, "a response entry")
                else:
                    self.container(cursor, "response")
        return found

    def event(self, cursor: Cursor) -> None:
        for key in cursor.members("Event"):
            if key == "Attribute":
                self.attributes(cursor, deleted=False)
            elif key == "Object":
                for index, obj in enumerate(cursor.values("Object")):
                    self.misp_object(index, obj)
            elif key == "info":
                info = cursor.value()
                if isinstance(info, str) and len(self.titles) < 2:
                    self.titles.append(" ".join(info.split()))

    def attributes(self, cursor: Cursor, *, deleted: bool) -> None:
        for index, attr in enumerate(cursor.values("Attribute")):
            self.attribute(index, attr, deleted)

    def misp_object(self, index: int, obj: Any) -> None:
        if not isinstance(obj, dict):
            return self.sink.error(self.file, f"object #{index + 1}", "not a JSON object", "")
        uuid = obj.get("uuid")
        where = f"object {uuid}" if isinstance(uuid, str) else f"object #{index + 1}"
        attrs = obj.get("Attribute", [])
        try:
            deleted = _flag(obj.get("deleted", False), "deleted")
            if not isinstance(attrs, list):
                raise ValueError("Attribute: expected an array")
        except ValueError as err:
            return self.sink.error(self.file, where, str(err), "")
        for i, attr in enumerate(attrs):
            self.attribute(i, attr, deleted)

    def attribute(self, index: int, attr: Any, deleted: bool) -> None:
        sink = self.sink
        sink.lines += 1
        if not isinstance(attr, dict):
            return sink.error(self.file, f"attribute #{index + 1}", "not a JSON object", "")
        uuid = attr.get("uuid")
        where = f"attribute {uuid}" if isinstance(uuid, str) else f"attribute #{index + 1}"
        atype, value = attr.get("type"), attr.get("value")
        try:
            if not isinstance(atype, str):
                raise ValueError("type: expected a string")
            kind = _TYPES.get(atype)
            if kind is None:
                return sink.skip()  # ip-dst, sha256, link...: not a name
            if not isinstance(value, str):
                raise ValueError("value: expected a string")
            to_ids = _flag(attr.get("to_ids", False), "to_ids")
            deleted = _flag(attr.get("deleted", False), "deleted") or deleted
        except ValueError as err:
            return sink.error(self.file, where, str(err), "")
        if deleted or (self.to_ids_only and not to_ids):
            return sink.skip()
        text = f"{atype} {value}"
        comment = attr.get("comment")
        if isinstance(comment, str) and comment.strip():
            text += f" ({' '.join(comment.split())})"
        if kind == "host":
            sink.host(self.file, where, value, text)
        else:
            sink.name(self.file, where, value.split("|", 1)[0], text)


def _flag(value: Any, field: str) -> bool:
    try:
        return _FLAGS[value.lower() if isinstance(value, str) else value]
    except (KeyError, TypeError):  # TypeError: an unhashable list or object
        raise ValueError(f"{field}: expected a boolean, found {str(value)[:20]!r}") from None
