"""Sequence rules: "a device asks A, then within T a newly seen domain" — parsing, validation
and matching (pure; the schema is documented in sinkhole/data/hunt-sequences.yaml).

Signal **sequence** (the rule's score; the shipped Triangulation rule 85, so it alerts alone).
Matching costs one dict probe per observation: every name pattern lies under one registrable
domain (a pattern that spans many, like `*.com`, is refused), so the patterns are indexed by
that domain and only the few rules that mention it are tried. Per device and rule the matcher
keeps, for each step, only the latest way that step was reached: a later arrival is never
worse, because every `within` counts from the step before.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sinkhole.config.loader import format_duration, parse_duration
from sinkhole.errors import SinkholeError
from sinkhole.hunt.domains import registrable
from sinkhole.lists.names import is_public_suffix

SHIPPED_FILE = Path(__file__).resolve().parent.parent / "data" / "hunt-sequences.yaml"
MAX_WITHIN = 86400.0  # per-device state is kept this long at most
_PATTERN = re.compile(r"[a-z0-9_*-]+(\.[a-z0-9_*-]+)*")
_RULE_KEYS = {"name", "description", "score", "steps", "enabled"}
_STEP_KEYS = {"names", "newly_seen", "within", "after"}


class SequenceError(SinkholeError):
    """A sequence rule file is unreadable or invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Step:
    names: tuple[str, ...]        # glob patterns (`*` matches anything); empty: newly_seen
    newly_seen: bool
    within: float                 # at most this long after the previous step (0: first step)
    regex: re.Pattern[str] | None
    after: float = 0.0            # and at least this long after it


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    score: int
    steps: tuple[Step, ...]


# A link of a (partial) match: (time, qname, qtype, registrable domain, may be suspected).
Link = tuple[float, str, str, str, bool]


def load_rules(shipped: bool, path: str | None) -> tuple[Rule, ...]:
    """The shipped rules (unless turned off) and the user's; a user rule replaces the shipped
    rule of the same name, and `enabled: false` turns it off."""
    rules: dict[str, Rule | None] = {}
    if shipped:
        rules.update(parse_rules(_read(SHIPPED_FILE), str(SHIPPED_FILE)))
    if path:
        rules.update(parse_rules(_read(Path(path)), path))
    return tuple(r for r in rules.values() if r is not None)


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError) as err:
        raise SequenceError([f"{path}: cannot read sequence rules: {err}"]) from err


def parse_rules(doc: Any, source: str) -> dict[str, Rule | None]:
    """Rules by name from a YAML document (`sequences: [...]`); None for a disabled rule.
    Every problem is reported together, each naming the rule and step."""
    errors: list[str] = []
    if doc is None:
        return {}
    if not isinstance(doc, dict) or set(doc) - {"sequences"}:
        raise SequenceError([f"{source}: expected a mapping with one key 'sequences'"])
    items = doc.get("sequences") or []
    if not isinstance(items, list):
        raise SequenceError([f"{source}: sequences: expected a list of rules"])
    rules: dict[str, Rule | None] = {}
    for i, item in enumerate(items):
        where = f"{source}: sequences[{i}]"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            where = f"{source}: rule {item['name']!r}"
        found: list[str] = []
        rule = _parse_rule(item, found)
        errors += [f"{where}: {e}" for e in found]
        if rule is not None or (not found and isinstance(item, dict)):
            name = item["name"]
            if name in rules:
                errors.append(f"{where}: a rule of that name is already defined above")
            rules[name] = rule
    if errors:
        raise SequenceError(errors)
    return rules


def _parse_rule(item: Any, errors: list[str]) -> Rule | None:
    if not isinstance(item, dict):
        errors.append(f"expected a mapping (name, steps, ...), found {item!r}")
        return None
    unknown = set(item) - _RULE_KEYS
    if unknown:
        errors.append(f"unknown keys {sorted(unknown)} (allowed: {sorted(_RULE_KEYS)})")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append("name: required, a non-empty string")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append(f"enabled: expected true or false, found {enabled!r}")
    if enabled is False:
        return None  # turns off a rule of that name (a shipped one): nothing else needed
    score = item.get("score", 80)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 100:
        errors.append(f"score: expected an integer 1..100, found {score!r}")
    steps_doc = item.get("steps")
    if not isinstance(steps_doc, list) or len(steps_doc) < 2:
        errors.append("steps: expected a list of at least two steps")
        steps_doc = []
    steps = [_parse_step(i, s, errors) for i, s in enumerate(steps_doc, 1)]
    if errors:
        return None
    return Rule(name, str(item.get("description", "")).strip(), score,
                tuple(s for s in steps if s is not None))


def _parse_step(num: int, doc: Any, errors: list[str]) -> Step | None:
    where = f"step {num}"
    if not isinstance(doc, dict):
        errors.append(f"{where}: expected a mapping (names or newly_seen, within)")
        return None
    before = len(errors)
    unknown = set(doc) - _STEP_KEYS
    if unknown:
        errors.append(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_STEP_KEYS)})")
    newly_seen = doc.get("newly_seen", False)
    names = doc.get("names")
    if isinstance(names, str):
        names = [names]
    if newly_seen not in (True, False):
        errors.append(f"{where}: newly_seen: expected true or false, found {newly_seen!r}")
    elif (names is None) == (newly_seen is False):
        errors.append(f"{where}: give exactly one of 'names' (patterns) or 'newly_seen: true'")
    patterns = _parse_names(where, names, errors) if names is not None else ()
    within = _parse_within(where, num, doc, errors)
    after = _parse_after(where, num, doc, within, errors)
    if len(errors) > before:
        return None
    regex = re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None
    return Step(patterns, bool(newly_seen), within, regex, after)


