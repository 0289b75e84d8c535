"""bf16 against fp32 fusion: the comparison the README's precision figures come from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from embeddings_store.precision import precision_agreement, sample_chunks
from embeddings_store.synthetic import write_world_store
from model.metadata import Metadata
from model.scoring import QueryEmbedding

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    from model.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def world(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("precision") / "w.zarr"
    return write_world_store(path, model, 3000, pool=64, seed=2)


def test_same_precision_agrees_exactly_and_bf16_only_nearly(model, world):
    queries = {"rain": QueryEmbedding.from_text(model, "rain on a roof")}
    metas = [Metadata(month=3, hour=6, asource="inat"), Metadata(hour=20)]
    same = precision_agreement(model, world, queries, metas, 1, chunks=4, other="fp32")
    assert len(same) == 2 and all(r.cells > 0 for r in same)
    assert all(r.max_abs == 0 and r.top_overlap == 1 for r in same)
    assert [r.spearman for r in same] == pytest.approx([1.0, 1.0])
    bf16 = precision_agreement(model, world, queries, metas, 1, chunks=4)
    assert [r.cells for r in bf16] == [r.cells for r in same]
    assert all(0 < r.max_abs < 0.1 and r.median_abs <= r.max_abs < r.span for r in bf16)
    assert all(r.spearman > 0.9 for r in bf16)


def test_chunks_are_a_seeded_sample_of_written_ones(world):
    tiles = set(world.extent(1).tiles())
    picked = sample_chunks(world, 1, 3, seed=5)
    assert len(picked) == min(3, len(tiles)) and set(picked) <= tiles
    assert picked == sample_chunks(world, 1, 3, seed=5)
    assert sorted(sample_chunks(world, 1, 10_000)) == sorted(tiles)  # asked for more: all


def test_script_prints_the_table(world, tiny_checkpoint, tmp_path):
    out = tmp_path / "p.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/eval_precision.py"), "--store", str(world.location),
         "--checkpoint", str(tiny_checkpoint), "--chunks", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "| metadata | query |" in run.stdout and out.exists()
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts/eval_precision.py"), "--store", str(tmp_path / "no"),
         "--checkpoint", str(tiny_checkpoint)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "does not exist" in bad.stderr
