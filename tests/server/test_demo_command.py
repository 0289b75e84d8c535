"""`soundscape demo`: builds what is missing into its cache folder, then starts fast."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embeddings_store.demo.build import packaged_checkpoint
from embeddings_store.demo.geo import GeoLayers, default_cache_dir
from embeddings_store.store import EmbeddingStore

BBOX = "--bbox=-100,35,-96,38"  # a small store region keeps the test quick


def soundscape(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "demo", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    if not packaged_checkpoint().exists():
        pytest.fail(f"{packaged_checkpoint()} is missing: train it with `make demo-model`")
    folder = tmp_path_factory.mktemp("demo-cache")
    # Reuse the geo layers the other tests built (building them is tested elsewhere).
    shared = GeoLayers.cache_path(default_cache_dir())
    GeoLayers.load(default_cache_dir())
    shutil.copy(shared, GeoLayers.cache_path(folder))
    return folder


def test_first_run_builds_model_and_store_then_second_start_is_fast(cache):
    first = soundscape("--no-serve", "--no-progress", BBOX, cache=cache)
    assert first.returncode == 0, first.stderr
    assert "demo ready" in first.stdout
    assert (cache / "imagery.tif").exists()
    assert (cache / "demo-model.safetensors").read_bytes() == packaged_checkpoint().read_bytes()
    store = EmbeddingStore.open(cache / "store.zarr")
    assert store.is_complete() and {lv.psm_zoom for lv in store.levels} == {1, 3, 5}
    assert store.with_fused
    stamp = (cache / "store.zarr" / "zarr.json").stat().st_mtime_ns

    t0 = time.perf_counter()
    second = soundscape("--no-serve", "--no-progress", BBOX, cache=cache)
    elapsed = time.perf_counter() - t0
    assert second.returncode == 0, second.stderr
    assert elapsed <= 20.0, f"second start took {elapsed:.1f} s"
    # Nothing was rebuilt.
    assert (cache / "store.zarr" / "zarr.json").stat().st_mtime_ns == stamp


def test_bad_region_is_one_clear_line(cache):
    res = soundscape("--no-serve", "--bbox=10,50,5,40", cache=cache)
    assert res.returncode == 2
    assert res.stderr.startswith("soundscape demo: error:")
    assert "Traceback" not in res.stderr
