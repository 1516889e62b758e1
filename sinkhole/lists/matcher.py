"""The Policy: which list (if any) decides a query name, built once per reload (pure).

Precedence, in this order:
1. An allow rule on the name or any parent wins over every block: allowlists, and also `@@`
   and `rpz-passthru` rules inside blocklists (global, as in adblock engines).
2. Among blocklists, the first one in config order that covers the name decides; within that
   list the most specific rule does. Put the lists that should name a hit (C2 before ads) first.
3. `name` covers the name and all its subdomains; `*.name` covers only the subdomains.

Lookup cost: one hash per suffix of the query name, then one dict probe (allow rules, local
data, wildcards and every small list) and one set probe per big list; no scan over patterns.
Big name sets are the parsed sets themselves, shared, not copied: a reload does not pay for a
second copy of a million names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from sinkhole.lists.parse import ParsedList

BLOCK_ACTIONS = frozenset({"nxdomain", "null", "sinkhole", "refused"})
_ALLOW_RANK = -1  # below every list's rank: an allow rule always wins
# Name sets up to this size are copied into the one exact-name dict (a few MB at most), so a
# query probes one dict plus one set per *big* list per suffix, however many small lists
# (C2 indicator files) there are; bigger sets are shared as they are, never copied.
SMALL_LIST = 50_000


@dataclass(frozen=True, slots=True, eq=False)
class ListInfo:
    """What a hit reports about its list: config fields, plus the file's header (advice...)."""

    name: str
    category: str = ""
    severity: str = ""
    action: str = "nxdomain"
    meta: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: Any, meta: Mapping[str, str] | None = None) -> ListInfo:
        """From any config object with .name/.category/.severity/.action; blank config fields
        fall back to the list header, so a shipped list describes itself."""
        meta = dict(meta or {})
        return cls(
            name=spec.name,
            category=getattr(spec, "category", None) or meta.get("category", ""),
            severity=getattr(spec, "severity", None) or meta.get("severity", ""),
            action=getattr(spec, "action", None) or "nxdomain",
            meta=meta,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A precomputed outcome, shared by every name with the same list and action."""

    list: ListInfo | None  # None: an allowlist entry
    action: str  # nxdomain | nodata | null | sinkhole | refused | local | allow
    local: tuple[tuple[int, str], ...] = ()  # (qtype, rdata) for 'local'


ALLOWLISTED = Verdict(None, "allow")
_Ranked = tuple[int, Verdict]


class Policy:
    """Immutable once built; a reload builds a new one and swaps the reference."""

    __slots__ = ("_exact", "_sub", "_bulk", "_limit", "_parsed", "lists", "entries")

    def __init__(self, exact: dict[str, _Ranked] | None = None,
                 sub: dict[str, _Ranked] | None = None,
                 bulk: Sequence[tuple[int, Verdict, Set[str]]] = (),
                 lists: Sequence[tuple[ListInfo, ParsedList]] = ()) -> None:
        self._exact = exact or {}  # allow rules, local data, small lists: name -> (rank, verdict)
        self._sub = sub or {}  # the same for `*.name` rules, keyed by name
        self._bulk = tuple(bulk)  # (rank, verdict, names) in rank order
        self._limit = len(lists)
        self._parsed = {info.name: parsed for info, parsed in lists}
        self.lists = tuple(info for info, _ in lists)
        self.entries = {info.name: parsed.rules for info, parsed in lists}

    def match(self, qname: str) -> tuple[Verdict, str] | None:
        """(verdict, matched suffix) for a lower-case name without trailing dot, or None."""
        exact, sub, bulk = self._exact, self._sub, self._bulk
        best: tuple[Verdict, str] | None = None
        best_rank = self._limit
        s, start = qname, 0
        while True:
            hit = exact.get(s)
            if start and sub:  # `*.name` only covers subdomains, and is the more specific
                wild = sub.get(s)  # rule for them when the same list also has `name`
                if wild is not None and (hit is None or wild[0] <= hit[0]):
                    hit = wild
            if hit is not None and hit[0] < best_rank:
                if hit[0] == _ALLOW_RANK:
                    return hit[1], s
                best, best_rank = (hit[1], s), hit[0]
            for rank, verdict, names in bulk:
                if rank >= best_rank:
                    break
                if s in names:
                    best, best_rank = (verdict, s), rank
                    break
            dot = qname.find(".", start)
            if dot < 0:
                return best
            start = dot + 1
            s = qname[start:]

    def names(self, list_name: str) -> Set[str]:
        """Rule keys of one list (`*.name` for wildcards), for reload diffs and retro-hunt.

        Often the parsed set itself, not a copy: read it, never change it.
        """
        parsed = self._parsed.get(list_name)
        if parsed is None:
            return frozenset()
        parts: list[Set[str]] = [s for s in (parsed.block, parsed.nxdomain, parsed.nodata) if s]
        if parsed.local:
            parts.append(parsed.local.keys())
        if len(parts) == 1 and isinstance(parts[0], set):
            return parts[0]
        return set().union(*parts)


def _put(exact: dict[str, _Ranked], sub: dict[str, _Ranked], keys: Iterable[str],
         ranked: _Ranked) -> None:
    """Enter rules into the dicts; on a clash the lower rank (allow, earlier list) stays."""
    for key in keys:
        table = exact
        if key.startswith("*."):
            table, key = sub, key[2:]
        old = table.get(key)
        if old is None or ranked[0] < old[0]:
            table[key] = ranked


def build_policy(lists: Sequence[tuple[Any, ParsedList]],
                 allowlists: Iterable[ParsedList] = ()) -> Policy:
    """Assemble the lookup tables; `lists` in config order (rank = position).

    Each element pairs a config object (or a ListInfo) with its parsed list. Raises
    ValueError for an unknown action or a repeated list name: config bugs, not data.
    """
    exact: dict[str, _Ranked] = {}
    sub: dict[str, _Ranked] = {}
    for allow in allowlists:  # every rule of an allowlist allows, whatever its form
        for keys in (allow.block, allow.allow, allow.nxdomain, allow.nodata, allow.local):
            _put(exact, sub, keys, (_ALLOW_RANK, ALLOWLISTED))
    infos: list[tuple[ListInfo, ParsedList]] = []
    bulk: list[tuple[int, Verdict, Set[str]]] = []
    for rank, (spec, parsed) in enumerate(lists):
        info = spec if isinstance(spec, ListInfo) else ListInfo.of(spec, parsed.meta)
        if info.action not in BLOCK_ACTIONS:
            raise ValueError(f"list {info.name!r}: unknown action {info.action!r}")
        if any(info.name == seen.name for seen, _ in infos):
            raise ValueError(f"list name {info.name!r} used twice")
        infos.append((info, parsed))
        _put(exact, sub, parsed.allow, (_ALLOW_RANK, Verdict(info, "allow")))
        for key, data in parsed.local.items():
            _put(exact, sub, (key,), (rank, Verdict(info, "local", tuple(data))))
        for action, names in (("nxdomain", parsed.nxdomain), ("nodata", parsed.nodata),
                              (info.action, parsed.block)):
            ranked = (rank, Verdict(info, action))
            if len(names) > SMALL_LIST:
                bulk.append((rank, ranked[1], names))
                names = parsed.wildcard.intersection(names)  # `*.name` rules need the dict
            _put(exact, sub, names, ranked)
    return Policy(exact, sub, bulk, infos)


def diff_names(old: Set[str], new: Set[str],
               pause: Callable[[], None] | None = None) -> tuple[set[str], set[str]]:
    """(added, removed) between two `Policy.names()` results: what retro-hunt searches for.

    Runs in the reload thread. One C-level set difference over a million names holds the GIL
    for tens of milliseconds and stalls DNS; with `pause` (e.g. `time.sleep(0)`) the work is
    done in slices that hand the GIL back to the event loop between them.
    """
    if old is new:
        return set(), set()
    if pause is None:
        return set(new - old), set(old - new)
    return _missing(new, old, pause), _missing(old, new, pause)


def _missing(items: Set[str], other: Set[str], pause: Callable[[], None]) -> set[str]:
    out = set()
    for i, name in enumerate(items):
        if name not in other:
            out.add(name)
        if not i & 0x3FFF:
            pause()
    return out


def drain(sets: Iterable[Any], pause: Callable[[], None]) -> None:
    """Empty sets and dicts a few thousand entries at a time: freeing a million-name set in
    one go is one C call that holds the GIL (and DNS) for ~100 ms."""
    for s in sets:
        while s:
            for _ in range(min(8192, len(s))):
                if isinstance(s, dict):
                    s.popitem()
                else:
                    s.pop()
            pause()


def stale_tables(old: Policy, new: Policy) -> list[Any]:
    """The tables of `old` that `new` does not share (unchanged lists keep their sets)."""
    keep = {id(t) for t in (new._exact, new._sub, *(names for _r, _v, names in new._bulk))}
    tables = [old._exact, old._sub, *(names for _r, _v, names in old._bulk)]
    return [t for t in tables if id(t) not in keep and isinstance(t, set | dict)]
