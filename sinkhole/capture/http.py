"""The request line and Host header of a clear-text HTTP request, from its first bytes.

The sinkhole listener reads no further than the Host header (or the end of the head when there
is none) and answers nothing. Whatever it returns goes into hits and alerts, so the request
line is printable ASCII only and cut at MAX_LINE, and the host a host name (Malformed else).
"""

from __future__ import annotations

import re

from sinkhole.capture.hello import Malformed, host_name

MAX_LINE = 2048               # recorded request line (a longer target is cut, not refused)
MAX_HEAD_LINE = 8192          # a header line longer than this is not HTTP we care to read
_METHOD = re.compile(rb"[A-Z]{3,16}")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_PORT = re.compile(rb":\d{1,5}")


def is_http_start(data: bytes) -> bool | None:
    """Do these first bytes start an HTTP request (a method token then a space)? None: the
    bytes so far are all upper-case letters, wait for more."""
    space = data.find(b" ", 0, 18)
    if space < 0:
        return None if len(data) < 17 and data.isalpha() and data.isupper() else False
    return _METHOD.fullmatch(data, 0, space) is not None


def parse_http_head(data: bytes) -> tuple[str, str | None] | None:
    """(request line, Host or None) of the request at the start of `data`; None: need more."""
    end = data.find(b"\n")
    if end < 0:
        if len(data) > MAX_HEAD_LINE:
            raise Malformed("HTTP request line too long")
        return None
    line = data[:end].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/") or _PRINTABLE.fullmatch(line) is None:
        raise Malformed("bad HTTP request line")
    request_line = line[:MAX_LINE].decode("ascii")
    pos = end + 1
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            if len(data) - pos > MAX_HEAD_LINE:
                raise Malformed("HTTP header line too long")
            return None
        header = data[pos:end].rstrip(b"\r")
        if not header:                   # end of the head: no Host (HTTP/1.0)
            return request_line, None
        name, sep, value = header.partition(b":")
        if not sep:
            raise Malformed("bad HTTP header line")
        if name.strip().lower() == b"host":
            return request_line, _host(value.strip())
        pos = end + 1


def _host(value: bytes) -> str:
    """The Host header's name: the port cut off; an IPv6 literal kept without brackets."""
    if value.startswith(b"["):
        inner, _, rest = value[1:].partition(b"]")
        if rest and _PORT.fullmatch(rest) is None or not re.fullmatch(rb"[0-9A-Fa-f:.]+", inner):
            raise Malformed("Host is not a host name")
        return inner.lower().decode("ascii")
    name, sep, port = value.rpartition(b":")
    if sep and port.isdigit():
        value = name
    return host_name(value, "Host")
