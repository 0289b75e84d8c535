"""Benchmark listening: a 10,000-clip gallery ranked for one place, /listen, /profile and
/compare tiles, as the service answers them.

In process (the scoring core): `SoundGallery.rank_clips` over N synthetic clips of the store's
width (unit means, variance sums and uncertainties drawn at random, written and opened as a real
gallery), and `Listener.listen` for places whose fused cell is cached (the clip ranking plus the
cell lookup). Over HTTP (`soundscape serve --gallery` on that gallery): GET /listen warm,
GET /profile (36 fused rows per call), and /compare tiles, cold under new metadata and cached.

    .venv/bin/python scripts/bench_listen.py                     # demo store, 10,000 clips
    .venv/bin/python scripts/bench_listen.py --clips 100000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import mercantile
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_tiles import Server, resolve_store, stats  # noqa: E402

from embeddings_store.sounds.gallery import FORMAT, VERSION, SoundGallery, pack_rows  # noqa: E402
from embeddings_store.store import EmbeddingStore  # noqa: E402


def write_synthetic_gallery(folder: Path, model_id: str, dim: int, clips: int) -> Path:
    """A gallery of `clips` random clips (no audio files: only ranking is measured)."""
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(clips, dim)).astype(np.float32)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    folder.mkdir(parents=True)
    (folder / "clips").mkdir()
    np.save(folder / "clips.npy", pack_rows(mu, rng.uniform(0.5, 3, clips),
                                            rng.uniform(5, 15, clips)))  # fmt: skip
    labels = pack_rows(mu[:14], np.ones(14), np.ones(14))
    np.save(folder / "labels.npy", labels)
    manifest = {
        "format": FORMAT, "version": VERSION, "model_id": model_id, "inputs": {},
        "clips": [{"id": f"{i:016x}", "ext": "flac", "caption": f"clip {i}", "source": f"{i}",
                   "duration_s": 5.0, "sample_rate": 16000} for i in range(clips)],
        "labels": [{"label": f"label {i}", "query": f"label {i}"} for i in range(14)],
        "skipped": [],
    }  # fmt: skip
    (folder / "gallery.json").write_text(json.dumps(manifest))
    return folder


def places(bounds, n: int, seed: int = 1) -> list[tuple[float, float]]:
    """n random (lat, lon) inside the inner 80 % of the bounds."""
    rng = np.random.default_rng(seed)
    w, s, e, nn = bounds
    lons = rng.uniform(w + 0.1 * (e - w), e - 0.1 * (e - w), n)
    lats = rng.uniform(s + 0.1 * (nn - s), nn - 0.1 * (nn - s), n)
    return list(zip(lats.tolist(), lons.tolist(), strict=True))


def bench_in_process(args, gallery_dir: Path, bounds) -> dict:
    """rank_clips alone, and Listener.listen on cached cells, in this process."""
    import torch

    from model.checkpoint import load_checkpoint
    from model.metadata import Metadata
    from server.cache import LRUCache, TieredCache
    from server.engine import Engine
    from server.listening import Listener

    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint)
    store = EmbeddingStore.open(args.store, expect_model_id=model.model_id)
    engine = Engine(model, store, TieredCache(LRUCache(256 << 20), None))
    gallery = SoundGallery.open(gallery_dir, expect_model_id=model.model_id)
    listener = Listener(engine, gallery)
    level = engine.default_level()
    meta = Metadata(month=6, hour=5)
    pts = places(bounds, args.places)
    cells = []
    for lat, lon in pts:  # warm the fused cells; keep those the store holds
        try:
            listener.listen(lat, lon, meta, level, 10)
            cells.append((lat, lon))
        except Exception:
            continue
    rank_ms, listen_ms = [], []
    ab = model.match_parameters()
    for lat, lon in cells:
        cell_aug = gallery.clip_aug[0]
        t = time.perf_counter()
        gallery.rank_clips(cell_aug, 10, ab)
        rank_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        listener.listen(lat, lon, meta, level, 10)
        listen_ms.append((time.perf_counter() - t) * 1000)
    return {"clips": len(gallery.clips), "dim": gallery.embed_dim,
            "rank_clips": stats(rank_ms), "listen_cached_cell": stats(listen_ms)}  # fmt: skip


def bench_http(args, gallery_dir: Path, bounds, log: Path) -> dict:
    """GET /listen (warm), /profile, /compare tiles (cold, then cached) over HTTP."""
    server = Server(args.store, args.checkpoint, {"SOUNDSCAPE_GALLERY": str(gallery_dir)}, log)
    out: dict = {}
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            pts = places(bounds, args.places, seed=2)
            meta = {"month": 6, "hour": 5}
            ok = [p for p in pts if client.get("/listen", params={
                "lat": p[0], "lon": p[1], **meta}).status_code == 200]  # fmt: skip
            ms = []
            for lat, lon in ok:
                t = time.perf_counter()
                client.get("/listen", params={"lat": lat, "lon": lon, **meta, "k": 10})
                ms.append((time.perf_counter() - t) * 1000)
            out["listen_warm"] = stats(ms)
            ms = []
            for lat, lon in ok:
                t = time.perf_counter()
                r = client.get("/profile", params={"lat": lat, "lon": lon, "query": "birds",
                                                   "month": 6})  # fmt: skip
                r.raise_for_status()
                ms.append((time.perf_counter() - t) * 1000)
            out["profile"] = stats(ms)
            qid = client.post("/queries", json={"text": "birds singing"}).json()["id"]
            info = client.get("/api/info").json()
            z = info["auto_levels"][0]["web_zooms"][1]
            cold, warm = [], []
            for i, (lat, lon) in enumerate(ok[: args.tiles]):
                tile = mercantile.tile(lon, lat, z)
                url = f"/compare/{qid}/{qid}/{z}/{tile.x}/{tile.y}.png"
                params = {"month": 1 + i % 12, "hour": 6, "b_hour": 22}
                t = time.perf_counter()
                client.get(url, params=params).raise_for_status()
                cold.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                client.get(url, params=params).raise_for_status()
                warm.append((time.perf_counter() - t) * 1000)
            out["compare_tile_new_metadata"] = stats(cold)
            out["compare_tile_cached"] = stats(warm)
    finally:
        server.stop()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=None, help="store (default: the demo store)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the demo model)")
    p.add_argument("--clips", type=int, default=10_000, help="clips in the synthetic gallery")
    p.add_argument("--places", type=int, default=100)
    p.add_argument("--tiles", type=int, default=8, help="compare tiles (each new metadata)")
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.clips, args.places, args.tiles = 500, 10, 2
    if not resolve_store(args, "bench_listen"):
        return 2
    store = EmbeddingStore.open(args.store)
    bounds = tuple(float(v) for v in store.attrs["bounds"])
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_avg_at_start": os.getloadavg()}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-listen-") as tmp:
        gallery = write_synthetic_gallery(Path(tmp) / "gallery", store.model_id,
                                          store.embed_dim, args.clips)  # fmt: skip
        res["in_process"] = bench_in_process(args, gallery, bounds)
        res["http"] = bench_http(args, gallery, bounds, Path(tmp) / "serve.log")
    res["machine"]["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    ip, h = res["in_process"], res["http"]
    print(f"\n| measurement ({ip['clips']:,} clips, D={ip['dim']}) | p50 | p90 |\n|---|---:|---:|")
    rows = [("rank the gallery for one cell", ip["rank_clips"]),
            ("Listener.listen, cell cached", ip["listen_cached_cell"]),
            ("GET /listen warm (HTTP)", h["listen_warm"]), ("GET /profile (HTTP)", h["profile"]),
            ("/compare tile, new metadata", h["compare_tile_new_metadata"]),
            ("/compare tile, cached", h["compare_tile_cached"])]  # fmt: skip
    for name, s in rows:
        print(f"| {name} | {s['p50_ms']:.2f} ms | {s['p90_ms']:.2f} ms |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
