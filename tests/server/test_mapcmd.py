"""`soundscape map`: every output kind written from the tiny real store, equal to the scoring
core's numbers; bad input exits 2 with one line and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from PIL import Image

from embeddings_store.scoring import BBox, score_region
from embeddings_store.store import EmbeddingStore
from model.checkpoint import load_checkpoint
from model.metadata import Metadata
from model.scoring import QueryEmbedding
from server.cli import main
from tests.server.conftest import ROOT
from tests.server.helpers import audio_bytes

TEXT = "thunder over the prairie"
BBOX = "-103,37,-100.5,39"


def run(tmp: Path, store: Path, ckpt: Path, out: str, *extra: str) -> int:
    return main([
        "map", "--text", TEXT, f"--bbox={BBOX}", "--level", "5", "--month", "7", "--hour", "20",
        "--store", str(store), "--checkpoint", str(ckpt), "--out", str(tmp / out),
        "--no-progress", *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def expected(tiny_store, tiny_checkpoint) -> xr.Dataset:
    """The map straight from score_region (what the tiles and /similarity are made of)."""
    model = load_checkpoint(tiny_checkpoint)
    store = EmbeddingStore.open(tiny_store)
    (level,) = [lv for lv in store.levels if lv.psm_zoom == 5]
    query = QueryEmbedding.from_text(model, TEXT)
    bbox = BBox(*(float(v) for v in BBOX.split(",")))
    return score_region(model, store, query, Metadata(7, 20), level, bbox)


def test_cog_output(tmp_path, tiny_store, tiny_checkpoint, expected, capsys) -> None:
    from rio_cogeo.cogeo import cog_validate

    assert run(tmp_path, tiny_store, tiny_checkpoint, "m.tif") == 0
    assert "cells at PSM zoom 5" in capsys.readouterr().out
    assert cog_validate(str(tmp_path / "m.tif"))[0]
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.descriptions == ("score", "probability", "uncertainty")
        assert src.crs.to_epsg() == 3857
        assert src.tags()["query"] == TEXT and src.tags()["psm_zoom"] == "5"
        for band, name in enumerate(("score", "probability", "uncertainty"), start=1):
            np.testing.assert_allclose(src.read(band), expected[name].values, rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]  # no temporary left


def test_cog_reprojected(tmp_path, tiny_store, tiny_checkpoint) -> None:
    assert run(tmp_path, tiny_store, tiny_checkpoint, "m.tif", "--crs", "EPSG:4326") == 0
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.crs.to_epsg() == 4326


def test_png_output(tmp_path, tiny_store, tiny_checkpoint, expected) -> None:
    assert run(tmp_path, tiny_store, tiny_checkpoint, "m.png", "--rescale=-3,0",
               "--colormap", "magma") == 0  # fmt: skip
    img = Image.open(tmp_path / "m.png")
    score = expected["score"].values
    assert img.mode == "P" and img.size == (score.shape[1], score.shape[0])
    idx = np.asarray(img)
    want = np.where(np.isfinite(score), 1 + np.rint(np.clip((score + 3) / 3, 0, 1) * 254), 0)
    np.testing.assert_array_equal(idx, want.astype(np.uint8))


def test_geojson_output(tmp_path, tiny_store, tiny_checkpoint, expected) -> None:
    assert run(tmp_path, tiny_store, tiny_checkpoint, "m.geojson", "--top-k", "5") == 0
    fc = json.loads((tmp_path / "m.geojson").read_text())
    scores = [f["properties"]["score"] for f in fc["features"]]
    best = np.sort(expected["score"].values[np.isfinite(expected["score"].values)])[::-1][:5]
    np.testing.assert_allclose(scores, best, rtol=1e-6)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_dataset_outputs_know_their_crs(tmp_path, tiny_store, tiny_checkpoint, expected,
                                        suffix) -> None:  # fmt: skip
    import rioxarray  # noqa: F401  registers .rio (pip install -e .[dev])

    assert run(tmp_path, tiny_store, tiny_checkpoint, "m" + suffix) == 0
    if suffix == ".nc":
        ds = xr.open_dataset(tmp_path / "m.nc", engine="scipy", decode_coords="all")
    else:
        ds = xr.open_zarr(tmp_path / "m.zarr", consolidated=False, decode_coords="all")
    np.testing.assert_allclose(ds["score"].values, expected["score"].values, rtol=1e-6)
    assert ds["score"].rio.crs.to_epsg() == 3857


def test_the_installed_command_runs(tmp_path, tiny_store, tiny_checkpoint) -> None:
    """The real entry point in a fresh process (progress bar off without a terminal)."""
    out = tmp_path / "m.tif"
    proc = subprocess.run(
        [sys.executable, "-m", "server.cli", "map", "--text", TEXT, f"--bbox={BBOX}",
         "--store", str(tiny_store), "--checkpoint", str(tiny_checkpoint), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--bbox=10,10,11,11"], "outside the store"),
        (["--bbox=-101,38,-101.0001,38.0001"], "west"),
        (["--bbox=-101.0001,38,-101,38.0001"], "no cell centre"),
        (["--crs", "EPSG:999999"], "unknown CRS"),
        (["--out-suffix", ".shp"], "suffix"),
        (["--top-k", "0"], "--top-k"),
        (["--rescale", "1,x"], "rescale"),
        (["--rescale", "1,2"], ".png"),
        (["--colormap", "jet", "--out-suffix", ".png"], "colormap"),
        (["--crs", "EPSG:4326", "--out-suffix", ".nc"], "--crs"),
        (["--audio", "NOISE"], "audio"),
        (["--audio", "MISSING"], "cannot read"),
        (["--level", "3"], "no PSM zoom 3"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path, tiny_store, tiny_checkpoint, capsys, args, words
) -> None:
    suffix = ".tif"
    if "--out-suffix" in args:
        i = args.index("--out-suffix")
        suffix = args[i + 1]
        args = args[:i] + args[i + 2 :]
    out = tmp_path / "out" / f"m{suffix}"
    out.parent.mkdir()
    argv = ["map", "--store", str(tiny_store), "--checkpoint", str(tiny_checkpoint),
            "--out", str(out), "--no-progress"]  # fmt: skip
    if "--audio" in args:
        i = args.index("--audio")
        path = tmp_path / "noise.wav"
        if args[i + 1] == "NOISE":
            path.write_bytes(b"RIFF not really a wave file" * 10)
        args = [*args[:i], "--audio", str(path), *args[i + 2 :]]
    else:
        argv += ["--text", TEXT]
    if not any(a.startswith("--bbox") for a in args):
        argv.append(f"--bbox={BBOX}")
    assert main(argv + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("soundscape map: error:") and "\n" not in err
    assert words in err, err
    assert list(out.parent.iterdir()) == []


def test_a_good_audio_query_maps(tmp_path, tiny_store, tiny_checkpoint) -> None:
    wav = tmp_path / "tone.wav"
    wav.write_bytes(audio_bytes("WAV", "PCM_16", seconds=2.0))
    out = tmp_path / "m.geojson"
    assert main(["map", "--audio", str(wav), f"--bbox={BBOX}", "--store", str(tiny_store),
                 "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--no-progress",
                 "--top-k", "3"]) == 0  # fmt: skip
    assert len(json.loads(out.read_text())["features"]) == 3
