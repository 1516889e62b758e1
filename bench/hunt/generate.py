"""A seeded, realistic office month of DNS queries (jsonl), with injected cases and their truth.

Why this shape: hunting is judged on what a real network throws at it, so the noise here is the
noise that fools naive detectors — Zipf browsing over tens of thousands of registrable domains
(a steady trickle of never-seen, one-device domains every day), CDN hash names (each
`dXXXX.cloudfront.net` is its own registrable domain under the Public Suffix List), random
`googlevideo.com` labels, push/telemetry/NTP/update checks at fixed periods, legitimate
one-device beacons (the lone coffee machine, the EV charger), Chrome's random-label probes
(NXDOMAIN), DNSBL and DKIM lookups on the mail server, reverse lookups, iMessage link previews
right after an attachment (the Triangulation rule's honest temptation), SaaS adopted mid-month
and a device installed mid-month. On top, four cases that no list names, after the learning
period: a Triangulation-like chain on an iPhone, a DGA and a DNS tunnel on laptops, a slow beacon
on a camera. Their ground truth goes to a sidecar JSON.

Devices resolve through their own cache (a name is asked again only after its TTL), so the volume
per device-day is what a resolver really sees, not what apps ask.

    python bench/hunt/generate.py --out DIR [--seed S] [--devices N] [--days D]

Writes DIR/queries.jsonl (time-ordered lines {"time", "client", "qname", "qtype", "rcode"}),
DIR/truth.json (cases, devices, counts) and DIR/labels.json (registrable domain -> category, for
sorting false suspicions by cause).
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import random
import string
import sys
import time
from bisect import bisect
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from catalog import (
    ALNUM,
    B32,
    BACKGROUND,
    BEACON_POOL,
    C2_POOL,
    IOT_UNIQUE,
    IOT_VENDORS,
    PHONE_SDKS,
    PRINTER_VENDORS,
    REAL_APPS,
    REAL_SITES,
    SHARED_LIBS,
    SYLLABLES,
    TLDS,
    TRACKERS_REAL,
    TUNNEL_POOL,
    WORDS,
)
from publicsuffixlist import PublicSuffixList

DAY = 86400.0
HOUR = 3600.0
MIN = 60.0
# A Monday; times are the office's local time expressed as UTC seconds.
START = calendar.timegm((2025, 3, 3, 0, 0, 0))
CORP = "corp.example"
LEARNING_DAYS = 7           # sinkhole's default hunt.learning; every case starts after it

def _zipf_cum(n: int, s: float) -> list[float]:
    return list(accumulate(1.0 / (i + 1) ** s for i in range(n)))


def _pick(rng: random.Random, items: list, cum: list[float]):
    return items[bisect(cum, rng.random() * cum[-1])]


# ---------------------------------------------------------------------------------------------
# The world: every domain, once, deterministic from the seed
# ---------------------------------------------------------------------------------------------
@dataclass
class Site:
    """What one visit resolves: (name, ttl) pairs; the first is the page's own host."""

    hosts: tuple
    extra: tuple = ()       # second-page resources, sometimes


