"""Log importers (sinkhole.importers): realistic samples of each format in tests/data/logs/ (the
Pi-hole databases are built here, in both FTL schemas) read back to exact observations; bad
lines counted with their line numbers; file order kept; hostile bytes survive as text; the
readers are lazy (a FIFO proves the first observation comes before the file ends) and a live
Pi-hole database is neither written nor locked.

Throughput per format (not asserted): `.venv/bin/python -m tests.test_importers`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sinkhole.events import Hit, Observation
from sinkhole.hits import escape, log_fields
from sinkhole.importers import (
    FORMATS,
    MAX_ERRORS,
    ImportStats,
    LogFormatError,
    LogImportError,
    dnsmasq,
    read_log,
)
from sinkhole.logsetup import JsonFormatter

LOGS = Path(__file__).resolve().parent / "data" / "logs"
T0 = 1764817200.0                   # 2025-12-04T03:00:00Z


def read_all(path: str | Path, fmt: str, **kwargs: Any) -> tuple[list[Observation], ImportStats]:
    stats = ImportStats()
    return list(read_log(path, fmt, stats, **kwargs)), stats


def obs(time: float, client: str, qname: str, qtype: str = "A", name: str | None = None,
        rcode: int | None = None) -> Observation:
    return Observation(time, client, qname, qtype, name, rcode)


def error_lines(stats: ImportStats) -> list[int]:
    return [where for where, _ in stats.errors]


def assert_counted(stats: ImportStats) -> None:
    """Every line is accounted for exactly once."""
    assert stats.lines == stats.imported + stats.skipped + stats.error_count


# --- Zeek -------------------------------------------------------------------------------------

ZEEK_EXPECTED = [
    obs(1764817201.123456, "10.0.0.5", "www.example.com", "A", rcode=0),
    obs(1764817201.523001, "10.0.0.5", "www.example.com", "AAAA", rcode=0),
    obs(1764817202.0022, "fd00::7", "_443._https.api.example.org", "HTTPS", rcode=3),
    obs(1764817201.9, "10.0.0.9", "slow.example.net", "A"),           # unanswered, logged late
    obs(1764817203.0, "10.0.0.23", "agvsbg8.t.tunnel.example", "NULL", rcode=0),
    obs(1764817203.1, "10.0.0.23", "x1.t.tunnel.example", "TXT", rcode=0),
    obs(1764817204.0, "10.0.0.5", "odd.example", "TYPE65534", rcode=0),
    obs(1764817204.4, "10.0.0.5", "caf\xc3\xa9\x01.example", "A", rcode=3),
    obs(1764817205.0, "10.0.0.5", "ess.apple.com", "A", rcode=0),
]


def test_zeek_tsv_sample_gives_exact_observations_in_file_order() -> None:
    got, stats = read_all(LOGS / "zeek-dns.log", "zeek")
    assert got == ZEEK_EXPECTED
    # the late unanswered query stays where Zeek wrote it (after a later one), not sorted
    assert [o.time for o in got] != sorted(o.time for o in got)
    # header lines, NetBIOS, mDNS and the entry without a query are skipped, not errors
    assert (stats.lines, stats.imported, stats.skipped) == (24, 9, 12)
    assert error_lines(stats) == [20, 21, 22]   # too few fields, bad ts, bad client
    assert stats.error_count == 3
    assert_counted(stats)


def test_zeek_json_sample_float_and_iso_times() -> None:
    got, stats = read_all(LOGS / "zeek-dns.json", "zeek")
    assert got == [
        obs(1764817201.123456, "10.0.0.5", "www.example.com", "A", rcode=0),
        obs(1764817202.25, "fd00::7", "mail.example.org", "MX", rcode=0),   # ISO 8601 ts
        obs(1764817201.9, "10.0.0.9", "slow.example.net", "A"),            # no rcode: None
        obs(1764817203.0, "10.0.0.23", "agvsbg8.t.tunnel.example", "TXT", rcode=0),
        # UTF-8 text becomes its bytes (as the wire decoder sees them); Zeek's "*" is ANY
        obs(1764817203.7, "10.0.0.5", "b\xc3\xbccher.example", "ANY", rcode=3),
        obs(1764817204.0, "10.0.0.5", "ess.apple.com", "A", rcode=0),
    ]
    assert (stats.skipped, error_lines(stats)) == (2, [8])     # mDNS, no query; truncated
    assert_counted(stats)


def test_zeek_concatenated_logs_follow_each_header(tmp_path: Path) -> None:
    """`zcat dns.*.log.gz` repeats the header; a site may reorder or add columns."""
    first = (LOGS / "zeek-dns.log").read_text()
    second = ("#separator \\x2c\n#unset_field,-\n#fields,query,site,ts,id.orig_h,qtype_name\n"
              "late.example,hq,1764817300.5,10.0.0.8,AAAA\n"
              "nameless.example,hq,1764817301.0,10.0.0.8,-\n")
    third = ("#fields,service,uid,ts,id.orig_h,proto\n"                          # conn.log
             "dns,CjhGID4nQcgTWjvg4c,1764817400.0,10.0.0.5,udp\n")
    path = tmp_path / "dns.log"
    path.write_text(first + second + third)
    got, stats = read_all(path, "zeek")
    assert got[:9] == ZEEK_EXPECTED
    assert got[9:] == [obs(1764817300.5, "10.0.0.8", "late.example", "AAAA")]
    # no query type at all is an error, not "A"; a header that is not dns.log's is an
    # error, and so is every line under it (not read with the previous columns)
    assert error_lines(stats)[-3:] == [29, 30, 31]


def test_zeek_gzip_rotated_log_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "dns.03:00:00-04:00:00.log.gz"
    path.write_bytes(gzip.compress((LOGS / "zeek-dns.log").read_bytes()))
    got, stats = read_all(path, "zeek")
    assert got == ZEEK_EXPECTED
    assert error_lines(stats) == [20, 21, 22]


def test_zeek_truncated_gzip_keeps_what_it_read(tmp_path: Path) -> None:
    """A log still being compressed or cut in transfer: an error, not a crash."""
    data = gzip.compress((LOGS / "zeek-dns.log").read_bytes() * 20)
    path = tmp_path / "dns.log.gz"
    path.write_bytes(data[:-40])
    got, stats = read_all(path, "zeek")
    assert got[:9] == ZEEK_EXPECTED
    assert 9 < len(got) < 9 * 20
    assert stats.errors[-1][1].startswith("read failed")


def test_zeek_other_log_is_refused_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "conn.log"
    path.write_text("#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tduration\n"
                    + "1764817201.0\tCx\t10.0.0.5\t0.5\n" * 20)
    with pytest.raises(LogFormatError):
        read_all(path, "zeek")


# --- Pi-hole FTL database ----------------------------------------------------------------------

# Shaped after FTL's own schema (database version 21, the `queries` VIEW over `query_storage`)
# and the older plain `queries` table (before database version 10, no reply_type).
FTL_V6 = """
CREATE TABLE query_storage (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp INTEGER NOT NULL,
  type INTEGER NOT NULL, status INTEGER NOT NULL, domain INTEGER NOT NULL,
  client INTEGER NOT NULL, forward INTEGER, additional_info INTEGER, reply_type INTEGER,
  reply_time REAL, dnssec INTEGER, list_id INTEGER, ede INTEGER);
