"""Fuzzing: hostile bytes into the question decoder, the whole per-packet path, the upstream
reply parser and the list parsers; nothing escapes, every reply answers its packet.

The invariants live in tests/fuzz/ (packets.py, listchecks.py, common.py), shared with the
coverage-guided atheris targets (tests/fuzz/fuzz_*.py), which the last tests run briefly.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from struct import pack

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz import listchecks, packets
from tests.fuzz.common import CORPUS, corpus, question_of
from tests.fuzz.packets import check_handle

ROOT = Path(__file__).resolve().parent.parent
# SINKHOLE_FUZZ_EXAMPLES=20000 for a deeper local run; the default keeps the file under 30 s.
EXAMPLES = int(os.environ.get("SINKHOLE_FUZZ_EXAMPLES", "300"))
FAST = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PACKETS = corpus("packets")
LIST_SEEDS = [p.decode("utf-8", "replace") for p in corpus("lists")]

# Reproducers of bugs the fuzzers found, kept as explicit examples (they fail until fixed).
# A question name of 256 wire bytes (limit 255) is accepted and echoed in replies.
NAME_256 = (pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0)
            + b"".join(bytes([n]) + b"a" * n for n in (63, 63, 63, 62)) + b"\x00\x00\x01\x00\x01")
# A reply whose record header is cut short: struct.error escapes parse_reply.
TRUNCATED_RECORD = (pack("!6H", 0x4242, 0x8180, 1, 1, 0, 0) + b"\x01a\x00\x00\x01\x00\x01"
                    + b"\xc0\x0c\x00\x01")
# Two OPTs in a reply: one stays in the body, the client gets two.
TWO_OPTS = (pack("!6H", 0x4242, 0x8180, 1, 1, 0, 2) + b"\x01a\x00\x00\x01\x00\x01"
            + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x01"
            + pack("!BHHIH", 0, 41, 1232, 0, 0) * 2)
# An OPT before other additional records: cutting it shifts the compression pointers after it.
OPT_FIRST = (pack("!6H", 0x4242, 0x8180, 1, 1, 0, 3) + b"\x01a\x00\x00\x01\x00\x01"
             + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x01"
             + pack("!BHHIH", 0, 41, 1232, 0, 0)
             + b"\x02ns\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x35"
             + b"\xc0\x2e\x00\x1c\x00\x01\x00\x00\x01\x2c\x00\x10" + bytes(16))
# A name pointer into the header (offset 11, arcount's low byte): render adds our OPT to
# arcount, so the NS owner that read "." upstream no longer parses.
HEADER_POINTER = (pack("!6H", 0x4242, 0x8180, 1, 1, 1, 0) + b"\x01a\x00\x00\x01\x00\x01"
                  + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x01"
                  + b"\xc0\x0b\x00\x02\x00\x01\x00\x00\x01\x2c\x00\x02\xc0\x0c")
# A literal '.' (0x2e = 46) inside a label, and a rule whose first label is 46 long: the SOA
# owner pointer lands on the dot and the NXDOMAIN reply is malformed.
DOT_IN_LABEL = (pack("!6H", 0x0101, 0x0100, 1, 0, 0, 0) + b"\x35y." + b"x" * 46 + b".evil"
                + b"\x04test\x00\x00\x01\x00\x01")
# An RPZ owner `*.*.name` is stored as a nested wildcard key.
NESTED_WILDCARD = ["*.*.evil CNAME ."]
# A relative $ORIGIN lengthens the origin unchecked: an RPZ CNAME target of 304 characters.
ORIGIN_GROWS = ["$ORIGIN " + ".".join(["a" * 60] * 3) + ".", "$ORIGIN " + "b" * 60,
                "x CNAME " + "c" * 60]


@pytest.fixture(scope="module")
def resolver() -> packets.Pipeline:
    return packets.build_resolver()


# -- strategies: near-valid packets, then mutated ----------------------------------------------

POOL = ["evil.test", "sub.evil.test", "ok.evil.test", "ads.test", "a.wild.test", "wild.test",
        "adblock.test", "cached.test", "big.test", "cname.test", "cnameok.test", "neg.test",
        "nx.test", "nodata.test", "local.test", "alias.test", "a.star.test", "pass.evil.test",
        "sinkholed.test", "nulled.test", "many.test", "refused.test", "use-application-dns.net",
        "resolver.arpa", "forward.example", "y." + "x" * 46 + ".evil.test", ""]


def encode(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(lb) & 0xFF]) + lb for lb in labels) + b"\x00"


@st.composite
def qnames(draw: st.DrawFn) -> bytes:
    """A question name in wire form: a policy/cache name in random case, random labels (some
    over 63 bytes), a name near the 255-byte limit, or one with a compression pointer."""
    kind = draw(st.integers(0, 5))
    if kind <= 2:
        name = draw(st.sampled_from(POOL))
        flips = draw(st.integers(0, 2**32))
        name = "".join(c.upper() if flips >> (i % 32) & 1 else c for i, c in enumerate(name))
        labels = [lb.encode() for lb in name.split(".") if lb]
        if kind == 2 and len(labels) > 1:   # a label with a literal dot: the dotted name lies
            i = draw(st.integers(0, len(labels) - 2))
            labels[i:i + 2] = [labels[i] + b"." + labels[i + 1]]
        return encode(labels)
    if kind == 3:
        return encode(draw(st.lists(st.binary(min_size=1, max_size=70), max_size=8)))
    if kind == 4:
        remaining = draw(st.integers(240, 262)) - 1   # wire length minus the root byte
        labels = []
        while remaining > 1:
            n = min(63, remaining - 1, draw(st.integers(1, 63)) if draw(st.booleans()) else 63)
            labels.append(b"a" * n)
            remaining -= n + 1
        return encode(labels)
    prefix = encode(draw(st.lists(st.binary(min_size=1, max_size=5), max_size=3)))[:-1]
    return prefix + bytes([0xC0 | draw(st.integers(0, 3)), draw(st.integers(0, 255))])


@st.composite
def opt_records(draw: st.DrawFn) -> bytes:
    owner = draw(st.sampled_from([b"\x00", b"\x00", b"\xc0\x0c", b"\x01a\x00"]))
    size = draw(st.sampled_from([0, 511, 512, 513, 1232, 1400, 4096, 65535]))
    version = draw(st.sampled_from([0, 0, 0, 1, 255]))
    ext = draw(st.sampled_from([0, 0, 1]))
    do = draw(st.booleans())
    options = draw(st.sampled_from([b"", b"", b"\x00\x0a\x00\x08" + b"\x01" * 8,
                                    b"\x00\x0f\x00\x02\x00\x0f", b"\xff\xff\x00\x10"]))
    ttl = ext << 24 | version << 16 | (0x8000 if do else 0)
    return owner + pack("!HHIH", 41, size, ttl, len(options)) + options


@st.composite
def other_records(draw: st.DrawFn) -> bytes:
    rr = draw(st.sampled_from([
        b"\xc0\x0c" + pack("!HHIH", 1, 1, 300, 4) + b"\xc0\x00\x02\x01",
        b"\x00" + pack("!HHIH", 6, 1, 60, 2) + b"\x00\x00",
        b"\xc0\x0c" + pack("!HHIH", 5, 1, 60, 2) + b"\xc0\x0c",
        b"\xff" + pack("!HHIH", 1, 1, 0, 0),
        b"\x00" + pack("!HHIH", 250, 255, 0, 0),   # a TSIG-typed stub
    ]))
    return rr[:draw(st.integers(1, len(rr)))] if draw(st.integers(0, 4)) == 0 else rr


def mutate(draw: st.DrawFn, packet: bytes) -> bytes:
    """One or two random edits: truncate, flip or set a byte, insert or delete bytes."""
    for _ in range(draw(st.integers(0, 2))):
        if not packet:
            break
        pos = draw(st.integers(0, len(packet) - 1))
        op = draw(st.sampled_from(["cut", "flip", "set", "insert", "delete"]))
        if op == "cut":
            packet = packet[:pos]
        elif op == "flip":
            packet = packet[:pos] + bytes([packet[pos] ^ 1 << draw(st.integers(0, 7))]) + \
                packet[pos + 1:]
        elif op == "set":
            packet = packet[:pos] + bytes([draw(st.sampled_from([0, 0x3F, 0x40, 0xC0, 0xFF]))]) \
                + packet[pos + 1:]
        elif op == "insert":
            packet = packet[:pos] + draw(st.binary(min_size=1, max_size=8)) + packet[pos:]
        else:
            packet = packet[:pos] + packet[pos + draw(st.integers(1, 8)):]
    return packet


def lie(draw: st.DrawFn, true: int) -> int:
    if draw(st.integers(0, 5)):
        return true
    return draw(st.sampled_from([0, 1, 2, true + 1, max(true - 1, 0), 0xFFFF]))


@st.composite
def near_valid_queries(draw: st.DrawFn) -> bytes:
    """A query as a client would build it, then bent: opcodes, QR, lying counts, records in
    the answer section, two OPTs, EDNS versions, huge sizes, truncation, random edits."""
    opcode = draw(st.sampled_from([0] * 6 + [1, 2, 4, 5, 15]))
    flags = (0x8000 if draw(st.integers(0, 9)) == 0 else 0) | opcode << 11 | \
        draw(st.integers(0, 0x07FF))
    qtype = draw(st.sampled_from([1, 28, 255, 41, 5, 6, 65, 0, 0xFFFF]) | st.integers(0, 0xFFFF))
    qclass = draw(st.sampled_from([1, 1, 1, 3, 255, 254, 0]))
    questions = [draw(qnames()) + pack("!HH", qtype, qclass)]
    if draw(st.integers(0, 9)) == 0:
        questions = questions * draw(st.integers(0, 2))
    answers = draw(st.lists(other_records(), max_size=1)) if draw(st.integers(0, 5)) == 0 else []
    additional = draw(st.lists(opt_records() | other_records(), max_size=3))
    header = pack("!6H", draw(st.integers(0, 0xFFFF)), flags, lie(draw, len(questions)),
                  lie(draw, len(answers)), lie(draw, 0), lie(draw, len(additional)))
    packet = header + b"".join(questions) + b"".join(answers) + b"".join(additional)
    return mutate(draw, packet)


@st.composite
def corpus_mutants(draw: st.DrawFn) -> bytes:
    """A seed packet, as sent or with QR cleared (so replies reach the query path), mutated."""
    packet = draw(st.sampled_from(PACKETS))[:2048]
    if draw(st.booleans()) and len(packet) >= 3:
        packet = packet[:2] + bytes([packet[2] & 0x7F]) + packet[3:]
    return mutate(draw, packet)


ANY_PACKET = st.binary(max_size=600) | near_valid_queries() | corpus_mutants()


# -- the question decoder ----------------------------------------------------------------------

@FAST
@given(st.binary(max_size=600) | near_valid_queries())
@example(NAME_256)
@example(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01")
def test_parse_query_valid_question_or_wire_error(data: bytes) -> None:
    packets.check_parse_query(data)


# -- the whole per-packet path -----------------------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp"])
@FAST
@given(data=ANY_PACKET, client=st.sampled_from(sorted(packets.CLIENTS)))
@example(data=DOT_IN_LABEL, client="allowed")
@example(data=NAME_256, client="allowed")
def test_handle_answers_every_packet_within_limits(resolver: packets.Pipeline, transport: str,
                                                   data: bytes, client: str) -> None:
    check_handle(resolver, data, client, transport)


def test_seed_corpus_as_queries_and_replies(resolver: packets.Pipeline) -> None:
    """Every seed packet, as a query (also with QR cleared) from each client on both
    transports, and as an upstream reply."""
    for data in PACKETS:
        cleared = data[:2] + bytes([data[2] & 0x7F]) + data[3:] if len(data) >= 3 else data
        for packet in (data, cleared):
            for client in packets.CLIENTS:
                check_handle(resolver, packet, client, "udp")
                check_handle(resolver, packet, client, "tcp")
        packets.check_upstream_bytes(data)


# -- upstream replies --------------------------------------------------------------------------

REPLY_SPECS = [
    ("example.com", "A", ("A 192.0.2.1", "A 192.0.2.2"), 0, False),
    ("www.example.com", "A", ("CNAME example.net.", "example.net.=A 192.0.2.3"), 0, False),
    ("gone.test", "A", (), 3, True),
    ("empty.test", "AAAA", (), 0, True),
    ("mx.test", "MX", ("MX 10 mail.mx.test.", "MX 20 mail2.mx.test."), 0, False),
    ("loop.test", "A", ("CNAME loop.test.",), 0, False),
]


@cache
def real_reply(index: int) -> tuple[bytes, bytes]:
    name, rdtype, answers, rcode, soa = REPLY_SPECS[index]
    qtype = {"A": 1, "AAAA": 28, "MX": 15}[rdtype]
    return packets.make_reply(name, rdtype, answers, rcode, soa), question_of(name, qtype)


@st.composite
def mutated_replies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A real reply bent: extra OPTs (also outside the additional section), lying counts, a
    forward or looping pointer in a CNAME, then random edits."""
    wire, question = real_reply(draw(st.integers(0, len(REPLY_SPECS) - 1)))
    an, ns, ar = (int.from_bytes(wire[i:i + 2], "big") for i in (6, 8, 10))
    tail = b""
    extra = draw(st.sampled_from(["none", "opt", "opt", "cname-loop", "answer-opt"]))
    if extra == "opt":
        tail, ar = draw(opt_records()), ar + 1
    elif extra == "cname-loop":
        tail, ar = b"\xc0\x0c" + pack("!HHIH", 5, 1, 60, 2) + b"\xc0" + bytes([len(wire)]), ar + 1
    elif extra == "answer-opt":
        wire = wire[:12 + len(question)] + b"\x00" + pack("!HHIH", 41, 512, 0, 0) + \
            wire[12 + len(question):]
        an += 1
    header = wire[:6] + pack("!3H", lie(draw, an), lie(draw, ns), lie(draw, ar))
    data = header + wire[12:] + tail
    keep = 12 + len(question)
    return data[:keep] + mutate(draw, data[keep:]), question