class World:
    """All the registrable domains and what each visit or app session asks for."""

    def __init__(self, seed: int, n_sites: int, n_apps: int) -> None:
        rng = random.Random(f"world:{seed}")
        self.rng = rng
        self.psl = PublicSuffixList()
        self.labels: dict[str, str] = {}
        self.used: set[str] = set()
        self.tlds = [t for t, w in TLDS for _ in range(w)]
        for d in (*C2_POOL, *TUNNEL_POOL, *BEACON_POOL):
            self.used.add(d)          # never generated as an ordinary domain
        self.trackers = self._trackers(450)
        self.tracker_cum = _zipf_cum(len(self.trackers), 1.1)
        self.sites = self._sites(n_sites)
        self.site_cum = _zipf_cum(len(self.sites), 1.0)
        self.apps = self._apps(n_apps)
        self.app_cum = _zipf_cum(len(self.apps), 0.9)
        self.senders = [self._domain("sender") for _ in range(6000)]
        self.sender_cum = _zipf_cum(len(self.senders), 1.0)
        # SaaS the company adopts during the month: (day, pilot devices, then everyone).
        self.new_saas = [self._domain("saas-new") for _ in range(3)]
        self.fleet_domain = self._domain("iot-fleet-new")   # a TV firmware update, day 17
        self.new_vendor = self._domain("iot-new-device")    # a display installed on day 16
        for reg, cat in (("apple.com", "os"), ("icloud.com", "os"), ("icloud-content.com", "os"),
                         ("microsoft.com", "os"), ("windowsupdate.com", "os"),
                         ("microsoftonline.com", "os"), ("office365.com", "saas"),
                         ("gstatic.com", "os"), ("google.com", "os"), ("googleapis.com", "os"),
                         ("android.com", "os"), ("googlevideo.com", "cdn"),
                         ("akamaiedge.net", "cdn"), ("cloudfront.net", "cdn"),
                         ("spamhaus.org", "dnsbl"), ("spamcop.net", "dnsbl"),
                         ("surbl.org", "dnsbl"), (CORP, "internal"), ("in-addr.arpa", "reverse"),
                         ("falcon-edr.io", "os"), ("datadoghq.eu", "server-infra"),
                         ("debian.org", "server-infra"), ("ubuntu.com", "server-infra"),
                         ("docker.io", "server-infra"), ("github.com", "server-infra"),
                         ("amazonaws.com", "server-infra"), ("pythonhosted.org", "server-infra"),
                         ("pypi.org", "server-infra"), ("npmjs.org", "server-infra"),
                         ("msn.com", "os"), ("pool.ntp.org", "ntp")):
            self.labels.setdefault(reg, cat)
        for kind, _reg, hosts, *_ in IOT_VENDORS:
            for h in hosts:
                self.labels.setdefault(self.registrable(h), f"iot-{kind}")
        for _kind, _reg, hosts, *_ in IOT_UNIQUE:
            for h in hosts:
                self.labels[self.registrable(h)] = "iot-unique-vendor"
        for _reg, hosts, _period in PRINTER_VENDORS:
            for h in hosts:
                self.labels[self.registrable(h)] = "printer-vendor"

    # -- names -----------------------------------------------------------------------------
    def _word(self) -> str:
        r = self.rng
        k = r.random()
        if k < 0.45:
            return r.choice(WORDS) + r.choice(WORDS)
        if k < 0.60:
            return f"{r.choice(WORDS)}-{r.choice(WORDS)}"
        if k < 0.70:
            return r.choice(WORDS) + r.choice(WORDS) + r.choice(WORDS)
        if k < 0.78:
            return r.choice(WORDS) + str(r.randrange(1, 1000))
        return "".join(r.choice(SYLLABLES) for _ in range(r.randrange(2, 5)))

    def _domain(self, category: str, tld: str | None = None) -> str:
        while True:
            d = f"{self._word()}.{tld or self.rng.choice(self.tlds)}"
            # A made-up name can happen to be a real public suffix (roxa.org is one, in the
            # PSL's private section): then every host under it is its own registrable domain.
            if d not in self.used and self.psl.privatesuffix(d) == d:
                self.used.add(d)
                self.labels[d] = category
                return d

    def _hash(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.rng.choices(alphabet, k=n))

    def registrable(self, name: str) -> str:
        return self.psl.privatesuffix(name) or name

    def _trackers(self, n: int) -> list[tuple]:
        out = []
        for spec in TRACKERS_REAL:
            reg, hosts = spec.split(":")
            out.append(tuple((f"{h}.{reg}", 300) for h in hosts.split(",")))
            self.labels.setdefault(reg, "tracker")
        while len(out) < n:
            d = self._domain("tracker")
            host = self.rng.choice(("px", "sync", "cdn", "t", "ads", "match", "b", "s"))
            out.append(((f"{host}.{d}", self.rng.choice((60, 300, 300, 3600))),))
        return out

    def _sites(self, n: int) -> list[Site]:
        r = self.rng
        out = []
        for spec in REAL_SITES:
            names = spec.split()
            out.append(Site(tuple((h, 300) for h in names), tuple(self._subresources(2))))
            for h in names:
                self.labels.setdefault(self.registrable(h), "popular")
        while len(out) < n:
            d = self._domain("site")
            hosts = [(r.choice((f"www.{d}", f"www.{d}", d)), r.choice((60, 300, 300, 3600)))]
            if r.random() < 0.5:
                hosts.append((f"{r.choice(('static', 'cdn', 'img', 'assets', 'api'))}.{d}", 300))
            if r.random() < 0.22:       # the site's own CDN domain (fbcdn.net, twimg.com style)
                own = self._domain("site-cdn", r.choice(("com", "net")))
                hosts.append((f"{r.choice(('static', 'img', 'cdn', 'media'))}.{own}", 3600))
            if r.random() < 0.18:       # a CloudFront distribution: its own registrable domain
                cf = f"d{self._hash(13)}.cloudfront.net"
                self.labels[cf] = "cdn-hash"
                hosts.append((cf, 60))
            if r.random() < 0.08:
                hosts.append((f"e{r.randrange(1, 9999)}.dsc{r.choice('abdgx')}.akamaiedge.net",
                               20))
            hosts.extend(self._subresources(r.choice((0, 1, 2, 2, 3, 4, 6))))
            out.append(Site(tuple(hosts), tuple(self._subresources(r.choice((0, 1, 2))))))
        return out

    def _subresources(self, k: int) -> list[tuple]:
        r = self.rng
        out = []
        for _ in range(k):
            if r.random() < 0.35:
                out.append((r.choice(SHARED_LIBS), 3600))
            else:
                out.extend(_pick(r, self.trackers, self.tracker_cum))
        return out

    def _apps(self, n: int) -> list[tuple]:
        r = self.rng
        out = []
        for spec in REAL_APPS:
            names = spec.split()
            out.append(tuple((h, 300) for h in names))
            for h in names:
                self.labels.setdefault(self.registrable(h), "app")
        while len(out) < n:
            d = self._domain("app", r.choice(("com", "com", "io", "app", "net", "co")))
            hosts = [(f"{r.choice(('api', 'app', 'mobile', 'gw', 'prod-api'))}.{d}", 300)]
            if r.random() < 0.3:
                hosts.append((f"{r.choice(('cdn', 'img', 'media'))}.{d}", 3600))
            for sdk in r.sample(PHONE_SDKS, r.choice((1, 2, 3, 4))):
                hosts.append((sdk, 600))
            out.append(tuple(hosts))
        return out


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------
QTYPES = {"ios": ("A", "AAAA", "HTTPS"), "mac": ("A", "AAAA", "HTTPS"), "win": ("A", "AAAA"),
          "android": ("A", "AAAA"), "printer": ("A",), "iot": ("A",), "server": ("A", "AAAA")}