CREATE INDEX idx_queries_timestamps ON query_storage (timestamp);
CREATE TABLE domain_by_id (id INTEGER PRIMARY KEY, domain TEXT NOT NULL);
CREATE TABLE client_by_id (id INTEGER PRIMARY KEY, ip TEXT NOT NULL, name TEXT);
CREATE TABLE forward_by_id (id INTEGER PRIMARY KEY, forward TEXT NOT NULL);
CREATE TABLE addinfo_by_id (id INTEGER PRIMARY KEY, type INTEGER NOT NULL, content NOT NULL);
CREATE UNIQUE INDEX domain_by_id_domain_idx ON domain_by_id(domain);
CREATE UNIQUE INDEX client_by_id_client_idx ON client_by_id(ip,name);
CREATE TABLE ftl (id INTEGER PRIMARY KEY NOT NULL, value BLOB NOT NULL, description TEXT);
INSERT INTO ftl VALUES(0, 21, 'Database version');
CREATE VIEW queries AS SELECT id, timestamp, type, status,
  CASE typeof(domain) WHEN 'integer' THEN (SELECT domain FROM domain_by_id d
    WHERE d.id = q.domain) ELSE domain END domain,
  CASE typeof(client) WHEN 'integer' THEN (SELECT ip FROM client_by_id c
    WHERE c.id = q.client) ELSE client END client,
  CASE typeof(forward) WHEN 'integer' THEN (SELECT forward FROM forward_by_id f
    WHERE f.id = q.forward) ELSE forward END forward,
  CASE typeof(additional_info) WHEN 'integer' THEN (SELECT content FROM addinfo_by_id a
    WHERE a.id = q.additional_info) ELSE additional_info END additional_info,
  reply_type, reply_time, dnssec, list_id, ede FROM query_storage q;
