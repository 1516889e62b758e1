"""The settings: one frozen dataclass per config section, defaults in one place.

The defaults are the embedded config: `sinkhole run` with no file serves DNS on
127.0.0.1:5353 and health on 127.0.0.1:9153, forwarding to the resolvers in /etc/resolv.conf.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sinkhole.config.loader import Duration, format_duration, setting
from sinkhole.config.values import (
    HostPort,
    UpstreamURL,
    one_of,
    parse_hostport,
    parse_network,
    parse_size,
    parse_upstream,
    positive_int,
)

PRIVATE_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                    "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10")


def _is_loopback(host: str) -> bool:
    import ipaddress
    return ipaddress.ip_address(host).is_loopback


def list_of(parse: Callable[[Any], Any], what: str) -> Callable[[Any], tuple[Any, ...]]:
    """A check for a YAML list whose items each go through `parse`; errors name the index."""
    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of {what}, found {value!r}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(parse(item))
            except ValueError as err:
                msg = str(err)
                raise ValueError(f"[{i}]{msg}" if msg[:1] in "[." else f"[{i}]: {msg}") from None
        return tuple(out)
    return check


def _nonempty(check: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], tuple[Any, ...]]:
    def inner(value: Any) -> tuple[Any, ...]:
        out = check(value)
        if not out:
            raise ValueError("must not be empty")
        return out
    return inner


_listen_list = _nonempty(list_of(parse_hostport, "addresses like 127.0.0.1:5353"))
_networks = list_of(parse_network, "networks")
_upstream_list = list_of(parse_upstream, "upstream URLs")


def _http_listen(value: Any) -> HostPort | None:
    if value in (None, "", False):
        return None
    return parse_hostport(value)


_listen_optional = list_of(parse_hostport, "addresses like 10.0.0.2:853")


@dataclass(frozen=True)
class Listen:
    dns: tuple[HostPort, ...] = setting(
        (HostPort("127.0.0.1", 5353),), check=_listen_list)
    http: HostPort | None = setting(HostPort("127.0.0.1", 9153), check=_http_listen)
    dot: tuple[HostPort, ...] = setting((), check=_listen_optional)   # DNS over TLS, RFC 7858
    doh: tuple[HostPort, ...] = setting((), check=_listen_optional)   # DNS over HTTPS, RFC 8484


@dataclass(frozen=True)
class Tls:
    """The certificate of our DoT/DoH endpoints; re-read on SIGHUP and when the files change
    (a bad pair keeps the old one)."""

    cert_file: str | None = None     # the full chain, PEM
    key_file: str | None = None      # its private key, PEM (readable by the daemon's user)
    # The name clients verify (DDR's target, the DoH URL's host): default the certificate's
    # first DNS name.
    name: str | None = None


@dataclass(frozen=True)
class Access:
    # Private and loopback ranges only: never an open resolver by default.
    allow: tuple[str, ...] = setting(PRIVATE_NETWORKS, check=_networks)


@dataclass(frozen=True)
class Cache:
    max_entries: int = setting(100_000, check=positive_int)
    # Bytes of cached wire data (answers up to 64 KiB over TCP): entries alone do not bound
    # memory. 64 MiB holds ~300k typical answers.
    max_bytes: int = setting(64 << 20, check=parse_size)
    serve_stale: Duration = 86400.0    # RFC 8767: how long past expiry an answer may serve
    max_ttl: Duration = 86400.0        # no answer is kept longer, whatever its TTL says
    # RFC 2308 section 5 suggests 1-3 hours at most for negative answers.
    max_negative_ttl: Duration = 3600.0
    enabled: bool = True


@dataclass(frozen=True)
class Log:
    level: str = setting("info", check=one_of("debug", "info", "warning", "error"))
    format: str = setting("text", check=one_of("text", "json"))


@dataclass(frozen=True)
class Server:
    tcp_idle_timeout: Duration = 10.0        # RFC 7766 suggests seconds, not minutes
    tcp_max_connections: int = setting(512, check=positive_int)
    # One client (a broken or hostile device) cannot take every TCP slot.
    tcp_max_connections_per_client: int = setting(32, check=positive_int)
    tcp_max_queries_in_flight: int = setting(100, check=positive_int)
    drain_timeout: Duration = 5.0            # SIGTERM: how long in-flight queries may finish


def _list_name(value: Any) -> str:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(f"{value!r} is not a list name (letters, digits, '-', '_', '.')")
    return value


def _category(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 40:
        raise ValueError(f"{value!r} is not a category word (like c2, malware, phishing)")
    return value.strip().lower()


def _ipv4(value: Any) -> str:
    import ipaddress
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _ipv6(value: Any) -> str:
    import ipaddress
    try:
        return str(ipaddress.IPv6Address(str(value)))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv6 address") from None


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a path")
    return value


SEVERITIES = ("info", "warning", "critical")
ACTIONS = ("nxdomain", "null", "sinkhole", "refused")


FORMATS = ("auto", "plain", "hosts", "adblock", "rpz", "stix2", "misp", "csv")


def _feed_url(value: Any) -> str:
    from urllib.parse import urlsplit
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") \
            or not urlsplit(value).hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _column(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int) or value in ("", -1):
        raise ValueError(f"{value!r} is not a CSV column name or number (counted from 1)")
    if isinstance(value, int) and value < 1:
        raise ValueError(f"{value!r}: columns are counted from 1")
    return value


@dataclass(frozen=True)
class Blocklist:
    name: str = setting("", check=_list_name, required="every blocklist needs a name")
    # Exactly one of path (a file or a folder, relative to the config file, kept in git) and
    # url (a feed fetched on a schedule; its last good download is kept in the state dir).
    path: str = setting("", check=_path)
    url: str = setting("", check=_feed_url)
    format: str = setting("auto", check=one_of(*FORMATS))
    category: str = setting("malware", check=_category)
    severity: str = setting("warning", check=one_of(*SEVERITIES))
    action: str = setting("nxdomain", check=one_of(*ACTIONS))
    refresh: Duration = 6 * 3600.0        # URL lists: how often (plus up to 10 % jitter)
    timeout: Duration = 30.0              # URL lists: the whole download
    max_size: int = setting(64 << 20, check=parse_size)   # URL lists: bytes, decompressed
    headers_file: str | None = None       # "Name: value" lines sent with the request; secret
    ca_file: str | None = None            # extra CA bundle for this feed's https
    column: str | int = setting("", check=_column)   # csv: the column holding the names
    to_ids_only: bool = True              # misp: only attributes marked to_ids

    def __post_init__(self) -> None:
        if bool(self.path) == bool(self.url):
            raise ValueError("path: set exactly one of path (a file or folder) and url (a "
                             "feed)")
        if self.format == "csv" and self.column == "":
            raise ValueError("column: required with format csv (a header name or a number "
                             "counted from 1)")
        if self.url and self.refresh < 60:
            raise ValueError("refresh: at least 1m (a feed is not a stream; be kind to its "
                             "server)")

    @property
    def source(self) -> str:
        """Where the list comes from, for reports: the path, or the URL without its query or
        user:password (a feed URL may carry a key)."""
        if self.path:
            return self.path
        from sinkhole.lists.feeds import bare_url
        return bare_url(self.url)


@dataclass(frozen=True)
class Allowlist:
    path: str = setting("", check=_path, required="a file or a folder of list files")


def _ports(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a list of TCP ports, found {value!r}")
    for i, port in enumerate(value):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"[{i}]: {port!r} is not a port 1-65535")
    return tuple(value)


@dataclass(frozen=True)
class SinkholeAnswer:
    ipv4: str = setting("0.0.0.0", check=_ipv4)   # action: sinkhole (null always uses 0.0.0.0)
    ipv6: str = setting("::", check=_ipv6)
    ttl: Duration = 60.0
    # Listen on the sinkhole addresses and record what a device that got one then tries
    # (TLS SNI, HTTP Host): proof an implant acts, not just asks.
    listen: bool = False
    ports: tuple[int, ...] = setting((80, 443, 8080, 8443), check=_ports)


@dataclass(frozen=True)
class Reload:
    watch: bool = True          # reload when a list file changes on disk
    debounce: Duration = 1.0    # a git pull touching many files reloads once
    poll_interval: Duration = 1.0


@dataclass(frozen=True)
class Policy:
    # Each answers a well-known name so devices keep using this resolver (see README).
    firefox_canary: bool = True        # use-application-dns.net -> NXDOMAIN
    icloud_private_relay: bool = True  # mask.icloud.com, mask-h2.icloud.com -> NXDOMAIN
    ddr: bool = True                   # resolver.arpa, _dns.resolver.arpa -> NODATA (RFC 9462)


@dataclass(frozen=True)
class RateLimit:
    enabled: bool = True
    qps: float = 100.0              # per client address, sustained
    burst: float = 200.0
    network_qps: float = 1000.0     # per /24 (IPv4) or /56 (IPv6): floods from one network
    network_burst: float = 2000.0
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    action: str = setting("truncate", check=one_of("truncate", "drop"))
    # Local tools (monitoring, dig on the box) are never limited.
    exempt: tuple[str, ...] = setting(("127.0.0.0/8", "::1/128"), check=_networks)

    def __post_init__(self) -> None:
        if self.qps <= 0 or self.network_qps <= 0 or self.burst < 1 or self.network_burst < 1:
            raise ValueError("ratelimit: qps must be > 0 and bursts >= 1")
        if not 8 <= self.ipv4_prefix <= 32 or not 16 <= self.ipv6_prefix <= 128:
            raise ValueError("ratelimit: ipv4_prefix must be 8-32 and ipv6_prefix 16-128")


@dataclass(frozen=True)
class Api:
    # File holding the bearer token for /api/v1/*. Required when listen.http is not on
    # loopback; when set, it is required on loopback too.
    token_file: str | None = setting(None, secret=False)


def _url(value: Any) -> str:
    from urllib.parse import urlsplit
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") \
            or not urlsplit(value).hostname:
        # never echo the value: alert URLs carry tokens
        raise ValueError("is not an http(s) URL")
    return value


def _instance_default() -> str:
    import socket
    return socket.gethostname()


@dataclass(frozen=True)
class AlertSink:
    type: str = setting("", check=one_of("webhook", "slack", "alertmanager"),
                        required="webhook | slack | alertmanager")
    url: str = setting("", check=_url, secret=True, required="where to deliver")
    name: str = ""                      # shown in metrics and logs; default: type[-N]
    secret_file: str | None = None      # webhook: HMAC-SHA256 key (X-Sinkhole-Signature)
    timeout: Duration = 5.0
    max_per_minute: int = setting(20, check=positive_int)   # beyond: one digest message


@dataclass(frozen=True)
class Alerts:
    min_severity: str = setting("warning", check=one_of(*SEVERITIES))
    cooldown: Duration = 3600.0         # per (client, list, name): one alert, then a count
    digest_window: Duration = 5.0       # hits this close together go out as one digest
    max_age: Duration = 7 * 86400.0     # undelivered alerts older than this are expired
    instance: str = field(default_factory=_instance_default)
    sinks: tuple[AlertSink, ...] = ()


def default_state_dir() -> str:
    """systemd's StateDirectory, else /var/lib/sinkhole for root, else the user's state dir."""
    import os
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    if os.geteuid() == 0:
        return "/var/lib/sinkhole"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "sinkhole")


def _default_db() -> str:
    import os
    return os.path.join(default_state_dir(), "sinkhole.db")


@dataclass(frozen=True)
class Storage:
    path: str = field(default_factory=_default_db)

    # The state folder, laid out in one place: the store, the feeds' last good copies
    # (feeds/), the hunting state (hunt.db).
    @property
    def folder(self) -> str:
        import os
        return os.path.dirname(self.path)

    @property
    def hunt_path(self) -> str:
        import os
        return os.path.join(self.folder, "hunt.db")
    commit_interval: Duration = 1.0    # a hit is on disk within this (and at shutdown)
    # FULL: a commit survives power loss; NORMAL: faster, may lose the last commits on power
    # loss (never on a daemon crash). See README "Durability".
    synchronous: str = setting("FULL", check=one_of("full", "normal"))
    retention: Duration = 365 * 86400.0   # hits
    queue_max: int = setting(100_000, check=positive_int)
    # Hits per second per client recorded in full (row, log line, alert decision); beyond
    # that, one aggregated 'flood' row per list and second with the count. 0: no limit.
    hit_detail_rate: float = 50.0
    hit_detail_burst: float = 500.0


@dataclass(frozen=True)
class History:
    retention: Duration = 30 * 86400.0    # passive-DNS history for retro-hunt; 0 turns it off


def _names_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of IP or network to name, found {value!r}")
    out = {}
    for k, v in value.items():
        try:
            parse_network(k)
        except ValueError:
            raise ValueError(f".{k}: is not an IP address or network") from None
        if not isinstance(v, str) or not v:
            raise ValueError(f".{k}: {v!r} is not a name")
        out[str(k)] = v
    return out


@dataclass(frozen=True)
class Clients:
    names: dict[str, str] = setting(factory=dict, check=_names_map)  # IP or CIDR -> name
    leases: tuple[str, ...] = ()          # dnsmasq, ISC dhcpd or Kea lease files
    refresh_interval: Duration = 10.0     # how often lease files are checked for changes


def _suffixes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of domains, found {value!r}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip(".") or " " in item:
            raise ValueError(f"[{i}]: {item!r} is not a domain")
        out.append(item.strip(".").lower())
    return tuple(out)


@dataclass(frozen=True)
class Hunt:
    """Signals for what no list knows yet (newly seen, rare, beacon, sequences, tunnel/DGA)."""

    enabled: bool = True
    learning: Duration = 7 * 86400.0      # nothing is flagged before this much history
    rare_window: Duration = 7 * 86400.0   # "asked by one or two devices over the last N days"
    rare_devices: int = setting(2, check=positive_int)
    alert_score: int = 80                 # 0..100; an alert (kind suspicion) at or above
    ignore: tuple[str, ...] = setting((), check=_suffixes)   # domains and their subdomains
    sequences_file: str | None = None     # more sequence rules (YAML), beside the shipped ones
    shipped_sequences: bool = True        # the Triangulation rule and friends
    max_domains: int = setting(1_000_000, check=positive_int)  # newly-seen memory bound
    queue_max: int = setting(100_000, check=positive_int)      # observations awaiting the hunter

    def __post_init__(self) -> None:
        if not 0 <= self.alert_score <= 101:
            raise ValueError("alert_score: 0..100 (101 turns suspicion alerts off)")


@dataclass(frozen=True)
class Config:
    listen: Listen = field(default_factory=Listen)
    # Empty: taken from /etc/resolv.conf at start (see upstreams.default_upstreams).
    upstreams: tuple[UpstreamURL, ...] = setting((), check=_upstream_list)
    upstream_timeout: Duration = 2.0
    upstream_ca_file: str | None = None   # extra CA bundle for tls:// and https:// upstreams
    # Distinct questions waiting on upstreams at once; beyond it: SERVFAIL with EDE, counted.
    upstream_max_in_flight: int = setting(4096, check=positive_int)
    access: Access = field(default_factory=Access)
    cache: Cache = field(default_factory=Cache)
    log: Log = field(default_factory=Log)
    server: Server = field(default_factory=Server)
    blocklists: tuple[Blocklist, ...] = ()
    allowlists: tuple[Allowlist, ...] = ()
    sinkhole: SinkholeAnswer = field(default_factory=SinkholeAnswer)
    tls: Tls = field(default_factory=Tls)
    reload: Reload = field(default_factory=Reload)
    policy: Policy = field(default_factory=Policy)
    ratelimit: RateLimit = field(default_factory=RateLimit)
    api: Api = field(default_factory=Api)
    alerts: Alerts = field(default_factory=Alerts)
    storage: Storage = field(default_factory=Storage)
    history: History = field(default_factory=History)
    clients: Clients = field(default_factory=Clients)
    hunt: Hunt = field(default_factory=Hunt)

    def __post_init__(self) -> None:
        http = self.listen.http
        if http is not None and not self.api.token_file and not _is_loopback(http.host):
            raise ValueError(f"api.token_file: required when listen.http ({http.display()}) is "
                             "not on loopback: the admin API must not be open to the network")
        if (self.listen.dot or self.listen.doh) and not (self.tls.cert_file and
                                                         self.tls.key_file):
            raise ValueError("tls.cert_file: DoT/DoH listeners (listen.dot, listen.doh) need "
                             "tls.cert_file and tls.key_file")
        if self.sinkhole.listen and self.sinkhole.ipv4 == "0.0.0.0" and \
                self.sinkhole.ipv6 == "::":
            raise ValueError("sinkhole.listen: set sinkhole.ipv4 (or ipv6) to an address of "
                             "this box set aside for sinkholed names")
        names = [b.name for b in self.blocklists]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"blocklists: list names must be unique, repeated: {dupes}")
        if not 0.05 <= self.upstream_timeout <= 60:
            raise ValueError(f"upstream_timeout: {format_duration(self.upstream_timeout)} is "
                             "outside 50ms-60s")