@dataclass
class Device:
    ip: str
    name: str
    kind: str               # phone | laptop | printer | iot | server | guest
    os: str                 # ios | android | mac | win | printer | iot | server
    role: str = ""          # iot: camera/tv/...; server: mail/web/build/...
    vendor: tuple = ()
    apps: list = field(default_factory=list)
    desktop: bool = False   # stays on at night (desk PC, docked laptop)
    vacation: set = field(default_factory=set)
    forced: set = field(default_factory=set)   # days in the office, whatever (case days)
    cache: dict = field(default_factory=dict)
    phase: float = 0.0
    first_day: int = 0
    last_day: int = 10_000


def make_devices(n: int, days: int, seed: int, world: World) -> list[Device]:
    """An office of n devices (n >= 40): mostly people's phones and laptops, then the fixed
    kit. The mix is a real office's, scaled."""
    rng = random.Random(f"devices:{seed}")
    share = (("ios", 0.18), ("android", 0.11), ("win", 0.24), ("mac", 0.15), ("printer", 0.04),
             ("camera", 0.08), ("tv", 0.03), ("room", 0.03), ("sensor", 0.04), ("unique", 0.02),
             ("server", 0.06))
    counts = {k: max(1, round(n * s)) for k, s in share}
    counts["unique"] = min(len(IOT_UNIQUE), counts["unique"])
    counts["win"] += n - sum(counts.values())
    out: list[Device] = []
    subnet = {"ios": 1, "android": 1, "win": 2, "mac": 2, "printer": 3, "camera": 4, "tv": 4,
              "room": 4, "sensor": 4, "unique": 4, "server": 5}
    seq: dict[int, int] = {}

    def ip(kind: str) -> str:
        s = subnet[kind]
        seq[s] = seq.get(s, 9) + 1
        return f"10.20.{s}.{seq[s]}"

    for kind, _ in share:
        for i in range(counts[kind]):
            if kind in ("ios", "android", "win", "mac"):
                d = Device(ip(kind), f"{kind}-{i:03d}", "phone" if kind in ("ios", "android")
                           else "laptop", kind)
                d.desktop = d.kind == "laptop" and rng.random() < 0.35
                if d.kind == "phone":
                    k = rng.randrange(20, 60)
                    d.apps = sorted({bisect(world.app_cum, rng.random() * world.app_cum[-1])
                                     for _ in range(k)})
                if rng.random() < 0.3:          # a week off at some point of the month
                    w = rng.randrange(0, max(1, days - 5))
                    d.vacation = set(range(w, w + 5))
                d.vacation |= {day for day in range(days) if rng.random() < 0.06}
            elif kind == "printer":
                d = Device(ip(kind), f"printer-{i:02d}", "printer", "printer",
                           vendor=PRINTER_VENDORS[i % len(PRINTER_VENDORS)])
            elif kind == "server":
                role = ("mail", "build", "web", "web", "backup", "web", "build", "nas", "web",
                        "monitor")[i % 10]
                d = Device(ip(kind), f"srv-{role}-{i:02d}", "server", "server", role)
            elif kind == "unique":
                d = Device(ip(kind), f"iot-{IOT_UNIQUE[i][0]}", "iot", "iot", "unique",
                           IOT_UNIQUE[i])
            else:
                vendors = [v for v in IOT_VENDORS if v[0] == kind]
                v = vendors[i % len(vendors)]
                d = Device(ip(kind), f"{kind}-{i:02d}", "iot", "iot", kind, v)
            d.phase = rng.random()
            out.append(d)
    # Installed mid-month: a meeting-room display of a vendor nobody else here uses.
    if days > 16:
        d = Device(ip("room"), "room-display-new", "iot", "iot", "newdisplay",
                   ("newdisplay", world.new_vendor, (f"api.{world.new_vendor}",
                                                     f"ota.{world.new_vendor}"), 600, 0.02))
        d.first_day = 16
        out.append(d)
    return out