@FAST
@given(st.binary(max_size=600) | corpus_mutants())
@example(TRUNCATED_RECORD)
def test_parse_reply_any_bytes_raises_only_forged_reply(data: bytes) -> None:
    packets.check_upstream_bytes(data)


@FAST
@given(mutated_replies())
@example((TRUNCATED_RECORD, b"\x01a\x00\x00\x01\x00\x01"))
@example((TWO_OPTS, b"\x01a\x00\x00\x01\x00\x01"))
@example((OPT_FIRST, b"\x01a\x00\x00\x01\x00\x01"))
@example((HEADER_POINTER, b"\x01a\x00\x00\x01\x00\x01"))
def test_parse_reply_mutated_real_replies(case: tuple[bytes, bytes]) -> None:
    data, question = case
    packets.check_parse_reply(data, 0x4242, question)


# -- lists -------------------------------------------------------------------------------------

LABELS = st.sampled_from(["evil", "ads", "xn--bcher-kva", "Bücher", "_dmarc", "a-b", "EXAMPLE",
                          "com", "test", "*", "", "-", "a" * 63, "a" * 64, "ü" * 30, "x" * 120,
                          "rpz-ip", "rpz-passthru", "localhost", "0", "1.2.3.4", "\u3002"]) \
    | st.text(max_size=10)
