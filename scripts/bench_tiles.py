"""Benchmark the tile service over plain HTTP from a second process (this one).

Starts `soundscape serve` on the given (default: demo) store and measures, as a browser would
see them: PNG-cache hits under concurrent clients, a new query over warm fused chunks, a cold
tile under new metadata, the first tile of a brand-new (query, metadata), start-to-ready time
and server RSS. POST /similarity top-k is timed on a synthetic store of at least
--similarity-cells cells (random embeddings written for the same model, with mu0/c0), since
the demo store is far smaller. With --titiler-python it also serves a COG of the same heatmap
with titiler (installed in a throwaway environment, never a project dependency) and runs the
same cache-hit load against it.

    .venv/bin/python scripts/bench_tiles.py                         # demo store
    .venv/bin/python scripts/bench_tiles.py --store S --checkpoint C --json out.json
    .venv/bin/python scripts/bench_tiles.py --quick --store S --checkpoint C
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embeddings_store.grid import WORLD, Level, level_for_web_zoom, web_zoom_range  # noqa: E402
from embeddings_store.store import EmbeddingStore  # noqa: E402

META0 = "month=6&hour=8&asource=freesound"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process and its children (uvicorn workers), MiB (`field`: VmRSS,
    or RssAnon for the private part, without mapped files the page cache can drop)."""
    total = 0
    pids = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Server:
    """`soundscape serve` in a subprocess."""

    def __init__(
        self, store: str, checkpoint: str, env: dict[str, str], log: Path, ready_s: float = 120
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port),
               "--store", store, "--checkpoint", checkpoint]  # fmt: skip
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "SOUNDSCAPE_RATE_LIMIT_PER_MIN": "1000000",
                    "SOUNDSCAPE_RATE_BURST": "1000000", **env}  # fmt: skip
        t0 = time.monotonic()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > ready_s:
                raise RuntimeError(f"server not ready after {ready_s:g} s")
            time.sleep(0.05)
        self.ready_s = time.monotonic() - t0

    @property
    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    @property
    def anon_mb(self) -> float:
        return rss_mb(self.proc.pid, "RssAnon")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def resolve_store(args: argparse.Namespace, prog: str) -> bool:
    """Default --store/--checkpoint to the demo's; False (after saying what to do) if either is
    missing."""
    if args.store is None or args.checkpoint is None:
        from embeddings_store.demo.paths import demo_paths

        demo = demo_paths()
        args.store = args.store or str(demo.store)
        args.checkpoint = args.checkpoint or str(demo.checkpoint)
    for path in (args.store, args.checkpoint):
        if not Path(path).exists():
            print(f"{prog}: {path} does not exist: run `soundscape demo` first, or pass "
                  "--store and --checkpoint", file=sys.stderr)  # fmt: skip
            return False
    return True


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p90_ms": round(float(np.percentile(a, 90)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def timed_get(client: httpx.Client, url: str) -> tuple[float, httpx.Response]:
    t = time.perf_counter()
    r = client.get(url)
    return (time.perf_counter() - t) * 1000, r


def load(
    base: str, urls: list[str], clients: int, seconds: float, rate: float | None = None
) -> dict[str, float]:
    """`clients` threads, each with a keep-alive connection, GET the urls round-robin: as fast
    as they can (closed loop), or at `rate` requests/s in total (open loop, paced)."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        mine: list[float] = []
        bad = 0
        period = clients / rate if rate else 0.0
        due = time.monotonic() + k * period / clients
        with httpx.Client(base_url=base, timeout=30) as c:
            i = k * 7
            while time.monotonic() < stop:
                if period:
                    due += period
                    time.sleep(max(0.0, due - time.monotonic()))
                ms, r = timed_get(c, urls[i % len(urls)])
                i += 1
                mine.append(ms)
                bad += r.status_code != 200
        with lock:
            lat.extend(mine)
            errors[0] += bad

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    out = stats(lat)
    out.update({"tiles_per_s": round(len(lat) / wall, 1), "errors": errors[0],
                "clients": clients})  # fmt: skip
    return out


def tile_grid(store: EmbeddingStore, z: int, side: int) -> list[tuple[int, int]]:
    """side x side tiles at zoom z around the centre of the store's bounds."""
    import mercantile

    w, s, e, n = store.attrs["bounds"]
    t = mercantile.tile((w + e) / 2, (s + n) / 2, z)
    half = side // 2
    return [(t.x + dx, t.y + dy) for dy in range(-half, side - half)
            for dx in range(-half, side - half)]  # fmt: skip


