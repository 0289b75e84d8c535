"""GeoTIFF/COG imagery: any raster GDAL reads, in any CRS, warped to EPSG:3857 footprints."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError  # GDAL errors rasterio passes through unwrapped
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import reproject, transform_bounds
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from embeddings_store.grid import EARTH_RADIUS, lonlat_to_mercator
from embeddings_store.imagery.base import (
    COVERED_ALPHA,
    WEB_MERCATOR,
    WGS84,
    ImageryError,
    check_read_args,
    rebuild,
    world_parts,
)
from embeddings_store.imagery.spec import resolve_raster_path

# Remote rasters: COGs carry their overviews and masks inside, so listing the "directory" of a
# URL only costs requests; a HEAD request is refused by some object stores (pre-signed URLs).
REMOTE_GDAL_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_USE_HEAD": "NO",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",
}


class GeoTiffImagery:
    """A georeferenced raster (any CRS) read through rasterio/GDAL and warped to EPSG:3857.

    Resampling: each read picks the coarsest overview that is still at least as fine as the
    output, then warps it once with `cubic`. GDAL's warper widens the cubic kernel by the
    downsampling factor, so this is an antialiased bicubic resize, like the PSM zoom transform
    (torch bicubic with antialias). Only when no overview is fine-but-close enough (output
    pixels at least 2x the chosen level's pixels) does it switch to `average`: a box filter is
    just as alias-free at such factors and touches each source pixel once, where a widened cubic
    kernel costs (4 x factor)^2 taps per output pixel.

    Data types: uint8 is used as is. Any other type is mapped linearly from a fixed value range
    to 0..255 (clipped): `scale=lo,hi` when given, else the 2nd..98th percentile of the valid
    pixels of all colour bands together, measured once at open on the coarsest overview. One
    range for the whole raster keeps every cell's image on the same radiometric scale, which a
    per-cell stretch would not.

    Validity: an alpha band (colour interpretation alpha), nodata values (a pixel is valid when
    any colour band differs from its nodata value, GDAL's dataset-mask rule; NaN is never
    valid), a palette entry's alpha, or an internal mask band. The warp carries validity as an
    alpha band, so invalid pixels never bleed colour into valid ones.

    Thread safety: rasterio dataset handles are not thread-safe, so every thread opens its own
    handle per overview level, kept open for the reader's life (precompute reads thousands of
    footprints). A reader pickles as its arguments and reopens in the new process.
    """

    kind = "geotiff"

    def __init__(
        self,
        source: str | Path,
        *,
        bands: Sequence[int] | None = None,
        scale: Sequence[float] | None = None,
    ) -> None:
        self._args: dict[str, Any] = {
            "source": str(source),
            "bands": list(bands) if bands is not None else None,
            "scale": list(scale) if scale is not None else None,
        }
        self._path, self._remote, self._display = resolve_raster_path(source)
        self._gdal_options = REMOTE_GDAL_OPTIONS if self._remote else {}
        self._local = threading.local()
        self._registry_lock = threading.Lock()
        self._handles: list[Any] = []
        self._pid = os.getpid()
        self._closed = False
        self._validated = False
        weakref.finalize(self, _close_all, self._handles)
        try:
            with self._env():
                self._inspect(self._handle(0), bands, scale)
        except BaseException:
            self.close()
            raise
        self._validated = True

    def __reduce__(self) -> tuple[Callable[..., GeoTiffImagery], tuple[Any, ...]]:
        """Pickle as the constructor arguments (handles are per process)."""
        return rebuild, (GeoTiffImagery, self._args)

    # -- opening and validation ---------------------------------------------------------------

    def _env(self) -> contextlib.AbstractContextManager[Any]:
        # rasterio's Env config is thread-local: enter it around every GDAL call.
        return (
            rasterio.Env(**self._gdal_options) if self._gdal_options else contextlib.nullcontext()
        )

    def _open(self, level: int) -> Any:
        kwargs = {"overview_level": level - 1} if level > 0 else {}
        try:
            if self._validated:
                return rasterio.open(self._path, **kwargs)
            # The first open (in the constructor): a missing georeference is reported as an
            # ImageryError by _inspect, not as a warning. catch_warnings is not thread-safe,
            # hence only here.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return rasterio.open(self._path, **kwargs)
        except (RasterioError, CPLE_BaseError) as e:
            hint = (
                "check the URL and that the server allows HTTP range requests"
                if self._remote
                else "give a GeoTIFF/COG (or another raster GDAL can read)"
            )
            raise ImageryError(f"cannot open {self._display} as a raster: {e}; {hint}") from e

    def _handle(self, level: int) -> Any:
        if self._closed:
            raise ImageryError(f"imagery reader for {self._display} is closed")
        if os.getpid() != self._pid:
            # A forked child must not share GDAL handles with its parent: start afresh.
            self._local = threading.local()
            self._handles.clear()
            self._pid = os.getpid()
        handles: dict[int, Any] | None = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = {}
        ds = handles.get(level)
        if ds is None:
            ds = self._open(level)
            handles[level] = ds
            with self._registry_lock:
                self._handles.append(ds)
        return ds

    def _inspect(self, ds: Any, bands: Sequence[int] | None, scale: Sequence[float] | None) -> None:
        where = self._display
        if ds.crs is None or (ds.transform.is_identity and not ds.gcps[0]):
            raise ImageryError(
                f"{where} is not georeferenced (no CRS or geotransform): assign one, e.g. "
                "`gdal_translate -a_srs EPSG:4326 -a_ullr west north east south in.tif out.tif`"
            )
        if ds.transform.is_identity:
            raise ImageryError(
                f"{where} is georeferenced only by ground control points: warp it first "
                "(`gdalwarp -t_srs EPSG:3857 in.tif out.tif`)"
            )
        self.crs: CRS = ds.crs
        self._src_bounds = _raster_bounds(ds)
        left, _, right, _ = self._src_bounds
        try:
            west, south, east, north = transform_bounds(
                ds.crs, WGS84, *self._src_bounds, densify_pts=21
            )
        except (RasterioError, CPLE_BaseError, ValueError) as e:
            raise ImageryError(
                f"{where} has a CRS that cannot be converted to longitude/latitude "
                f"({ds.crs.to_string() or 'unknown'}): {e}; reproject it to a known CRS"
            ) from e
        if not all(math.isfinite(v) for v in (west, south, east, north)):
            raise ImageryError(
                f"{where}: its CRS ({ds.crs.to_string()}) gives no finite longitude/latitude "
                "bounds; reproject it to a known CRS"
            )
        if ds.crs.is_geographic and (right > 180.5 or left < -180.5):
            raise ImageryError(
                f"{where} uses longitudes beyond -180..180 ({left:g}..{right:g}); re-centre "
                "it with `gdalwarp -t_srs EPSG:4326 --config CENTER_LONG 0 in.tif out.tif`"
            )
        self._bounds_lonlat = (west, south, east, north)
        if west > east:  # crosses the antimeridian: no cheap x test
            x0, x1 = -math.inf, math.inf
        else:
            x0, x1 = (float(v) for v in lonlat_to_mercator(np.array([west, east]), np.zeros(2))[0])
        y0, y1 = (float(v) for v in lonlat_to_mercator(np.zeros(2), np.array([south, north]))[1])
        self._bounds3857 = (x0, y0, x1, y1)
        self.native_gsd = _raster_gsd(ds)

        interp = list(ds.colorinterp)
        alpha = [i + 1 for i, c in enumerate(interp) if c == ColorInterp.alpha]
        self._alpha_band = alpha[0] if alpha else None
        colour = [i + 1 for i in range(ds.count) if i + 1 != self._alpha_band]
        if bands is not None:
            if len(bands) not in (1, 3) or any(not 1 <= b <= ds.count for b in bands):
                raise ImageryError(
                    f"bands={','.join(map(str, bands))} is invalid for {where}: give 1 or 3 "
                    f"band numbers in 1..{ds.count}"
                )
            self._bands = list(bands)
        elif all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
            self._bands = [interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green,
                                                          ColorInterp.blue)]  # fmt: skip
        elif len(colour) in (1, 2):
            self._bands = colour[:1]  # grey (a second non-alpha band is ignored)
        elif len(colour) in (3, 4):
            self._bands = colour[:3]  # RGB, or RGB + NIR
        else:
            raise ImageryError(
                f"{where} has {ds.count} bands and none is marked red/green/blue: choose the "
                "bands to show, e.g. append #bands=4,3,2 to the spec"
            )
        self._palette: np.ndarray | None = None
        if len(self._bands) == 1 and interp[self._bands[0] - 1] == ColorInterp.palette:
            cmap = ds.colormap(self._bands[0])
            lut = np.zeros((max(cmap) + 1 if cmap else 1, 4), np.uint8)
            for k, rgba in cmap.items():
                lut[k] = rgba
            self._palette = lut
        nodata = [ds.nodatavals[b - 1] for b in self._bands]
        self._nodata = nodata if any(v is not None for v in nodata) else None
        flags = ds.mask_flag_enums[self._bands[0] - 1]
        self._internal_mask = (
            self._alpha_band is None and self._nodata is None and MaskFlags.per_dataset in flags
        )
        self.dtype = np.dtype(ds.dtypes[self._bands[0] - 1])
        if self._palette is not None and self.dtype.kind not in "ui":
            raise ImageryError(f"{where}: a palette band must be integer, got {self.dtype}")
        self._overviews = list(ds.overviews(self._bands[0]))
        self._indexes = self._bands + ([self._alpha_band] if self._alpha_band else [])

        self._scale: tuple[float, float] | None = None
        if self.dtype != np.uint8 and self._palette is None:
            if scale is not None:
                lo, hi = float(scale[0]), float(scale[1])
                if not hi > lo:
                    raise ImageryError(f"scale={lo:g},{hi:g}: the high value must exceed the low")
                self._scale = (lo, hi)
            else:
                self._scale = self._auto_scale()

    def _auto_scale(self) -> tuple[float, float]:
        level = len(self._overviews)
        ds = self._handle(level)
        long_side = max(ds.width, ds.height)
        # Without overviews, sample a decimated read (nearest) instead of the whole raster.
        step = max(1, math.ceil(long_side / 1024))
        shape = (len(self._indexes), max(1, ds.height // step), max(1, ds.width // step))
        data = ds.read(self._indexes, out_shape=shape, resampling=Resampling.nearest)
        colour, alpha = self._validity(ds, data, None, shape[1:])
        values = colour[:, alpha >= COVERED_ALPHA].astype(np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ImageryError(f"{self._display} has no valid pixels to derive a value scale")
        lo, hi = (float(v) for v in np.percentile(values, [2, 98]))
        return (lo, hi if hi > lo else lo + 1.0)

    # -- the Imagery protocol -----------------------------------------------------------------

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the raster in degrees (west > east across 180°)."""
        return self._bounds_lonlat

    def describe(self) -> dict[str, object]:
        """Kind, source, CRS, native GSD, size, bands, scale and overviews, JSON-able."""
        return {
            "kind": self.kind,
            "source": self._display,
            "crs": self.crs.to_string(),
            "native_gsd": self.native_gsd,
            "bounds_lonlat": list(self._bounds_lonlat),
            "bands": list(self._bands),
            "alpha_band": self._alpha_band,
            "dtype": str(self.dtype),
            "scale": list(self._scale) if self._scale else None,
            "overviews": list(self._overviews),
            "resampling": "cubic (antialiased), average beyond 2x past the coarsest overview",
        }

    def read(
        self, bounds: tuple[float, float, float, float], out_px: int
    ) -> tuple[np.ndarray, float]:
        """Footprint (minx, miny, maxx, maxy) in EPSG:3857 metres -> (RGB uint8 image, coverage)."""
        minx, miny, maxx, maxy = check_read_args(bounds, out_px)
        rgb = np.zeros((out_px, out_px, 3), np.uint8)
        alpha = np.zeros((out_px, out_px), np.uint8)
        try:
            with self._env():
                for c0, c1, part in world_parts((minx, miny, maxx, maxy), out_px):
                    self._render(part, c1 - c0, out_px, rgb[:, c0:c1], alpha[:, c0:c1])
        except (RasterioError, CPLE_BaseError) as e:
            raise ImageryError(f"reading {self._display} failed: {e}") from e
        covered = alpha >= COVERED_ALPHA
        rgb[~covered] = 0
        return rgb, float(covered.mean())

    def close(self) -> None:
        """Close every dataset handle (all threads); later reads raise ImageryError."""
        self._closed = True
        with self._registry_lock:
            _close_all(self._handles)

    def __enter__(self) -> GeoTiffImagery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rendering ------------------------------------------------------------------------------

    def _render(
        self,
        part: tuple[float, float, float, float],
        width: int,
        height: int,
        rgb: np.ndarray,
        alpha: np.ndarray,
    ) -> None:
        bx0, by0, bx1, by1 = self._bounds3857
        if part[2] <= bx0 or part[0] >= bx1 or part[3] <= by0 or part[1] >= by1:
            return
        ds0 = self._handle(0)
        try:
            src_box = transform_bounds(WEB_MERCATOR, self.crs, *part, densify_pts=5)
        except (RasterioError, CPLE_BaseError, ValueError):
            src_box = self._src_bounds
        if not all(math.isfinite(v) for v in src_box) or src_box[0] > src_box[2]:
            src_box = self._src_bounds
        cols, rows = _pixel_span(ds0.transform, src_box)
        factor = min((cols[1] - cols[0]) / width, (rows[1] - rows[0]) / height)
        level, level_factor = 0, 1.0
        for i, f in enumerate(self._overviews):
            if f <= factor:
                level, level_factor = i + 1, float(f)
        remaining = factor / level_factor
        resampling = Resampling.average if remaining >= 2 else Resampling.cubic
        ds = self._handle(level)
        cols, rows = _pixel_span(ds.transform, src_box)
        margin = math.ceil(2 * max(remaining, 1.0)) + 2  # cubic kernel radius, widened
        want = (math.floor(cols[0]) - margin, math.ceil(cols[1]) + margin,
                math.floor(rows[0]) - margin, math.ceil(rows[1]) + margin)  # fmt: skip
        c0, c1 = max(want[0], 0), min(want[1], ds.width)
        r0, r1 = max(want[2], 0), min(want[3], ds.height)
        if c1 <= c0 or r1 <= r0:
            return
        window = Window(c0, r0, c1 - c0, r1 - r0)
        data = ds.read(self._indexes, window=window)
        colour, src_alpha = self._validity(ds, data, window, (r1 - r0, c1 - c0))
        if not src_alpha.any():
            return
        colour = self._to_uint8(colour)
        src_transform = _offset(ds.transform, c0, r0)
        dst_transform = _bounds_transform(part, width, height)
        if (c0, c1, r0, r1) == want and bool((src_alpha == 255).all()):
            # Footprint well inside the raster and all valid: every output pixel is covered,
            # and GDAL's warp kernels without an alpha band are 2-3x faster.
            dst = _warp(colour, src_transform, self.crs, dst_transform, width, height, resampling)
            rgb[...] = np.moveaxis(dst, 0, -1)  # a grey band broadcasts to R, G, B
            alpha[...] = 255
            return
        src = np.concatenate([colour, src_alpha[None]], axis=0)
        dst = _warp(src, src_transform, self.crs, dst_transform, width, height, resampling, True)
        rgb[...] = np.moveaxis(dst[:-1], 0, -1)
        alpha[...] = dst[-1]

    def _validity(
        self, ds: Any, data: np.ndarray, window: Window | None, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Split a read into colour bands (palette expanded) and a 0..255 validity band."""
        n = len(self._bands)
        colour = data[:n]
        if self._alpha_band is not None:
            a = data[n]
            alpha = a if a.dtype == np.uint8 else _alpha_to_uint8(a)
        elif self._nodata is not None:
            valid = np.zeros(shape, bool)
            for band, nd in zip(colour, self._nodata, strict=True):
                if nd is None:
                    valid |= True
                elif isinstance(nd, float) and math.isnan(nd):
                    valid |= ~np.isnan(band)
                else:
                    valid |= band != nd
            alpha = valid.astype(np.uint8) * np.uint8(255)
        elif self._internal_mask:
            if window is None:
                alpha = ds.read_masks(self._bands[0], out_shape=shape)
            else:
                alpha = ds.read_masks(self._bands[0], window=window)
        else:
            alpha = np.full(shape, 255, np.uint8)
        if colour.dtype.kind == "f":
            finite = np.isfinite(colour).all(axis=0)
            alpha = np.where(finite, alpha, 0).astype(np.uint8)
            colour = np.where(finite, colour, 0)
        if self._palette is not None:
            idx = np.clip(colour[0], 0, len(self._palette) - 1)
            entries = self._palette[idx]
            colour = np.moveaxis(entries[..., :3], -1, 0)
            alpha = np.minimum(alpha, entries[..., 3])
        return colour, alpha

    def _to_uint8(self, colour: np.ndarray) -> np.ndarray:
        if colour.dtype == np.uint8:
            return np.ascontiguousarray(colour)
        assert self._scale is not None
        lo, hi = self._scale
        scaled = (colour.astype(np.float32) - lo) * (255.0 / (hi - lo))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _warp(
    src: np.ndarray,
    src_transform: Affine,
    src_crs: CRS,
    dst_transform: Affine,
    width: int,
    height: int,
    resampling: Resampling,
    last_is_alpha: bool = False,
) -> np.ndarray:
    """Warp (bands, rows, cols) uint8 to a width x height EPSG:3857 grid with GDAL's warper.

    Source and destination are explicit MEM datasets, not numpy arrays: for arrays rasterio
    builds datasets under `warnings.catch_warnings()`, which is not thread-safe and lets a
    NotGeoreferencedWarning escape when several threads warp at once.
    """
    count = src.shape[0]
    profile: dict[str, Any] = {"driver": "MEM", "count": count, "dtype": "uint8"}
    bands = list(range(1, count + 1))
    alpha = {"src_alpha": count, "dst_alpha": count} if last_is_alpha else {}
    with rasterio.open("src", "w", width=src.shape[2], height=src.shape[1], crs=src_crs,
                       transform=src_transform, **profile) as s:  # fmt: skip
        s.write(src)
        with rasterio.open("dst", "w+", width=width, height=height, crs=WEB_MERCATOR,
                           transform=dst_transform, **profile) as d:  # fmt: skip
            reproject(rasterio.band(s, bands), rasterio.band(d, bands), resampling=resampling,
                      **alpha)  # fmt: skip
            return d.read()


def _raster_gsd(ds: Any) -> float:
    """Ground metres per pixel at the raster's centre (geometric mean of x and y)."""
    t = ds.transform
    cx, cy = ds.width / 2, ds.height / 2
    pts = [_apply(t, cx, cy), _apply(t, cx + 1, cy), _apply(t, cx, cy + 1)]
    xs, ys = transform_points(ds.crs, WGS84, [p[0] for p in pts], [p[1] for p in pts])
    lon, lat = np.radians(xs), np.radians(ys)

    def dist(i: int) -> float:
        dlat, dlon = lat[i] - lat[0], lon[i] - lon[0]
        h = math.sin(dlat / 2) ** 2 + math.cos(lat[0]) * math.cos(lat[i]) * math.sin(dlon / 2) ** 2
        return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(h)))

    return float(math.sqrt(dist(1) * dist(2)))


