"""The hunting engine (issue 14): each signal on small crafted traffic, positive and negative,
with explicit timestamps — no sleeps, no wall clock (the hunter's clock is pinned)."""

from __future__ import annotations

import random
import sqlite3
import string
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from sinkhole.config.schema import Hunt
from sinkhole.events import Observation
from sinkhole.hunt import Hunter, HuntStateError, SequenceError, read_suspicions
from sinkhole.hunt import engine as engine_mod
from sinkhole.hunt.domains import ALLOWED, SINGLE, SKIP, TRACK, classify, quiet_set, registrable
from sinkhole.hunt.sequences import load_rules, parse_rules

DATA = Path(__file__).parent / "data" / "hunt"
T0 = 1_700_000_000.0
LEARNING = 3600.0           # one hour of learning keeps the traffic short
AFTER = T0 + 2 * LEARNING   # every crafted case happens after it
PHONE, LAPTOP, OTHER = "10.0.0.5", "10.0.0.6", "10.0.0.7"
KNOWN = ("www.example.com", "news.example.org")


def obs(t: float, ip: str, qname: str, qtype: str = "A", rcode: int | None = 0) -> Observation:
    return Observation(t, ip, qname, qtype, client_name=None, rcode=rcode)


class Run:
    """A hunter on a temporary hunt.db, with the devices known from the learning period."""

    def __init__(self, tmp_path: Path, **cfg: object) -> None:
        self.db = str(tmp_path / "hunt.db")
        self.cfg = Hunt(learning=LEARNING, **cfg)  # type: ignore[arg-type]
        self.hunter = Hunter(self.cfg, self.db, clock=lambda: 0.0)
        self.reports: list = []

    def learn(self, *ips: str) -> Run:
        for i, ip in enumerate(ips or (PHONE, LAPTOP, OTHER)):
            for name in KNOWN:
                self.feed(obs(T0 + i, ip, name))
        return self

    def feed(self, *items: Observation) -> list:
        out = []
        for o in items:
            out += self.hunter.observe(o)
        self.reports += out
        return out

    def restart(self) -> None:
        self.hunter.close()
        self.hunter = Hunter(self.cfg, self.db, clock=lambda: 0.0)

    def rows(self, **kw: object) -> list[dict]:
        return self.hunter.suspicions(**kw)  # type: ignore[arg-type]

    def row(self, ip: str, domain: str) -> dict | None:
        return next((r for r in self.rows() if (r["client_ip"], r["domain"]) == (ip, domain)),
                    None)


def signals(row: dict | None) -> set[str]:
    return {s["signal"] for s in row["signals"]} if row else set()


@pytest.fixture
def run(tmp_path: Path) -> Run:
    r = Run(tmp_path).learn()
    yield r
    r.hunter.close()


# --- registrable domains ------------------------------------------------------------------

@pytest.mark.parametrize("name, domain, kind", [
    ("a.b.example.co.uk", "example.co.uk", TRACK),          # ICANN two-level suffix
    ("bucket.s3.amazonaws.com", "bucket.s3.amazonaws.com", ALLOWED),  # private suffix, quiet
    ("x.user.github.io", "user.github.io", TRACK),          # each github.io site its own
    ("nas.lan", "nas.lan", TRACK),                          # outside the PSL: last two labels
    ("printer.floor2.office.lan", "office.lan", TRACK),
    ("wpad", "wpad", SINGLE),                               # a single label: itself
    ("4.3.2.10.in-addr.arpa", "", SKIP),
    ("x.home.arpa", "", SKIP),
    ("macbook.local", "", SKIP),
    ("identity.ess.apple.com", "apple.com", ALLOWED),
    ("backuprabbit.com", "backuprabbit.com", TRACK),
])
def test_registrable_domain_groups_names(name: str, domain: str, kind: int) -> None:
    got_domain, got_kind = classify(name, quiet_set(()))
    assert got_kind == kind
    if kind != SKIP:
        assert got_domain == domain


def test_psl_exception_and_wildcard_rules() -> None:
    assert registrable("www.ck") == "www.ck"          # !www.ck
    assert registrable("a.b.ck") == "a.b.ck"          # *.ck: b.ck is a suffix
    assert registrable("foo.kawasaki.jp") == "foo.kawasaki.jp"


