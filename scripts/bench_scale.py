"""Benchmark what users do that is bigger than one tile (issue 24), over plain HTTP.

Starts `soundscape serve` on the given (default: demo) store and times:
* top-10 places (`POST /similarity` with the store's whole bbox) under metadata no request has
  used before (cold), and its recall@10 against the exhaustive answer (every cell fused, chunk
  by chunk as tiles do, computed in this process after the server stops);
* a 1400 x 900 px view (all its tiles, six connections as a browser opens) under a new
  (query, metadata);
* the 24 hours of that view (a time-lapse, every frame's tiles) under a new query;
* the same view and time-lapse prepared as one batch job (POST /views/...; the page does this
  for its time-lapse), then fetched, as the page's tiles then are;
* the server's resident memory afterwards.

    .venv/bin/python scripts/bench_scale.py [--store S --checkpoint C] [--quick] [--json F]

The calibration figure of issue 24 is measured by scripts/eval_calibration.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mercantile
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_tiles import Server, resolve_store, stats  # noqa: E402

from embeddings_store.grid import web_zoom_range  # noqa: E402
from embeddings_store.store import EmbeddingStore  # noqa: E402

VIEW_PX = (1400, 900)
BROWSER_CONNECTIONS = 6
SOURCES = ("inat", "yfcc", "freesound", "aporee")


def view_tiles(bounds: tuple[float, float, float, float], zoom: int) -> list[mercantile.Tile]:
    """The tiles a VIEW_PX viewport centred on the bounds' centre shows at `zoom`."""
    w, s, e, n = bounds
    cx, cy = mercantile.xy((w + e) / 2, (s + n) / 2)
    metres_per_px = 2 * math.pi * 6378137 / (256 * 2**zoom)
    half_w, half_h = VIEW_PX[0] / 2 * metres_per_px, VIEW_PX[1] / 2 * metres_per_px
    (lon0, lat0), (lon1, lat1) = (mercantile.lnglat(cx - half_w, cy - half_h),
                                  mercantile.lnglat(cx + half_w, cy + half_h))  # fmt: skip
    return list(mercantile.tiles(lon0, lat0, lon1, lat1, zooms=zoom))


def fetch_all(client: httpx.Client, urls: list[str]) -> float:
    """GET every url over BROWSER_CONNECTIONS threads; wall time in ms."""
    t = time.perf_counter()
    with ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool:
        for r in pool.map(client.get, urls):
            r.raise_for_status()
    return (time.perf_counter() - t) * 1000


def top_k_metadata(i: int) -> dict:
    """The i-th never-seen metadata of the top-k benchmark."""
    return {"month": 1 + (5 * i) % 12, "hour": (3 + 7 * i) % 24, "asource": SOURCES[i % 4]}


def bench_top_k(client: httpx.Client, qid: str, bbox: list[float], level: int, repeats: int):
    """Top-10 of the whole store, each under metadata no request has used before."""
    times, exact, fused, answers = [], [], [], []
    for i in range(repeats):
        body = {"query": {"id": qid}, "metadata": top_k_metadata(i), "level": level,
                "bbox": bbox, "top_k": 10}  # fmt: skip
        t = time.perf_counter()
        r = client.post("/similarity", json=body)
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        exact.append(r.json()["exact"])
        fused.append(r.json()["fused_cells"])
        answers.append([(row["lat"], row["lon"]) for row in r.json()["results"]])
    return {**stats(times), "exact": all(exact), "exact_share": float(np.mean(exact)),
            "fused_cells_p50": float(np.median(fused))}, answers  # fmt: skip


def exhaustive_recall(
    store_path: str,
    checkpoint: str,
    text: str,
    bbox: list[float],
    level: int,
    answers: list,
    precision: str = "auto",
) -> dict:
    """Recall@10 of each answer against the exhaustive top-10 (the engine's chunk path)."""
    import server.engine as engine_mod
    from embeddings_store.scoring import BBox
    from model.checkpoint import load_checkpoint
    from model.metadata import Metadata
    from model.scoring import QueryEmbedding
    from server.cache import LRUCache, TieredCache
    from server.engine import Engine
    from server.settings import Settings

    # The server's device and fusion precision, so that both rank alike: this measures the
    # search, not bf16's rounding.
    model = load_checkpoint(checkpoint, device=Settings().resolved_device())
    store = EmbeddingStore.open(store_path, expect_model_id=model.model_id)
    engine = Engine(model, store, TieredCache(LRUCache(64 << 20)), precision=precision)
    engine_mod.GALLERY_MIN_CHUNKS = 1 << 40  # every bbox scored whole, chunk by chunk: exhaustive
    query = QueryEmbedding.from_text(model, text)
    lv = engine.level(level)
    recalls = []
    for i, got in enumerate(answers):
        truth = engine.top_k(query, Metadata(**top_k_metadata(i)), lv, BBox(*bbox), 10)
        want = {
            (round(a, 9), round(b, 9))
            for a, b in zip(truth.lat.values, truth.lon.values, strict=True)
        }
        have = {(round(a, 9), round(b, 9)) for a, b in got}
        recalls.append(len(want & have) / max(len(want), 1))
    return {"recall_at_10_mean": float(np.mean(recalls)), "recall_at_10_min": min(recalls)}