def bench_service(args: argparse.Namespace, workdir: Path) -> tuple[dict, Server]:
    store = EmbeddingStore.open(args.store)
    levels = store.levels
    zmin, zmax = web_zoom_range(levels)
    finest = max(levels, key=lambda lv: lv.cell_zoom)
    z = min(max(finest.tile_zoom + 1, zmin), zmax)  # a tile spans a quarter of a chunk
    level = level_for_web_zoom(levels, z)
    env = {"SOUNDSCAPE_LRU_MB": str(args.lru_mb)}
    server = Server(args.store, args.checkpoint, env, workdir / "serve.log")
    out: dict = {"start_to_ready_s": round(server.ready_s, 2), "zoom": z,
                 "level": level.psm_zoom}  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=60) as c:
        qid = c.post("/queries", json={"text": "birds singing at dawn"}).json()["id"]
        grid = tile_grid(store, z, args.grid)
        urls = [f"/tiles/{qid}/{z}/{x}/{y}.png?{META0}" for x, y in grid]
        for u in urls:  # warm: PNGs, fused chunks, the map's range
            assert c.get(u).status_code == 200
        out["png_cache_hit"] = load(server.url, urls, args.clients, args.seconds)
        out["png_cache_hit_at_300_per_s"] = load(
            server.url, urls, args.clients, args.seconds, rate=300
        )
        out["png_cache_hit_1_client"] = load(server.url, urls, 1, args.seconds / 2)

        # A new query over warm fused chunks: the tile's chunks are fused under META0.
        lat = []
        for i in range(args.repeats):
            text = urllib.parse.quote(f"new sound number {i} by the water")
            x, y = grid[i % len(grid)]
            ms, r = timed_get(c, f"/tiles/{text}/{z}/{x}/{y}.png?{META0}")
            assert r.status_code == 200
            lat.append(ms)
        out["new_query_warm_chunks"] = stats(lat)

        # New metadata: the first tile of a brand-new (query, metadata) computes the map's range
        # too; later tiles elsewhere under that metadata are cold (their chunks never fused).
        first, cold = [], []
        sources = ["yfcc", "inat", "aporee", "freesound"]
        far = tile_grid(store, z, args.grid + 6)
        far = [t for t in far if t not in set(grid)]
        for i in range(args.meta_repeats):
            meta = (
                f"month={i % 12 + 1}&hour={(7 * i + 3) % 24}&asource={sources[i % 4]}&tsource=qwen"
            )
            qtext = urllib.parse.quote(f"first tile query {i}")
            ms, r = timed_get(c, f"/tiles/{qtext}/{z}/{grid[0][0]}/{grid[0][1]}.png?{meta}")
            assert r.status_code == 200
            first.append(ms)
            for j in range(4):
                x, y = far[(5 * i + 11 * j) % len(far)]
                ms, r = timed_get(c, f"/tiles/{qid}/{z}/{x}/{y}.png?{meta}")
                assert r.status_code == 200
                cold.append(ms)
        out["cold_tile_new_metadata"] = stats(cold)
        out["first_tile_new_query_metadata"] = stats(first)
        out["server_rss_mb"] = round(server.rss_mb, 1)
    return out, server