# --- newly seen + learning ----------------------------------------------------------------

def test_newly_seen_domain_is_suspected_below_the_alert_score(run: Run) -> None:
    got = run.feed(obs(AFTER, PHONE, "www.fresh-site.com"))
    assert [(s.domain, s.is_new) for s in got] == [("fresh-site.com", True)]
    row = run.row(PHONE, "fresh-site.com")
    assert signals(row) == {"newly_seen", "rare"}
    assert row["score"] == 45 < run.cfg.alert_score
    # Seen in the learning period: not new. Asked again: no second report.
    assert run.feed(obs(AFTER + 1, PHONE, "www.example.com"),
                    obs(AFTER + 2, PHONE, "img.fresh-site.com")) == []
    assert run.row(PHONE, "fresh-site.com")["count"] == 2
    evidence = [e["qname"] for e in run.row(PHONE, "fresh-site.com")["evidence"]]
    assert evidence[-2:] == ["www.fresh-site.com", "img.fresh-site.com"]


@pytest.mark.parametrize("qtype, rcode", [("A", 3), ("TXT", 0), ("MX", 0)])
def test_unanswered_or_non_address_lookups_are_not_newly_seen(run: Run, qtype: str,
                                                              rcode: int) -> None:
    assert run.feed(obs(AFTER, PHONE, "mail.sender-domain.com", qtype, rcode)) == []
    assert run.rows() == []


def test_nothing_is_flagged_during_learning_measured_from_the_first_observation(
        tmp_path: Path) -> None:
    old = T0 - 400 * 86400.0      # an import replays logs on their own clock
    learning = 3 * 86400.0        # longer than a device's own first day
    r = Run(tmp_path)
    r.cfg = replace(r.cfg, learning=learning)
    r.restart()
    r.feed(obs(old, PHONE, "www.example.com"), obs(old, LAPTOP, "www.example.com"))
    during = old + 2 * 86400.0
    rng = random.Random(2)
    assert r.feed(obs(during, PHONE, "www.during-learning.com"),
                  *beacon(LAPTOP, "c2.during-learning.net", during, 300, 20),
                  *(obs(during + i, OTHER, f"{b32(rng, 40)}.t.tunnel-in-learning.org", "TXT")
                    for i in range(40))) == []
    r.restart()                   # the start of learning is kept
    after = old + learning + 10
    assert r.feed(obs(after, PHONE, "www.during-learning.com")) == []  # known by now
    got = r.feed(obs(after + 10, LAPTOP, "www.after-learning.com"))
    assert [s.domain for s in got] == ["after-learning.com"]
    r.hunter.close()


def test_a_device_new_to_the_network_finds_nothing_new_on_its_first_day(run: Run) -> None:
    guest = "10.0.9.9"
    assert run.feed(obs(AFTER, guest, "www.example.com"),
                    obs(AFTER + 60, guest, "www.guest-app.com")) == []
    got = run.feed(obs(AFTER + LEARNING + 61, guest, "www.other-app.com"))
    assert [s.domain for s in got] == ["other-app.com"]


def test_restart_keeps_the_domains_and_the_suspicions(run: Run) -> None:
    run.feed(obs(AFTER, PHONE, "www.fresh-site.com"))
    run.restart()
    assert run.feed(obs(AFTER + 5, LAPTOP, "www.example.com")) == []
    # Still known after the restart: a second device is not a new domain, and the phone's
    # suspicion continues (count, is_new=False when its score rises).
    run.feed(obs(AFTER + 10, PHONE, "www.fresh-site.com"))
    row = run.row(PHONE, "fresh-site.com")
    assert row["count"] == 2 and row["first_seen"] == AFTER
    raised = run.feed(*beacon(PHONE, "www.fresh-site.com", AFTER + 310, 300, 20))
    assert raised and not raised[-1].is_new and raised[-1].score >= 80


# --- rare ---------------------------------------------------------------------------------

