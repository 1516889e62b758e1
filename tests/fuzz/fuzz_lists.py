#!/usr/bin/env python3
"""atheris target: the list parsers (parse_lines, normalise_name) and load_path.

Each input is one list file: decoded as the loader decodes it and parsed line by line, each
line's first token normalised on its own, and the raw bytes written to a file for load_path.
Any broken invariant raises. Run: tests/fuzz/run.sh lists [SECONDS]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["sinkhole"]):
    from tests.fuzz import listchecks

# run.sh and the test point this at their own temp folder; else a fresh one (left behind).
FILE = Path(os.environ.get("SINKHOLE_FUZZ_TMP") or tempfile.mkdtemp(prefix="sinkhole-fuzz-")) \
    / "list.txt"


def test_one(data: bytes) -> None:
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    listchecks.check_lines(lines)
    for line in lines[:20]:
        token = line.split(maxsplit=1)
        if token:
            listchecks.check_normalise(token[0])
    listchecks.check_load(data, FILE)


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