def build_similarity_store(checkpoint: str, path: Path, cells: int, dim_hint: int | None) -> str:
    """A store of random cells (with mu0/c0/u0) for the checkpoint's model: >= `cells` cells."""
    from model.checkpoint import read_header

    meta = read_header(checkpoint)
    config = json.loads(meta["config"])
    dim = int(config["embed_dim"] if dim_hint is None else dim_hint)
    n = 16
    tile_zoom = 9
    # A bbox over the contiguous USA holding enough 16 x 16 chunks at tile zoom 9.
    side_tiles = math.ceil(math.sqrt(cells / (n * n)))
    tile_deg = 360 / 2**tile_zoom
    bbox = (
        -100.0,
        35.0,
        -100.0 + side_tiles * tile_deg * 0.999,
        35.0 + side_tiles * tile_deg * 0.8,
    )
    level = Level(1, tile_zoom, n)
    store = EmbeddingStore.create(
        path, model_id=meta["model_id"], config_name=config["name"], embed_dim=dim,
        levels=[level], bbox=bbox, imagery={"kind": "none"}, with_fused=True, overwrite=True,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    ext = store.extent(1)
    for tx, ty in ext.tiles():
        h = rng.normal(size=(n, n, dim)).astype(np.float32)
        mu = rng.normal(size=(n, n, dim)).astype(np.float32)
        mu /= np.linalg.norm(mu, axis=-1, keepdims=True)
        c0 = rng.uniform(0.5, 2.0, size=(n, n)).astype(np.float32)
        u0 = rng.uniform(5.0, 15.0, size=(n, n)).astype(np.float32)
        store.write_chunk(1, tx, ty, h, np.ones((n, n), bool), mu, c0, u0)
    return str(path)


def bench_similarity(args: argparse.Namespace, workdir: Path) -> dict:
    path = workdir / "similarity.zarr"
    t0 = time.monotonic()
    build_similarity_store(args.checkpoint, path, args.similarity_cells, None)
    built = time.monotonic() - t0
    store = EmbeddingStore.open(path)
    n_cells = store.extent(1).n_chunks() * 16 * 16
    env = {"SOUNDSCAPE_LRU_MB": "64", "SOUNDSCAPE_GALLERY_MB": str(args.gallery_mb),
           "SOUNDSCAPE_MAX_BBOX_CELLS": str(4 * n_cells)}  # fmt: skip
    server = Server(str(path), args.checkpoint, env, workdir / "serve-sim.log")
    try:
        w, s, e, n = store.attrs["bounds"]
        body = {"query": {"text": "birds"}, "metadata": {"location": False}, "level": 1,
                "bbox": [w, s, e, n], "top_k": 10}  # fmt: skip
        lat = []
        with httpx.Client(base_url=server.url, timeout=300) as c:
            t = time.perf_counter()
            r = c.post("/similarity", json=body)
            assert r.status_code == 200, r.text
            first = (time.perf_counter() - t) * 1000
            for i in range(args.repeats):
                body["query"] = {"text": f"sound {i % 5}"}
                t = time.perf_counter()
                r = c.post("/similarity", json=body)
                assert r.status_code == 200 and len(r.json()["results"]) == 10
                lat.append((time.perf_counter() - t) * 1000)
        return {"cells": n_cells, "store_build_s": round(built, 1),
                "first_call_ms (builds the level matrix)": round(first, 1),
                "top10": stats(lat), "server_rss_mb": round(server.rss_mb, 1)}  # fmt: skip
    finally:
        server.stop()


def write_heatmap_cog(args: argparse.Namespace, path: Path) -> tuple[float, float]:
    """The finest level's heatmap (same query and metadata as the load test) as a float COG."""
    import rasterio
    from affine import Affine

    from model.checkpoint import load_checkpoint
    from model.metadata import Metadata
    from server.cache import LRUCache, TieredCache
    from server.engine import Engine
    from server.queries import QueryRegistry

    model = load_checkpoint(args.checkpoint)
    store = EmbeddingStore.open(args.store, expect_model_id=model.model_id)
    cache = TieredCache(LRUCache(1 << 30))
    engine = Engine(model, store, cache)
    _, q = QueryRegistry(model, model.model_id, cache).register_text("birds singing at dawn")
    meta = Metadata(6, 8, "freesound")
    level = max(store.levels, key=lambda lv: lv.cell_zoom)
    ext = store.extent(level.psm_zoom)
    rows, cols = ext.shape
    # The same numbers the tiles draw: the scoring core over the whole level.
    grid = engine.scores(q, meta, level, ext.cells, ("score",))["score"].values
    lo, hi = engine.value_range(meta, q)
    size = level.cell_size
    x0 = -WORLD / 2 + ext.cx0 * size
    y0 = WORLD / 2 - ext.cy0 * size
    profile = {
        "driver": "COG", "width": cols, "height": rows, "count": 1, "dtype": "float32",
        "crs": "EPSG:3857", "transform": Affine(size, 0, x0, 0, -size, y0), "nodata": np.nan,
        "compress": "DEFLATE", "resampling": "bilinear", "overview_resampling": "bilinear",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(grid, 1)
    return lo, hi


def bench_titiler(args: argparse.Namespace, workdir: Path, z: int) -> dict:
    cog = workdir / "heatmap.tif"
    lo, hi = write_heatmap_cog(args, cog)
    port = free_port()
    env = {**os.environ, "GDAL_CACHEMAX": "200"}
    log = workdir / "titiler.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [args.titiler_python, "-m", "uvicorn", "titiler.application.main:app", "--port",
             str(port), "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                raise RuntimeError(f"titiler did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        store = EmbeddingStore.open(args.store)
        grid = tile_grid(store, z, args.grid)
        params = {"url": str(cog), "rescale": f"{lo},{hi}", "colormap_name": "viridis",
                  "resampling": "bilinear"}  # fmt: skip
        q = urllib.parse.urlencode(params)
        urls = [f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{q}" for x, y in grid]
        with httpx.Client(base_url=base, timeout=60) as c:
            for u in urls:
                r = c.get(u)
                assert r.status_code in (200, 204), r.text[:300]
        return {"same_tiles": load(base, urls, args.clients, args.seconds),
                "same_tiles_1_client": load(base, urls, 1, args.seconds / 2),
                "start_s": round(time.monotonic() - t0, 2)}  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def table(res: dict) -> str:
    s = res["service"]
    rows = [
        ("PNG-cache hit, 8 clients, as fast as they can", f"p50 {s['png_cache_hit']['p50_ms']} "
         f"ms, {s['png_cache_hit']['tiles_per_s']} tiles/s", "≥ 300 tiles/s"),
        ("PNG-cache hit, 8 clients at 300 tiles/s in total",
         f"p50 {s['png_cache_hit_at_300_per_s']['p50_ms']} ms, p99 "
         f"{s['png_cache_hit_at_300_per_s']['p99_ms']} ms", "p50 ≤ 5 ms"),
        ("PNG-cache hit, 1 client", f"p50 {s['png_cache_hit_1_client']['p50_ms']} ms", ""),
        ("new query, warm fused chunks", f"p50 {s['new_query_warm_chunks']['p50_ms']} ms",
         "p50 ≤ 25 ms"),
        ("cold tile, new metadata", f"p50 {s['cold_tile_new_metadata']['p50_ms']} ms",
         "p50 ≤ 300 ms"),
        ("first tile of a new (query, metadata)",
         f"p50 {s['first_tile_new_query_metadata']['p50_ms']} ms, "
         f"max {s['first_tile_new_query_metadata']['max_ms']} ms", "≤ 1 s"),
        ("start to ready", f"{s['start_to_ready_s']} s", "≤ 15 s"),
        ("server RSS", f"{s['server_rss_mb']} MiB", "≤ 2 GB"),
    ]  # fmt: skip
    if "similarity" in res:
        sim = res["similarity"]
        rows.append((f"POST /similarity top-10 over {sim['cells']:,} cells",
                     f"p50 {sim['top10']['p50_ms']} ms (RSS {sim['server_rss_mb']} MiB)",
                     "p50 ≤ 150 ms"))  # fmt: skip
    if "titiler" in res:
        t = res["titiler"]["same_tiles"]
        ours = s["png_cache_hit"]
        speed = ours["tiles_per_s"] / max(t["tiles_per_s"], 1e-9)
        faster = t["p50_ms"] / max(ours["p50_ms"], 1e-9)
        rows.append(("titiler, same tiles from a COG, 8 clients",
                     f"p50 {t['p50_ms']} ms, {t['tiles_per_s']} tiles/s",
                     f"ours: {speed:.1f}x the throughput, {faster:.1f}x lower p50"))  # fmt: skip
    lines = ["| benchmark | measured | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=None, help="store (default: the demo store)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the demo model)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each load test")
    p.add_argument("--grid", type=int, default=8, help="tiles per side of the tile set")
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--meta-repeats", type=int, default=12)
    p.add_argument("--lru-mb", type=int, default=1024)
    p.add_argument("--similarity-cells", type=int, default=1_000_000, help="0 to skip")
    p.add_argument("--gallery-mb", type=int, default=1024)
    p.add_argument("--titiler-python", default=None, help="python of a venv with titiler")
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.seconds, args.repeats, args.meta_repeats, args.grid = 1.5, 5, 2, 4
        args.similarity_cells = min(args.similarity_cells, 20_000)
    if not resolve_store(args, "bench_tiles"):
        return 2
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_avg_at_start": os.getloadavg()}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp:
        workdir = Path(tmp)
        service, server = bench_service(args, workdir)
        server.stop()
        res["service"] = service
        if args.similarity_cells > 0:
            res["similarity"] = bench_similarity(args, workdir)
        if args.titiler_python:
            res["titiler"] = bench_titiler(args, workdir, service["zoom"])
    res["machine"]["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    print()
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