def tiles_bbox(tiles) -> str:
    """A bbox param whose covering tiles are exactly `tiles` (their union, a hair inside)."""
    boxes = [mercantile.bounds(t) for t in tiles]
    eps = 1e-6
    return ",".join(f"{v:.7f}" for v in (min(b.west for b in boxes) + eps,
                                         min(b.south for b in boxes) + eps,
                                         max(b.east for b in boxes) - eps,
                                         max(b.north for b in boxes) - eps))  # fmt: skip


def bench_view_batched(client: httpx.Client, texts: list[str], tiles, repeats: int) -> dict:
    """POST /views/... for the view under a new (query, metadata), then GET all its tiles."""
    times, prepare = [], []
    z, box = tiles[0].z, tiles_bbox(tiles)
    for i in range(repeats):
        qs = f"month={1 + (i + 6) % 12}&hour={(4 + 5 * i) % 24}&asource={SOURCES[(i + 1) % 4]}"
        text = f"{texts[i % len(texts)]} in the distance"
        t = time.perf_counter()
        r = client.post(f"/views/tiles/{text}/{z}?bbox={box}&{qs}")
        r.raise_for_status()
        assert r.json()["tiles"] == len(tiles), r.json()
        prepare.append((time.perf_counter() - t) * 1000)
        fetch_all(client, [f"/tiles/{text}/{t.z}/{t.x}/{t.y}.png?{qs}" for t in tiles])
        times.append((time.perf_counter() - t) * 1000)
    return {"tiles": len(tiles), **stats(times), "prepare_p50_ms": float(np.median(prepare))}


def bench_timelapse_batched(client: httpx.Client, text: str, tiles, month: int) -> dict:
    """The 24 hourly frames prepared by one POST /views/... (hours=0..23), then fetched."""
    z, box = tiles[0].z, tiles_bbox(tiles)
    hours = ",".join(map(str, range(24)))
    t = time.perf_counter()
    r = client.post(f"/views/tiles/{text}/{z}?bbox={box}&month={month}&hours={hours}"
                    "&scale=absolute")  # fmt: skip
    r.raise_for_status()
    prepared = (time.perf_counter() - t) * 1000
    urls = [f"/tiles/{text}/{t.z}/{t.x}/{t.y}.png?month={month}&hour={h}&scale=absolute"
            for h in range(24) for t in tiles]  # fmt: skip
    fetch_all(client, urls)
    return {"tiles": len(urls), "wall_ms": round((time.perf_counter() - t) * 1000, 1),
            "prepare_ms": round(prepared, 1)}  # fmt: skip


def bench_view(client: httpx.Client, texts: list[str], tiles, repeats: int) -> dict:
    """All tiles of the view, each time under a new (query, metadata)."""
    times = []
    for i in range(repeats):
        qs = f"month={1 + i % 12}&hour={(2 + 5 * i) % 24}&asource={SOURCES[i % 4]}"
        urls = [f"/tiles/{texts[i % len(texts)]}/{t.z}/{t.x}/{t.y}.png?{qs}" for t in tiles]
        times.append(fetch_all(client, urls))
    return {"tiles": len(tiles), **stats(times)}


