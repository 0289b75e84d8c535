"""The scale benchmark stays runnable (a smoke run on the tiny store; figures not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_scale_quick_smoke(tiny_store, tiny_checkpoint, tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_scale.py"), "--quick", "--view-zoom", "8",
         "--store", str(tiny_store), "--checkpoint", str(tiny_checkpoint), "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| cold top-10 of the store" in run.stdout
    data = json.loads(out.read_text())
    assert "partial" not in data  # the figures saved along the way are replaced by the whole
    assert data["top_k_cold"]["n"] == 2 and data["top_k_cold"]["exact"] is True
    assert data["view"]["tiles"] >= 24 and data["timelapse"]["tiles"] == 24 * data["view"]["tiles"]
    assert data["view_batched"]["tiles"] == data["view"]["tiles"]
    assert data["timelapse_batched"]["tiles"] == data["timelapse"]["tiles"]
    assert 0 < data["timelapse_batched"]["prepare_ms"] <= data["timelapse_batched"]["wall_ms"]
    assert data["top_k_cold"]["recall_at_10_mean"] > 0
    assert data["server_rss_mib"] >= data["server_anon_mib"] > 0


def test_bench_scale_without_a_store_says_what_to_do(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_scale.py"),
         "--store", str(tmp_path / "none.zarr"), "--checkpoint", str(tmp_path / "none.st")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert "soundscape demo" in run.stderr