# ---------------------------------------------------------------------------------------------
# One device-day
# ---------------------------------------------------------------------------------------------
class DayGen:
    """Generates one device's queries for one day into `out` as (time, ip, qname, qtype, rcode)."""

    def __init__(self, world: World, day: int, d0: float, out: list) -> None:
        self.world = world
        self.day = day
        self.d0 = d0
        self.out = out
        self.weekend = day % 7 >= 5

    def ask(self, dev: Device, t: float, name: str, ttl: float, rcode: int = 0,
            qtypes: tuple | None = None, force: bool = False) -> None:
        """Resolve `name` at `t` unless the device still caches it."""
        if not force:
            exp = dev.cache.get(name)
            if exp is not None and exp > t:
                return
        dev.cache[name] = t + (ttl if rcode == 0 else 900)
        out = self.out
        for i, qt in enumerate(qtypes or QTYPES[dev.os]):
            out.append((t + i * 0.0007, dev.ip, name, qt, rcode))

    # -- presence ---------------------------------------------------------------------------
    def presence(self, dev: Device, rng: random.Random) -> tuple[list, list]:
        """(on intervals, active intervals) in seconds from midnight."""
        if dev.kind in ("printer", "iot", "server"):
            if self.day < dev.first_day:
                return [], []
            start = 10 * HOUR + rng.random() * HOUR if self.day == dev.first_day else 0.0
            on = [(start, DAY)]
            if dev.kind == "server" or dev.role in ("tv", "room"):
                act = [] if self.weekend else [(8 * HOUR, 18.5 * HOUR)]
            else:
                act = []
            return on, act
        forced = self.day in dev.forced
        if self.day in dev.vacation and not forced:
            return [], []
        if self.weekend:
            if rng.random() < 0.07:
                a = rng.uniform(10, 16) * HOUR
                iv = [(a, a + rng.uniform(0.5, 3) * HOUR)]
                return iv, iv
            return ([(0.0, DAY)] if dev.desktop else []), []
        if rng.random() < 0.15 and not forced:        # working from home
            return ([(0.0, DAY)] if dev.desktop else []), []
        arrive = rng.gauss(8.75, 0.6) * HOUR
        leave = max(arrive + 3 * HOUR, rng.gauss(17.6, 0.8) * HOUR)
        if forced:
            arrive, leave = min(arrive, 9.4 * HOUR), max(leave, 17.0 * HOUR)
        lunch = rng.gauss(12.4, 0.3) * HOUR
        active = [(arrive, lunch), (lunch + rng.uniform(0.5, 1.0) * HOUR, leave)]
        if dev.kind == "laptop" and rng.random() < 0.1:
            late = rng.uniform(20, 22.5) * HOUR   # an evening session (laptops only)
            active.append((late, late + rng.uniform(0.3, 1.2) * HOUR))
        on = [(0.0, DAY)] if dev.desktop else [(arrive, leave)] + active[2:]
        return on, active

    # -- activity ---------------------------------------------------------------------------
    def periodic(self, dev: Device, rng: random.Random, ivs: list, host: str, period: float,
                 jitter: float, ttl: float, qtypes: tuple | None = None) -> None:
        """A fixed-period check (update, telemetry, heartbeat) while the device is on."""
        d0 = self.d0
        phase = (dev.phase * 7919 + hash_str(host)) % period
        for a, b in ivs:
            k = math.ceil((a - phase) / period)
            t = phase + k * period
            while t < b:
                tt = t + (rng.gauss(0, jitter * period) if jitter else 0.0)
                if a <= tt < b:
                    self.ask(dev, d0 + tt, host, ttl, qtypes=qtypes)
                t += period

    def poisson(self, rng: random.Random, ivs: list, per_hour: float):
        for a, b in ivs:
            t = a
            while True:
                t += rng.expovariate(per_hour / HOUR)
                if t >= b:
                    break
                yield t

    def visit(self, dev: Device, t: float, site: Site, rng: random.Random) -> None:
        for i, (name, ttl) in enumerate(site.hosts):
            self.ask(dev, t + (0.05 + i * 0.08 * rng.random() if i else 0.0), name, ttl)
        if site.extra and rng.random() < 0.4:
            t2 = t + rng.uniform(5, 90)
            for name, ttl in site.extra:
                self.ask(dev, t2, name, ttl)

    def browse(self, dev: Device, rng: random.Random, ivs: list, per_hour: float) -> None:
        w = self.world
        for t in self.poisson(rng, ivs, per_hour):
            t += self.d0
            if rng.random() < 0.01:                   # a typo: a name that does not exist
                typo = f"{w._word()}.{rng.choice(('com', 'net'))}"
                w.labels.setdefault(typo, "typo-nxdomain")
                self.ask(dev, t, f"www.{typo}", 0, rcode=3)
                continue
            self.visit(dev, t, _pick(rng, w.sites, w.site_cum), rng)
            if rng.random() < 0.06:                   # a video: random googlevideo labels
                for _ in range(rng.randrange(1, 5)):
                    self.ask(dev, t + rng.uniform(1, 600),
                             f"rr{rng.randrange(1, 7)}---sn-{w._hash(8)}.googlevideo.com", 300)

    def phone(self, dev: Device, rng: random.Random, on: list, active: list) -> None:
        w = self.world
        d0 = self.d0
        if not dev.apps:
            return
        app_cum = _zipf_cum(len(dev.apps), 1.2)
        for t in self.poisson(rng, active, 5.0):      # app sessions in the foreground
            app = w.apps[dev.apps[bisect(app_cum, rng.random() * app_cum[-1])]]
            for i, (name, ttl) in enumerate(app):
                self.ask(dev, d0 + t + i * 0.3, name, ttl)
        for t in self.poisson(rng, on, 1.0):          # background refresh
            app = w.apps[rng.choice(dev.apps)]
            self.ask(dev, d0 + t, app[0][0], app[0][1])
        self.browse(dev, rng, active, 1.5)
        if dev.os == "ios":                           # iMessage: ess, attachments, links
            for t in self.poisson(rng, on, 1.2):
                t += d0
                self.ask(dev, t, rng.choice(("query.ess.apple.com", "identity.ess.apple.com",
                                             "static.ess.apple.com")), 120)
                if rng.random() < 0.35:
                    self.ask(dev, t + rng.uniform(1, 8),
                             rng.choice(("cvws.icloud-content.com",
                                         f"p{rng.randrange(20, 90)}-content.icloud.com")), 60)
                if rng.random() < 0.15:               # a link preview, then maybe a tap
                    site = _pick(rng, w.sites, w.site_cum)
                    self.visit(dev, t + rng.uniform(2, 15), site, rng)
                    if rng.random() < 0.5:
                        self.visit(dev, t + rng.uniform(20, 240), site, rng)
            for t in self.poisson(rng, on, 2.5):      # APNs reconnects: a random courier
                self.ask(dev, d0 + t, f"{rng.randrange(1, 51)}-courier.push.apple.com", 60)

    def laptop(self, dev: Device, rng: random.Random, on: list, active: list) -> None:
        w = self.world
        d0 = self.d0
        corp = ("intranet", "fs01", "wiki", "jira", "vpn", "mail", "sso", "print", "git", "hr")
        for a, _b in active:                          # wake-up / login burst
            t = d0 + a
            if dev.os == "win":
                self.ask(dev, t, "www.msftconnecttest.com", 300)
                self.ask(dev, t + 0.2, "dns.msftncsi.com", 300)
                self.ask(dev, t + 0.3, f"_ldap._tcp.dc._msdcs.{CORP}", 600, qtypes=("SRV",))
                self.ask(dev, t + 0.4, f"_kerberos._tcp.{CORP}", 600, qtypes=("SRV",))
                self.ask(dev, t + 0.5, f"wpad.{CORP}", 0, rcode=3)
                self.ask(dev, t + 0.6, "_dns.resolver.arpa", 0, rcode=3, qtypes=("SVCB",))
            else:
                self.ask(dev, t, "captive.apple.com", 60)
            if rng.random() < 0.8:                    # Chrome's three random-label probes
                for _ in range(3):
                    self.ask(dev, t + 1 + rng.random(),
                             f"{w._hash(rng.randrange(7, 16), string.ascii_lowercase)}.{CORP}",
                             0, rcode=3)
        for t in self.poisson(rng, active, 6.0):      # intranet and work SaaS
            self.ask(dev, d0 + t, f"{rng.choice(corp)}.{CORP}", 600)
        for name in ("teams.microsoft.com", "slack.com", "app.slack.com", "zoom.us",
                     "acme.atlassian.net", "acme.my.salesforce.com", "outlook.office.com",
                     "github.com", "api.github.com", "www.notion.so"):
            if hash_str(dev.ip + name) % 3:
                self.periodic(dev, rng, active, name, 1800, 0.5, 300)
        if rng.random() < 0.4:                        # a print job: the printer's name
            for t in self.poisson(rng, active, 0.3):
                self.ask(dev, d0 + t, f"print.{CORP}", 600)
        self.browse(dev, rng, active, 10.0)
        # Company SaaS adopted during the month: a pilot, then everyone.
        for k, saas in enumerate(w.new_saas):
            pilot_day = 9 + 4 * k
            user = (self.day > pilot_day and hash_str(dev.ip + saas) % 4 != 0) or (
                self.day == pilot_day and hash_str(dev.ip + saas) % 40 == 0)
            if user:
                for host in (f"app.{saas}", f"api.{saas}", f"cdn.{saas}"):
                    self.periodic(dev, rng, active, host, 2700, 0.4, 300)

    def background(self, dev: Device, rng: random.Random, on: list, active: list) -> None:
        # System daemons ask A and AAAA; the HTTPS type comes from browsers and apps.
        qtypes = ("A", "AAAA") if dev.os in ("ios", "mac", "win", "android", "server") else None
        for host, period, jitter, ttl, when in BACKGROUND.get(dev.os, ()):
            if when == "daily":
                if on:
                    a, b = on[0]
                    self.ask(dev, self.d0 + rng.uniform(a, min(b, a + 2 * HOUR)), host, ttl,
                             qtypes=qtypes)
            else:
                self.periodic(dev, rng, on if when == "on" else active, host, period, jitter,
                              ttl, qtypes)

    def printer(self, dev: Device, rng: random.Random, on: list, active: list) -> None:
        reg, hosts, period = dev.vendor
        for h in hosts:
            self.periodic(dev, rng, on, h, period, 0.01, 300)
        self.periodic(dev, rng, on, f"{int(dev.phase * 4)}.pool.ntp.org", 3600, 0.0, 300)
        if not self.weekend:                          # reverse lookups of print clients
            for t in self.poisson(rng, [(8 * HOUR, 18 * HOUR)], 4):
                self.ask(dev, self.d0 + t, f"{rng.randrange(10, 250)}.2.20.10.in-addr.arpa", 600,
                         qtypes=("PTR",))

    def iot(self, dev: Device, rng: random.Random, on: list, active: list) -> None:
        w = self.world
        _kind, _reg, hosts, period, jitter = dev.vendor
        for h in hosts:
            self.periodic(dev, rng, on, h, period, jitter, 60)
        self.periodic(dev, rng, on, "pool.ntp.org", 3600, 0.0, 300)
        if dev.role == "tv" and self.day >= 17:       # firmware update: a new analytics host
            self.periodic(dev, rng, on, f"log.{w.fleet_domain}", 3600, 0.1, 300)
        if dev.role in ("tv", "room"):                # meetings and videos in the rooms
            for t in self.poisson(rng, active, 1.0):
                t += self.d0
                self.ask(dev, t, rng.choice(("zoom.us", "teams.microsoft.com", "www.youtube.com",
                                             "www.netflix.com")), 300)
                for _ in range(rng.randrange(0, 4)):
                    self.ask(dev, t + rng.uniform(1, 900),
                             f"rr{rng.randrange(1, 7)}---sn-{w._hash(8)}.googlevideo.com", 300)

    def server(self, dev: Device, rng: random.Random, on: list, active: list) -> None:
        d0 = self.d0
        self.periodic(dev, rng, on, f"db01.{CORP}", 900, 0.01, 900)
        if dev.role == "mail":
            self.mail(dev, rng, on)
        elif dev.role == "build":
            for t in self.poisson(rng, active, 3.0):      # CI builds pull packages
                t += d0
                for name in ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org",
                             "github.com", "codeload.github.com", "objects.githubusercontent.com",
                             "production.cloudflare.docker.com", "dl-cdn.alpinelinux.org"):
                    if rng.random() < 0.6:
                        self.ask(dev, t + rng.uniform(0, 120), name, 60)
        elif dev.role == "web":
            for t in self.poisson(rng, on, 20.0):         # outbound API calls, webhooks
                self.ask(dev, d0 + t, rng.choice(("api.stripe.com", "hooks.slack.com",
                                                  "api.sendgrid.com", "oauth2.googleapis.com",
                                                  "sqs.eu-west-1.amazonaws.com")), 60)
            for t in self.poisson(rng, on, 6.0):          # access-log reverse lookups
                self.ask(dev, d0 + t, ".".join(str(rng.randrange(1, 255)) for _ in range(4))
                         + ".in-addr.arpa", 3600, rcode=rng.choice((0, 0, 3)), qtypes=("PTR",))
        elif dev.role == "backup":
            t = d0 + 2 * HOUR + rng.uniform(0, 60)
            for i in range(40):
                self.ask(dev, t + i * 90, "s3.eu-central-1.amazonaws.com", 60)
        self.background(dev, rng, on, active)

    def mail(self, dev: Device, rng: random.Random, on: list) -> None:
        """Inbound mail: SPF/DKIM/DMARC TXT for each sender, DNSBL per connecting address."""
        w = self.world
        rate = 6.0 if self.weekend else 18.0
        for t in self.poisson(rng, on, rate):
            t += self.d0
            rev = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
            listed = rng.random() < 0.25
            self.ask(dev, t, f"{rev}.zen.spamhaus.org", 300, rcode=0 if listed else 3,
                     qtypes=("A",))
            self.ask(dev, t + 0.01, f"{rev}.bl.spamcop.net", 300, rcode=3, qtypes=("A",))
            self.ask(dev, t + 0.02, f"{rev}.in-addr.arpa", 3600, rcode=rng.choice((0, 3)),
                     qtypes=("PTR",))
            if listed:
                continue
            if rng.random() < 0.3:                    # spam from a throwaway domain
                sender = w._domain("spam-sender")
            else:
                sender = _pick(rng, w.senders, w.sender_cum)
            sel = rng.choice(("google", "selector1", "s1", "k1", "default", w._hash(8)))
            for i, name in enumerate((sender, f"_dmarc.{sender}", f"{sel}._domainkey.{sender}")):
                self.ask(dev, t + 0.1 + i * 0.01, name, 3600, qtypes=("TXT",))
            self.ask(dev, t + 0.2, f"{sender}.multi.surbl.org", 300, rcode=3, qtypes=("A",))

    def device(self, dev: Device, seed: int) -> bool:
        """All of one device's queries today; True when it was on the network at all."""
        rng = random.Random(f"{seed}:{dev.ip}:{self.day}")
        on, active = self.presence(dev, rng)
        if not on:
            return False
        n0 = len(self.out)
        dev.cache = {k: v for k, v in dev.cache.items() if v > self.d0}
        if dev.kind == "phone":
            self.phone(dev, rng, on, active)
            self.background(dev, rng, on, active)
        elif dev.kind in ("laptop", "guest"):
            self.laptop(dev, rng, on, active)
            self.background(dev, rng, on, active)
        elif dev.kind == "printer":
            self.printer(dev, rng, on, active)
        elif dev.kind == "iot":
            self.iot(dev, rng, on, active)
        else:
            self.server(dev, rng, on, active)
        return len(self.out) > n0