def _raster_bounds(ds: Any) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) in the raster's CRS; also for rotated transforms."""
    corners = [_apply(ds.transform, c, r) for c in (0, ds.width) for r in (0, ds.height)]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    return min(xs), min(ys), max(xs), max(ys)


def _pixel_span(
    transform: Any, box: Sequence[float]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Column and row range (floats) of a CRS box under a (possibly rotated) transform."""
    inv = ~transform
    corners = [_apply(inv, x, y) for x in (box[0], box[2]) for y in (box[1], box[3])]
    cs, rs = [c[0] for c in corners], [c[1] for c in corners]
    return (min(cs), max(cs)), (min(rs), max(rs))


# Affine arithmetic written out: affine >= 3 deprecates `*` (a PendingDeprecationWarning, an
# error under our pytest settings) and affine < 2.4 lacks `@`; rasterio's helpers use `*`.


def _apply(t: Affine, x: float, y: float) -> tuple[float, float]:
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def _offset(t: Affine, col: int, row: int) -> Affine:
    """Transform of a window starting at (col, row), as rasterio's window_transform."""
    x, y = _apply(t, col, row)
    return Affine(t.a, t.b, x, t.d, t.e, y)


def _bounds_transform(bounds: Sequence[float], width: int, height: int) -> Affine:
    """North-up transform of a width x height grid over bounds, as rasterio's from_bounds."""
    minx, miny, maxx, maxy = bounds
    return Affine((maxx - minx) / width, 0.0, minx, 0.0, -(maxy - miny) / height, maxy)


def _alpha_to_uint8(a: np.ndarray) -> np.ndarray:
    top = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0
    return np.clip(np.rint(a.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)


def _close_all(handles: list[Any]) -> None:
    for ds in handles:
        with contextlib.suppress(Exception):
            ds.close()
    handles.clear()
