"""Threat-intel feed formats (STIX 2.1, MISP, CSV) and the feed name checks: realistic files
give exactly the names a user expects blocked, skipped records are counted, bad ones are
errors that say where, and hostile files cost a ListLoadError, never another exception.

Pure functions over files: no daemon needed (the end-to-end feed tests live elsewhere).
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from publicsuffixlist import PublicSuffixList

from sinkhole.lists import ListLoadError, load_path
from sinkhole.lists.formats import detect_format, find_feed_rule, jsonstream, load_feed
from sinkhole.lists.formats.stix2 import parse_pattern
from sinkhole.lists.names import PUBLIC_SUFFIX, is_public_suffix, validate_name

DATA = Path(__file__).parent / "data" / "feeds"
STIX = DATA / "triangulation.stix2"
MISP_FEED = DATA / "misp-feed"
EVENT1 = MISP_FEED / "1f5501fb-0e32-5b62-ae86-b8b9f49fca1d.json"
THREATFOX = DATA / "threatfox.csv"
URLHAUS = DATA / "urlhaus.csv"
NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

TRIANGULATION = {
    "addatamarket.net", "ans7tv.net", "anstv.net", "backuprabbit.com", "businessvideonews.com",
    "cloudsponcer.com", "datamarketplace.net", "growthtransport.com", "mobilegamerstats.com",
    "snoweeanalytics.com", "tagclick-cdn.com", "topographyupdates.com", "unlimitedteacup.com",
    "virtuallaughing.com", "web-trackers.com"}


def errors(parsed):
    return [(Path(e.source).name, e.line, e.reason) for e in parsed.errors]


def write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def bundle(*objects) -> dict:
    return {"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
            "objects": list(objects)}


def indicator(n: int, pattern: str, **extra) -> dict:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{n:08d}",
            "created": "2024-05-01T10:00:00Z", "modified": "2024-05-01T10:00:00Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2024-05-01T10:00:00Z",
            **extra}


# --- STIX 2.1 --------------------------------------------------------------------------------

def test_stix_bundle_like_mvt_gives_the_domains_and_counts_the_rest():
    parsed = load_feed(STIX, "stix2", now=NOW)
    assert parsed.block == TRIANGULATION
    # skipped: the IPv4 indicator, the process-name one, the revoked one, the expired one
    assert parsed.unsupported == 4
    assert parsed.errors == [] and parsed.lines == 19
    assert parsed.meta["title"] == "OperationTriangulation"


def test_stix_expiry_follows_the_clock():
    before = load_feed(STIX, "stix2", now=datetime(2023, 12, 1, tzinfo=UTC).timestamp())
    assert before.block == TRIANGULATION | {"smartsavingmarketing.com"}
    assert before.unsupported == 3


def test_stix_find_names_the_indicator_and_what_it_indicates():
    assert find_feed_rule(STIX, "auto", "www.BackupRabbit.com", now=NOW) == [
        (str(STIX), "indicator--ff727a51-3906-53e6-8f61-b6c6853b0d99",
         "[domain-name:value='backuprabbit.com'] (indicates OperationTriangulation)")]
    assert find_feed_rule(STIX, "stix2", "mysyncs.com", now=NOW) == []  # revoked


@pytest.mark.parametrize("pattern, expected", [
    ("[domain-name:value='a.example']", [("domain-name:value", "a.example")]),
    ("[domain-name:value = 'a.example' OR domain-name:value = 'b.example']",
     [("domain-name:value", "a.example"), ("domain-name:value", "b.example")]),
    ("[domain-name:value = 'a.example'] OR [url:value = 'http://b.example/x']",
     [("domain-name:value", "a.example"), ("url:value", "http://b.example/x")]),
    (r"[domain-name:value = 'it\'s\\x']", [("domain-name:value", "it's\\x")]),
    ("[file:hashes.'SHA-256' = 'ab12']", [("file:hashes.'SHA-256'", "ab12")]),
    # valid STIX we will not act on: None (counted as unsupported)
    ("[domain-name:value = 'a.example'] AND [domain-name:value = 'b.example']", None),
    ("[domain-name:value = 'a.example' AND domain-name:value = 'b.example']", None),
    ("[domain-name:value != 'a.example']", None),
    ("[domain-name:value LIKE '%.a.example']", None),
    ("[domain-name:value IN ('a.example', 'b.example')]", None),
    ("[domain-name:value = 'a.example'] WITHIN 300 SECONDS", None),
    ("([domain-name:value = 'a.example'] OR [domain-name:value = 'b.example'])", None),
    ("[domain-name:value = b'YQ==']", None),
    # not a pattern: ValueError (an error with the indicator id)
    ("[domain-name:value = 'a.example'", ValueError),
    ("[domain-name:value = 'a.example]", ValueError),
    (r"[domain-name:value = 'a\x.example']", ValueError),
    ("[domain-name:value = 'a.example')", ValueError),
    ("[domain-name:value = 'a.example'] XOR [domain-name:value = 'b']", ValueError),
    ("[domain-name:value = 'a.example'] OR", ValueError),
    ("domain-name:value = 'a.example'", ValueError),
    ("", ValueError),
])
def test_stix_pattern_subset(pattern, expected):
    if expected is ValueError:
        with pytest.raises(ValueError):
            parse_pattern(pattern)
    else:
        assert parse_pattern(pattern) == expected


def test_stix_rule_text_url_hosts_skips_and_errors(tmp_path):
    path = write_json(tmp_path / "feed.json", bundle(
        {"type": "identity", "id": "identity--1", "name": "Example CERT"},
        indicator(1, "[domain-name:value = 'c2.example.net'] OR [url:value = "
                     "'https://Drop.Example.org:8443/p?q=1'] OR [ipv4-addr:value = '192.0.2.1']",
                  name="Stealer C2", description="ignored: the name wins"),
        indicator(2, "[url:value = 'http://192.0.2.7/x']", description="a  payload\nhost"),
        indicator(3, "[domain-name:value = 'a.example'] AND [domain-name:value = 'b.example']"),
        indicator(4, "[domain-name:value = 'broken.example'"),
        indicator(5, "[domain-name:value = 'co.uk']"),
        indicator(6, "[domain-name:value = '192.0.2.9']"),
        indicator(7, "alert tcp any any", pattern_type="snort"),
        indicator(8, ["not", "a", "string"]),
        42,
    ))
    parsed = load_feed(path, "stix2", now=NOW)
    assert parsed.block == {"c2.example.net", "drop.example.org"}
    assert parsed.unsupported == 4  # the IPv4 comparison, the IP URL, the AND, the snort rule
    assert errors(parsed) == [
        ("feed.json", 0, "indicator--00000004: unbalanced brackets in pattern"),
        ("feed.json", 0, f"indicator--00000005: {PUBLIC_SUFFIX}"),
        ("feed.json", 0, "indicator--00000006: an IP address, not a name"),
        ("feed.json", 0, "indicator--00000008: pattern: expected a string"),
        ("feed.json", 0, "object #10: not a STIX object (no type)"),
    ]
    assert find_feed_rule(path, "stix2", "drop.example.org", now=NOW) == [
        (str(path), "indicator--00000001", "Stealer C2")]


def test_stix_version_superseded_by_a_newer_revoked_or_expired_one_is_skipped(tmp_path):
    old, new = "2024-05-01T10:00:00Z", "2024-06-01T10:00:00.5Z"
    path = write_json(tmp_path / "versions.json", bundle(
        indicator(1, "[domain-name:value = 'revoked.example']", modified=old),
        indicator(1, "[domain-name:value = 'revoked.example']", modified=new, revoked=True),
        indicator(2, "[domain-name:value = 'extended.example']", modified=old,
                  valid_until="2025-01-01T00:00:00Z"),
        indicator(2, "[domain-name:value = 'extended.example']", modified=new,
                  valid_until="2027-01-01T00:00:00Z"),
        indicator(3, "[domain-name:value = 'alive.example']", modified=old),
    ))
    parsed = load_feed(path, "stix2", now=NOW)
    assert parsed.block == {"extended.example", "alive.example"}
    assert parsed.unsupported == 3 and parsed.errors == []


# --- MISP ------------------------------------------------------------------------------------

MISP_TO_IDS = {"backuprabbit.com", "cdn.web-trackers.com", "unlimitedteacup.com",
               "topographyupdates.com", "growthtransport.com", "mobilegamerstats.com"}


def test_misp_feed_folder_reads_every_event_of_the_manifest():
    parsed = load_feed(MISP_FEED, "auto")
    assert parsed.block == MISP_TO_IDS
    # ip-dst x2, not to_ids, deleted, link, URL on an IP, sha256
    assert parsed.unsupported == 7 and parsed.lines == 14
    assert errors(parsed) == [
        (EVENT1.name, 0, "attribute afdb3aca-6fe3-5b9c-83fd-a927b3b6ca28: empty label")]


def test_misp_to_ids_only_false_takes_context_attributes_too():
    parsed = load_feed(MISP_FEED, "misp", to_ids_only=False)
    assert parsed.block == MISP_TO_IDS | {"virtuallaughing.com"}
    assert parsed.unsupported == 6


def test_misp_single_event_and_find(tmp_path):
    parsed = load_feed(EVENT1, "auto")
    assert parsed.block == {"backuprabbit.com", "cdn.web-trackers.com", "unlimitedteacup.com",
                            "topographyupdates.com"}
    assert parsed.meta["title"].startswith("Operation Triangulation: iOS devices")
    assert find_feed_rule(MISP_FEED, "misp", "backuprabbit.com") == [
        (str(EVENT1), "attribute 6ae32b1a-3c34-5173-8560-19ba6ba7f095",
         "domain backuprabbit.com (C2 of the first stage)")]
    assert find_feed_rule(MISP_FEED, "misp", "virtuallaughing.com") == []  # not to_ids


@pytest.mark.parametrize("doc", [
    lambda attrs: {"response": {"Attribute": attrs}},
    lambda attrs: {"Attribute": attrs},
    lambda attrs: {"response": [{"Event": {"info": "x", "Attribute": attrs}}]},
    lambda attrs: [{"Event": {"Object": [{"name": "domain-ip", "Attribute": attrs}]}}],
], ids=["response-attributes", "attributes", "response-events", "event-list-objects"])
def test_misp_export_shapes_and_flag_spellings(tmp_path, doc):
    attrs = [
        {"uuid": "u1", "type": "domain", "value": "one.example", "to_ids": True},
        {"uuid": "u2", "type": "hostname", "value": "two.example", "to_ids": "1"},
        {"uuid": "u3", "type": "domain", "value": "three.example", "to_ids": 1,
         "deleted": "0"},
        {"uuid": "u4", "type": "domain", "value": "off.example", "to_ids": "0"},
        {"uuid": "u5", "type": "domain", "value": "gone.example", "to_ids": True,
         "deleted": True},
        {"uuid": "u6", "type": "domain", "value": "odd.example", "to_ids": "maybe"},
        {"uuid": "u7", "type": "domain", "value": 7, "to_ids": True},
    ]
    parsed = load_feed(write_json(tmp_path / "export.json", doc(attrs)), "auto")
    assert parsed.block == {"one.example", "two.example", "three.example"}
    assert parsed.unsupported == 2
    assert [e.reason for e in parsed.errors] == [
        "attribute u6: to_ids: expected a boolean, found 'maybe'",
        "attribute u7: value: expected a string"]


def test_misp_feed_with_a_missing_and_a_hostile_event_keeps_the_rest(tmp_path):
    feed = tmp_path / "feed"
    shutil.copytree(MISP_FEED, feed)
    manifest = json.loads((feed / "manifest.json").read_text())
    manifest["7e2b7a9c-0d55-4a6f-9c33-5bb1e6f0c001"] = {"info": "listed, never downloaded"}
    manifest["../../etc/passwd"] = {"info": "path traversal"}
    write_json(feed / "manifest.json", manifest)
    (feed / "dd3e2276-f65c-59f0-b734-ee5b9fe60d8d.json").write_text('{"Event": {"Attribute": [')
    parsed = load_feed(feed, "misp")
    assert parsed.block == {"backuprabbit.com", "cdn.web-trackers.com", "unlimitedteacup.com",
                            "topographyupdates.com"}
    reasons = [e.reason for e in parsed.errors]
    assert reasons[1].startswith("event dd3e2276-f65c-59f0-b734-ee5b9fe60d8d: invalid JSON")
    assert reasons[2:] == [
        "event 7e2b7a9c-0d55-4a6f-9c33-5bb1e6f0c001: No such file or directory",
        "event '../../etc/passwd': not a UUID"]


# --- CSV -------------------------------------------------------------------------------------

THREATFOX_NAMES = {"dazayse.hi-lo.bet", "update-check.zip-archive.net", "c2.stealc-panel.com",
                   "xn--bcher-update-dlb.de", "mbond38982.workers.dev"}


@pytest.mark.parametrize("column", ["ioc_value", "IOC_Value", 3])
def test_csv_threatfox_export(column):
    parsed = load_feed(THREATFOX, "csv", column=column)
    assert parsed.block == THREATFOX_NAMES
    assert parsed.unsupported == 4  # IPv4:port, [IPv6]:port, sha256, md5
    assert errors(parsed) == [("threatfox.csv", 18, PUBLIC_SUFFIX)]
    assert find_feed_rule(THREATFOX, "csv", "c2.stealc-panel.com", column=column) == [
        (str(THREATFOX), "line 14", '"2026-07-04 20:58:02", "1844846", "c2.Stealc-Panel.com:443", '
         '"domain", "botnet_cc", "win.stealc", "None", "Stealc", "", "100", "False", "None", '
         '"stealc", "0", "abuse_ch"')]


@pytest.mark.parametrize("column", ["url", 3])
def test_csv_urlhaus_export_takes_url_hosts(column):
    parsed = load_feed(URLHAUS, "csv", column=column)
    assert parsed.block == {"dl.fileshare-cdn.top", "free-gift-cards.example-promo.ru",
                            "upd-bucket-7731.s3.amazonaws.com"}
    assert parsed.unsupported == 2  # URLs on an IPv4 and an IPv6 address
    assert errors(parsed) == [("urlhaus.csv", 13, PUBLIC_SUFFIX),  # s3.amazonaws.com itself
                              ("urlhaus.csv", 16, "a single label, not a host name")]


def test_csv_plain_header_short_rows_stray_quotes_and_bad_bytes(tmp_path):
    path = tmp_path / "iocs.csv"
    path.write_bytes(b"\xef\xbb\xbfindicator,type,comment\n"
                     b"alpha.example,domain,first\n"
                     b"lonely\n"
                     b'"beta,example",domain,quoted comma\n'
                     b'gamma.example,domain,"an unterminated quote\n'
                     b"epsilon.example,domain,after it\n"
                     b"caf\xe9.example,domain,latin-1\n"
                     b"http://delta.example/x,url,\n")
    parsed = load_feed(path, "csv", column="indicator")
    assert parsed.block == {"alpha.example", "gamma.example", "epsilon.example",
                            "delta.example"}
    assert errors(parsed) == [("iocs.csv", 3, "a single label, not a host name"),
                              ("iocs.csv", 4, "invalid character ','"),
                              ("iocs.csv", 7, "invalid UTF-8 (or U+FFFD)")]
    by_number = load_feed(path, "csv", column=1)
    assert by_number.block == parsed.block
    # column 2 by number: its header cell "type" is no error; every "domain"/"url" cell is
    assert [e.line for e in load_feed(path, "csv", column=2).errors] == [2, 3, 4, 5, 6, 7, 8]


def test_csv_column_must_exist(tmp_path):
    with pytest.raises(ListLoadError, match="no column named 'ioc'"):
        load_feed(THREATFOX, "csv", column="ioc")
    with pytest.raises(ListLoadError, match="needs a column"):
        load_feed(THREATFOX, "csv")
    parsed = load_feed(THREATFOX, "csv", column=40)
    assert parsed.block == set() and parsed.errors[0].reason == "no column 40 (the row has 15)"


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_json_read_through_a_small_window_gives_the_same_result(tmp_path, monkeypatch, chunk):
    """Values cut at the window's edge (numbers, multi-byte UTF-8, long strings) must decode
    as if the file were read whole."""
    # past the first 8 KiB (read at once, for the binary sniff): multi-byte characters and
    # a number decoded on its own, each cut by the window's edge when it is small
    doc = bundle({"type": "identity", "id": "identity--1", "name": "Ä€𝄞" * 1000},
                 *(indicator(n, f"[domain-name:value = 'bücher-{n}.example']", x_n=12345)
                   for n in range(40)))
    doc["x_total"] = 1234567890
    text = tmp_path / "text.json"
    text.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    expected = [(p, load_feed(p, "auto", now=NOW)) for p in (STIX, MISP_FEED, EVENT1, text)]
    monkeypatch.setattr(jsonstream, "CHUNK", chunk)
    for path, want in expected:
        got = load_feed(path, "auto", now=NOW)
        assert (got.block, got.unsupported, got.errors) == (want.block, want.unsupported,
                                                            want.errors)
    assert len(expected[-1][1].block) == 40 and "xn--bcher-7-n2a.example" in expected[-1][1].block


# --- hostile files ---------------------------------------------------------------------------

def hostile(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt", ["stix2", "auto"])
@pytest.mark.parametrize("data, reason", [
    (STIX.read_bytes()[:9000], "invalid JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8, "binary file"),
    (b'{"type": "bundle", "objects": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
     "nested too deeply"),
    (b'{"type": "bundle", "objects": [{"type": "indicator", "x": ' + b'{"a": ' * 100_000
     + b"1" + b"}" * 100_000 + b"}]}", "nested too deeply"),
    (b'{"type": "bundle", "objects": {"type": "indicator"}}', "objects: expected an array"),
    (b'{"type": "report", "objects": []}', "not a STIX bundle"),
    (b'{"type": "bundle", "objects": []} {"more": 1}', "data after the JSON document"),
], ids=["truncated", "binary", "nested-array", "nested-object", "objects-type", "not-bundle",
        "trailing"])
def test_stix_hostile_files_are_load_errors(tmp_path, fmt, data, reason):
    path = hostile(tmp_path, "hostile.json", data)
    with pytest.raises(ListLoadError) as err:
        load_feed(path, fmt, now=NOW)
    assert reason in err.value.reason and "reader failed" not in err.value.reason


@pytest.mark.parametrize("data, reason", [
    (b'{"Event": {"Attribute": [{"type": "domain", "value": "a.example"', "invalid JSON"),
    (b'{"Event": {"Attribute": {"type": "domain"}}}', "Attribute: expected an array"),
    (b'{"Event": {"Attribute": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}}",
     "nested too deeply"),
    (b'{"Events": []}', "not a MISP event"),
    (b"\xff\xfe{\x00\"\x00E\x00", "binary file"),  # UTF-16
])
def test_misp_hostile_files_are_load_errors(tmp_path, data, reason):
    path = hostile(tmp_path, "event.json", data)
    with pytest.raises(ListLoadError) as err:
        load_feed(path, "misp")
    assert reason in err.value.reason and "reader failed" not in err.value.reason


def test_wrong_types_in_fields_are_errors_with_the_id(tmp_path):
    path = write_json(tmp_path / "types.json", bundle(
        indicator(1, "[domain-name:value = 'a.example']", revoked="yes"),
        indicator(2, "[domain-name:value = 'b.example']", valid_until=17),
        indicator(3, "[domain-name:value = 'c.example']", valid_until="next tuesday"),
        indicator(4, "[domain-name:value = 'd.example']", pattern_type=["stix"]),
        {"type": ["indicator"], "id": ["x"]},
        indicator(6, "[domain-name:value = 'ok.example']", name={"not": "text"}),
    ))
    parsed = load_feed(path, "stix2", now=NOW)
    assert parsed.block == {"ok.example"}
    assert [e.reason for e in parsed.errors] == [
        "indicator--00000001: revoked: expected true or false",
        "indicator--00000002: valid_until: expected a timestamp, found int",
        "indicator--00000003: valid_until: invalid timestamp 'next tuesday'",
        "indicator--00000004: pattern_type: expected a string",
        "object #5: not a STIX object (no type)"]


def test_non_utf8_value_is_an_error_not_a_lost_feed(tmp_path):
    doc = json.dumps(bundle(indicator(1, "[domain-name:value = 'b\u00fccher.example']"),
                            indicator(2, "[domain-name:value = 'fine.example']",
                                      description="caf\u00e9")), ensure_ascii=False)
    path = hostile(tmp_path, "latin1.json", doc.encode().replace("ü".encode(), b"\xfc")
                   .replace("é".encode(), b"\xe9"))
    parsed = load_feed(path, "stix2", now=NOW)
    assert parsed.block == {"fine.example"}
    assert [e.reason for e in parsed.errors] == [
        "indicator--00000001: invalid UTF-8 (or U+FFFD)"]


@pytest.mark.parametrize("source, fmt, extra", [
    (STIX, "stix2", {}), (EVENT1, "misp", {}), (THREATFOX, "csv", {"column": "ioc_value"})])
def test_mutated_feeds_raise_only_load_errors(tmp_path, source, fmt, extra):
    """Byte flips, cuts, stray brackets, quotes, NULs: a result or a ListLoadError that says
    what is wrong, never another exception (nor the reader's catch-all for one)."""
    rng = random.Random(fmt)
    original = source.read_bytes()
    tokens = [b"{", b"[", b"]", b"}", b'"', b"\\", b"\x00", b"\xff", b"1e999", b",", b"null",
              b"'", b" OR ", b"\r", b"#"]
    path = tmp_path / "mutant"
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.4:
                data[i] = rng.randrange(256)
            elif roll < 0.6:
                del data[i:i + rng.randint(1, 50)]
            else:
                data[i:i] = rng.choice(tokens)
        path.write_bytes(bytes(data))
        for mode in (fmt, "auto"):
            try:
                load_feed(path, mode, now=NOW, **extra)
                find_feed_rule(path, mode, "backuprabbit.com", now=NOW, **extra)
            except ListLoadError as err:
                assert "reader failed" not in err.reason


def test_size_cap_and_csv_binary(tmp_path):
    with pytest.raises(ListLoadError, match="larger than"):
        load_feed(STIX, "stix2", max_bytes=4096)
    path = hostile(tmp_path, "feed.csv", b"ioc\n" + b"\x00\x01" * 100)
    with pytest.raises(ListLoadError, match="binary file"):
        load_feed(path, "csv", column="ioc")
    with pytest.raises(ListLoadError, match="No such file"):
        load_feed(tmp_path / "absent.json", "stix2")


# --- names -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key", [
    ("Evil.Example.COM.", "evil.example.com"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ("*.evil.example", "*.evil.example"),
    ("evil.co.uk", "evil.co.uk"),
    ("city.kawasaki.jp", "city.kawasaki.jp"),  # a PSL exception: registrable
    ("bucket.s3.amazonaws.com", "bucket.s3.amazonaws.com"),
])
def test_validate_name_accepts(text, key):
    assert validate_name(text) == key


