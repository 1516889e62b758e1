"""Tests for sinkhole.lists: list formats and errors, loading from disk, and the Policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinkhole.lists import (
    ListInfo,
    ListLoadError,
    ParsedList,
    build_policy,
    diff_names,
    find_rule,
    load_path,
    matcher,
    normalise_name,
    parse_lines,
)
from sinkhole.lists.parse import MAX_ERRORS, MAX_LINE

ROOT = Path(__file__).resolve().parent.parent


def parse(*lines: str) -> ParsedList:
    return parse_lines(lines, "test")


def outcome(parsed: ParsedList) -> str | tuple[str, str]:
    """What one parsed line became, in one comparable value for the tables below."""
    if parsed.errors:
        return ("error", parsed.errors[0].reason)
    if parsed.unsupported:
        return "unsupported"
    rules = [(kind, key) for kind in ("block", "allow", "nxdomain", "nodata")
             for key in sorted(getattr(parsed, kind))]
    rules += [("local", key) for key in parsed.local]
    if not rules:
        return "ignored"
    return rules[0] if len(rules) == 1 else ("many", " ".join(k for _, k in rules))


# --- formats: one line -> what it means ---


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # plain
        ("evil.example", ("block", "evil.example")),
        ("  Evil.EXAMPLE.  ", ("block", "evil.example")),
        ("_dmarc.evil-1.example", ("block", "_dmarc.evil-1.example")),
        ("evil.example # trailing comment", ("block", "evil.example")),
        ("bücher.example", ("block", "xn--bcher-kva.example")),
        ("*.evil.example", ("block", "*.evil.example")),
        # hosts
        ("0.0.0.0 evil.example", ("block", "evil.example")),
        ("127.0.0.1\tevil.example", ("block", "evil.example")),
        (":: evil.example", ("block", "evil.example")),
        ("0.0.0.0 a.example b.example # two", ("many", "a.example b.example")),
        ("192.168.1.10 printer.lan", ("block", "printer.lan")),
        ("127.0.0.1 localhost", "ignored"),
        ("127.0.0.1 localhost.localdomain", "ignored"),
        ("255.255.255.255 broadcasthost", "ignored"),
        ("::1 localhost ip6-localhost ip6-loopback", "ignored"),
        ("fe00::0 ip6-localnet", "ignored"),
        ("0.0.0.0 0.0.0.0", "ignored"),
        ("127.0.0.1 local", "ignored"),
        # adblock
        ("||evil.example^", ("block", "evil.example")),
        ("||evil.example^|", ("block", "evil.example")),
        ("||evil.example^$important", ("block", "evil.example")),
        ("||evil.example^$all,important", ("block", "evil.example")),
        ("||*.evil.example^", ("block", "*.evil.example")),
        ("@@||good.example^", ("allow", "good.example")),
        ("@@||good.example^$important", ("allow", "good.example")),
        ("||evil.example^$third-party", "unsupported"),
        ("||evil.example^$dnstype=AAAA", "unsupported"),
        ("@@||good.example^$badfilter", "unsupported"),
        ("||evil.example", "unsupported"),
        ("||ads*.example^", "unsupported"),
        ("||evil.example/banner^", "unsupported"),
        ("/banner[0-9]+/", "unsupported"),
        ("|https://evil.example/", "unsupported"),
        ("example.com##.ad-banner", "unsupported"),
        ("example.com#@#.ad-banner", "unsupported"),
        ("example.com#?#div:has(.ad)", "unsupported"),
        ("[Adblock Plus 2.0]", "ignored"),
        # comments and blanks
        ("", "ignored"),
        ("   ", "ignored"),
        ("# a comment", "ignored"),
        ("! adblock comment", "ignored"),
        ("; zone comment", "ignored"),
        ("##.generic-hide", "ignored"),
        # RPZ
        ("evil.example CNAME .", ("nxdomain", "evil.example")),
        ("evil.example 300 IN CNAME .", ("nxdomain", "evil.example")),
        ("evil.example IN 300 cname . ; comment", ("nxdomain", "evil.example")),
        ("evil.example CNAME *.", ("nodata", "evil.example")),
        ("*.evil.example CNAME .", ("nxdomain", "*.evil.example")),
        ("good.example CNAME rpz-passthru.", ("allow", "good.example")),
        ("good.example CNAME good.example.", ("allow", "good.example")),
        ("evil.example A 192.0.2.1", ("local", "evil.example")),
        ("evil.example AAAA 2001:db8::1", ("local", "evil.example")),
        ("evil.example CNAME walled.example.", ("local", "evil.example")),
        ("evil.example CNAME rpz-drop.", "unsupported"),
        ("evil.example TXT blocked", "unsupported"),
        ("32.1.2.0.192.rpz-ip CNAME .", "unsupported"),
        ("ns.evil.example.rpz-nsdname CNAME .", "unsupported"),
        ("$TTL 300", "ignored"),
        ("$INCLUDE other.zone", "unsupported"),
        ("@ 300 IN SOA ns.example. hostmaster.example. 1 3600 600 86400 300", "ignored"),
        ("@ IN NS ns.example.", "ignored"),
    ],
)
def test_line_formats(line: str, expected: object) -> None:
    assert outcome(parse(line)) == expected


# --- errors: one line -> its reason ---


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("bad..example", "empty label"),
        (".evil.example", "empty label"),
        ("evil!.example", "invalid character '!'"),
        ("ev il.example extra", "unrecognised line"),
        ("a" * 64 + ".example", "label longer than 63 characters"),
        (".".join(["abcdefghi"] * 26), "name longer than 253 characters"),
        ("ads*.example", "a wildcard is only allowed as a leading '*.'"),
        ("*", "a wildcard is only allowed as a leading '*.'"),
        ("192.0.2.1", "an IP address, not a name"),
        ("0.0.0.0 good.example bad..example", "empty label"),
        ("evil\ufffd.example", "invalid UTF-8 (or U+FFFD)"),
        pytest.param("x" * (MAX_LINE + 1), f"line longer than {MAX_LINE} characters",
                     id="line-too-long"),
        ("||bad..example^", "empty label"),
        ("evil.example A 999.1.1.1", "invalid A address '999.1.1.1'"),
        ("evil.example AAAA 192.0.2.1", "invalid AAAA address '192.0.2.1'"),
        ("evil.example A", "A record needs one value"),
        ("evil.example CNAME . extra", "CNAME record needs one value"),
        ("* CNAME .", "a wildcard over the whole zone would match every name"),
        ("@ CNAME .", "rule at the zone apex"),
        ("$ORIGIN", "$ORIGIN needs one value"),
        ("\u0080.example", "cannot convert international name to ASCII: Invalid character '\\x80'"),
        pytest.param("ü" * 70 + ".example",
                     "cannot convert international name to ASCII: label empty or too long",
                     id="idn-label-too-long"),
    ],
)
def test_line_errors(line: str, reason: str) -> None:
    parsed = parse("fine.example", line)
    assert parsed.error_count == 1
    error = parsed.errors[0]
    assert (error.line, error.reason, error.source) == (2, reason, "test")
    assert parsed.block == {"fine.example"}  # the rest of the file is still used


def test_error_text_is_truncated_and_long_lines_not_kept() -> None:
    parsed = parse("bad..x" + "y" * 500, "z" * (MAX_LINE + 10))
    assert len(parsed.errors[0].text) == 200
    assert parsed.errors[1].text == ""


def test_error_list_is_capped_but_all_are_counted() -> None:
    parsed = parse(*(["bad..name"] * (MAX_ERRORS + 50)), "ok.example")
    assert parsed.error_count == MAX_ERRORS + 50
    assert len(parsed.errors) == MAX_ERRORS
    assert parsed.block == {"ok.example"}
    assert parsed.lines == MAX_ERRORS + 51


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Evil.Example.", "evil.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("under_score.example", "under_score.example"),
        ("com", "com"),
    ],
)
def test_normalise_name(text: str, expected: str) -> None:
    assert normalise_name(text) == expected


@pytest.mark.parametrize("text", ["", ".", "a..b", "a b", "-" * 64, "ü" * 70 + ".example"])
def test_normalise_name_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        normalise_name(text)


# --- header and RPZ files ---


def test_header_meta_from_leading_comment_block_only() -> None:
    parsed = parse(
        "[Adblock Plus 2.0]",
        "# Title: Test list",
        "# source: https://example.org/list",
        "#",
        "# License: CC0",
        "# advice: Reboot the phone.",
        "# advice: Then check it with MVT.",
        "# homepage: ignored, not a known key",
        "",
        "evil.example",
        "# category: too-late",
    )
    assert parsed.meta == {
        "title": "Test list",
        "source": "https://example.org/list",
        "licence": "CC0",
        "advice": "Reboot the phone. Then check it with MVT.",
    }


RPZ_ZONE = """\
$TTL 300
$ORIGIN rpz.example.
@   IN SOA ns.example. hostmaster.example. (
        2024010101 ; serial
        3600 600 86400 300 )
    IN NS  ns.example.