def hash_str(s: str) -> int:
    """A stable hash (str hash is salted per process)."""
    h = 2166136261
    for ch in s.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


# ---------------------------------------------------------------------------------------------
# Injected cases
# ---------------------------------------------------------------------------------------------
def plan_cases(devices: list[Device], days: int, seed: int, world: World) -> list[dict]:
    """Pick the victims and the days: all after the learning period, on working days."""
    rng = random.Random(f"cases:{seed}")
    if days < LEARNING_DAYS + 3:
        raise SystemExit(f"generate: need at least {LEARNING_DAYS + 3} days (cases start after "
                         f"the {LEARNING_DAYS}-day learning period)")
    quick = days < 14
    d_beacon, d_tri, d_dga, d_tun = (7, 7, 8, 9) if quick else (8, 9, 11, 15)

    def victim(os_: str, role: str = "") -> Device:
        pool = [d for d in devices if d.os == os_ and (not role or d.role == role)]
        return pool[rng.randrange(len(pool))]

    iphone, dga_pc, tun_pc = victim("ios"), victim("win"), victim("mac")
    camera = victim("iot", "camera")
    for d, ds in ((iphone, range(d_tri, min(days, d_tri + 3))), (dga_pc, (d_dga,)),
                  (tun_pc, (d_tun,))):
        d.forced |= set(ds)
    c2 = rng.sample(C2_POOL, 2)
    beacon_days = min(4, days - d_beacon)
    return [
        {"id": "triangulation", "client": iphone.ip, "device": iphone.name, "day": d_tri,
         "start": START + d_tri * DAY + 10.6 * HOUR, "domains": c2,
         "description": "iMessage (ess.apple.com), an attachment fetch (icloud-content.com), "
                        "then two never-seen domains within minutes, then both beaconed "
                        "about hourly (jitter 2%) while the phone is in the office",
         "beacon_days": min(3, days - d_tri)},
        {"id": "dga", "client": dga_pc.ip, "device": dga_pc.name, "day": d_dga,
         "start": START + d_dga * DAY + 14.08 * HOUR, "domains": [],
         "description": "a DGA: bursts of 10-25 random-looking names every 5-10 min, NXDOMAIN "
                        "but one a day that resolves", "hours": 4.0},
        {"id": "tunnel", "client": tun_pc.ip, "device": tun_pc.name, "day": d_tun,
         "start": START + d_tun * DAY + 9.67 * HOUR, "domains": [rng.choice(TUNNEL_POOL)],
         "description": "a DNS tunnel: TXT queries of unique long base32 subdomains of one "
                        "never-seen domain, an idle poll every ~2 s and upload bursts at 20 q/s",
         "hours": 1.5 if quick else 6.8},
        {"id": "slow_beacon", "client": camera.ip, "device": camera.name, "day": d_beacon,
         "start": START + d_beacon * DAY + 8.0 * HOUR, "domains": [rng.choice(BEACON_POOL)],
         "description": "a camera asks one never-seen domain every ~30 min (jitter 45 s), "
                        f"day and night, for {beacon_days} days", "beacon_days": beacon_days},
    ]


