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


def test_random_model_writes_a_seeded_model_beside_the_store(tmp_path):
    """--random-model CONFIG: the same seed gives the same model (id), the store is its."""
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint

    out = tmp_path / "r.zarr"
    done = run("--cells", "800", "--pool", "32", "--out", str(out), "--random-model", "test",
               "--seed", "3", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    model = load_checkpoint(tmp_path / "r-model.safetensors")
    assert model.config.name == "test"
    store = EmbeddingStore.open(out, expect_model_id=model.model_id)
    assert store.embed_dim == model.config.embed_dim
    other = tmp_path / "again.safetensors"
    again = run("--cells", "800", "--pool", "32", "--out", str(tmp_path / "r2.zarr"),
                "--random-model", "test", "--seed", "3", "--checkpoint", str(other),
                cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(other).model_id == model.model_id
    bad = run("--cells", "800", "--out", str(tmp_path / "b.zarr"), "--random-model", "nope",
              cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "unknown model config 'nope'" in bad.stderr, bad.stderr
    assert not (tmp_path / "b.zarr").exists()


def test_paper_offline_config_has_the_paper_widths_and_builds_offline():
    """The D=512 stand-in: the paper's image tower, fuser and width, no pretrained towers."""
    from model.config import load_config

    paper, offline = load_config("paper"), load_config("paper-offline")
    assert offline.embed_dim == paper.embed_dim == 512
    assert offline.image == paper.image and offline.fusion == paper.fusion
    assert offline.text.pretrained is None and offline.audio.pretrained is None
