"""The model benchmark stays runnable (a smoke run; the figures themselves are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_model_quick_smoke(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_model.py"), "--configs", "test", "--quick",
         "--score-cells", "20000", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "| config | benchmark |" in run.stdout
    data = json.loads(out.read_text())
    text = json.dumps(data)
    for name in ("fusion", "image encoder", "text", "audio", "score_cells"):
        assert name in text


def test_bench_model_times_the_parts_asked_for(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_model.py"), "--configs", "test", "--quick",
         "--parts", "fusion", "--score-cells", "0", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["results"]
    assert {r["benchmark"] for r in rows} == {"fusion (PSM.fuse)", "fusion, a map's cells"}
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_model.py"), "--parts", "nope"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode != 0 and "unknown part" in bad.stderr
