"""The training-step benchmark stays runnable (a smoke run; the figures are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_train_quick_smoke(tmp_path):
    out = tmp_path / "train.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_train.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())
    assert [r["benchmark"] for r in rows] == [
        "train step (loss, backward, AdamW)",
        "train step, audio tower frozen",
        "train step, audio tower frozen, head trains",
        "audio tower forward + backward",
        "image side forward + backward",
    ]
    assert all(r["p50_ms"] > 0 for r in rows)


def test_bench_train_rejects_a_batch_without_negatives(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_train.py"), "--batch-size", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2 and "at least 2" in run.stderr