evil.example            CNAME .
evil.example.rpz.example. CNAME .
nodata.example 60 IN    CNAME *.
*.wild.example          CNAME .
local.example           A     192.0.2.1
local.example           AAAA  2001:db8::1
pass.evil.example       CNAME rpz-passthru.
outside.example.        CNAME .
"""


def test_rpz_zone_file() -> None:
    parsed = parse_lines(RPZ_ZONE.splitlines(), "zone")
    assert parsed.errors == []
    assert parsed.nxdomain == {"evil.example", "*.wild.example", "outside.example"}
    assert parsed.nodata == {"nodata.example"}
    assert parsed.allow == {"pass.evil.example"}
    assert parsed.local == {"local.example": [(1, "192.0.2.1"), (28, "2001:db8::1")]}
    assert parsed.wildcard == {"*.wild.example"}


def test_unclosed_parenthesis_does_not_swallow_the_file() -> None:
    parsed = parse("evil.example TXT ( open", *(["nothing.here"] * 25), "after.example")
    assert [(e.line, e.reason) for e in parsed.errors] == [(21, "no ')' within 20 lines of a '('")]
    assert parsed.block == {"nothing.here", "after.example"}
    parsed = parse("@ SOA ns. host. ( 1", "2 3")
    assert [(e.line, e.reason) for e in parsed.errors] == [(2, "file ends inside '(' … ')'")]


def test_rpz_origin_from_soa_when_no_origin_directive() -> None:
    parsed = parse("rpz.example. 300 IN SOA ns. host. 1 2 3 4 5",
                   "evil.example.rpz.example. CNAME .")
    assert parsed.nxdomain == {"evil.example"}


# --- the policy ---


@pytest.fixture(params=["small", "big"])
def layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run policy tests with lists copied into the exact-name dict and with shared big sets:
    the two layouts must give the same verdicts."""
    if request.param == "big":
        monkeypatch.setattr(matcher, "SMALL_LIST", 0)