def bench_timelapse(client: httpx.Client, text: str, tiles, month: int) -> dict:
    """The 24 hourly frames of the view for a new query: every frame's tiles."""
    urls = [f"/tiles/{text}/{t.z}/{t.x}/{t.y}.png?month={month}&hour={h}"
            for h in range(24) for t in tiles]  # fmt: skip
    return {"tiles": len(urls), "wall_ms": round(fetch_all(client, urls), 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=None, help="store (default: the demo store)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the demo model)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--view-zoom", type=int, default=6, help="web zoom of the view")
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--no-timelapse", action="store_true", help="skip the two time-lapses")
    p.add_argument("--recall-max-cells", type=int, default=2_000_000,
                   help="measure recall@10 (exhaustively) up to this many cells")  # fmt: skip
    p.add_argument(
        "--fusion-precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="the server's SOUNDSCAPE_FUSION_PRECISION (recall is measured at it)",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.repeats = 2
    if not resolve_store(args, "bench_scale"):
        return 2
    store = EmbeddingStore.open(args.store)
    bounds = tuple(float(v) for v in store.attrs["bounds"])
    level = min(lv.psm_zoom for lv in store.levels)
    cells = int(sum(np.asarray(store.array(lv.psm_zoom, "valid")[:]).sum() for lv in store.levels))
    lo, hi = web_zoom_range(store.levels)
    args.view_zoom = min(max(args.view_zoom, lo), hi)  # a world-size store starts deeper
    tiles = view_tiles(bounds, args.view_zoom)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "load_avg_at_start": os.getloadavg()}  # fmt: skip
    res: dict = {
        "machine": machine,
        "store": {"path": args.store, "cells": cells, "embed_dim": store.embed_dim},
        "fusion_precision": args.fusion_precision,
    }
    texts = ["frogs calling from a marsh", "traffic on a busy road", "birds singing at dawn",
             "waves crashing on the shore", "church bells ringing"]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        # A world-size store takes minutes to open (its land masks, its no-metadata matrix).
        env = {"SOUNDSCAPE_FUSION_PRECISION": args.fusion_precision}
        server = Server(args.store, args.checkpoint, env, Path(tmp) / "serve.log", ready_s=1800)
        try:
            limits = httpx.Limits(max_connections=BROWSER_CONNECTIONS)
            with httpx.Client(base_url=server.url, timeout=600, limits=limits) as client:
                qid = client.post("/queries", json={"text": texts[0]}).json()["id"]
                res["top_k_cold"], answers = bench_top_k(client, qid, list(bounds), level,
                                                         args.repeats)  # fmt: skip
                save_partial(args.json, res)
                res["view"] = bench_view(client, texts, tiles, args.repeats)
                res["view_batched"] = bench_view_batched(client, texts, tiles, args.repeats)
                save_partial(args.json, res)
                if not args.no_timelapse:
                    res["timelapse"] = bench_timelapse(client, "rain and thunder", tiles, 7)
                    res["timelapse_batched"] = bench_timelapse_batched(
                        client, "wind in the trees", tiles, month=10
                    )
            res["server_rss_mib"] = round(server.rss_mb, 1)  # workers included
            res["server_anon_mib"] = round(server.anon_mb, 1)  # without mapped files
            res["server_ready_s"] = round(server.ready_s, 1)
        except httpx.HTTPError:
            # The server's side of a failed request (its log goes with the temporary folder).
            print((Path(tmp) / "serve.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            server.stop()
    res["machine"]["load_avg_at_end"] = os.getloadavg()
    level_cells = int(np.asarray(store.array(level, "valid")[:], bool).sum())
    if level_cells <= args.recall_max_cells:
        res["top_k_cold"] |= exhaustive_recall(args.store, args.checkpoint, texts[0],
                                               list(bounds), level, answers,
                                               args.fusion_precision)  # fmt: skip
    print(json.dumps(res, indent=2))
    print("\n" + markdown(res, cells, args.view_zoom))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


def save_partial(path: Path | None, res: dict) -> None:
    """Write the figures so far (a run cut short by a time limit still leaves them)."""
    if path is not None:
        path.write_text(json.dumps({**res, "partial": True}, indent=2))


def markdown(res: dict, cells: int, zoom: int) -> str:
    """The figures as a Markdown table."""
    t, v, vb = res["top_k_cold"], res["view"], res["view_batched"]
    recall = (f"recall@10 {t['recall_at_10_mean']:.3f} (min {t['recall_at_10_min']:.2f})"
              if "recall_at_10_mean" in t else "recall not measured")  # fmt: skip
    rows = [
        f"| cold top-10 of the store ({cells:,} cells), new metadata | p50 {t['p50_ms']:.0f} ms, "
        f"max {t['max_ms']:.0f} ms, exact {t['exact_share']:.0%}, {recall}, "
        f"{t['fused_cells_p50']:.0f} cells fused (p50) |",
        f"| 1400 x 900 view ({v['tiles']} tiles, z{zoom}), new query and metadata, tile by tile | "
        f"p50 {v['p50_ms']:.0f} ms, max {v['max_ms']:.0f} ms |",
        f"| the same view prepared in one batch (POST /views/...), then fetched | "
        f"p50 {vb['p50_ms']:.0f} ms, max {vb['max_ms']:.0f} ms |",
    ]
    if "timelapse" in res:
        tl, tb = res["timelapse"], res["timelapse_batched"]
        rows += [
            f"| its 24-hour time-lapse ({tl['tiles']} tiles), tile by tile | "
            f"{tl['wall_ms'] / 1000:.2f} s |",
            f"| the time-lapse prepared in one batch (24 hours), then fetched | "
            f"{tb['wall_ms'] / 1000:.2f} s |",
        ]
    rows.append(
        f"| server start to ready / RSS after | {res['server_ready_s']:.1f} s / "
        f"{res['server_rss_mib']:.0f} MiB |"
    )
    return "| measurement | figure |\n|---|---|\n" + "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
