"""Generate the benchmark's blocklists and dnsperf query files, deterministically (fixed seed).

Outputs in --out (default bench/data):
- list-100k.txt, list-1m.txt: plain-domain blocklists; the 1M list starts with the 100k names,
  so one blocked query file serves both and the 100k -> 1M comparison changes only the list;
- q-blocked.txt: names from the 100k list, a quarter of them as subdomains (the suffix walk);
- q-cached.txt: 1,000 allowed names, looped by dnsperf: cache hits after one warm-up pass;
- q-forwarded.txt: 10% blocked, 90% allowed names that are all distinct, so a throughput run
  never wraps into cache hits; q-forwarded-lat.txt: the same mix with other allowed names, for
  the latency run that follows on the same warm process.
No allowed name equals or sits under any name of the 1M list.

    python bench/gen.py [--out DIR] [--forwarded N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

SEED = 20240601
LIST_SMALL = 100_000
LIST_BIG = 1_000_000
CACHED_NAMES = 1_000
BLOCKED_QUERIES = 100_000
FORWARDED_DEFAULT = 1_000_000
FORWARDED_LAT = 100_000
BLOCKED_SHARE = 0.10

WORDS = (
    "cloud", "secure", "update", "cdn", "mail", "app", "data", "sync", "api", "static", "img",
    "media", "news", "shop", "store", "pay", "bank", "login", "account", "auth", "portal",
    "web", "net", "host", "server", "service", "online", "digital", "smart", "fast", "global",
    "link", "track", "stat", "metric", "ad", "ads", "click", "analytics", "tag", "pixel",
    "push", "notify", "msg", "chat", "live", "stream", "video", "tv", "music", "game", "play",
    "bet", "casino", "crypto", "coin", "wallet", "trade", "market", "deal", "free", "best",
    "top", "pro", "hub", "lab", "zone", "point", "base", "core", "edge", "node", "cache",
    "proxy", "gate", "port", "dns", "apple", "micro", "soft", "google", "amazon", "face",
    "book", "tele", "gram", "cyber", "safe", "guard", "shield", "check", "scan", "health",
    "care", "med", "pharma", "travel", "hotel", "fly", "car", "auto", "home", "house", "garden",
    "food", "pizza", "coffee", "sport", "fit", "yoga", "run", "bike", "photo", "pic", "view",
    "look", "see", "find", "search", "map", "geo", "city", "metro", "north", "south", "east",
    "west", "alpha", "beta", "gamma", "delta", "omega", "prime", "nova", "star", "sun", "moon",
    "sky", "blue", "red", "green",
)
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwxz" for v in "aeiou"] + ["th", "st", "ch", "qu"]
TLDS = (("com", 45), ("net", 10), ("org", 6), ("ru", 5), ("info", 4), ("io", 4), ("xyz", 3),
        ("top", 3), ("de", 3), ("co.uk", 2), ("cn", 2), ("online", 2), ("site", 2), ("biz", 1),
        ("club", 1), ("me", 1), ("us", 1), ("cc", 1), ("pw", 1), ("su", 1), ("fr", 1),
        ("br", 1), ("in", 1), ("nl", 1))
PREFIXES = ("www", "api", "cdn", "mail", "m", "static", "img", "update", "login", "secure",
            "app", "ns1", "mx", "c2", "gw")


def _tld_table() -> list[str]:
    return [t for t, w in TLDS for _ in range(w)]


class NameGen:
    """Plausible domain names: dictionary words, pronounceable strings, digits and hyphens."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tlds = _tld_table()

    def label(self) -> str:
        r = self.rng
        kind = r.random()
        if kind < 0.35:
            return r.choice(WORDS) + r.choice(WORDS)
        if kind < 0.55:
            return f"{r.choice(WORDS)}-{r.choice(WORDS)}"
        if kind < 0.70:
            return r.choice(WORDS) + str(r.randrange(1, 10_000))
        if kind < 0.90:
            return "".join(r.choice(SYLLABLES) for _ in range(r.randrange(2, 6)))
        # algorithmically generated (DGA-like): what C2 indicator lists are full of
        return "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                       for _ in range(r.randrange(8, 17)))

    def domain(self) -> str:
        r = self.rng
        name = f"{self.label()}.{r.choice(self.tlds)}"
        if r.random() < 0.2:   # indicator lists often name a host, not the registered domain
            name = f"{r.choice(PREFIXES) if r.random() < 0.6 else self.label()}.{name}"
        return name


