"""A fixed set of tiles, legends and /similarity answers, to hold the scoring core's output fixed.

`collect(client)` asks a running service (built on the test store of `tests/server/conftest.py`)
for every entry and returns tile fingerprints and numbers. The recorded answers in
`tests/data/scoring-golden.json` were taken with the code *before* the scoring core was
rewritten as one path (issue 20); `test_scoring_golden.py` asserts the same answers now.

A tile's fingerprint is the mean of each RGBA channel over 8 x 8 blocks of its pixels, not a
hash of its bytes: float32 sums on another CPU (another SIMD path in torch and numpy) move a
score by about 1e-6 of itself, which recolours the odd pixel at a ramp step and so changes a
PNG's bytes, but no block mean by as much as 1 (of 255); a change of map, range or colours
does. The numbers are held to 1e-5 of themselves for the same reason.

Re-record (only when a change of output is intended, and say why in the commit):
    .venv/bin/python -m tests.server.scoring_golden
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mercantile
import numpy as np
from PIL import Image

from tests.server.conftest import BBOX

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "scoring-golden.json"
QUERIES = ("Birds singing at dawn", "traffic noise on a highway")
# Query strings of metadata: masked (no location either), location only (the default), time,
# and every component.
METADATA = (
    "location=false",
    "",
    "month=6&hour=5",
    "month=1&hour=22&asource=inat&tsource=qwen&location=true",
)
# (lon, lat) points: the store's centre, a point near its south-west edge, one outside.
PLACES = ((-101.5, 38.0), (-103.9, 36.1), (-80.0, 38.0))
ZOOMS = (4, 6, 8, 10, 12)


def tiles() -> Iterator[tuple[int, int, int]]:
    """The (z, x, y) tiles of the set: each place at each zoom."""
    seen = set()
    for z in ZOOMS:
        for lon, lat in PLACES:
            t = mercantile.tile(lon, lat, z)
            if (z, t.x, t.y) not in seen:
                seen.add((z, t.x, t.y))
                yield z, t.x, t.y


BLOCKS = 16  # a fingerprint's blocks per side (16 x 16 pixels each on a 256-pixel tile)
# How far a block's mean channel may move (of 255) between machines: rounding alone, see above.
FINGERPRINT_TOLERANCE = 1


def fingerprint(png: bytes) -> str:
    """The tile's block means, 8 x 8 blocks x RGBA rounded to uint8, as base64."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), np.float64)
    rows, cols, channels = img.shape
    blocks = img.reshape(BLOCKS, rows // BLOCKS, BLOCKS, cols // BLOCKS, channels)
    means = np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)
    return base64.b64encode(means.tobytes()).decode()


def fingerprint_distance(a: str, b: str) -> int:
    """The largest difference between two fingerprints' block means."""
    va = np.frombuffer(base64.b64decode(a), np.uint8).astype(int)
    vb = np.frombuffer(base64.b64decode(b), np.uint8).astype(int)
    return int(np.abs(va - vb).max()) if va.shape == vb.shape else 256


def _get(client: Any, url: str) -> str:
    r = client.get(url)
    return f"{r.status_code}:{fingerprint(r.content) if r.status_code == 200 else ''}"


def collect(client: Any) -> dict[str, Any]:
    """Every entry of the set, asked of `client` (an httpx-like client of the service)."""
    out: dict[str, Any] = {"tiles": {}, "uncertainty": {}, "legend": {}, "similarity": {}}
    ids = {}
    for text in QUERIES:
        r = client.post("/queries", json={"text": text})
        r.raise_for_status()
        ids[text] = r.json()["id"]
    for meta in METADATA:
        for z, x, y in tiles():
            for qi, text in enumerate(QUERIES):
                variants = [("relative", "viridis", "")]
                if qi == 0:
                    variants += [("probability", "magma", ""), ("relative", "viridis", "level=5")]
                for scale, cmap, extra in variants:
                    qs = "&".join(p for p in (meta, f"scale={scale}&colormap={cmap}", extra) if p)
                    url = f"/tiles/{ids[text]}/{z}/{x}/{y}.png?{qs}"
                    out["tiles"][url.replace(ids[text], f"q{qi}")] = _get(client, url)
            url = f"/uncertainty/{z}/{x}/{y}.png?{meta}"
            out["uncertainty"][url] = _get(client, url)
        for qi, text in enumerate(QUERIES):
            for scale in ("relative", "probability"):
                qs = "&".join(p for p in (meta, f"scale={scale}", f"query={ids[text]}") if p)
                body = client.get(f"/legend?{qs}").json()
                out["legend"][f"q{qi}?{meta}&{scale}"] = [body["min"], body["max"]]
        body = client.get(f"/legend?{meta}").json()
        out["legend"][f"uncertainty?{meta}"] = [body["min"], body["max"]]
        meta_json = _meta_json(meta)
        for level in (1, 5):
            for qi, text in enumerate(QUERIES):
                points = [[lat, lon] for lon, lat in PLACES] + [[37.0, -100.2], [39.5, -102.7]]
                r = client.post(
                    "/similarity",
                    json={"query": {"id": ids[text]}, "metadata": meta_json, "level": level,
                          "points": points},
                )  # fmt: skip
                r.raise_for_status()
                out["similarity"][f"points q{qi} L{level} {meta}"] = r.json()["results"]
                r = client.post(
                    "/similarity",
                    json={"query": {"id": ids[text]}, "metadata": meta_json, "level": level,
                          "bbox": list(BBOX), "top_k": 5},
                )  # fmt: skip
                r.raise_for_status()
                out["similarity"][f"top5 q{qi} L{level} {meta}"] = r.json()["results"]
    return out


def _meta_json(qs: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, qs.split("&")):
        k, v = part.split("=")
        out[k] = v == "true" if k == "location" else (int(v) if k in ("month", "hour") else v)
    return out


def main() -> None:
    """Build the test store and the service in this process and write the golden file."""
    import os
    import tempfile

    import torch
    from fastapi.testclient import TestClient

    from embeddings_store.demo.geo import write_bluemarble_geotiff
    from embeddings_store.precompute import PrecomputeSpec, precompute
    from embeddings_store.region import Region
    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.psm import PSM
    from server.app import create_app
    from server.settings import Settings
    from tests.server.conftest import BASE_M, LEVELS

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tif = write_bluemarble_geotiff(root / "bm.tif", (-110, 30, -90, 45))
        torch.manual_seed(1)
        ckpt = root / "tiny.safetensors"
        save_checkpoint(PSM(load_config("test")).eval(), ckpt)
        store = root / "store.zarr"
        spec = PrecomputeSpec(
            imagery=str(tif), checkpoint=str(ckpt), store=str(store), levels=LEVELS,
            region=Region(BBOX), base_footprint_m=BASE_M, batch_size=64, with_fused=True,
        )  # fmt: skip
        precompute(spec, progress=False)
        settings = Settings(
            store=str(store), checkpoint=str(ckpt), rate_limit_per_min=100000,
            rate_burst=100000, log_json=False,
        )  # fmt: skip
        with TestClient(create_app(settings)) as client:
            data = collect(client)
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    n = sum(len(v) for v in data.values())
    print(f"wrote {n} entries to {GOLDEN}")


if __name__ == "__main__":
    main()