def test_rare_is_re_evaluated_and_cleared_when_the_domain_becomes_common(run: Run) -> None:
    run.feed(obs(AFTER, PHONE, "app.new-saas.com"), obs(AFTER + 30, LAPTOP, "app.new-saas.com"))
    phone = run.row(PHONE, "new-saas.com")
    assert "rare" in signals(phone)
    assert "2 devices" in next(s["reason"] for s in phone["signals"] if s["signal"] == "rare")
    run.feed(obs(AFTER + 60, OTHER, "app.new-saas.com"))  # one device too many: common
    assert run.row(PHONE, "new-saas.com") is None
    assert run.row(LAPTOP, "new-saas.com") is None
    assert run.row(OTHER, "new-saas.com") is None


def test_becoming_common_lowers_but_keeps_a_stronger_suspicion(run: Run) -> None:
    run.feed(*beacon(PHONE, "c2.clockwork.net", AFTER, 300, 14))
    assert run.row(PHONE, "clockwork.net")["score"] == 80
    run.feed(obs(AFTER + 5000, LAPTOP, "c2.clockwork.net"),
             obs(AFTER + 5001, OTHER, "c2.clockwork.net"))
    row = run.row(PHONE, "clockwork.net")
    assert signals(row) == {"beacon"} and row["score"] == 35


# --- beacon -------------------------------------------------------------------------------

def beacon(ip: str, name: str, start: float, period: float, n: int, jitter: float = 0.01,
           seed: int = 1) -> list[Observation]:
    rng = random.Random(seed)
    out, t = [], start
    for _ in range(n):
        out += [obs(t, ip, name), obs(t + 0.01, ip, name, "AAAA")]  # A + AAAA: one event
        t += period * (1 + rng.uniform(-jitter, jitter))
    return out


def test_regular_queries_for_an_hour_are_a_beacon(run: Run) -> None:
    got = run.feed(*beacon(PHONE, "api.new-beacon.io", AFTER, 300, 14))
    top = max(got, key=lambda s: s.score)
    assert top.score == 80 >= run.cfg.alert_score
    assert {s["signal"] for s in top.signals} == {"newly_seen", "rare", "beacon"}
    reason = next(s["reason"] for s in top.signals if s["signal"] == "beacon")
    assert reason.startswith("every 300s")


@pytest.mark.parametrize("period, n, jitter", [
    (300, 11, 0.01),      # regular, but under an hour
    (300, 30, 0.6),       # for hours, but irregular
])
def test_short_or_irregular_repetition_is_no_beacon(run: Run, period: float, n: int,
                                                    jitter: float) -> None:
    run.feed(*beacon(PHONE, "api.new-beacon.io", AFTER, period, n, jitter))
    assert "beacon" not in signals(run.row(PHONE, "new-beacon.io"))


def test_a_beacon_is_not_tracked_for_a_common_domain(run: Run) -> None:
    run.feed(*(obs(AFTER + i, ip, "api.shared-service.com")
               for i, ip in enumerate((PHONE, LAPTOP, OTHER))))
    run.feed(*beacon(PHONE, "api.shared-service.com", AFTER + 10, 300, 20))
    assert run.rows() == []


def test_a_beacon_spanning_a_restart_is_found(run: Run) -> None:
    events = beacon(PHONE, "api.new-beacon.io", AFTER, 300, 14)
    run.feed(*events[:14])
    run.restart()
    got = run.feed(*events[14:])
    assert any("beacon" in {x["signal"] for x in s.signals} for s in got)


# --- sequences ----------------------------------------------------------------------------

def triangulation(ip: str, t: float, c1_after: float = 70, c2_after: float = 150,
                  attachment: str = "cvws.icloud-content.com",
                  second: str = "api.photometricsync.net") -> list[Observation]:
    out = [obs(t, ip, "identity.ess.apple.com"), obs(t + 2, ip, "query.ess.apple.com")]
    if attachment:
        out.append(obs(t + 24, ip, attachment))
    t1 = t + 24 + c1_after
    return out + [obs(t1, ip, "www.weatherstatsfeed.com"),
                  obs(t1 + c2_after, ip, second)]