def unique_names(gen: NameGen, count: int, avoid: set[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        name = gen.domain()
        if name in seen or name in avoid:
            continue
        seen.add(name)
        out.append(name)
    return out


def blocked_by(name: str, blocked: set[str]) -> bool:
    """True if `name` or any parent of it is in `blocked` (the lists' subdomain rule)."""
    s = name
    while True:
        if s in blocked:
            return True
        dot = s.find(".")
        if dot < 0:
            return False
        s = s[dot + 1:]


def allowed_names(gen: NameGen, count: int, blocked: set[str], used: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        name = gen.domain()
        if name in used or blocked_by(name, blocked):
            continue
        used.add(name)
        out.append(name)
    return out


def blocked_queries(rng: random.Random, gen: NameGen, names: list[str], count: int) -> list[str]:
    out = []
    for _ in range(count):
        name = rng.choice(names)
        if rng.random() < 0.25:
            name = f"{rng.choice(PREFIXES) if rng.random() < 0.5 else gen.label()}.{name}"
        out.append(name)
    return out


def mixed(rng: random.Random, gen: NameGen, listed: list[str], allowed: Iterator[str],
          count: int) -> list[str]:
    blocked_n = int(count * BLOCKED_SHARE)
    out = blocked_queries(rng, gen, listed, blocked_n)
    out += [next(allowed) for _ in range(count - blocked_n)]
    rng.shuffle(out)
    return out


def write_list(path: Path, names: list[str], title: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(f"# {title}\n# generated by bench/gen.py (fixed seed); category: c2\n")
        f.write("\n".join(names))
        f.write("\n")


def write_queries(path: Path, names: list[str]) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(" A\n".join(names))
        f.write(" A\n")


def generate(out: Path, forwarded: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    gen = NameGen(rng)
    big = unique_names(gen, LIST_BIG, set())
    small = big[:LIST_SMALL]
    blocked_set = set(big)
    used: set[str] = set()
    cached = allowed_names(gen, CACHED_NAMES, blocked_set, used)
    allowed_n = forwarded - int(forwarded * BLOCKED_SHARE)
    lat_allowed_n = FORWARDED_LAT - int(FORWARDED_LAT * BLOCKED_SHARE)
    fresh = iter(allowed_names(gen, allowed_n + lat_allowed_n, blocked_set, used))
    out.mkdir(parents=True, exist_ok=True)
    write_list(out / "list-100k.txt", small, "bench blocklist, 100,000 names")
    write_list(out / "list-1m.txt", big, "bench blocklist, 1,000,000 names")
    write_queries(out / "q-blocked.txt", blocked_queries(rng, gen, small, BLOCKED_QUERIES))
    write_queries(out / "q-cached.txt", cached)
    write_queries(out / "q-forwarded.txt", mixed(rng, gen, small, fresh, forwarded))
    write_queries(out / "q-forwarded-lat.txt", mixed(rng, gen, small, fresh, FORWARDED_LAT))
    return {"seed": seed, "forwarded": forwarded, "list_small": LIST_SMALL, "list_big": LIST_BIG,
            "cached_names": CACHED_NAMES, "blocked_queries": BLOCKED_QUERIES,
            "forwarded_lat": FORWARDED_LAT}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    p.add_argument("--forwarded", type=int, default=FORWARDED_DEFAULT,
                   help="queries in q-forwarded.txt (more than any run sends)")
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args()
    stamp = args.out / "params.json"
    want = {"seed": args.seed, "forwarded": args.forwarded, "list_small": LIST_SMALL,
            "list_big": LIST_BIG, "cached_names": CACHED_NAMES,
            "blocked_queries": BLOCKED_QUERIES, "forwarded_lat": FORWARDED_LAT}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        print(f"gen: {args.out} is up to date", file=sys.stderr)
        return 0
    params = generate(args.out, args.forwarded, args.seed)
    stamp.write_text(json.dumps(params, indent=1) + "\n")
    print(f"gen: wrote lists and query files to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