TEMPLATES = ["{n}", "{n}.", "0.0.0.0 {n}", "127.0.0.1 {n} {n}", "::1 {n}", "||{n}^",
             "@@||{n}^", "||{n}^$important", "||{n}^$third-party", "*.{n}", "{n} CNAME .",
             "{n} CNAME *.", "{n} CNAME rpz-passthru.", "{n} IN 300 A 192.0.2.1",
             "{n} AAAA 2001:db8::1", "{n} CNAME {n}", "{n} CNAME {n}.", "$ORIGIN {n}",
             "$ORIGIN {n}.", "$TTL 300", "@ SOA {n}. {n}. (", "  1 2 3 4 5 )", ")",
             "# title: {n}", "! {n}", "  A 192.0.2.2", "{n}##.ad", "*.{n} CNAME .", "@ CNAME ."]


@st.composite
def list_lines(draw: st.DrawFn) -> list[str]:
    """List files of every format, with random names and junk spliced in."""
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        line = draw(st.sampled_from(TEMPLATES))
        while "{n}" in line:
            labels = draw(st.lists(LABELS, min_size=1, max_size=5))
            line = line.replace("{n}", ".".join(labels), 1)
        if draw(st.integers(0, 3)) == 0:
            pos = draw(st.integers(0, len(line)))
            junk = draw(st.sampled_from(["#", "$", "^", "|", "\t", "  ", "\ufffd", "(", ")",
                                         ";c", ".", "*", "\x00"]) | st.text(max_size=4))
            line = line[:pos] + junk + line[pos:]
        lines.append(line)
    return lines