def test_the_triangulation_sequence_is_found(run: Run) -> None:
    got = run.feed(*triangulation(PHONE, AFTER))
    alerts = {s.domain: s for s in got if s.score >= run.cfg.alert_score}
    assert set(alerts) == {"weatherstatsfeed.com", "photometricsync.net"}
    row = run.row(PHONE, "photometricsync.net")
    seq = next(s for s in row["signals"] if s["signal"] == "sequence")
    assert seq["rule"] == "triangulation"
    assert [c["qname"] for c in seq["chain"]] == [
        "query.ess.apple.com", "cvws.icloud-content.com", "www.weatherstatsfeed.com",
        "api.photometricsync.net"]
    evidence = [e["qname"] for e in row["evidence"]]
    assert "identity.ess.apple.com" in evidence and "cvws.icloud-content.com" in evidence
    # The Apple names start the chain but are never suspected themselves.
    assert {r["domain"] for r in run.rows()} == {"weatherstatsfeed.com", "photometricsync.net"}


@pytest.mark.parametrize("kw", [
    {"attachment": ""},                           # no attachment fetch
    {"c1_after": 400},                            # first new domain too late
    {"c2_after": 400},                            # second one too late
    {"c2_after": 0.3},                            # one page load (site + its CDN), not stages
    {"attachment": "www.icloud.com"},             # not an attachment host
    {"second": "cdn.weatherstatsfeed.com"},       # the same new domain twice is not two
])
def test_an_incomplete_chain_is_no_sequence(run: Run, kw: dict) -> None:
    run.feed(*triangulation(PHONE, AFTER, **kw))
    assert all(s["signal"] != "sequence" for r in run.rows() for s in r["signals"])
    assert max((r["score"] for r in run.rows()), default=0) < run.cfg.alert_score


def test_user_rules_add_and_turn_off_shipped_ones(tmp_path: Path) -> None:
    r = Run(tmp_path, sequences_file=str(DATA / "user-sequences.yaml")).learn()
    r.feed(*triangulation(PHONE, AFTER))
    assert all(s["signal"] != "sequence" for row in r.rows() for s in row["signals"])
    got = r.feed(obs(AFTER + 1000, LAPTOP, "vpn.corp-example.com"),
                 obs(AFTER + 1030, LAPTOP, "dl.never-seen-tool.net"))
    seq = [x for s in got for x in s.signals if x["signal"] == "sequence"]
    assert seq and seq[0]["rule"] == "vpn-then-new" and seq[0]["score"] == 60
    # corp-example.com itself is suspected too (it is not on the allowlist).
    assert r.row(LAPTOP, "never-seen-tool.net")["score"] == 100  # 30 + 15 + 60, capped
    r.hunter.close()


@pytest.mark.parametrize("rule, message", [
    ({"name": "r", "steps": [{"names": "*.a.com"}, {"newly_seen": True}]},
     "rule 'r': step 2: within: required"),
    ({"name": "r", "steps": [{"names": "*.com"}, {"newly_seen": True, "within": "5m"}]},
     "rule 'r': step 1: names: '*.com': too broad"),
    ({"name": "r", "steps": [{"names": "*example.com"}, {"newly_seen": True, "within": "1m"}]},
     "rule 'r': step 1: names: '*example.com': too broad"),
    ({"name": "r", "steps": [{"names": "a.com", "newly_seen": True},
                             {"newly_seen": True, "within": "1m"}]},
     "rule 'r': step 1: give exactly one of"),
    ({"name": "r", "steps": [{"names": "a.com"}, {"newly_seen": True, "within": "5x"}]},
     "rule 'r': step 2: within: '5x' is not a duration"),
    ({"name": "r", "steps": [{"names": "a.com"},
                             {"newly_seen": True, "within": "1m", "after": "2m"}]},
     "rule 'r': step 2: after: '2m' must be shorter than within"),
    ({"name": "r", "steps": [{"names": "a.com"}, {"newly_seen": True, "within": "1m",
                                                  "withn": 1}]},
     "rule 'r': step 2: unknown keys ['withn']"),
    ({"name": "r", "score": 150, "steps": [{"names": "a.com"},
                                           {"newly_seen": True, "within": "1m"}]},
     "rule 'r': score: expected an integer 1..100"),
    ({"name": "r", "steps": [{"names": "a.com"}]}, "rule 'r': steps: expected a list of at"),
    ({"steps": []}, "sequences[0]: name: required"),
])
def test_invalid_rules_are_refused_naming_the_rule_and_step(rule: dict, message: str) -> None:
    with pytest.raises(SequenceError) as err:
        parse_rules({"sequences": [rule]}, "my.yaml")
    assert any(e.startswith(f"my.yaml: {message}") for e in err.value.errors), err.value.errors


