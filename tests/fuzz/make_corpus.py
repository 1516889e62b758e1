"""Write our own seed files: dnspython-made queries and replies, and list-file samples.

Run from the repository root: `python -m tests.fuzz.make_corpus`. The c-ares packets in
corpus/packets/c-ares-* are copied, not generated (see README.md).
"""

from __future__ import annotations

from struct import pack

import dns.edns
import dns.message

from tests.fuzz.common import CORPUS
from tests.fuzz.packets import make_reply

QUERIES = [
    ("evil.test", "A", {}), ("sub.EVIL.test", "AAAA", {"use_edns": 0}),
    ("ads.test", "ANY", {}), ("x.wild.test", "A", {"use_edns": 0, "want_dnssec": True}),
    ("cached.test", "A", {"use_edns": 0, "payload": 1232}), ("big.test", "A", {}),
    ("cname.test", "A", {"use_edns": 0}), ("local.test", "AAAA", {}),
    ("alias.test", "A", {"use_edns": 0}), ("nodata.test", "MX", {}),
    ("use-application-dns.net", "A", {}), ("resolver.arpa", "SVCB", {"use_edns": 0}),
    ("forward.example", "HTTPS", {"use_edns": 0, "payload": 4096}),
    ("refused.test", "A", {"use_edns": 0}), ("sinkholed.test", "ANY", {"use_edns": 0}),
    ("neg.test", "A", {"use_edns": 0, "want_dnssec": True}),
]


def queries() -> dict[str, bytes]:
    out = {}
    for i, (name, rdtype, kw) in enumerate(QUERIES):
        q = dns.message.make_query(name, rdtype, **kw)
        q.id = 0x1000 + i
        out[f"q-{name}-{rdtype}"] = q.to_wire()
    q = dns.message.make_query("cookie.test", "A", use_edns=0, options=[
        dns.edns.GenericOption(10, b"\x01" * 8), dns.edns.GenericOption(12, b"\x00" * 16)])
    out["q-options"] = q.to_wire()
    out["q-edns-version-1"] = dns.message.make_query("v1.test", "A", use_edns=1).to_wire()
    out["q-notify"] = pack("!6H", 7, 0x2000, 1, 0, 0, 0) + b"\x04test\x00\x00\x06\x00\x01"
    out["q-pointer-loop"] = pack("!6H", 8, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
    out["q-two-opts"] = (pack("!6H", 9, 0x0100, 1, 0, 0, 2) + b"\x01a\x00\x00\x01\x00\x01"
                         + pack("!BHHIH", 0, 41, 4096, 0, 0) * 2)
    return out


def replies() -> dict[str, bytes]:
    return {
        "r-a": make_reply("example.com", "A", ["A 192.0.2.1", "A 192.0.2.2"]),
        "r-cname": make_reply("www.example.com", "A",
                              ["CNAME example.net.", "example.net.=A 192.0.2.3"]),
        "r-nxdomain": make_reply("gone.test", "A", [], rcode=3, soa=True),
        "r-aaaa-do": make_reply("example.org", "AAAA", ["AAAA 2001:db8::1"], want_dnssec=True),
        "r-mx": make_reply("example.com", "MX", ["MX 10 mail.example.com."]),
        "r-txt": make_reply("example.com", "TXT", ['TXT "v=spf1 -all"']),
    }


LISTS = {
    "hosts.txt": "# title: hosts sample\n127.0.0.1 localhost\n0.0.0.0 ads.example.com\n"
                 "0.0.0.0 a.example b.example  # two names\n::1 ip6-localhost\n"
                 "0.0.0.0 0.0.0.0\n",
    "adblock.txt": "[Adblock Plus 2.0]\n! title: adblock sample\n||tracker.example^\n"
                   "@@||ok.tracker.example^\n||ads.example^$third-party\n"
                   "example.com##.banner\n||*.cdn.example^\n/ads/*\n",
    "plain.txt": "# category: c2\n# severity: critical\nc2.example\nBücher.example\n"
                 "*.wild.example\nexample.org.\n_dmarc.example\n",
    "rpz.zone": "$TTL 60\n$ORIGIN rpz.example.\n@ SOA ns.rpz.example. host.rpz.example. (\n"
                "  1 3600 600 86400 60 )\n  NS ns.rpz.example.\nbad.example CNAME .\n"
                "*.bad.example CNAME .\nnodata.example CNAME *.\n"
                "ok.bad.example CNAME rpz-passthru.\nlocal.example A 192.0.2.1\n"
                "local.example AAAA 2001:db8::1\nalias.example CNAME target\n"
                "32.1.2.0.192.rpz-ip CNAME .\n$INCLUDE other.zone\n",
    "broken.txt": "not a name!\n" + "a" * 70 + ".example\n||x^$domain=foo\n"
                  "0.0.0.0 good.example bad..example\n$ORIGIN\n@ CNAME .\n"
                  "\ufffd.example\n" + "x" * 5000 + "\n",
}


def main() -> None:
    packets = CORPUS / "packets"
    packets.mkdir(parents=True, exist_ok=True)
    for name, data in {**queries(), **replies()}.items():
        (packets / name).write_bytes(data)
    lists = CORPUS / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    for name, text in LISTS.items():
        (lists / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