def _parse_names(where: str, names: Any, errors: list[str]) -> tuple[str, ...]:
    if not isinstance(names, list) or not names:
        errors.append(f"{where}: names: expected a pattern or a list of patterns")
        return ()
    out = []
    for pattern in names:
        text = str(pattern).strip().lower().rstrip(".")
        problem = _pattern_problem(text) if isinstance(pattern, str) else "not a string"
        if problem:
            errors.append(f"{where}: names: {pattern!r}: {problem}")
        out.append(text)
    return tuple(out)


def _parse_within(where: str, num: int, doc: dict[str, Any], errors: list[str]) -> float:
    if "within" not in doc:
        if num > 1:
            errors.append(f"{where}: within: required after the first step (like 5m)")
        return 0.0
    if num == 1:
        errors.append(f"{where}: within: the first step has no step before it")
        return 0.0
    try:
        within = parse_duration(doc["within"])
    except ValueError as err:
        errors.append(f"{where}: within: {err}")
        return 0.0
    if not 1 <= within <= MAX_WITHIN:
        errors.append(f"{where}: within: {doc['within']!r} is outside 1s..."
                      f"{format_duration(MAX_WITHIN)}")
    return within


def _parse_after(where: str, num: int, doc: dict[str, Any], within: float,
                 errors: list[str]) -> float:
    if "after" not in doc:
        return 0.0
    if num == 1:
        errors.append(f"{where}: after: the first step has no step before it")
        return 0.0
    try:
        after = parse_duration(doc["after"])
    except ValueError as err:
        errors.append(f"{where}: after: {err}")
        return 0.0
    if within and after >= within:
        errors.append(f"{where}: after: {doc['after']!r} must be shorter than within "
                      f"({format_duration(within)})")
    return after


def _pattern_problem(pattern: str) -> str | None:
    """Why a name pattern cannot be indexed, or None."""
    if not _PATTERN.fullmatch(pattern):
        return "letters, digits, '-', '_', '.' and '*' only"
    key = index_key(pattern)
    if key is None:
        return ("too broad: the part after the last '*' must name a registrable domain "
                "(like *.example.com), not a public suffix")
    if key.rpartition(".")[2] in ("arpa", "local", "localhost"):
        return "reverse and local-only names are never observed by hunting"
    return None


def index_key(pattern: str) -> str | None:
    """The registrable domain every name matching `pattern` lies under, or None."""
    star = pattern.rfind("*")
    tail = pattern[star + 1:]
    if star >= 0:
        tail = tail[1:] if tail.startswith(".") else tail.partition(".")[2]
    if "." not in tail or is_public_suffix(tail):
        return None
    return registrable(tail)


class Matcher:
    """The compiled rules, with the index that finds candidate steps for a name."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        by_domain: dict[str, list[tuple[int, int, re.Pattern[str]]]] = {}
        self.new_steps: list[tuple[int, int]] = []
        for ri, rule in enumerate(self.rules):
            for si, step in enumerate(rule.steps):
                if step.newly_seen:
                    self.new_steps.append((ri, si))
                    continue
                assert step.regex is not None
                for key in {index_key(p) for p in step.names}:
                    by_domain.setdefault(key or "", []).append((ri, si, step.regex))
        self.by_domain = by_domain
        self.new_steps.sort(key=lambda c: (c[0], -c[1]))

    def candidates(self, domain: str, qname: str, fresh: bool) -> list[tuple[int, int]]:
        """(rule, step) pairs this observation may complete, each rule's highest step first
        (so one query never completes two steps of one match)."""
        named = self.by_domain.get(domain)
        if not named:
            return self.new_steps if fresh else []
        out = [(ri, si) for ri, si, rx in named if rx.match(qname)]
        if fresh and self.new_steps:
            out = sorted(set(out) | set(self.new_steps), key=lambda c: (c[0], -c[1]))
        return out

    def advance(self, state: dict[int, list[tuple[float, tuple[Link, ...]] | None]],
                cands: list[tuple[int, int]], link: Link) -> list[tuple[Rule, tuple[Link, ...]]]:
        """Feed one observation into a device's state; the rules it completes, with chains."""
        t, domain = link[0], link[3]
        done = []
        for ri, si in cands:
            rule = self.rules[ri]
            progress = state.get(ri)
            if si == 0:
                if progress is None:
                    progress = state[ri] = [None] * len(rule.steps)
                progress[0] = (t, (link,))
                continue
            prev = progress[si - 1] if progress else None
            step = rule.steps[si]
            if prev is None or not step.after <= t - prev[0] <= step.within:
                continue
            if step.newly_seen and any(x[3] == domain for x in prev[1]):
                continue  # "a second newly seen domain" means another one
            chain = prev[1] + (link,)
            if si == len(rule.steps) - 1:
                done.append((rule, chain))
            else:
                progress[si] = (t, chain)
        return done


def describe(rule: Rule, chain: tuple[Link, ...]) -> str:
    """A suspicion's reason text for a completed sequence."""
    steps = ", then ".join(x[1] for x in chain)
    span = chain[-1][0] - chain[0][0]
    return f"sequence {rule.name!r} in {span:.0f}s: {steps}"
