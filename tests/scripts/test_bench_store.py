"""scripts/bench_store.py says what is wrong with its arguments before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_missing_imagery_is_one_clear_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_store.py"), "--quick",
         "--imagery", str(tmp_path / "none.tif")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"bench_store: {tmp_path / 'none.tif'} is not a file"