def test_every_problem_of_a_file_is_reported_together(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sequences:\n  - name: a\n    steps: []\n  - name: b\n    steps: 3\n")
    with pytest.raises(SequenceError) as err:
        load_rules(True, str(bad))
    assert len(err.value.errors) == 2 and "rule 'b'" in err.value.errors[1]
    with pytest.raises(SequenceError):
        Hunter(Hunt(sequences_file=str(bad)), str(tmp_path / "h.db"))


def test_the_shipped_rule_file_loads() -> None:
    (rule,) = load_rules(True, None)
    assert rule.name == "triangulation" and rule.score >= 80
    assert [s.newly_seen for s in rule.steps] == [False, False, True, True]
    assert load_rules(False, None) == ()


# --- tunnel / DGA -------------------------------------------------------------------------

def b32(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase + "234567", k=n))


def test_many_unique_long_names_per_minute_are_a_tunnel(run: Run) -> None:
    rng = random.Random(7)
    got = run.feed(*(obs(AFTER + i * 1.5, LAPTOP, f"{b32(rng, 40)}.{i}.t.exfil-sync.net")
                     for i in range(35)))
    top = max(got, key=lambda s: s.score)
    assert "tunnel" in {s["signal"] for s in top.signals} and top.score >= 80
    row = run.row(LAPTOP, "exfil-sync.net")
    assert row["evidence"][-1]["qname"].endswith(".34.t.exfil-sync.net")  # the full names


@pytest.mark.parametrize("names", [
    [f"img{i % 40}.shard-host.com" for i in range(80)],         # many short sharded hosts
    [f"{'x' * 30}{i % 3}.repeat-host.com" for i in range(80)],  # few distinct names
])
def test_short_or_repeated_names_are_no_tunnel(run: Run, names: list[str]) -> None:
    run.feed(*(obs(AFTER + i * 0.5, LAPTOP, n) for i, n in enumerate(names)))
    assert "tunnel" not in signals(run.row(LAPTOP, registrable(names[0])))


def test_many_distinct_txt_names_are_flagged(run: Run) -> None:
    rng = random.Random(3)
    run.feed(*(obs(AFTER + i * 20, LAPTOP, f"{b32(rng, 12)}.q.slow-chan.org", "TXT")
               for i in range(20)))
    row = run.row(LAPTOP, "slow-chan.org")
    assert signals(row) == {"txt_null", "rare"}
    # A mail server's SPF/DKIM/DMARC lookups of one sender: a handful of names, no signal.
    run.feed(*(obs(AFTER + 500 + i, OTHER, n, "TXT") for i in range(30)
               for n in ("sender-x.com", "_dmarc.sender-x.com", "s1._domainkey.sender-x.com")))
    assert run.row(OTHER, "sender-x.com") is None


def test_a_long_random_label_is_flagged_an_english_one_not(run: Run) -> None:
    run.feed(obs(AFTER, LAPTOP, "k3j2h5g7f9d1s4a6q8w0e2r4.data-pipe.info"),
             obs(AFTER + 1, PHONE, "subdomainforexampleservice.words-host.info"))
    assert "entropy" in signals(run.row(LAPTOP, "data-pipe.info"))
    assert "entropy" not in signals(run.row(PHONE, "words-host.info"))


def dga_names(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choices(string.ascii_lowercase, k=rng.randrange(12, 19))) + "." +
            rng.choice(("com", "net", "org", "xyz")) for _ in range(n)]


