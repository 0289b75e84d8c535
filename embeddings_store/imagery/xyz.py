"""XYZ ("slippy map") imagery over HTTP(S) or from a local folder of tiles."""

from __future__ import annotations

import io
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from embeddings_store.grid import (
    HALF_WORLD,
    MAX_LATITUDE,
    WORLD,
    lonlat_to_mercator,
    mercator_y_to_lat,
)
from embeddings_store.imagery.base import (
    COVERED_ALPHA,
    USER_AGENT,
    ImageryError,
    check_read_args,
    rebuild,
)
from embeddings_store.imagery.spec import check_template, redact_url
from embeddings_store.imagery.tile_cache import TileCache


class XyzImagery:
    """XYZ ("slippy map") tiles in EPSG:3857 from an HTTP(S) URL template or a local folder.

    For a footprint it uses the coarsest zoom whose tile pixels are at least as fine as the
    output pixels (clamped to minzoom..maxzoom), fetches the covering tiles in parallel,
    mosaics them and resamples the exact (sub-pixel) footprint box to out_px with Pillow's
    BICUBIC, which is antialiased when reducing (its kernel widens with the scale factor, the
    filter torch's antialiased bicubic imitates). `reducing_gap` is off: the chosen zoom keeps
    the factor below 2 except at minzoom, and exactness matters more than the small speed-up.
    Transparent tile pixels and missing tiles (HTTP 404/410/204, an absent file) are uncovered;
    RGBA is resampled premultiplied so they do not darken their neighbours. The world wraps at
    the antimeridian.

    Remote tiles go through an optional disk cache (`cache_dir`; the raw tile bytes, and an
    empty marker for missing tiles, under a folder named by a hash of the template; written
    atomically) and an in-memory LRU of decoded tiles. Delete the folder to refetch. Network
    errors, timeouts, 429 and 5xx are retried `retries` times, then raise ImageryError.
    """

    kind = "xyz"

    def __init__(
        self,
        template: str,
        *,
        cache_dir: str | Path | None = None,
        minzoom: int = 0,
        maxzoom: int = 19,
        tile_size: int = 256,
        bounds: Sequence[float] | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        retry_delay: float = 0.25,
        max_workers: int = 8,
        memory_tiles: int = 256,
        max_tiles_per_read: int = 256,
    ) -> None:
        self._args: dict[str, Any] = dict(
            template=template, cache_dir=None if cache_dir is None else str(cache_dir),
            minzoom=minzoom, maxzoom=maxzoom, tile_size=tile_size,
            bounds=None if bounds is None else list(bounds), timeout=timeout, retries=retries,
            retry_delay=retry_delay, max_workers=max_workers, memory_tiles=memory_tiles,
            max_tiles_per_read=max_tiles_per_read,
        )  # fmt: skip
        self.template, self._remote = check_template(template)
        if not 0 <= minzoom <= maxzoom <= 30:
            raise ImageryError(f"need 0 <= minzoom <= maxzoom <= 30, got {minzoom}..{maxzoom}")
        if tile_size < 1 or tile_size > 4096:
            raise ImageryError(f"tile_size must be in 1..4096, got {tile_size}")
        self.minzoom, self.maxzoom, self.tile_size = minzoom, maxzoom, tile_size
        if bounds is None:
            self._bounds = (-180.0, -MAX_LATITUDE, 180.0, MAX_LATITUDE)
        else:
            w, s, e, n = (float(v) for v in bounds)
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise ImageryError(
                    f"bounds={w:g},{s:g},{e:g},{n:g}: need west < east in -180..180 and "
                    "south < north in -90..90"
                )
            self._bounds = (w, max(s, -MAX_LATITUDE), e, min(n, MAX_LATITUDE))
        xs, ys = lonlat_to_mercator(np.array(self._bounds[::2]), np.array(self._bounds[1::2]))
        self._bounds3857 = (float(xs[0]), float(ys[0]), float(xs[1]), float(ys[1]))
        lat_c = float(mercator_y_to_lat(np.array([(ys[0] + ys[1]) / 2]))[0])
        self.native_gsd = WORLD / (tile_size * 2**maxzoom) * math.cos(math.radians(lat_c))
        self._display = redact_url(self.template) if self._remote else self.template
        self._timeout, self._retries, self._retry_delay = timeout, retries, retry_delay
        self._max_workers, self._max_tiles = max_workers, max_tiles_per_read
        suffix = Path(urllib.parse.urlparse(self.template).path).suffix.lower()
        ext = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".tile"
        self._cache: TileCache | None = None
        if cache_dir is not None and self._remote:
            self._cache = TileCache(cache_dir, self.template, self._display, ext)
        self._memory: OrderedDict[tuple[int, int, int], np.ndarray | None] = OrderedDict()
        self._memory_size = memory_tiles
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._opener = urllib.request.build_opener()
        self._opener.addheaders = [("User-Agent", USER_AGENT)]
        self.requests = 0  # HTTP requests made (tests and logs)

    def __reduce__(self) -> tuple[Callable[..., XyzImagery], tuple[Any, ...]]:
        """Pickle as the constructor arguments (pool and memory cache are per process)."""
        return rebuild, (XyzImagery, self._args)

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees: the `bounds` option, else the whole world."""
        return self._bounds

    def describe(self) -> dict[str, object]:
        """Kind, template (secrets redacted), CRS, native GSD at maxzoom and the zoom range."""
        return {
            "kind": self.kind,
            "source": self._display,
            "crs": "EPSG:3857",
            "native_gsd": self.native_gsd,
            "bounds_lonlat": list(self._bounds),
            "minzoom": self.minzoom,
            "maxzoom": self.maxzoom,
            "tile_size": self.tile_size,
            "resampling": "Pillow BICUBIC (antialiased), premultiplied alpha",
        }

    def zoom_for(self, bounds: tuple[float, float, float, float], out_px: int) -> int:
        """The tile zoom a read of `bounds` at `out_px` uses."""
        minx, miny, maxx, maxy = check_read_args(bounds, out_px)
        need = min(maxx - minx, maxy - miny) / out_px  # metres per output pixel
        z = math.ceil(math.log2(WORLD / (self.tile_size * need)) - 1e-9)
        return min(max(z, self.minzoom), self.maxzoom)

    def read(
        self, bounds: tuple[float, float, float, float], out_px: int
    ) -> tuple[np.ndarray, float]:
        """Footprint (minx, miny, maxx, maxy) in EPSG:3857 metres -> (RGB uint8 image, coverage)."""
        minx, miny, maxx, maxy = check_read_args(bounds, out_px)
        z = self.zoom_for(bounds, out_px)
        n, ts = 1 << z, self.tile_size
        tile_m = WORLD / n
        eps = 1e-9 * tile_m
        # Tile columns may run past the antimeridian (they wrap); rows past the poles are empty.
        tx0 = math.floor((minx + HALF_WORLD) / tile_m)
        tx1 = math.floor((maxx + HALF_WORLD - eps) / tile_m)
        ty0 = math.floor((HALF_WORLD - maxy) / tile_m)
        ty1 = math.floor((HALF_WORLD - miny - eps) / tile_m)
        count = (tx1 - tx0 + 1) * (ty1 - ty0 + 1)
        if count > self._max_tiles:
            raise ImageryError(
                f"footprint {bounds} at {out_px} px needs {count} tiles at zoom {z} (limit "
                f"{self._max_tiles}): lower minzoom (now {self.minzoom}) or read a smaller area"
            )
        wanted = {
            (tx, ty): (z, tx % n, ty)
            for ty in range(ty0, ty1 + 1)
            for tx in range(tx0, tx1 + 1)
            if 0 <= ty < n and self._in_bounds(z, tx % n, ty)
        }
        tiles = self._tiles(sorted(set(wanted.values())))
        if not any(t is not None for t in tiles.values()):
            return np.zeros((out_px, out_px, 3), np.uint8), 0.0
        cols, rows = tx1 - tx0 + 1, ty1 - ty0 + 1
        opaque = len(wanted) == count and all(
            t is not None and t.shape[2] == 3 for t in tiles.values()
        )
        mosaic = np.zeros((rows * ts, cols * ts, 3 if opaque else 4), np.uint8)
        for (tx, ty), key in wanted.items():
            tile = tiles[key]
            if tile is None:
                continue
            r, c = (ty - ty0) * ts, (tx - tx0) * ts
            if opaque:
                mosaic[r : r + ts, c : c + ts] = tile
            else:
                mosaic[r : r + ts, c : c + ts, :3] = tile[..., :3]
                mosaic[r : r + ts, c : c + ts, 3] = tile[..., 3] if tile.shape[2] == 4 else 255
        px_m = tile_m / ts
        ox, oy = -HALF_WORLD + tx0 * tile_m, HALF_WORLD - ty0 * tile_m
        box = ((minx - ox) / px_m, (oy - maxy) / px_m, (maxx - ox) / px_m, (oy - miny) / px_m)
        image = Image.fromarray(mosaic, "RGB" if opaque else "RGBA")
        out = np.asarray(
            image.resize((out_px, out_px), Image.Resampling.BICUBIC, box=box, reducing_gap=None)
        )
        if opaque:
            return np.ascontiguousarray(out), 1.0
        covered = out[..., 3] >= COVERED_ALPHA
        rgb = np.where(covered[..., None], out[..., :3], 0).astype(np.uint8)
        return rgb, float(covered.mean())

    def close(self) -> None:
        """Stop the fetch threads and drop the in-memory tile cache."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._memory.clear()
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> XyzImagery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tiles ------------------------------------------------------------------------------------

    def _in_bounds(self, z: int, x: int, y: int) -> bool:
        tile_m = WORLD / (1 << z)
        x0, y1 = -HALF_WORLD + x * tile_m, HALF_WORLD - y * tile_m
        bx0, by0, bx1, by1 = self._bounds3857
        return x0 < bx1 and x0 + tile_m > bx0 and y1 > by0 and y1 - tile_m < by1

    def _tiles(self, keys: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], Any]:
        if len(keys) <= 1:
            return {k: self._tile(k) for k in keys}
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="xyz-fetch")
                weakref.finalize(self, self._pool.shutdown, wait=False)
            pool = self._pool
        return dict(zip(keys, pool.map(self._tile, keys), strict=True))

    def _tile(self, key: tuple[int, int, int]) -> np.ndarray | None:
        """Decoded tile (ts x ts x 3 RGB, or x 4 RGBA when it has transparency), None if missing."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        data, where, cached = self._tile_bytes(*key)
        tile = None if data is None else self._decode(data, where, cached)
        with self._lock:
            self._memory[key] = tile
            while len(self._memory) > self._memory_size:
                self._memory.popitem(last=False)
        return tile

    def _location(self, z: int, x: int, y: int) -> str:
        loc = self.template.replace("{z}", str(z)).replace("{x}", str(x))
        return loc.replace("{y}", str(y)).replace("{-y}", str((1 << z) - 1 - y))

    def _tile_bytes(
        self, z: int, x: int, y: int
    ) -> tuple[bytes | None, str, tuple[int, int, int] | None]:
        """(bytes or None if missing, where for messages, cache key when read from the cache)."""
        where = self._location(z, x, y)
        if not self._remote:
            try:
                return Path(where).read_bytes(), where, None
            except FileNotFoundError:
                return None, where, None
            except OSError as e:
                raise ImageryError(f"cannot read tile file {where}: {e}") from e
        shown = redact_url(where)
        if self._cache is not None:
            found, cached = self._cache.get(z, x, y)
            if found:
                return cached, shown, (None if cached is None else (z, x, y))
        data = self._fetch(where, shown)
        if self._cache is not None:
            self._cache.put(z, x, y, data)
        return data, shown, None

    def _fetch(self, url: str, shown: str) -> bytes | None:
        last: str = ""
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(self._retry_delay * (3 ** (attempt - 1)))
            with self._lock:
                self.requests += 1
            try:
                with self._opener.open(url, timeout=self._timeout) as resp:
                    if resp.status == 204:
                        return None
                    data = resp.read()
                    return data or None
            except urllib.error.HTTPError as e:
                e.close()
                if e.code in (404, 410):
                    return None
                if e.code in (429,) or e.code >= 500:
                    last = f"HTTP {e.code} {e.reason}"
                    continue
                raise ImageryError(
                    f"tile server refused {shown}: HTTP {e.code} {e.reason} (check the URL "
                    "template, its API key and the server's terms)"
                ) from e
            except (urllib.error.URLError, HTTPException, OSError) as e:
                last = str(getattr(e, "reason", e)) or type(e).__name__
        raise ImageryError(
            f"fetching tile {shown} failed after {self._retries + 1} attempts ({last}); check "
            "the network and the server"
        )

    def _decode(self, data: bytes, where: str, cached: tuple[int, int, int] | None) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as im:
                has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
                arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            if cached is not None and self._cache is not None:
                self._cache.forget(*cached)
            raise ImageryError(f"tile {where} is not an image Pillow can decode: {e}") from e
        ts = self.tile_size
        if arr.shape[:2] != (ts, ts):
            raise ImageryError(
                f"tile {where} is {arr.shape[1]}x{arr.shape[0]} px, expected {ts}x{ts}: set "
                f"#tile_size={arr.shape[1]} in the spec"
            )
        if arr.shape[2] == 4 and bool((arr[..., 3] == 255).all()):
            arr = arr[..., :3]
        return np.ascontiguousarray(arr)