"""
FTL_V5 = """
CREATE TABLE queries (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp INTEGER NOT NULL,
  type INTEGER NOT NULL, status INTEGER NOT NULL, domain TEXT NOT NULL, client TEXT NOT NULL,
  forward TEXT, additional_info TEXT);
CREATE INDEX idx_queries_timestamps ON queries (timestamp);
CREATE TABLE ftl (id INTEGER PRIMARY KEY NOT NULL, value BLOB NOT NULL);
INSERT INTO ftl VALUES(0, 8);
CREATE TABLE network (id INTEGER PRIMARY KEY NOT NULL, hwaddr TEXT UNIQUE NOT NULL,
  interface TEXT NOT NULL, firstSeen INTEGER NOT NULL, lastQuery INTEGER NOT NULL,
  numQueries INTEGER NOT NULL, macVendor TEXT, aliasclient_id INTEGER);
CREATE TABLE network_addresses (network_id INTEGER NOT NULL, ip TEXT UNIQUE NOT NULL,
  lastSeen INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)), name TEXT,
  nameUpdated INTEGER);
"""
# (timestamp, FTL type, status, domain, client, reply_type)
FTL_ROWS = [
    (1764817201, 1, 2, "www.example.com", "10.0.0.5", 4),          # A, forwarded, an IP
    (1764817201, 2, 3, "www.example.com", "10.0.0.5", 1),          # AAAA, cache, NODATA
    (1764817202, 16, 2, "API.example.org", "fd00::7", 2),          # HTTPS, NXDOMAIN
    (1764817200, 1, 1, "ads.tracker.example", "10.0.0.9", 4),      # gravity-blocked, earlier
    (1764817203, 7, 2, "x1.t.tunnel.example", "10.0.0.23", 4),     # TXT
    (1764817203, 110, 2, "t2.t.tunnel.example", "10.0.0.23", 7),   # 100 + 10: NULL, SERVFAIL
    (1764817204, 166, 2, "odd.example", "10.0.0.5", 0),            # 100 + 66, no reply yet
    (1764817204, 14, 2, "other.example", "10.0.0.5", 10),          # pre-v5.4 OTHER
    (1764817205, 99, 2, "bad-type.example", "10.0.0.5", 4),        # not an FTL type: error
    (1764817205, 1, 2, "bad-client.example", "not-an-ip", 4),      # error
    (1764817206, 1, 2, "ess.apple.com", "10.0.0.5", 4),
]
FTL_EXPECTED = [  # (time, client, qname, qtype, rcode in the v6 schema)
    (1764817201.0, "10.0.0.5", "www.example.com", "A", 0),
    (1764817201.0, "10.0.0.5", "www.example.com", "AAAA", 0),
    (1764817202.0, "fd00::7", "api.example.org", "HTTPS", 3),
    (1764817200.0, "10.0.0.9", "ads.tracker.example", "A", 0),
    (1764817203.0, "10.0.0.23", "x1.t.tunnel.example", "TXT", 0),
    (1764817203.0, "10.0.0.23", "t2.t.tunnel.example", "NULL", 2),
    (1764817204.0, "10.0.0.5", "odd.example", "TYPE66", None),
    (1764817204.0, "10.0.0.5", "other.example", "OTHER", None),
    (1764817206.0, "10.0.0.5", "ess.apple.com", "A", 0),
]


def build_ftl_v6(path: Path, rows: list[tuple[Any, ...]], legacy: int = 0) -> None:
    """A v6 database: rows as ids into the linking tables; the last `legacy` rows hold the
    text itself, as rows migrated from an old database still do."""
    db = sqlite3.connect(path)
    db.executescript(FTL_V6)
    domains: dict[str, int] = {}
    clients: dict[str, int] = {}
    for n, (ts, qtype, status, domain, client, reply) in enumerate(rows):
        if n >= len(rows) - legacy:
            d: Any = domain
            c: Any = client
        else:
            d = domains.setdefault(domain, len(domains) + 1)
            c = clients.setdefault(client, len(clients) + 1)
        db.execute("INSERT INTO query_storage (timestamp, type, status, domain, client, "
                   "reply_type) VALUES (?, ?, ?, ?, ?, ?)", (ts, qtype, status, d, c, reply))
    db.executemany("INSERT INTO domain_by_id VALUES (?, ?)", [(i, d) for d, i in domains.items()])
    db.executemany("INSERT INTO client_by_id VALUES (?, ?, ?)",
                   [(i, c, "alice-laptop" if c == "10.0.0.5" else None)
                    for c, i in clients.items()])
    db.commit()
    db.close()


def build_ftl_v5(path: Path, rows: list[tuple[Any, ...]]) -> None:
    db = sqlite3.connect(path)
    db.executescript(FTL_V5)
    db.executemany("INSERT INTO queries (timestamp, type, status, domain, client) "
                   "VALUES (?, ?, ?, ?, ?)", [row[:5] for row in rows])
    db.execute("INSERT INTO network VALUES (1, 'aa:bb:cc:dd:ee:ff', 'eth0', 0, 0, 0, NULL, "
               "NULL)")
    db.execute("INSERT INTO network_addresses (network_id, ip, name) VALUES "
               "(1, '10.0.0.5', 'alice-laptop')")
    db.commit()
    db.close()


@pytest.mark.parametrize("schema", ["v6-view", "v5-table"])
def test_pihole_database_both_schemas(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "pihole-FTL.db"
    if schema == "v6-view":
        build_ftl_v6(path, FTL_ROWS, legacy=3)
    else:
        build_ftl_v5(path, FTL_ROWS)
    got, stats = read_all(path, "pihole")
    assert got == [obs(t, c, q, qt, "alice-laptop" if c == "10.0.0.5" else None,
                       rcode if schema == "v6-view" else None)
                   for t, c, q, qt, rcode in FTL_EXPECTED]
    assert (stats.lines, stats.imported, error_lines(stats)) == (11, 9, [9, 10])   # row ids
    assert_counted(stats)


def test_pihole_dangling_domain_id_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "pihole-FTL.db"
    build_ftl_v6(path, FTL_ROWS[:2])
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO query_storage (timestamp, type, status, domain, client) "
                   "VALUES (1764817300, 1, 2, 999, 1)")
    got, stats = read_all(path, "pihole")
    assert len(got) == 2
    assert error_lines(stats) == [3]


def test_pihole_live_database_is_never_written(tmp_path: Path) -> None:
    """FTL in WAL mode with queries not yet checkpointed (a live or crashed Pi-hole): a
    read-write open would checkpoint them into the main file on close; read-only must not."""
    path = tmp_path / "pihole-FTL.db"
    writer = ("import os, sqlite3, sys\n"
              "db = sqlite3.connect(sys.argv[1])\n"
              "db.execute('PRAGMA journal_mode=WAL'); db.execute('PRAGMA wal_autocheckpoint=0')\n"
              f"db.executescript({FTL_V5!r})\n"
              "db.executemany('INSERT INTO queries (timestamp, type, status, domain, client) "
              "VALUES (?, 1, 2, ?, ?)', [(1764817200 + i, f'd{i}.example', '10.0.0.5') "
              "for i in range(50)])\n"
              "db.commit()\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", writer, str(path)], check=True, timeout=60)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    got, _ = read_all(path, "pihole")
    assert len(got) == 50
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert Path(f"{path}-wal").stat().st_size > 0


def test_pihole_reading_never_blocks_ftl_writes(tmp_path: Path) -> None:
    """While the importer's consumer works (the generator suspended mid-import), FTL's
    periodic write must get through at once (rollback journal: a held read lock blocks it)."""
    path = tmp_path / "pihole-FTL.db"
    rows = [(1764817200 + i, 1, 2, f"d{i}.example", "10.0.0.5", 4) for i in range(5000)]
    build_ftl_v6(path, rows)
    stats = ImportStats()
    it = read_log(path, "pihole", stats)
    assert next(it).qname == "d0.example"
    ftl = sqlite3.connect(path, timeout=0)
    ftl.execute("INSERT INTO query_storage (timestamp, type, status, domain, client) VALUES "
                "(1764817200, 1, 2, 1, 1)")
    ftl.commit()                        # raises "database is locked" if the reader holds it
    ftl.close()
    rest = list(it)
    assert [o.qname for o in rest[:2]] == ["d1.example", "d2.example"]
    assert stats.imported == 5001       # pages follow on by id, including the new row


# --- dnsmasq -----------------------------------------------------------------------------------

@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZoneInfo]:
    """Syslog times are the logging host's local time: run in a zone that is not UTC."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield ZoneInfo("Europe/Berlin")
    monkeypatch.undo()
    time.tzset()