def policy_of(*lists: tuple[str, str, list[str]], allow: list[str] | None = None):
    specs = [(ListInfo(name, action=action), parse_lines(lines, name))
             for name, action, lines in lists]
    return build_policy(specs, [parse_lines(allow or [], "allow")])


def verdict(policy, qname: str) -> tuple[str | None, str, str] | None:
    found = policy.match(qname)
    if found is None:
        return None
    v, suffix = found
    return (v.list.name if v.list else None, v.action, suffix)


@pytest.mark.usefixtures("layout")
def test_block_covers_subdomains_and_wildcard_only_subdomains() -> None:
    policy = policy_of(("c2", "nxdomain", ["evil.example", "*.wild.example"]))
    assert verdict(policy, "evil.example") == ("c2", "nxdomain", "evil.example")
    assert verdict(policy, "a.b.evil.example") == ("c2", "nxdomain", "evil.example")
    assert verdict(policy, "notevil.example") is None
    assert verdict(policy, "wild.example") is None
    assert verdict(policy, "x.wild.example") == ("c2", "nxdomain", "wild.example")
    assert verdict(policy, "example") is None
    assert verdict(policy, "") is None


@pytest.mark.usefixtures("layout")
def test_allow_on_parent_beats_block_on_child() -> None:
    policy = policy_of(("c2", "nxdomain", ["cdn.good.example", "evil.example"]),
                       allow=["good.example"])
    assert verdict(policy, "cdn.good.example") == (None, "allow", "good.example")
    assert verdict(policy, "x.cdn.good.example") == (None, "allow", "good.example")
    assert verdict(policy, "evil.example") == ("c2", "nxdomain", "evil.example")