@pytest.mark.parametrize("text, reason", [
    ("com", PUBLIC_SUFFIX),
    ("co.uk", PUBLIC_SUFFIX),
    ("CO.UK.", PUBLIC_SUFFIX),
    ("*.co.uk", PUBLIC_SUFFIX),
    ("github.io", PUBLIC_SUFFIX),  # the private section counts: every user's pages
    ("s3.amazonaws.com", PUBLIC_SUFFIX),
    ("kawasaki.jp", PUBLIC_SUFFIX),  # the parent of a *. rule
    ("foo.kawasaki.jp", PUBLIC_SUFFIX),  # matched by *.kawasaki.jp
    ("рф", PUBLIC_SUFFIX),
    ("192.0.2.1", "an IP address, not a name"),
    ("2001:db8::1", "an IP address, not a name"),
    ("[2001:db8::1]", "an IP address, not a name"),
    ("intranet", "a single label, not a host name"),
    ("1.2.3.999", "an all-numeric top-level label, not a host name"),
    ("xn--zz.example", "invalid IDNA label 'xn--zz'"),
    ("a..example", "empty label"),
    ("a\u05d0.example", "cannot convert international name to ASCII"),  # mixed LTR/RTL
    ("\u00fc" * 64 + ".example", "cannot convert international name to ASCII"),  # too long
    ("bad\ufffd.example", "invalid UTF-8 (or U+FFFD)"),
])
def test_validate_name_rejects(text, reason):
    with pytest.raises(ValueError) as err:
        validate_name(text)
    assert str(err.value).startswith(reason)