def local(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()  # type: ignore[misc]


def test_dnsmasq_sample_across_new_year(berlin: ZoneInfo) -> None:
    got, stats = read_all(LOGS / "dnsmasq.log", "dnsmasq", year=2025)
    assert got == [
        obs(local(berlin, 2025, 12, 31, 23, 59, 58), "10.0.0.5", "www.example.com"),
        obs(local(berlin, 2025, 12, 31, 23, 59, 59), "10.0.0.7", "updates.vendor.example",
            "AAAA"),                                         # log-queries=extra form
        obs(local(berlin, 2026, 1, 1, 0, 0, 1), "fd00::7", "api.example.org", "HTTPS"),
        # a late line of the old year after new year keeps the old year
        obs(local(berlin, 2025, 12, 31, 23, 59, 59), "10.0.0.9", "late.example.net"),
        obs(local(berlin, 2026, 1, 1, 0, 0, 3), "10.0.0.5", "odd.example", "TYPE65534"),
        obs(local(berlin, 2026, 1, 1, 0, 0, 4), "10.0.0.23", "x1.t.tunnel.example", "TXT"),
        obs(local(berlin, 2026, 1, 1, 0, 0, 6), "10.0.0.5", "ess.apple.com"),
    ]
    # start-up, forwarded, reply, cached, dnssec-query and DHCP lines are not queries
    assert (stats.skipped, error_lines(stats)) == (7, [14, 15])
    assert_counted(stats)


def test_dnsmasq_rfc3339_times(tmp_path: Path, berlin: ZoneInfo) -> None:
    path = tmp_path / "dnsmasq.log"
    path.write_text(
        "2026-12-04T03:00:01+00:00 gw dnsmasq[1]: query[A] a.example from 10.0.0.5\n"
        "2026-12-04T03:00:02.250000+01:00 gw dnsmasq[1]: query[MX] b.example from 10.0.0.5\n"
        "2026-12-04T03:00:03 gw dnsmasq[1]: query[A] c.example from 10.0.0.5\n"
        "2026-13-04T03:00:04+00:00 gw dnsmasq[1]: query[A] d.example from 10.0.0.5\n")
    got, stats = read_all(path, "dnsmasq")
    assert [o.time for o in got] == [1796353201.0, 1796353202.25 - 3600,
                                     local(berlin, 2026, 12, 4, 3, 0, 3)]  # no offset: local
    assert error_lines(stats) == [4]


def test_dnsmasq_year_defaults_to_the_last_plausible_one(tmp_path: Path,
                                                         berlin: ZoneInfo) -> None:
    """A December log imported on 5 January is last year's, and runs into this year."""
    path = tmp_path / "dnsmasq.log"
    path.write_text("Dec 30 10:00:00 dnsmasq[1]: query[A] a.example from 10.0.0.5\n"
                    "Jan  2 10:00:00 dnsmasq[1]: query[A] b.example from 10.0.0.5\n")
    now = local(berlin, 2027, 1, 5, 12, 0, 0)
    got = list(dnsmasq.read(path, ImportStats(), now=now))
    assert [o.time for o in got] == [local(berlin, 2026, 12, 30, 10, 0, 0),
                                     local(berlin, 2027, 1, 2, 10, 0, 0)]
    got = list(dnsmasq.read(path, ImportStats(), now=local(berlin, 2027, 12, 31, 0, 0, 0)))
    assert got[0].time == local(berlin, 2027, 12, 30, 10, 0, 0)


def test_dnsmasq_bad_date_does_not_move_the_year_on() -> None:
    clock = dnsmasq.SyslogClock(2025, time.time())
    clock.stamp(12, 4, 3, 0, 0)
    with pytest.raises(ValueError):
        clock.stamp(2, 30, 3, 0, 0)             # "Feb 30" in a December log: garbage
    assert clock.stamp(6, 1, 0, 0, 0) == datetime(2025, 6, 1).timestamp()


# --- JSON lines --------------------------------------------------------------------------------

def test_jsonl_sinkhole_log_hit_lines() -> None:
    got, stats = read_all(LOGS / "sinkhole.jsonl", "jsonl")
    assert got == [
        obs(T0 + 1.25, "10.0.0.5", "backuprabbit.com", "A", "alice-iphone"),
        obs(T0 + 2.5, "fd00::7", "cloudsponcer.com", "AAAA"),
        obs(T0 + 3.75, "10.0.0.23", "x\x01y.tunnel.example", "TXT", "nas"),   # \001 unescaped
        obs(T0 + 4.0, "10.0.0.66", "q7.dga.example", "A", "printer"),          # a flood line
        obs(T0 + 8.0, "10.0.0.5", "ess.apple.com", "HTTPS", "alice-iphone"),
    ]
    # start-up, list and store lines, and the retro-hunt find (old news) are skipped
    assert (stats.skipped, error_lines(stats)) == (4, [9])
    assert_counted(stats)


def test_jsonl_reads_back_what_the_daemon_logs(tmp_path: Path) -> None:
    """Through the daemon's own formatter and hit fields, a hostile name comes back byte for
    byte (the log escapes it as \\DDD; the importer undoes that)."""
    formatter = JsonFormatter()
    names = ["evil.example", "a b.example", "x\x00\x7f\xff.example", "caf\xc3\xa9.example"]
    lines = []
    for i, qname in enumerate(names):
        hit = Hit(T0 + i, "10.0.0.5", "alice", qname, "TXT", "c2", "c2", "high", None,
                  "nxdomain", "udp")
        record = logging.LogRecord("sinkhole.hit", logging.WARNING, __file__, 1,
                                   "hit: %s asked for %s", ("10.0.0.5", escape(qname)), None)
        record.created, record.msecs = T0 + i, 0.0
        record.__dict__.update(log_fields(hit))
        lines.append(formatter.format(record))
    path = tmp_path / "sinkhole.log"
    path.write_text("\n".join(lines) + "\n")
    got, _ = read_all(path, "jsonl")
    assert got == [obs(T0 + i, "10.0.0.5", q, "TXT", "alice") for i, q in enumerate(names)]


def test_jsonl_exchange_format() -> None:
    got, stats = read_all(LOGS / "exchange.jsonl", "jsonl")
    assert got == [
        obs(1764817201.25, "10.0.0.5", "www.example.com", "A", "alice-laptop", 0),
        obs(1764817201.5, "10.0.0.5", "www.example.com", "AAAA", rcode=0),
        obs(1764817199.0, "10.0.0.9", "late.example.net"),                 # out of order
        obs(1764817202.75, "fd00::7", "t1.tunnel.example", "NULL", rcode=3),  # ISO; type 10
        obs(1764817203.0, "10.0.0.23", "b\xc3\xbccher.example", "TYPE65534"),
        obs(1764817206.5, "10.0.0.5", "ess.apple.com", "HTTPS"),
    ]
    assert (stats.skipped, error_lines(stats)) == (1, [7, 8, 9])   # blank; no qname, ...
    assert_counted(stats)


# --- every text format: hostile input, bounds, laziness ---------------------------------------

ZEEK_HEADER = (b"#separator \\x09\n#unset_field\t-\n"
               b"#fields\tts\tid.orig_h\tquery\tqtype\tqtype_name\trcode\n")
GOOD = {
    "zeek": (ZEEK_HEADER, lambda n: b"%d.5\t10.0.0.5\tn%d.example\t1\tA\t0\n" % (T0 + n, n)),
    "dnsmasq": (b"", lambda n: b"Dec  4 03:%02d:%02d dnsmasq[1]: query[A] n%d.example "
                b"from 10.0.0.5\n" % (n // 60 % 60, n % 60, n)),
    "jsonl": (b"", lambda n: b'{"time": %d.5, "client": "10.0.0.5", "qname": "n%d.example"}\n'
              % (T0 + n, n)),
}
HOSTILE = {   # each line: an error or an odd name kept as text, never a crash
    "zeek": [b"1764817200.5\t10.0.0.5\tnul\x00and\xff.example\t1\tA\t0",
             b"1764817200.5\t10.0.0.5\t" + b"a." * 200 + b"example\t1\tA\t0",
             b"1764817200.5\t10.0.0.5\tx.example\t99999999999\tA\t0",
             b"1e400\t10.0.0.5\tx.example\t1\tA\t0",
             b"nan\t10.0.0.5\tx.example\t1\tA\t0",
             b"\xff\xfe\t\t\xff.example\t\t\t", b"{" + b"[" * 60000,
             b'{"ts": 1764817200.5, "id.orig_h": "10.0.0.5", "query": "\xff\xfe.example", '
             b'"qtype": 1}'],
    "dnsmasq": [b"Dec  4 03:00:00 dnsmasq[1]: query[A] nul\x00and\xff.example from 10.0.0.5",
                b"Dec  4 03:00:00 dnsmasq[1]: query[A] " + b"a." * 200 + b"x from 10.0.0.5",
                b"Dec 99 03:00:00 dnsmasq[1]: query[A] x.example from 10.0.0.5",
                b"Feb 30 03:00:00 dnsmasq[1]: query[A] x.example from 10.0.0.5",
                b"Dec  4 03:00:00 dnsmasq[1]: query[\xff] x.example from 10.0.0.5",
                b"Dec  4 03:00:00 dnsmasq[1]: query[A x.example from 10.0.0.5", b" query["],
    "jsonl": [b'{"time": 1764817200.5, "client": "10.0.0.5", "qname": "nul\\u0000and\xff.x"}',
              b'{"time": 1764817200.5, "client": "10.0.0.5", "qname": "' + b"a." * 200 + b'x"}',
              b"[" * 60000, b'{"time": true, "client": "10.0.0.5", "qname": "x"}',
              b'{"time": 1e999, "client": "10.0.0.5", "qname": "x"}',
              b'{"time": 1, "client": ["10.0.0.5"], "qname": "x"}',
              b'{"time": 1, "client": "10.0.0.5", "qname": "x", "qtype": {"a": 1}}',
              b'{"time": 1, "client": "10.0.0.5", "qname": "x", "qtype": "A\\u0000"}',
              b'{"time": 1, "client": "10.0.0.5", "qname": "\\ud800x"}', b"\xff\xfe\x00"],
}
KEPT = {   # the odd names that are names after all, as the wire decoder would give them
    "zeek": ["nul\x00and\xff.example", "\xff\xfe.example"],
    "dnsmasq": ["nul\x00and\xff.example"],
    "jsonl": ["nul\x00and\xff.x", "\xed\xa0\x80x"],     # a lone surrogate: its bytes
}


@pytest.mark.parametrize("fmt", sorted(GOOD))
def test_hostile_lines_are_counted_never_raised(tmp_path: Path, fmt: str) -> None:
    header, good = GOOD[fmt]
    long_line = b"x" * (3 * 64 * 1024 + 17) + b"\n"     # over MAX_LINE: cut, one error
    body = [good(0), long_line] + [line + b"\n" for line in HOSTILE[fmt]] + [good(1)]
    path = tmp_path / "hostile.log"
    path.write_bytes(header + b"".join(body))
    got, stats = read_all(path, fmt, year=2025)
    first = header.count(b"\n") + 1
    assert [o.qname for o in got] == ["n0.example", *KEPT[fmt], "n1.example"]
    assert error_lines(stats)[0] == first + 1                    # the long line, by number
    assert stats.error_count == len(HOSTILE[fmt]) + 1 - len(KEPT[fmt])
    assert stats.lines == first + len(body) - 1                  # numbering went on right
    assert_counted(stats)


def test_error_list_is_bounded_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "dns.log"
    good = GOOD["zeek"][1]
    path.write_bytes(ZEEK_HEADER + good(0) + b"garbage\n" * 250 + good(1))
    got, stats = read_all(path, "zeek")
    assert len(got) == 2
    assert stats.error_count == 250
    assert error_lines(stats) == list(range(5, 5 + MAX_ERRORS))


@pytest.mark.parametrize("fmt", sorted(GOOD))
def test_reader_is_lazy_first_observation_before_the_file_ends(tmp_path: Path,
                                                               fmt: str) -> None:
    """The first observation arrives while the writer is still holding the rest back: a
    reader that slurped the file would wait for the end (the writer's timeout) first."""
    header, good = GOOD[fmt]
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    taken = threading.Event()
    released: list[bool] = []

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(header + good(0))
            f.flush()
            released.append(taken.wait(10))
            f.writelines(good(n) for n in range(1, 20_000))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    stats = ImportStats()
    it = read_log(fifo, fmt, stats, year=2025)
    assert next(it).qname == "n0.example"
    taken.set()
    assert sum(1 for _ in it) == 19_999
    thread.join(10)
    assert released == [True]


def test_missing_unreadable_and_wrong_format_raise_at_once(tmp_path: Path) -> None:
    db = tmp_path / "pihole-FTL.db"
    build_ftl_v5(db, FTL_ROWS[:1])
    for fmt in FORMATS:
        with pytest.raises(LogImportError):
            read_log(tmp_path / "nope.log", fmt, ImportStats())       # before iterating
        with pytest.raises(LogImportError):
            read_log(tmp_path, fmt, ImportStats())                   # a directory
    with pytest.raises(LogFormatError):
        read_log(db, "nosuch", ImportStats())
    for fmt in ("zeek", "dnsmasq", "jsonl"):
        with pytest.raises(LogFormatError):
            read_log(db, fmt, ImportStats())                         # the database as text
    with pytest.raises(LogFormatError):
        read_log(LOGS / "zeek-dns.log", "pihole", ImportStats())     # text as the database
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE other (x)").connection.close()
    with pytest.raises(LogFormatError):
        read_log(empty, "pihole", ImportStats())                     # SQLite, but not FTL's
    with pytest.raises(LogFormatError):                              # every line bad JSON
        read_all(LOGS / "dnsmasq.log", "jsonl")


# --- throughput (run as a module; not a test) --------------------------------------------------

def bench(lines: int = 300_000) -> None:
    """Lines per second per format on generated realistic logs (a tmp dir, removed after)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        zeek = base / "dns.log"
        zeek.write_bytes(ZEEK_HEADER.replace(b"rcode\n", b"rcode\tid.resp_p\tanswers\n") + b"".join(
            b"%.6f\t10.0.%d.%d\tapi%d.cdn%d.example.com\t1\tA\t0\t53\t192.0.2.34\n"
            % (T0 + n * 0.01, n % 3, n % 251, n % 997, n % 13) for n in range(lines)))
        zjson = base / "dns.json"
        zjson.write_text("".join(json.dumps(
            {"ts": T0 + n * 0.01, "uid": "CHhAvVGS1DHFjwGM9", "id.orig_h": f"10.0.0.{n % 251}",
             "id.orig_p": 50000, "id.resp_h": "10.0.0.1", "id.resp_p": 53, "proto": "udp",
             "query": f"api{n % 997}.example.com", "qtype": 1, "qtype_name": "A", "rcode": 0,
             "answers": ["192.0.2.34"]}) + "\n" for n in range(lines)))
        dm = base / "dnsmasq.log"
        dm.write_bytes(b"".join(
            b"Dec  4 03:%02d:%02d dnsmasq[812]: query[A] api%d.example.com from 10.0.0.%d\n"
            b"Dec  4 03:%02d:%02d dnsmasq[812]: forwarded api%d.example.com to 192.0.2.53\n"
            % (n // 60 % 60, n % 60, n % 997, n % 251, n // 60 % 60, n % 60, n % 997)
            for n in range(lines // 2)))
        jl = base / "exchange.jsonl"
        jl.write_text("".join(json.dumps({"time": T0 + n * 0.01, "client": f"10.0.0.{n % 251}",
                                          "qname": f"api{n % 997}.example.com", "qtype": "A"})
                              + "\n" for n in range(lines)))
        db = base / "pihole-FTL.db"
        build_ftl_v6(db, [(int(T0) + n, 1, 2, f"api{n % 997}.example.com", f"10.0.0.{n % 251}",
                           4) for n in range(lines)])
        for label, path, fmt in (("zeek tsv", zeek, "zeek"), ("zeek json", zjson, "zeek"),
                                 ("dnsmasq", dm, "dnsmasq"), ("jsonl", jl, "jsonl"),
                                 ("pihole v6", db, "pihole")):
            stats = ImportStats()
            t0 = time.perf_counter()
            count = sum(1 for _ in read_log(path, fmt, stats, year=2025))
            took = time.perf_counter() - t0
            print(f"{label:10} {stats.lines:>8} lines {count:>8} obs  {took:6.2f} s  "
                  f"{stats.lines / took:>9,.0f} lines/s")


if __name__ == "__main__":
    bench()