def inject(case: dict, day: int, out: list, dev: Device, on: list, seed: int) -> None:
    """Append the case's queries for `day` (and fill in its domain list as it goes)."""
    rng = random.Random(f"inject:{seed}:{case['id']}:{day}")
    d0 = START + day * DAY
    ip = dev.ip

    def q(t: float, name: str, qtype: str = "A", rcode: int = 0) -> bool:
        """Only while the device is on the network (a laptop that leaves takes its malware)."""
        s = t - d0
        if any(a <= s < b for a, b in on):
            out.append((t, ip, name, qtype, rcode))
            return True
        return False

    cid = case["id"]
    if cid == "triangulation" and case["day"] <= day < case["day"] + case["beacon_days"]:
        c1, c2 = case["domains"]
        if day == case["day"]:
            t0 = case["start"]
            for i, qt in enumerate(("A", "AAAA", "HTTPS")):
                q(t0 + i * 0.001, "identity.ess.apple.com", qt)
                q(t0 + 2.1 + i * 0.001, "query.ess.apple.com", qt)
                q(t0 + 24.0 + i * 0.001, "cvws.icloud-content.com", qt)
            t1 = t0 + 24 + rng.uniform(50, 110)
            t2 = t1 + rng.uniform(100, 200)
            for qt in ("A", "AAAA"):
                q(t1, f"www.{c1}", qt)
                q(t2, f"api.{c2}", qt)
            case["first_c2"] = [t1, t2]
            start = t2
        else:
            start = d0
        for a, b in on:                               # hourly while the phone is here
            for host, off in ((f"www.{c1}", 600.0), (f"api.{c2}", 1900.0)):
                t = max(a + d0, start) + off
                while t < b + d0:
                    q(t, host)
                    q(t + 0.001, host, "AAAA")
                    t += 3600 * (1 + rng.gauss(0, 0.02))
    elif cid == "dga" and day == case["day"]:
        t = case["start"]
        end = t + case["hours"] * HOUR
        tlds = ("com", "net", "org", "info", "biz", "xyz", "top")
        hit_at = rng.randrange(30, 60)
        n = 0
        while t < end:
            for _ in range(rng.randrange(10, 26)):
                name = "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(12, 19)))
                name = f"{name}.{rng.choice(tlds)}"
                n += 1
                rcode = 0 if n == hit_at else 3
                if q(t, name, "A", rcode):
                    case["domains"].append(name)
                    if rcode == 0:
                        case["resolved"] = name
                t += rng.uniform(0.2, 1.5)
            t += rng.uniform(300, 600)
    elif cid == "tunnel" and day == case["day"]:
        dom = case["domains"][0]
        t = case["start"]
        end = t + case["hours"] * HOUR
        bursts = sorted(rng.uniform(t, end) for _ in range(3))
        seqno = 0
        while t < end:
            if bursts and t >= bursts[0]:
                bursts.pop(0)
                for _ in range(rng.randrange(800, 2000)):   # an upload at ~20 q/s
                    seqno += 1
                    a = "".join(rng.choices(B32, k=63))
                    b = "".join(rng.choices(B32, k=rng.randrange(20, 50)))
                    q(t, f"{a}.{b}.{seqno:05x}.t.{dom}", "TXT")
                    t += rng.expovariate(20.0)
            seqno += 1
            poll = "".join(rng.choices(B32, k=rng.randrange(10, 20)))
            q(t, f"{poll}.{seqno:05x}.p.{dom}", "TXT")
            t += rng.uniform(1.0, 3.0)
    elif cid == "slow_beacon" and case["day"] <= day < case["day"] + case["beacon_days"]:
        dom = case["domains"][0]
        t = case["start"] if day == case["day"] else d0 + rng.uniform(0, 1800)
        while t < d0 + DAY:
            q(t, f"update.{dom}")
            t += 1800 + rng.gauss(0, 45)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def generate(out_dir: Path, seed: int, n_devices: int, days: int, sites: int,
             progress: bool = True) -> dict:
    t_start = time.monotonic()
    world = World(seed, sites, max(600, sites // 15))
    devices = make_devices(n_devices, days, seed, world)
    cases = plan_cases(devices, days, seed, world)
    by_ip = {d.ip: d for d in devices}
    guests = 0
    device_days = 0
    total = 0
    per_kind: dict[str, int] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "queries.jsonl.tmp"
    grng = random.Random(f"guests:{seed}")
    progress = progress and sys.stderr.isatty()
    with open(tmp, "w", buffering=1 << 20) as f:
        for day in range(days):
            d0 = START + day * DAY
            events: list = []
            gen = DayGen(world, day, d0, events)
            todays = list(devices)
            if day % 7 < 5:                           # visitors: a phone each, one day
                for _ in range(max(1, n_devices // 100)):
                    guests += 1
                    g = Device(f"10.20.200.{guests % 250 + 2}", f"guest-{guests}", "phone",
                               grng.choice(("ios", "android")))
                    g.apps = sorted({bisect(world.app_cum, grng.random() * world.app_cum[-1])
                                     for _ in range(grng.randrange(20, 60))})
                    g.phase = grng.random()
                    todays.append(g)
            for dev in todays:
                n0 = len(events)
                if gen.device(dev, seed):
                    device_days += 1
                per_kind[dev.os] = per_kind.get(dev.os, 0) + len(events) - n0
            for case in cases:
                dev = by_ip[case["client"]]
                # The same draw as gen.device's: the victim's own hours today.
                on = gen.presence(dev, random.Random(f"{seed}:{dev.ip}:{day}"))[0]
                n0 = len(events)
                inject(case, day, events, dev, on, seed)
                case["queries"] = case.get("queries", 0) + len(events) - n0
            events = [e for e in events if d0 <= e[0] < d0 + DAY]
            events.sort(key=lambda e: e[0])
            f.writelines(f'{{"time": {t:.3f}, "client": "{ip}", "qname": "{n}", '
                         f'"qtype": "{qt}", "rcode": {rc}}}\n' for t, ip, n, qt, rc in events)
            total += len(events)
            if progress:
                print(f"\rgenerate: day {day + 1}/{days}, {total:,} queries", end="",
                      file=sys.stderr, flush=True)
    tmp.replace(out_dir / "queries.jsonl")
    if progress:
        print(file=sys.stderr)
    for case in cases:
        case["registrable"] = sorted({world.registrable(d) for d in case["domains"]})
        case["end"] = case["start"] + max(case.get("beacon_days", 0) * DAY,
                                          case.get("hours", 0) * HOUR)
    truth = {
        "seed": seed, "devices": len(devices), "days": days, "start": START,
        "end": START + days * DAY, "learning_days": LEARNING_DAYS, "sites": sites,
        "observations": total, "device_days": device_days, "guests": guests,
        "per_os": per_kind, "cases": cases,
        "device_list": [{"ip": d.ip, "name": d.name, "kind": d.kind, "os": d.os,
                         "role": d.role} for d in devices],
        "hard_negatives": {
            "saas_new": world.new_saas, "iot_fleet_new": world.fleet_domain,
            "iot_new_device": world.new_vendor,
            "iot_unique_vendor": [v[1] for v in IOT_UNIQUE]},
        "generate_seconds": round(time.monotonic() - t_start, 1),
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    (out_dir / "labels.json").write_text(json.dumps(world.labels))
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--sites", type=int, default=40_000, help="registrable web sites (Zipf)")
    args = ap.parse_args(argv)
    if args.devices < 40:
        ap.error("--devices: at least 40 (every kind of device must be there)")
    truth = generate(args.out, args.seed, args.devices, args.days, args.sites)
    print(f"generate: {truth['observations']:,} queries, {truth['device_days']:,} device-days "
          f"({truth['observations'] / max(1, truth['device_days']):.0f} per device-day), "
          f"{truth['generate_seconds']} s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