@FAST
@given(st.lists(st.text(max_size=100), max_size=15) | list_lines()
       | st.sampled_from(LIST_SEEDS).map(str.splitlines))
@example(ORIGIN_GROWS)
@example(NESTED_WILDCARD)
def test_parse_lines_never_raises_and_stores_normalised_names(lines: list[str]) -> None:
    listchecks.check_lines(lines)


@FAST
@given(st.text(max_size=300) | list_lines().map(lambda lines: lines[0]))
def test_normalise_name_is_normalised_and_idempotent(text: str) -> None:
    listchecks.check_normalise(text)


@pytest.fixture(scope="module")
def list_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-lists") / "list.txt"


@settings(FAST, max_examples=max(EXAMPLES // 2, 1))
@given(st.binary(max_size=3000) | list_lines().map(lambda lines: "\n".join(lines).encode())
       | st.sampled_from(corpus("lists")))
@example(b"\xff\xfe\x00a")
@example(b"\xef\xbb\xbfevil.test\r\n" + b"\xc3(\n")
def test_load_path_returns_or_raises_list_error(list_file: Path, data: bytes) -> None:
    listchecks.check_load(data, list_file)


# -- the coverage-guided targets, briefly ----------------------------------------------------

@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["packet", "lists"])
def test_atheris_target_runs_clean(target: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install atheris: a binary wheel for CPython "
                    "3.11 on Linux x86_64)")
    seeds = CORPUS / ("packets" if target == "packet" else "lists")
    work = tmp_path / "corpus"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fuzz" / f"fuzz_{target}.py"), "-runs=2000",
         "-seed=1", "-timeout=10", "-max_len=4096", f"-dict={ROOT}/tests/fuzz/{target}.dict",
         f"-artifact_prefix={tmp_path}/",
         str(work), str(seeds)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
        env={**os.environ, "SINKHOLE_FUZZ_TMP": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done 2000 runs" in proc.stderr, proc.stderr[-2000:]
