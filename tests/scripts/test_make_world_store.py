"""scripts/make_world_store.py writes a servable store, and says what is wrong otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_world_store.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


def test_writes_a_store_for_the_checkpoint(tiny_checkpoint, tmp_path):
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint

    out = tmp_path / "w.zarr"
    done = run("--cells", "800", "--pool", "32", "--out", str(out),
               "--checkpoint", str(tiny_checkpoint), "--like", str(out), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "no embedding store" in done.stderr  # --like must exist
    done = run("--cells", "800", "--pool", "32", "--out", str(out),
               "--checkpoint", str(tiny_checkpoint), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "valid cells" in done.stdout
    store = EmbeddingStore.open(out, expect_model_id=load_checkpoint(tiny_checkpoint).model_id)
    assert store.is_complete() and store.with_fused
    again = run("--cells", "900", "--pool", "32", "--out", str(out),
                "--checkpoint", str(tiny_checkpoint), cwd=tmp_path)  # fmt: skip
    assert again.returncode != 0 and "--overwrite" in again.stderr  # another store, same path


def test_bad_arguments_say_what_to_do(tiny_checkpoint, tmp_path):
    missing = run("--cells", "10", "--out", str(tmp_path / "x.zarr"),
                  "--checkpoint", str(tmp_path / "none.safetensors"), cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    for args, words in ((["--cells", "0"], "positive"), (["--cells", "10", "--pool", "0"], "pool")):
        bad = run(*args, "--out", str(tmp_path / "y.zarr"), "--checkpoint", str(tiny_checkpoint),
                  cwd=tmp_path)  # fmt: skip
        assert bad.returncode == 2 and words in bad.stderr, bad.stderr
