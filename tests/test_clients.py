"""Tests for sinkhole.clients: access control, lease parsing, and client naming."""

import math
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from sinkhole.clients import AccessList, ClientNames, is_public, parse_leases, parse_networks
from sinkhole.clients.leases import detect_format, load_lease_file
from sinkhole.clients.names import parse_static_map

DATA = Path(__file__).parent / "data" / "leases"
NOW = 1_704_067_200.0  # 2024-01-01 00:00:00 UTC; the sample leases are written around it
HOUR = 3600.0


class FakeClock:
    """The only fake in these tests: time, so expiry is tested without sleeping."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- access ---


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        (" 192.168.1.0/24 ", "192.168.1.0/24"),
        ("10.0.0.7", "10.0.0.7/32"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:192.0.2.1", "192.0.2.1/32"),
    ],
)
def test_parse_networks_accepts(item: str, expected: str) -> None:
    assert [str(n) for n in parse_networks([item])] == [expected]


@pytest.mark.parametrize(
    "item",
    ["10.0.0.1/24", "10.0.0.0/33", "banana", "", "2001:db8::1/64", "10.0.0/8", 10, None],
)
def test_parse_networks_rejects_naming_the_item(item: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_networks(["10.0.0.0/8", item])
    assert repr(item) in str(info.value)


ACL = AccessList(["10.0.0.0/8", "192.168.1.0/24", "127.0.0.1", "2001:db8:1::/48", "::1"])


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("203.0.113.1", False),
        ("192.168.1.200", True),
        ("192.168.2.1", False),
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("::ffff:10.0.0.1", True),  # IPv4 client seen through a dual-stack socket
        ("::ffff:192.168.2.1", False),
        ("::FFFF:192.168.1.9", True),
        ("2001:db8:1:ffff::1", True),
        ("2001:db8:2::1", False),
        ("::1", True),
        ("fe80::1%eth0", False),
        ("not an address", False),
        ("", False),
    ],
)
def test_access_list_decisions(ip: str, allowed: bool) -> None:
    assert ACL.allowed(ip) is allowed
    assert ACL.allowed(ip) is allowed  # the cached answer is the same answer


def test_access_list_mapped_rule_matches_plain_ipv4_client() -> None:
    acl = AccessList(["::ffff:10.0.0.0/104"])
    assert acl.allowed("10.9.9.9")
    assert acl.allowed("::ffff:10.9.9.9")
    assert not acl.allowed("203.0.113.1")


def test_access_list_empty_allows_nobody() -> None:
    acl = AccessList([])
    assert not acl.allowed("10.0.0.1")
    assert not acl.allowed("::1")


def test_access_list_cache_is_bounded_and_stays_correct() -> None:
    acl = AccessList(["10.0.0.0/24"], cache_size=8)
    for host in range(100):
        assert acl.allowed(f"10.0.{host % 2}.{host}") is (host % 2 == 0)
        assert acl.cached <= 8
    assert acl.cached >= 1


def test_access_list_collapses_overlaps() -> None:
    acl = AccessList(["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25"])
    assert [str(n) for n in acl.networks] == ["10.0.0.0/23"]


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("8.8.8.8", True),
        ("::ffff:8.8.8.8", True),
        ("2606:4700::1111", True),
        ("10.0.0.1", False),
        ("100.64.0.1", False),
        ("127.0.0.1", False),
        ("fe80::1", False),
        ("junk", False),
    ],
)
def test_is_public(ip: str, public: bool) -> None:
    assert is_public(ip) is public


# --- lease parsing ---


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("", "dnsmasq"),
        ("\n\n1704110400 aa:bb:cc:dd:ee:ff 10.0.0.1 x *\n", "dnsmasq"),
        ("duid 00:01\n", "dnsmasq"),
        ("address,hwaddr,client_id,valid_lifetime,expire\n", "kea"),
        ("# The format of this file is documented in the dhcpd.leases(5) manual page.\n", "isc"),
        ("lease 10.0.0.1 {\n}\n", "isc"),
        ('server-duid "x";\n', "isc"),
    ],
)
def test_detect_format(text: str, fmt: str) -> None:
    assert detect_format(text) == fmt


def _by_ip(path: Path) -> dict[str, tuple[str, float]]:
    return {lease.ip: (lease.name, lease.expires) for lease in load_lease_file(str(path)).leases}


def test_dnsmasq_sample() -> None:
    parsed = load_lease_file(str(DATA / "dnsmasq.leases"))
    assert parsed.format == "dnsmasq"
    assert parsed.malformed == 3  # bad expiry, bad address, too few fields
    assert _by_ip(DATA / "dnsmasq.leases") == {
        "10.0.0.23": ("alice-laptop", NOW + 12 * HOUR),
        "10.0.0.31": ("bobs-iphone", NOW + 12 * HOUR),
        "10.0.0.40": ("printer-2f", math.inf),  # expiry 0 = infinite
        "10.0.0.52": ("old-tablet", NOW - 12 * HOUR),  # expired: kept, dropped by the clock
        "10.0.5.77": ("guest-laptop", NOW + 12 * HOUR),
        "2001:db8:0:1::23": ("alice-laptop", NOW + 12 * HOUR),
    }  # 10.0.0.60 has hostname "*": no name


def test_isc_sample() -> None:
    parsed = load_lease_file(str(DATA / "dhcpd.leases"))
    assert parsed.format == "isc"
    assert parsed.malformed == 3  # bad address, bad date, block cut off at the end
    assert _by_ip(DATA / "dhcpd.leases") == {
        "10.0.1.10": ("carol-macbook", NOW + 12 * HOUR),
        "10.0.1.11": ("stale-phone", NOW - 12 * HOUR),
        "10.0.1.12": ("second-owner", NOW + 12 * HOUR),  # the later declaration wins
        "10.0.1.14": ("nas", math.inf),  # ends never
        "10.0.1.15": ("epoch-host", NOW + 12 * HOUR),  # ends epoch N
        "10.0.1.18": ("evilINFO forged log line", NOW + 12 * HOUR),  # newline dropped
    }  # 10.0.1.13 was later freed; 10.0.1.16 is "backup"; host/ia-na blocks are skipped


def test_kea_sample() -> None:
    parsed = load_lease_file(str(DATA / "kea-leases4.csv"))
    assert parsed.format == "kea"
    assert parsed.malformed == 3  # bad address, short row, bad expire
    assert _by_ip(DATA / "kea-leases4.csv") == {
        "10.0.2.10": ("dave-desktop", NOW + HOUR),
        "10.0.2.11": ("expired-host", NOW - 2 * HOUR),
        "10.0.2.13": ("erin-phone.corp.example", NOW + HOUR),  # trailing dot dropped
        "10.0.2.15": ("frank, jr", NOW + HOUR),  # Kea's escaped comma
        "10.0.2.16": ("infinite-host", math.inf),
    }  # .12 declined (state 1); .14 deleted by a later row with lifetime 0; .17 no name


@pytest.mark.parametrize(
    ("text", "fmt", "malformed"),
    [
        ("garbage\n\n1 2 3\n", "dnsmasq", 2),
        ("lease 10.0.0.1 { binding state active; }\n", "isc", 1),  # no "ends"
        ("}\nlease 10.0.0.1 {\n", "isc", 2),
        ('lease 10.0.0.1 { ends never; binding state active; client-hostname "a"; } x\n', "isc", 1),
        ("address,expire\n10.0.0.1\n", "kea", 1),
    ],
)
def test_malformed_entries_are_counted_not_raised(text: str, fmt: str, malformed: int) -> None:
    assert parse_leases(text, fmt).malformed == malformed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("10.0.0.1,aa\n", "kea", "not a Kea lease file"),
        ("", "yaml", "unknown lease format"),
    ],
)
def test_unusable_files_raise_value_error(text: str, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_leases(text, fmt)  # type: ignore[arg-type]


# --- client names ---

STATIC = {
    "10.0.0.23": "alice-iphone",
    "10.0.0.0/16": "office",
    "10.0.5.0/24": "guest-wifi",
    "2001:db8::/32": "office-v6",
}
ALL_FILES = [str(DATA / n) for n in ("dnsmasq.leases", "dhcpd.leases", "kea-leases4.csv")]


@pytest.fixture
def names() -> ClientNames:
    return ClientNames(STATIC, ALL_FILES, clock=FakeClock())


@pytest.mark.parametrize(
    ("ip", "name"),
    [
        ("10.0.0.23", "alice-iphone"),  # exact static address beats its lease (alice-laptop)
        ("10.0.0.31", "bobs-iphone"),  # lease beats the /16 network name
        ("10.0.5.77", "guest-laptop"),  # lease beats the /24 network name
        ("10.0.5.78", "guest-wifi"),  # most specific network wins over the /16
        ("10.0.9.1", "office"),
        ("10.0.0.52", "office"),  # its lease expired: back to the network name
        ("10.0.0.60", "office"),  # lease without a hostname
        ("10.0.1.12", "second-owner"),
        ("10.0.1.13", "office"),  # freed in a later ISC entry
        ("10.0.2.14", "office"),  # deleted in a later Kea row
        ("::ffff:10.0.0.31", "bobs-iphone"),  # IPv4-mapped IPv6 is the IPv4 client
        ("::ffff:10.0.0.23", "alice-iphone"),
        ("2001:db8:0:1::23", "alice-laptop"),
        ("2001:db8:0:1:0:0:0:23", "alice-laptop"),  # any spelling of the same address
        ("2001:db8:ffff::1", "office-v6"),
        ("192.168.7.7", None),
        ("::1", None),
        ("garbage", None),
    ],
)
def test_name_for_precedence(names: ClientNames, ip: str, name: str | None) -> None:
    assert names.name_for(ip) == name
    assert names.name_for(ip) == name  # memoised answer is the same answer
    assert names.errors == {}


def test_snapshot_lists_exact_names(names: ClientNames) -> None:
    snap = names.snapshot()
    assert snap["10.0.0.23"] == "alice-iphone"
    assert snap["10.0.2.16"] == "infinite-host"
    assert "10.0.0.52" not in snap and "10.0.1.11" not in snap  # expired
    assert names.malformed == dict.fromkeys(ALL_FILES, 3)


@pytest.mark.parametrize(
    ("static", "message"),
    [
        ({"10.0.0.1/24": "x"}, "'10.0.0.1/24'"),
        ({"not-an-ip": "x"}, "'not-an-ip'"),
        ({"10.0.0.1": ""}, "non-empty"),
        ({"10.0.0.1": "\n"}, "non-empty"),
        ({"10.0.0.1": "a", "::ffff:10.0.0.1": "b"}, "named twice"),
        ({"10.0.0.0/8": "a", "::ffff:10.0.0.0/104": "b"}, "named twice"),
    ],
)
def test_static_map_errors(static: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_static_map(static)


def test_host_length_network_is_an_exact_entry() -> None:
    names = ClientNames({"10.0.0.31/32": "pinned"}, [str(DATA / "dnsmasq.leases")], FakeClock())
    assert names.name_for("10.0.0.31") == "pinned"


def test_expiry_follows_the_clock_without_file_changes() -> None:
    clock = FakeClock()
    names = ClientNames({}, [str(DATA / "kea-leases4.csv")], clock=clock)
    assert names.name_for("10.0.2.10") == "dave-desktop"
    assert names.refresh() is False
    clock.now = NOW + 2 * HOUR
    assert names.refresh() is True
    assert names.name_for("10.0.2.10") is None
    assert names.name_for("10.0.2.16") == "infinite-host"


def test_refresh_picks_up_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "dnsmasq.leases"
    path.write_text("1704110400 aa:bb:cc:00:00:01 10.0.0.5 old-name *\n")
    names = ClientNames({}, [str(path)], clock=FakeClock())
    assert names.name_for("10.0.0.5") == "old-name"

    new = tmp_path / "dnsmasq.leases.new"
    new.write_text("1704110400 aa:bb:cc:00:00:01 10.0.0.5 new-name *\n")
    os.replace(new, path)
    assert names.refresh() is True
    assert names.name_for("10.0.0.5") == "new-name"
    assert names.refresh() is False


def test_refresh_sees_an_in_place_rewrite_by_mtime(tmp_path: Path) -> None:
    path = tmp_path / "dnsmasq.leases"
    path.write_text("1704110400 aa:bb:cc:00:00:01 10.0.0.5 name-aaa *\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    names = ClientNames({}, [str(path)], clock=FakeClock())
    path.write_text("1704110400 aa:bb:cc:00:00:01 10.0.0.5 name-bbb *\n")  # same size, inode
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    assert names.refresh() is True
    assert names.name_for("10.0.0.5") == "name-bbb"


def test_deleted_file_keeps_last_good_data_and_records_error(tmp_path: Path) -> None:
    path = tmp_path / "dhcpd.leases"
    shutil.copy(DATA / "dhcpd.leases", path)
    names = ClientNames({}, [str(path)], clock=FakeClock())
    assert names.name_for("10.0.1.10") == "carol-macbook"

    path.unlink()
    assert names.refresh() is False
    assert names.name_for("10.0.1.10") == "carol-macbook"
    assert "FileNotFoundError" in names.errors[str(path)]

    shutil.copy(DATA / "dhcpd.leases", path)
    names.refresh()
    assert names.errors == {}


def test_missing_file_at_start_is_an_error_not_an_exception(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.leases")
    names = ClientNames({"10.0.0.0/8": "lan"}, [missing], clock=FakeClock())
    assert names.name_for("10.1.1.1") == "lan"
    assert list(names.errors) == [missing]


def test_given_format_overrides_detection(tmp_path: Path) -> None:
    path = tmp_path / "leases"
    path.write_text("1704110400 aa:bb:cc:00:00:01 10.0.0.5 host *\n")
    names = ClientNames({}, [str(path)], FakeClock(), formats={str(path): "kea"})
    assert "not a Kea lease file" in names.errors[str(path)]
    assert names.snapshot() == {}


def test_longest_lease_wins_across_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.leases", tmp_path / "b.leases"
    first.write_text("1704153600 aa:bb:cc:00:00:01 10.0.0.5 long-lease *\n")
    second.write_text("1704070800 aa:bb:cc:00:00:02 10.0.0.5 short-lease *\n")
    names = ClientNames({}, [str(first), str(second)], clock=FakeClock())
    assert names.name_for("10.0.0.5") == "long-lease"


def test_name_cache_is_bounded() -> None:
    names = ClientNames({"10.0.0.0/8": "lan"}, [], clock=FakeClock(), cache_size=16)
    for host in range(200):
        assert names.name_for(f"10.0.{host}.1") == "lan"
        assert names.name_for(f"192.168.{host}.1") is None
        assert len(names._view.resolved) <= 16


def test_name_for_is_safe_during_refresh(tmp_path: Path) -> None:
    """Refreshes swap whole views: a reader during 40 of them sees one generation or the
    other, never the network fallback ("lan") of a view emptied before it was rebuilt. The
    writer refreshes only after each write, so no refresh reads a half-written file."""
    path = tmp_path / "dnsmasq.leases"
    texts = [f"1704110400 aa:bb:cc:00:00:01 10.0.0.5 gen-{i} *\n" for i in range(2)]
    path.write_text(texts[0])
    names = ClientNames({"10.0.0.0/8": "lan"}, [str(path)], clock=FakeClock())
    stop = threading.Event()

    def rewrite() -> None:
        for i in range(40):
            path.write_text(texts[i % 2])
            os.utime(path, ns=(i * 1_000_000_000, i * 1_000_000_000))
            names.refresh()
        stop.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    seen = set()
    while not stop.is_set():
        seen.add(names.name_for("10.0.0.5"))
        # Not a wait (the loop ends on the writer's event): a GIL hand-off between reads, so
        # reads interleave with every refresh instead of running in 5 ms slices.
        time.sleep(0)
    writer.join()
    assert seen == {"gen-0", "gen-1"}  # both: the reads overlapped the swaps