@pytest.mark.usefixtures("layout")
def test_allowlist_beats_blocklist_and_in_list_exceptions_apply() -> None:
    policy = policy_of(
        ("ads", "null", ["||ads.example^", "@@||ok.ads.example^"]),
        ("c2", "nxdomain", ["c2.example"]),
        allow=["c2.example", "*.sub.ads.example"],
    )
    assert verdict(policy, "c2.example") == (None, "allow", "c2.example")
    assert verdict(policy, "ads.example") == ("ads", "null", "ads.example")
    assert verdict(policy, "x.ok.ads.example") == ("ads", "allow", "ok.ads.example")
    assert verdict(policy, "sub.ads.example") == ("ads", "null", "ads.example")
    assert verdict(policy, "x.sub.ads.example") == (None, "allow", "sub.ads.example")


@pytest.mark.usefixtures("layout")
def test_first_listed_list_wins_even_over_a_more_specific_rule() -> None:
    policy = policy_of(("c2", "nxdomain", ["evil.example"]),
                       ("ads", "sinkhole", ["evil.example", "x.evil.example", "ads.example"]))
    assert verdict(policy, "evil.example") == ("c2", "nxdomain", "evil.example")
    assert verdict(policy, "x.evil.example") == ("c2", "nxdomain", "evil.example")
    assert verdict(policy, "ads.example") == ("ads", "sinkhole", "ads.example")


@pytest.mark.usefixtures("layout")
def test_rpz_actions_override_the_list_action() -> None:
    policy = policy_of(("rpz", "sinkhole", RPZ_ZONE.splitlines() + ["plain.example"]))
    assert verdict(policy, "evil.example") == ("rpz", "nxdomain", "evil.example")
    assert verdict(policy, "nodata.example") == ("rpz", "nodata", "nodata.example")
    assert verdict(policy, "a.wild.example") == ("rpz", "nxdomain", "wild.example")
    assert verdict(policy, "wild.example") is None
    assert verdict(policy, "pass.evil.example") == ("rpz", "allow", "pass.evil.example")
    assert verdict(policy, "plain.example") == ("rpz", "sinkhole", "plain.example")
    found = policy.match("www.local.example")
    assert found is not None and found[0].action == "local"
    assert found[0].local == ((1, "192.0.2.1"), (28, "2001:db8::1"))


@pytest.mark.usefixtures("layout")
def test_most_specific_rule_within_a_list_and_rank_across_lists() -> None:
    policy = policy_of(("a", "null", ["other.example"]),
                       ("b", "nxdomain", ["evil.example", "cdn.evil.example A 192.0.2.1"]))
    assert verdict(policy, "cdn.evil.example") == ("b", "local", "cdn.evil.example")
    assert verdict(policy, "evil.example") == ("b", "nxdomain", "evil.example")
    policy = policy_of(("rpz", "null", ["x.example CNAME .", "*.x.example CNAME *."]))
    assert verdict(policy, "x.example") == ("rpz", "nxdomain", "x.example")
    assert verdict(policy, "a.x.example") == ("rpz", "nodata", "x.example")


@pytest.mark.usefixtures("layout")
def test_verdicts_are_shared_and_lists_carry_meta() -> None:
    parsed = parse("# category: c2", "# severity: critical", "a.example", "b.example")

    class Spec:  # any config object with these attributes
        name, category, severity, action = "tri", None, None, "refused"

    policy = build_policy([(Spec(), parsed)], [])
    va, vb = policy.match("a.example"), policy.match("b.example")
    assert va is not None and vb is not None and va[0] is vb[0]
    info = va[0].list
    assert info is not None
    assert (info.category, info.severity, info.action) == ("c2", "critical", "refused")
    assert policy.entries == {"tri": 2}


def test_build_rejects_config_bugs() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        policy_of(("x", "drop", ["a.example"]))
    with pytest.raises(ValueError, match="used twice"):
        policy_of(("x", "null", ["a.example"]), ("x", "null", ["b.example"]))


@pytest.mark.usefixtures("layout")
def test_names_and_diff() -> None:
    old = policy_of(("c2", "nxdomain", ["a.example", "b.example"]))
    new = policy_of(("c2", "nxdomain", ["b.example", "c.example", "d.example CNAME ."]))
    assert diff_names(old.names("c2"), new.names("c2")) == ({"c.example", "d.example"},
                                                            {"a.example"})
    assert new.names("gone") == frozenset()


def test_big_lists_are_shared_not_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matcher, "SMALL_LIST", 1)
    parsed = parse("a.example", "b.example", "*.c.example")
    policy = build_policy([(ListInfo("big"), parsed)], [])
    assert policy.names("big") is parsed.block
    assert verdict(policy, "x.c.example") == ("big", "nxdomain", "c.example")
    assert verdict(policy, "c.example") is None