def test_a_burst_of_never_seen_nxdomains_is_one_dga_suspicion(run: Run) -> None:
    rng = random.Random(11)
    burst1 = [obs(AFTER + i * 10, LAPTOP, n, rcode=3) for i, n in enumerate(dga_names(rng, 25))]
    burst2 = [obs(AFTER + 900 + i * 10, LAPTOP, n, rcode=3)
              for i, n in enumerate(dga_names(rng, 25))]
    got = run.feed(*burst1, *burst2)
    dga = [r for r in run.rows() if "dga" in signals(r)]
    assert len(dga) == 1 and dga[0]["score"] >= 80     # one case for the whole run
    assert dga[0]["count"] >= 30                        # the later names are its evidence
    assert len([s for s in got if s.score >= 80]) == 1


@pytest.mark.parametrize("rcode", [3, None])
def test_a_few_typos_are_no_dga(run: Run, rcode: int | None) -> None:
    typos = ["www.gooogle-maps.com", "www.exmaple.org", "www.wikipedai.org", "www.reddti.com"]
    run.feed(*(obs(AFTER + i, LAPTOP, n, rcode=rcode) for i, n in enumerate(typos * 5)))
    assert all("dga" not in signals(r) for r in run.rows())


# --- allowlist, ignore, local names -------------------------------------------------------

def test_allowlisted_and_ignored_domains_are_never_suspected(tmp_path: Path) -> None:
    r = Run(tmp_path, ignore=("corp.example",)).learn()
    rng = random.Random(5)
    for name in ("gateway.icloud.com", "api.intranet.corp.example"):
        r.feed(*beacon(PHONE, name, AFTER, 300, 20))
        r.feed(*(obs(AFTER + 7000 + i, LAPTOP, f"{b32(rng, 40)}.{name}", "TXT")
                 for i in range(40)))
    r.feed(obs(AFTER, PHONE, "d1x2y3z4w5.cloudfront.net"),
           obs(AFTER, PHONE, "x.zen.spamhaus.org", rcode=3))
    assert r.rows() == []
    r.hunter.close()


def test_reverse_local_and_single_label_names_are_not_suspected(run: Run) -> None:
    rng = random.Random(9)
    names = ["4.3.2.10.in-addr.arpa", "macbook.local", "printer.home.arpa", "localhost"]
    run.feed(*(obs(AFTER + i, LAPTOP, n, qt) for i, n in enumerate(names * 30)
               for qt in ("A", "PTR")))
    run.feed(*(obs(AFTER + 100 + i, LAPTOP, b32(rng, 12), rcode=None) for i in range(30)))
    assert run.rows() == []
    # A .lan name is grouped by its last two labels, one group per LAN domain.
    run.feed(obs(AFTER + 200, LAPTOP, "printer.floor2.office.lan"),
             obs(AFTER + 201, LAPTOP, "nas.office.lan"))
    assert [(r["domain"], r["count"]) for r in run.rows()] == [("office.lan", 2)]


# --- bounded state ------------------------------------------------------------------------

def test_state_stays_bounded_under_many_distinct_domains(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "PAIR_CAP", 50)
    monkeypatch.setattr(engine_mod, "NAME_CACHE", 100)
    r = Run(tmp_path, max_domains=1000).learn()
    for i in range(20_000):
        r.feed(obs(AFTER + i, PHONE if i % 2 else LAPTOP, f"www.site{i}.com"))
        if i % 5000 == 4999:
            r.feed(obs(AFTER + i, OTHER, "www.example.com"))   # seen lately: kept
    r.hunter.flush()
    h = r.hunter
    conn = sqlite3.connect(r.db)
    assert conn.execute("SELECT count(*) FROM domains").fetchone()[0] <= 1000
    assert len(h._seen) <= 1000 and len(h._pairs) <= 50 and len(h._names) <= 100
    known = {d for (d,) in conn.execute("SELECT domain FROM domains")}
    assert "site19999.com" in known and "site0.com" not in known  # least recent went first
    assert "example.com" in known
    conn.close()
    # An evicted domain is new again; a kept one is not.
    assert [s.domain for s in r.feed(obs(AFTER + 30_000, PHONE, "www.site0.com"))] == [
        "site0.com"]
    h.close()


# --- reading, retro-hunt join -------------------------------------------------------------

