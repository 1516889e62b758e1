"""The installed package is what `pip install .` (the README's first command) builds: every
data file the daemon reads — the shipped list, the hunting rules, the console's templates —
must be in the wheel, or the newcomer's first run fails where the test suite (run from the
source tree) passes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_the_wheel_carries_every_data_file_of_the_package(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                          "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("sinkhole-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "sinkhole"
    wanted = {str(p.relative_to(ROOT)) for p in package.rglob("*")
              if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert wanted and not wanted - shipped, sorted(wanted - shipped)
    assert "sinkhole/data/triangulation.txt" in shipped
