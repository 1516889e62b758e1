"""Blocklists and allowlists: parsing list files, loading them from disk, and the Policy lookup.

`parse` and `rpz` (text -> rules) and `matcher` (rules -> per-query verdict) are pure; `loader`
does the file I/O and runs in a thread at reload.
"""

from sinkhole.lists.loader import ListError, ListLoadError, find_rule, load_path
from sinkhole.lists.matcher import ListInfo, Policy, Verdict, build_policy, diff_names
from sinkhole.lists.names import normalise_name
from sinkhole.lists.parse import ParsedList, ParseError, parse_lines

__all__ = [
    "ListError",
    "ListInfo",
    "ListLoadError",
    "ParseError",
    "ParsedList",
    "Policy",
    "Verdict",
    "build_policy",
    "diff_names",
    "find_rule",
    "load_path",
    "normalise_name",
    "parse_lines",
]
