"""What the imagery tests share besides fixtures: the Blue Marble geometry, footprints, GeoTIFF
writing, and a local HTTP server (range requests, request log, injectable failures).
"""

from __future__ import annotations

import http.server
import math
import re
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import mercantile
import numpy as np
import rasterio
from affine import Affine

from embeddings_store.grid import lonlat_to_mercator

DEG_PER_PX = 1 / 15  # Blue Marble: 5400 x 2700 over the whole world
USA = (-125.0, 24.0, -66.0, 50.0)  # west, south, east, north: the GeoTIFF crop
TILE_AREA = (-112.0, 32.0, -88.0, 46.0)  # where the XYZ tiles are cut
TILE_ZOOMS = range(3, 7)


def footprint(lon: float, lat: float, ground_m: float) -> tuple[float, float, float, float]:
    """EPSG:3857 bounds of a square `ground_m` ground metres wide centred on (lon, lat)."""
    x, y = (float(v) for v in lonlat_to_mercator(np.array(lon), np.array(lat)))
    half = ground_m / 2 / math.cos(math.radians(lat))
    return x - half, y - half, x + half, y + half


def origin(west: float, north: float, size: float) -> Affine:
    # Built directly: rasterio's from_origin composes with `*`, which affine >= 3 deprecates.
    return Affine(size, 0.0, west, 0.0, -size, north)


def tile_transform(tile: mercantile.Tile, px: int = 256) -> Affine:
    b = mercantile.xy_bounds(tile)
    return Affine((b.right - b.left) / px, 0.0, b.left, 0.0, -(b.top - b.bottom) / px, b.top)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def write_tif(path: Path, data: np.ndarray, crs: str, transform: Any, **kw: Any) -> Path:
    """(bands, rows, cols) array -> tiled GeoTIFF."""
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, crs=crs, transform=transform, tiled=True, blockxsize=256,
                   blockysize=256)  # fmt: skip
    profile.update(kw)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


USA_TRANSFORM = origin(USA[0], USA[3], DEG_PER_PX)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_HEAD(self) -> None:
        self.serve(body=False)

    def do_GET(self) -> None:
        self.serve(body=True)

    def serve(self, body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        state = self.server.state
        with self.server.lock:
            state["requests"].append(path)
        for code, paths in ((404, "missing"), (500, "failing"), (403, "forbidden")):
            if path in state[paths]:
                self.send_error(code)
                return
        file = self.server.root / path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else end, end)
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start : end + 1])

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the test output stays readable."""


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = root
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {}
        self.reset()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # GDAL drops a connection once it has the bytes it needs: a broken pipe is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def reset(self) -> None:
        self.state.update(requests=[], missing=set(), failing=set(), forbidden=set())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return self.state["requests"]
