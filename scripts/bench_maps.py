"""Benchmark the GIS routes over plain HTTP, as a GIS client sees them.

Starts `soundscape serve` on the given (default: demo) store and times: a Cloud-Optimized
GeoTIFF of the store's whole extent at PSM zoom 1 under metadata no request has used before
(GET /maps/{query}.tif: fusion, scoring and COG writing), GET /point warm (fused cells cached)
and cold, the first `scale=absolute` legend of a metadata (the month x hour sweep) and a second
query's (the sweep reused), and `soundscape map` end to end (a fresh process).

    .venv/bin/python scripts/bench_maps.py                      # demo store
    .venv/bin/python scripts/bench_maps.py --store S --checkpoint C --quick --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_tiles import Server, resolve_store, stats  # noqa: E402

from embeddings_store.store import EmbeddingStore  # noqa: E402


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return (time.perf_counter() - t) * 1000, out


def bench_cog(client: httpx.Client, qid: str, bbox: str, level: int, repeats: int) -> dict:
    """COG exports of the store's extent, each under metadata not used before."""
    times, sizes = [], []
    for i in range(repeats):
        params = {"bbox": bbox, "level": level, "month": 1 + i % 12, "hour": (5 + 7 * i) % 24,
                  "asource": ("inat", "yfcc", "freesound", "aporee")[i % 4]}  # fmt: skip
        ms, r = timed(client.get, f"/maps/{qid}.tif", params=params)
        r.raise_for_status()
        times.append(ms)
        sizes.append(len(r.content))
    return {"bbox": bbox, "psm_zoom": level, **stats(times), "bytes": int(np.median(sizes))}


def bench_point(client: httpx.Client, qid: str, bounds, n: int, seed: int = 0) -> dict:
    """GET /point at n places: cold (first visit of each place) and warm (second visit)."""
    rng = np.random.default_rng(seed)
    w, s, e, nn = bounds
    lons = rng.uniform(w + 0.1 * (e - w), e - 0.1 * (e - w), n)
    lats = rng.uniform(s + 0.1 * (nn - s), nn - 0.1 * (nn - s), n)
    params = {"query": qid, "month": 4, "hour": 6}
    out = {}
    for phase in ("cold", "warm"):
        ms = []
        for lon, lat in zip(lons, lats, strict=True):
            t, r = timed(client.get, f"/point/{lon:.5f},{lat:.5f}", params=params)
            r.raise_for_status()
            ms.append(t)
        out[phase] = stats(ms)
    return out


def bench_absolute(client: httpx.Client, qids: list[str]) -> dict:
    """The first absolute-scale legend of a metadata (sweep), then another query's (reused)."""
    meta = {"scale": "absolute", "asource": "aporee", "location": "true"}
    first, _ = timed(client.get, "/legend", params={"query": qids[0], **meta})
    second, _ = timed(client.get, "/legend", params={"query": qids[1], **meta})
    again, _ = timed(client.get, "/legend", params={"query": qids[1], **meta, "hour": 9})
    return {"first_sweep_ms": round(first, 1), "other_query_ms": round(second, 1),
            "cached_range_ms": round(again, 1)}  # fmt: skip


def bench_cli(args: argparse.Namespace, bbox: str, out: Path) -> dict:
    """`soundscape map` in a fresh process (model load, store open, map, COG)."""
    cmd = [sys.executable, "-m", "server.cli", "map", "--text", "frogs calling from a marsh",
           f"--bbox={bbox}", "--level", "1", "--month", "8", "--hour", "21",
           "--store", args.store, "--checkpoint", args.checkpoint, "--out", str(out),
           "--no-progress"]  # fmt: skip
    t = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    return {"seconds": round(time.perf_counter() - t, 2), "bytes": out.stat().st_size}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=None, help="store (default: the demo store)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the demo model)")
    p.add_argument("--cog-repeats", type=int, default=3)
    p.add_argument("--points", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.cog_repeats, args.points = 1, 8
    if not resolve_store(args, "bench_maps"):
        return 2
    store = EmbeddingStore.open(args.store)
    bounds = tuple(float(v) for v in store.attrs["bounds"])
    bbox = ",".join(repr(v) for v in bounds)
    level = min(lv.psm_zoom for lv in store.levels)
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_avg_at_start": os.getloadavg()}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-maps-") as tmp:
        server = Server(args.store, args.checkpoint, {}, Path(tmp) / "serve.log")
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                texts = ("frogs calling from a marsh", "traffic on a busy road")
                qids = [client.post("/queries", json={"text": t}).json()["id"] for t in texts]
                res["cog"] = bench_cog(client, qids[0], bbox, level, args.cog_repeats)
                res["point"] = bench_point(client, qids[0], bounds, args.points)
                res["absolute"] = bench_absolute(client, qids)
        finally:
            server.stop()
        res["cli_map"] = bench_cli(args, bbox, Path(tmp) / "map.tif")
    res["machine"]["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    print()
    print("| measurement | p50 | max |\n|---|---:|---:|")
    c, pt = res["cog"], res["point"]
    print(f"| COG of the store at PSM zoom {c['psm_zoom']}, new metadata | "
          f"{c['p50_ms'] / 1000:.2f} s | {c['max_ms'] / 1000:.2f} s |")  # fmt: skip
    print(f"| /point warm | {pt['warm']['p50_ms']:.1f} ms | {pt['warm']['max_ms']:.1f} ms |")
    print(f"| /point cold | {pt['cold']['p50_ms']:.1f} ms | {pt['cold']['max_ms']:.1f} ms |")
    a = res["absolute"]
    print(f"| scale=absolute first legend (sweep) | {a['first_sweep_ms'] / 1000:.2f} s | |")
    print(f"| scale=absolute, another query | {a['other_query_ms']:.1f} ms | |")
    print(f"| soundscape map (fresh process) | {res['cli_map']['seconds']:.2f} s | |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