def test_read_suspicions_from_another_connection(run: Run) -> None:
    run.feed(*triangulation(PHONE, AFTER), obs(AFTER + 900, LAPTOP, "www.fresh-site.com"))
    run.hunter.flush()
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(read_suspicions(run.db)))
    reader.start()
    reader.join(10)
    assert [r["domain"] for r in got][:2] == ["photometricsync.net", "weatherstatsfeed.com"]
    assert set(got[0]) >= {"client_ip", "client_name", "domain", "score", "signals",
                           "first_seen", "last_seen", "count", "evidence"}
    assert [r["domain"] for r in read_suspicions(run.db, min_score=80)] == [
        "photometricsync.net", "weatherstatsfeed.com"]
    assert [r["domain"] for r in read_suspicions(run.db, since=AFTER + 800)] == [
        "fresh-site.com"]
    assert read_suspicions(str(Path(run.db).parent / "none.db")) == []


def test_a_list_naming_a_suspected_domain_makes_it_a_hit(run: Run) -> None:
    run.feed(obs(AFTER, PHONE, "www.fresh-site.com"))
    assert run.hunter.mark_listed(["c2.fresh-site.com", "unrelated.com"], "urlhaus") == 1
    row = run.row(PHONE, "fresh-site.com")
    assert row["listed_by"] == ["urlhaus"] and row["score"] == 100
    assert run.hunter.mark_listed(["fresh-site.com"], "urlhaus") == 0  # already


def test_at_start_up_the_policy_names_suspected_domains(run: Run) -> None:
    """The start-up join asks the policy per suspected domain: a parent rule covers it, an
    allow rule keeps it unmarked, and a second start finds nothing new."""
    from sinkhole.lists.matcher import ListInfo, build_policy
    from sinkhole.lists.parse import parse_lines
    run.feed(obs(AFTER, PHONE, "www.fresh-site.com"))
    policy = build_policy([(ListInfo("c2", action="nxdomain"),
                            parse_lines(["fresh-site.com", "other.net"], "c2"))])
    assert run.hunter.mark_listed_by_policy(policy) == 1
    assert run.row(PHONE, "fresh-site.com")["listed_by"] == ["c2"]
    assert run.hunter.mark_listed_by_policy(policy) == 0
    allowed = build_policy([(ListInfo("c2", action="nxdomain"),
                             parse_lines(["fresh-site.com", "@@||fresh-site.com^"], "c2"))])
    assert run.hunter.mark_listed_by_policy(allowed) == 0


def test_hunter_accepts_the_config_defaults(tmp_path: Path) -> None:
    cfg = replace(Hunt(), learning=0.0)
    h = Hunter(cfg, str(tmp_path / "h.db"), clock=lambda: 0.0)
    h.observe(obs(T0, PHONE, "www.example.com"))
    h.close()


def test_an_idle_suspicion_is_closed_in_memory_and_reopened_from_the_table(run: Run) -> None:
    run.feed(obs(AFTER, PHONE, "www.fresh-site.com"))
    later = AFTER + 2 * 86400.0
    run.feed(obs(later, LAPTOP, "www.example.com"))
    run.hunter.flush()
    assert (PHONE, "fresh-site.com") not in run.hunter._book.cases  # only the active ones
    run.feed(obs(later + 1, PHONE, "www.fresh-site.com"))
    row = run.row(PHONE, "fresh-site.com")
    assert row["count"] == 2 and row["last_seen"] == later + 1


def test_a_closed_suspicion_is_cleared_too_when_its_domain_becomes_common(run: Run) -> None:
    run.feed(obs(AFTER, PHONE, "www.fresh-site.com"))
    later = AFTER + 2 * 86400.0
    run.feed(obs(later, LAPTOP, "www.example.com"))
    run.hunter.flush()                       # closed in memory, still in the table
    assert run.row(PHONE, "fresh-site.com") is not None
    run.feed(obs(later + 1, LAPTOP, "www.fresh-site.com"),
             obs(later + 2, OTHER, "www.fresh-site.com"))
    assert run.rows() == []


def test_a_file_that_is_not_a_hunting_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE hits (a)")
    conn.commit()
    conn.close()
    with pytest.raises(HuntStateError, match="not a sinkhole hunting database"):
        Hunter(Hunt(), str(path))
    with pytest.raises(HuntStateError):
        read_suspicions(str(path))