def test_public_suffix_check_agrees_with_the_package():
    """Our three-set lookup against publicsuffixlist's own, over every rule of its snapshot,
    their parents and a child of each."""
    from publicsuffixlist import PSLFILE
    psl = PublicSuffixList()
    names = set()
    for line in Path(PSLFILE).read_text(encoding="utf-8").splitlines():
        rule = line.strip().split(" ")[0].lower().lstrip("!").removeprefix("*.")
        if rule and not rule.startswith("//"):
            rule = rule.encode("idna").decode()
            names |= {rule, "x." + rule, "city." + rule, rule.partition(".")[2]}
    names = {n for n in names if "." in n}
    assert len(names) > 10_000
    mismatched = sorted(n for n in names if is_public_suffix(n) != psl.is_public(n))
    assert mismatched == []


# --- dispatch --------------------------------------------------------------------------------

def test_detect_format(tmp_path):
    assert detect_format(STIX) == "stix2"
    assert detect_format(MISP_FEED) == "misp"
    assert detect_format(MISP_FEED / "manifest.json") == "misp"
    assert detect_format(EVENT1) == "misp"
    assert detect_format(write_json(tmp_path / "a.json", {"response": {"Attribute": []}})) == \
        "misp"
    assert detect_format(write_json(tmp_path / "late.json", {"id": "bundle--1", "objects": []})) \
        == "stix2"
    assert detect_format(THREATFOX) == "plain"  # CSV is never guessed
    adblock = tmp_path / "ads.txt"
    adblock.write_text("[Adblock Plus 2.0]\n||ads.example^\n")
    assert detect_format(adblock) == "plain"
    assert detect_format(DATA) == "plain"  # a folder of list files without a manifest
    with pytest.raises(ListLoadError, match="neither a STIX bundle nor a MISP"):
        detect_format(write_json(tmp_path / "other.json", {"data": []}))


def test_line_formats_go_to_the_line_parser(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# Title: test\n0.0.0.0 ads.example\n0.0.0.0 track.example\n\nbad line x\n")
    for fmt in ("hosts", "plain", "auto"):
        parsed = load_feed(hosts, fmt)
        assert parsed.block == load_path(hosts).block == {"ads.example", "track.example"}
        assert parsed.error_count == 1
    assert find_feed_rule(hosts, "auto", "x.track.example") == [
        (str(hosts), "line 3", "0.0.0.0 track.example")]