# --- loading from disk ---


def test_load_folder(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("# title: B\nb.example\n")
    (tmp_path / "a.txt").write_text("# title: A\na.example\nbad..name\n")
    (tmp_path / "README.md").write_text("not.a.rule\n")
    (tmp_path / ".hidden").write_text("hidden.example\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.hosts").write_text("0.0.0.0 c.example\n")
    (tmp_path / "sub" / "deeper").mkdir()
    (tmp_path / "sub" / "deeper" / "d.txt").write_text("d.example\n")
    parsed = load_path(tmp_path)
    assert parsed.block == {"a.example", "b.example", "c.example"}
    assert parsed.meta == {"title": "A"}
    assert [(e.source, e.line) for e in parsed.errors] == [(str(tmp_path / "a.txt"), 3)]
    assert parsed.lines == 6


def test_load_rejects_binary_missing_and_empty_folder(tmp_path: Path) -> None:
    binary = tmp_path / "list.gz"
    binary.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 100)
    with pytest.raises(ListLoadError, match="binary"):
        load_path(binary)
    with pytest.raises(ListLoadError, match="no such file"):
        load_path(tmp_path / "missing.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ListLoadError, match="no list files"):
        load_path(empty)


def test_load_reports_invalid_utf8_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbfok.example\r\nbad\xff.example\r\nb\xc3\xbccher.example\n")
    parsed = load_path(path)
    assert parsed.block == {"ok.example", "xn--bcher-kva.example"}
    assert [(e.line, e.reason) for e in parsed.errors] == [(2, "invalid UTF-8 (or U+FFFD)")]


def test_load_streams_overlong_lines(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("a.example\n" + "x" * 100_000 + "\nb.example\n" + "y" * 5000)
    parsed = load_path(path)
    assert parsed.block == {"a.example", "b.example"}
    assert [(e.line, e.text) for e in parsed.errors] == [(2, ""), (4, "")]


def test_find_rule(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(
        "# header\nevil.example\nother.example\n*.evil.example\n*.x.evil.example\n")
    (tmp_path / "b.zone").write_text(
        "$ORIGIN rpz.\nx.evil.example.rpz. CNAME .\n@ IN NS ns.\n")
    found = find_rule(tmp_path, "X.Evil.Example.")
    assert found == [
        (str(tmp_path / "a.txt"), 2, "evil.example"),
        (str(tmp_path / "a.txt"), 4, "*.evil.example"),
        (str(tmp_path / "b.zone"), 2, "x.evil.example.rpz. CNAME ."),
    ]
    assert find_rule(tmp_path, "evil.example") == [(str(tmp_path / "a.txt"), 2, "evil.example")]


def test_shipped_lists() -> None:
    tri = load_path(ROOT / "blocklists" / "triangulation.txt")
    assert len(tri.block) == 15 and tri.error_count == 0 and tri.unsupported == 0
    assert {"backuprabbit.com", "ans7tv.net", "web-trackers.com"} <= tri.block
    assert tri.meta["category"] == "c2" and tri.meta["severity"] == "critical"
    assert "Lockdown Mode" in tri.meta["advice"] and tri.meta["source"].startswith("https://")
    allow = load_path(ROOT / "blocklists" / "allow.txt")
    assert allow.rules == 0 and not allow.allow and allow.error_count == 0


# --- property: arbitrary text never raises ---


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=20))
def test_parse_never_raises(lines: list[str]) -> None:
    parsed = parse_lines(lines, "fuzz")
    assert parsed.error_count >= len(parsed.errors)
    for key in parsed.block | parsed.allow | parsed.nxdomain | parsed.nodata:
        assert key == key.lower() and not key.endswith(".")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(
    ["evil.example", "*.evil.example", "@@||evil.example^", "||a.evil.example^",
     "$ORIGIN rpz.", "x.evil.example CNAME .", "@ SOA a. b. (", ")", " NS ns.", "0.0.0.0 a b",
     "evil.example A 192.0.2.1", "# advice: x", "", "bad..x"]), max_size=15))
def test_mixed_rule_lines_never_raise(lines: list[str]) -> None:
    policy = build_policy([(ListInfo("l"), parse_lines(lines, "mix"))], [])
    policy.match("a.x.evil.example")
