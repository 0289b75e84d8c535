"""The precompute job end to end: real GeoTIFF / XYZ imagery, real Zarr, real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from embeddings_store.grid import Level
from embeddings_store.precompute import PrecomputeSpec, default_levels, parse_levels, precompute
from embeddings_store.region import Region, load_geojson
from embeddings_store.store import EmbeddingStore, StoreMismatchError

BBOX = (-104.0, 36.0, -99.0, 40.0)  # inside the Blue Marble crop (-110..-90, 30..45)
BASE_M = 20000.0  # Blue Marble is ~7 km/px: footprints of 20/60/100 km
LEVELS = (Level(1, 9, 4), Level(5, 7, 4))  # ~70 chunks: long enough to be killed mid-run


def make_spec(tif: Path, ckpt: Path, store: Path, **kw) -> PrecomputeSpec:
    args = dict(
        imagery=str(tif),
        checkpoint=str(ckpt),
        store=str(store),
        levels=LEVELS,
        region=Region(BBOX),
        base_footprint_m=BASE_M,
        batch_size=16,
    )
    args.update(kw)
    return PrecomputeSpec(**args)


def chunk_files(store: Path) -> dict[str, bytes]:
    """Every file of a store except the root metadata (which holds the creation time)."""
    out = {}
    for p in sorted(store.rglob("*")):
        rel = p.relative_to(store).as_posix()
        if p.is_file() and rel != "zarr.json" and not rel.endswith(".partial"):
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def reference_store(bluemarble_tif, tiny_checkpoint, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("ref") / "ref.zarr"
    precompute(make_spec(bluemarble_tif, tiny_checkpoint, store, with_fused=True), progress=False)
    return store


def test_geotiff_precompute_matches_the_model(reference_store, bluemarble_tif, tiny_checkpoint):
    from embeddings_store.imagery import open_imagery
    from model.checkpoint import load_checkpoint
    from model.transforms import eval_transform, to_tensor

    store = EmbeddingStore.open(reference_store)
    assert store.is_complete() and store.with_fused
    assert store.attrs["imagery"]["base_footprint_m"] == BASE_M
    model = load_checkpoint(tiny_checkpoint)
    imagery = open_imagery(str(bluemarble_tif))
    for lv in LEVELS:
        ext = store.extent(lv.psm_zoom)
        valid = np.asarray(store.array(lv.psm_zoom, "valid")[:])
        assert valid.mean() > 0.5  # the bbox's tiles extend a little beyond it
        rows, cols = np.nonzero(valid)
        for r, c in list(zip(rows, cols, strict=True))[:: max(len(rows) // 5, 1)]:
            bounds = lv.footprint_bounds(ext.cx0 + c, ext.cy0 + r, BASE_M)
            img, _ = imagery.read(bounds, model.config.image.tile_size)
            x = eval_transform(to_tensor(img), model.config.image.img_size)[None]
            with torch.no_grad():
                h = model.encode_image(x, float(lv.psm_zoom))
                fused = model.fuse(h, None)
            stored = np.asarray(store.array(lv.psm_zoom, "h")[r, c, :], dtype=np.float32)
            np.testing.assert_allclose(stored, h[0].numpy(), rtol=2e-3, atol=2e-3)
            mu0 = np.asarray(store.array(lv.psm_zoom, "mu0")[r, c, :], dtype=np.float32)
            np.testing.assert_allclose(mu0, fused.mu[0].numpy(), rtol=2e-3, atol=2e-3)


def test_cells_outside_the_region_polygon_are_invalid(bluemarble_tif, tiny_checkpoint, tmp_path):
    gj = tmp_path / "tri.geojson"
    gj.write_text(
        '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": '
        "[[[-104, 36], [-99, 36], [-104, 40], [-104, 36]]]}}"
    )
    region = load_geojson(gj)
    spec = make_spec(
        bluemarble_tif,
        tiny_checkpoint,
        tmp_path / "s.zarr",
        region=region,
        levels=(Level(1, 8, 4),),
    )
    precompute(spec, progress=False)
    store = EmbeddingStore.open(tmp_path / "s.zarr")
    ext = store.extent(1)
    lv = ext.level
    valid = np.asarray(store.array(1, "valid")[:])
    lat = lv.cell_centers_lat(np.arange(ext.cy0, ext.cy0 + valid.shape[0]))
    lon = lv.cell_centers_lon(np.arange(ext.cx0, ext.cx0 + valid.shape[1]))
    lon_g, lat_g = np.meshgrid(lon, lat)
    inside = region.contains(lon_g, lat_g)
    assert inside.any() and (~inside).any()
    assert not valid[~inside].any()
    assert valid[inside].all()


def test_rerun_is_idempotent_and_refuses_another_model(
    reference_store, bluemarble_tif, tiny_checkpoint, tmp_path
):
    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.psm import PSM

    report = precompute(
        make_spec(bluemarble_tif, tiny_checkpoint, reference_store, with_fused=True), progress=False
    )
    assert report.chunks_computed == 0
    torch.manual_seed(99)
    other = tmp_path / "other.safetensors"
    save_checkpoint(PSM(load_config("test")), other)
    with pytest.raises(StoreMismatchError, match="model_id"):
        precompute(
            make_spec(bluemarble_tif, other, reference_store, with_fused=True), progress=False
        )


def test_region_outside_the_imagery_is_refused(bluemarble_tif, tiny_checkpoint, tmp_path):
    spec = make_spec(
        bluemarble_tif, tiny_checkpoint, tmp_path / "s.zarr", region=Region((10, 10, 20, 20))
    )
    with pytest.raises(ValueError, match="outside the imagery"):
        precompute(spec, progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_level_parsing_and_defaults():
    assert parse_levels("1,3,5") == ((1, None, None), (3, None, None), (5, None, None))
    assert parse_levels("1:9:16") == ((1, 9, 16),)
    for bad in ("2", "1:9", "a", ""):
        with pytest.raises(ValueError):
            parse_levels(bad)
    levels = default_levels(2560.0, Region((-125, 24, -66, 50)))
    assert [lv.psm_zoom for lv in levels] == [1, 3, 5]
    sizes = [lv.cell_size for lv in levels]
    assert sizes[0] < sizes[1] <= sizes[2]


def soundscape_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def cli_args(tif: Path, ckpt: Path, store: Path, *extra: str) -> list[str]:
    return soundscape_cmd(
        "precompute",
        "--imagery",
        str(tif),
        "--checkpoint",
        str(ckpt),
        "--store",
        str(store),
        # the = form: a value starting with '-' would otherwise read as an option
        "--bbox=" + ",".join(map(str, BBOX)),
        "--levels",
        "1:9:4,5:7:4",
        "--base-footprint",
        str(BASE_M),
        "--batch-size",
        "16",
        "--with-fused",
        "--no-progress",
        *extra,
    )


def test_killed_run_resumed_equals_uninterrupted_run(
    reference_store, bluemarble_tif, tiny_checkpoint, tmp_path
):
    store = tmp_path / "killed.zarr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "killed.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cli_args(bluemarble_tif, tiny_checkpoint, store),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        # Generous: on a loaded 2-core machine the job's imports alone can take a minute.
        deadline = time.time() + 300
        done_dir = store / "psm1" / "done" / "c"
        started = False
        while time.time() < deadline and proc.poll() is None:
            if done_dir.exists() and sum(1 for p in done_dir.rglob("*") if p.is_file()) >= 3:
                started = True
                break
            time.sleep(0.05)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert alive, f"job ended before it could be killed: {log.read_text()}"
    assert started, f"job committed no 3 chunks within 300 s: {log.read_text()}"
    partial = EmbeddingStore.open(store)
    assert not partial.is_complete()
    rerun = subprocess.run(
        cli_args(bluemarble_tif, tiny_checkpoint, store),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert EmbeddingStore.open(store).is_complete()
    assert chunk_files(store) == chunk_files(reference_store)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dask_cluster_run_equals_in_process_run(
    reference_store, bluemarble_tif, tiny_checkpoint, tmp_path
):
    port = _free_port()
    bindir = Path(sys.executable).parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [
                str(bindir / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        str(bindir / "dask"),
                        "worker",
                        f"tcp://127.0.0.1:{port}",
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--local-directory",
                        str(tmp_path / "dask"),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
            assert len(client.scheduler_info()["workers"]) == 2
        store = tmp_path / "dask.zarr"
        out = subprocess.run(
            cli_args(
                bluemarble_tif, tiny_checkpoint, store, "--scheduler", f"tcp://127.0.0.1:{port}"
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert chunk_files(store) == chunk_files(reference_store)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--imagery", "/nonexistent.tif"], "nonexistent.tif"),
        (["--bbox", "10,10,20,20"], "outside the imagery"),
        (["--bbox", "1,2,3"], "four numbers"),
        (["--levels", "2"], "PSM zoom levels are 1, 3 and 5"),
        (["--checkpoint", "/nonexistent.safetensors"], "does not exist"),
    ],
)
def test_bad_cli_input_is_a_clear_error(
    extra, message, bluemarble_tif, tiny_checkpoint, tmp_path, capsys
):
    from server.cli import main

    args = cli_args(bluemarble_tif, tiny_checkpoint, tmp_path / "s.zarr")[
        3:
    ]  # drop python -m server.cli
    # later occurrences of an option win in argparse
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_full_disk_mid_run_is_a_clear_error_and_resumable(
    reference_store, bluemarble_tif, tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    """ENOSPC while writing: one clear line, finished chunks stay valid, a re-run completes."""
    import errno

    from server.cli import main

    real_write = EmbeddingStore.write_chunk
    calls = {"n": 0}

    def failing_write(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    store = tmp_path / "full.zarr"
    args = cli_args(bluemarble_tif, tiny_checkpoint, store)[3:]
    monkeypatch.setattr(EmbeddingStore, "write_chunk", failing_write)
    assert main(args) == 1  # a failure at run time, not bad input
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("soundscape precompute: error: ")
    assert "No space left on device" in err[0] and "re-run to resume" in err[0]
    partial = EmbeddingStore.open(store)
    assert sum(int(partial.done_mask(z).sum()) for z in partial.extents) == 3
    monkeypatch.setattr(EmbeddingStore, "write_chunk", real_write)
    assert main(args) == 0
    assert chunk_files(store) == chunk_files(reference_store)


@pytest.fixture
def xyz_server(bluemarble_tif, tmp_path):
    """XYZ PNG tiles cut from the Blue Marble GeoTIFF, served over HTTP on 127.0.0.1."""
    import functools
    import http.server
    import threading

    import mercantile
    from PIL import Image

    from embeddings_store.imagery import open_imagery

    root = tmp_path / "tiles"
    source = open_imagery(str(bluemarble_tif))
    zoom = 7
    for t in mercantile.tiles(BBOX[0] - 1, BBOX[1] - 1, BBOX[2] + 1, BBOX[3] + 1, zoom):
        b = mercantile.xy_bounds(t)
        img, _ = source.read((b.left, b.bottom, b.right, b.top), 256)
        out = root / str(t.z) / str(t.x)
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out / f"{t.y}.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    server.shutdown()
    server.server_close()


def test_xyz_source_over_http_produces_a_store(
    xyz_server, reference_store, tiny_checkpoint, tmp_path
):
    store = tmp_path / "xyz.zarr"
    spec = make_spec(
        f"xyz:{xyz_server}#maxzoom=7",
        tiny_checkpoint,
        store,
        with_fused=True,
        cache_dir=str(tmp_path / "cache"),
    )
    precompute(spec, progress=False)
    xyz, ref = EmbeddingStore.open(store), EmbeddingStore.open(reference_store)
    assert xyz.is_complete() and xyz.attrs["imagery"]["kind"] != ref.attrs["imagery"]["kind"]
    for lv in LEVELS:
        v_xyz = np.asarray(xyz.array(lv.psm_zoom, "valid")[:])
        v_ref = np.asarray(ref.array(lv.psm_zoom, "valid")[:])
        both = v_xyz & v_ref
        assert both.sum() > 0.9 * v_ref.sum()
        h_xyz = np.asarray(xyz.array(lv.psm_zoom, "h")[:], dtype=np.float32)[both]
        h_ref = np.asarray(ref.array(lv.psm_zoom, "h")[:], dtype=np.float32)[both]
        # Same imagery through another path (tiles + resampling): nearly the same embeddings.
        rel = np.linalg.norm(h_xyz - h_ref, axis=1) / np.linalg.norm(h_ref, axis=1)
        assert np.median(rel) < 0.05
    assert any((tmp_path / "cache").rglob("*.png"))
