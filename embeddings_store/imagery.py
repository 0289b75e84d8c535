"""Imagery readers: the model's input image for a cell footprint, from a GeoTIFF/COG or XYZ tiles.

Spec syntax accepted by `open_imagery` (one string, so it can travel through a CLI and be
recorded in the store attributes):

    path/to/image.tif                  a local raster GDAL can read (GeoTIFF, COG, VRT, JP2, ...)
    file:///abs/path/image.tif         the same, as a file URL
    https://host/path/cog.tif          a remote COG, read with HTTP range requests (GDAL /vsicurl/)
    s3://bucket/key.tif                object storage (also gs://, az://), via GDAL /vsis3/ etc.
    /vsis3/bucket/key.tif              any GDAL virtual path, passed through unchanged
    xyz:https://host/{z}/{x}/{y}.png   XYZ ("slippy map") tiles over HTTP(S)
    xyz:/local/folder/{z}/{x}/{y}.png  XYZ tiles in a local folder (also xyz:file:///...)

Options follow a `#` as `key=value` pairs joined by `&` (a URL fragment is never sent to the
server, so this cannot clash with a URL's own query string):

    raster:  bands=4,3,2        1-based bands to use as R,G,B (or one band, shown as grey)
             scale=0,3000       map this value range linearly to 0..255 (non-uint8 data)
    xyz:     minzoom=0 maxzoom=19 tile_size=256 bounds=west,south,east,north (degrees)

e.g. `xyz:https://tiles.example.com/{z}/{x}/{y}.jpg?key=abc#maxzoom=17&bounds=-10,35,30,60`.
Templates use `{z}`, `{x}` and `{y}` (or `{-y}` for TMS row order); nothing else.

Every reader returns `(out_px x out_px x 3 uint8 RGB, coverage)` for footprint bounds in EPSG:3857
metres. Coverage is the fraction of output pixels whose value comes from real data: a pixel is
covered when (about) half or more of its resampling weight falls on valid source pixels (not
nodata, not transparent, inside the raster, not in a missing tile); the warp's / resize's alpha
channel measures that weight. Uncovered pixels are 0 in all three bands.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import rasterio
from affine import Affine
from PIL import Image, UnidentifiedImageError
from rasterio._err import CPLE_BaseError  # GDAL errors rasterio passes through unwrapped
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import reproject, transform_bounds
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from embeddings_store.grid import (
    EARTH_RADIUS,
    HALF_WORLD,
    MAX_LATITUDE,
    WORLD,
    lonlat_to_mercator,
    mercator_y_to_lat,
)

WEB_MERCATOR = CRS.from_epsg(3857)
WGS84 = CRS.from_epsg(4326)
MAX_OUT_PX = 8192
# An output pixel counts as real data when at least half of its resampling weight is valid.
COVERED_ALPHA = 128
USER_AGENT = "soundscape-map/0.1 (imagery reader; urllib)"

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

# Object-store URLs go to GDAL's matching virtual file systems (credentials from GDAL's usual
# environment variables, e.g. AWS_ACCESS_KEY_ID).
OBJECT_STORES = {"s3://": "/vsis3/", "gs://": "/vsigs/", "az://": "/vsiaz/"}
REMOTE_VSI = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
              "/vsiwebhdfs")  # fmt: skip

RASTER_OPTIONS = ("bands", "scale")
XYZ_OPTIONS = ("minzoom", "maxzoom", "tile_size", "bounds")
# Query parameters that carry secrets: redacted in describe() (which goes into store attributes).
_SECRET_PARAM = re.compile(r"key|token|secret|sig|signature|password|passwd|auth|credential", re.I)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class ImageryError(ValueError):
    """Bad imagery input (spec, file, template, footprint) or imagery that cannot be read."""


@runtime_checkable
class Imagery(Protocol):
    """A source of RGB imagery that can render any EPSG:3857 footprint."""

    native_gsd: float

    def read(
        self, bounds: tuple[float, float, float, float], out_px: int
    ) -> tuple[np.ndarray, float]:
        """Footprint (minx, miny, maxx, maxy) in EPSG:3857 metres -> (RGB uint8 image, coverage)."""
        ...

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the data in degrees."""
        ...

    def describe(self) -> dict[str, object]:
        """JSON-able description of the source, recorded in the store attributes."""
        ...


def open_imagery(spec: str | Path, cache_dir: str | Path | None = None) -> Imagery:
    """Open an imagery source from a spec string (see the module docstring for the syntax)."""
    if isinstance(spec, Path):
        return GeoTiffImagery(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ImageryError(f"imagery spec must be a non-empty string, got {spec!r}")
    location, options = _split_options(spec.strip())
    if location.startswith("xyz:"):
        _check_option_keys(options, XYZ_OPTIONS, spec)
        kwargs: dict[str, Any] = {}
        for key in ("minzoom", "maxzoom", "tile_size"):
            if key in options:
                kwargs[key] = _parse_int(options[key], key)
        if "bounds" in options:
            kwargs["bounds"] = _parse_floats(options["bounds"], "bounds", 4)
        return XyzImagery(location[len("xyz:") :], cache_dir=cache_dir, **kwargs)
    _check_option_keys(options, RASTER_OPTIONS, spec)
    bands = None
    if "bands" in options:
        bands = [_parse_int(b, "bands") for b in options["bands"].split(",")]
    scale = _parse_floats(options["scale"], "scale", 2) if "scale" in options else None
    return GeoTiffImagery(location, bands=bands, scale=scale)


# ---------------------------------------------------------------------------------------------
# GeoTIFF / COG


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
        self._path, self._remote, self._display = _resolve_raster_path(source)
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
        return _rebuild, (GeoTiffImagery, self._args)

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
        minx, miny, maxx, maxy = _check_read_args(bounds, out_px)
        rgb = np.zeros((out_px, out_px, 3), np.uint8)
        alpha = np.zeros((out_px, out_px), np.uint8)
        try:
            with self._env():
                for c0, c1, part in _world_parts((minx, miny, maxx, maxy), out_px):
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


def _resolve_raster_path(source: str | Path) -> tuple[str, bool, str]:
    """Spec location -> (GDAL path, is remote, display string without secrets)."""
    text = str(source)
    lower = text.lower()
    if lower.startswith(("http://", "https://")):
        return "/vsicurl/" + text, True, _redact_url(text)
    for scheme, vsi in OBJECT_STORES.items():
        if lower.startswith(scheme):
            return vsi + text[len(scheme) :], True, text
    if lower.startswith("/vsi"):
        return text, lower.startswith(REMOTE_VSI), text
    if lower.startswith("file://"):
        text = urllib.request.url2pathname(urllib.parse.urlparse(text).path)
    elif "://" in text:
        raise ImageryError(
            f"unsupported raster location {_redact_url(text)!r}: use a local path, an "
            "http(s):// URL, s3:// gs:// az://, a GDAL /vsi... path, or xyz:<template> for tiles"
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise ImageryError(
            f"imagery file not found: {path} (for XYZ tiles use xyz:<template with {{z}}/{{x}}/"
            "{y}>)"
        )
    if path.is_dir():
        raise ImageryError(
            f"{path} is a folder: give a raster file, or xyz:{path}/{{z}}/{{x}}/{{y}}.png for tiles"
        )
    return str(path), False, str(path)


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


def _rebuild(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# XYZ tiles


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
        self.template, self._remote = _check_template(template)
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
        self._display = _redact_url(self.template) if self._remote else self.template
        self._timeout, self._retries, self._retry_delay = timeout, retries, retry_delay
        self._max_workers, self._max_tiles = max_workers, max_tiles_per_read
        self._cache_root: Path | None = None
        if cache_dir is not None and self._remote:
            digest = hashlib.sha256(self.template.encode()).hexdigest()[:16]
            self._cache_root = Path(cache_dir).expanduser() / f"xyz-{digest}"
            note = self._cache_root / "source.txt"
            try:
                if not note.exists():
                    _atomic_write(note, (self._display + "\n").encode())
            except OSError as e:
                raise ImageryError(f"cannot use tile cache folder {cache_dir}: {e}") from e
        suffix = Path(urllib.parse.urlparse(self.template).path).suffix.lower()
        self._ext = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".tile"
        self._memory: OrderedDict[tuple[int, int, int], np.ndarray | None] = OrderedDict()
        self._memory_size = memory_tiles
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._opener = urllib.request.build_opener()
        self._opener.addheaders = [("User-Agent", USER_AGENT)]
        self.requests = 0  # HTTP requests made (tests and logs)

    def __reduce__(self) -> tuple[Callable[..., XyzImagery], tuple[Any, ...]]:
        """Pickle as the constructor arguments (pool and memory cache are per process)."""
        return _rebuild, (XyzImagery, self._args)

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
        minx, miny, maxx, maxy = _check_read_args(bounds, out_px)
        need = min(maxx - minx, maxy - miny) / out_px  # metres per output pixel
        z = math.ceil(math.log2(WORLD / (self.tile_size * need)) - 1e-9)
        return min(max(z, self.minzoom), self.maxzoom)

    def read(
        self, bounds: tuple[float, float, float, float], out_px: int
    ) -> tuple[np.ndarray, float]:
        """Footprint (minx, miny, maxx, maxy) in EPSG:3857 metres -> (RGB uint8 image, coverage)."""
        minx, miny, maxx, maxy = _check_read_args(bounds, out_px)
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

    def _tile_bytes(self, z: int, x: int, y: int) -> tuple[bytes | None, str, Path | None]:
        where = self._location(z, x, y)
        if not self._remote:
            try:
                return Path(where).read_bytes(), where, None
            except FileNotFoundError:
                return None, where, None
            except OSError as e:
                raise ImageryError(f"cannot read tile file {where}: {e}") from e
        shown = _redact_url(where)
        hit = miss = None
        if self._cache_root is not None:
            hit = self._cache_root / str(z) / str(x) / f"{y}{self._ext}"
            miss = hit.with_name(f"{y}.missing")
            if hit.exists():
                return hit.read_bytes(), shown, hit
            if miss.exists():
                return None, shown, None
        data = self._fetch(where, shown)
        if hit is not None and miss is not None:
            with contextlib.suppress(OSError):  # a full disk costs speed, not the read
                _atomic_write(hit if data is not None else miss, data or b"")
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

    def _decode(self, data: bytes, where: str, cached: Path | None) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as im:
                has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
                arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            if cached is not None:
                with contextlib.suppress(OSError):
                    cached.unlink()
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


def _check_template(template: str) -> tuple[str, bool]:
    """Validate an XYZ template -> (template, is remote); local paths become absolute."""
    if not isinstance(template, str) or not template.strip():
        raise ImageryError("empty XYZ template: use xyz:https://host/{z}/{x}/{y}.png")
    template = template.strip()
    names = _PLACEHOLDER.findall(template)
    unknown = sorted(set(names) - {"z", "x", "y", "-y"})
    if unknown:
        raise ImageryError(
            f"XYZ template {template!r} has unsupported placeholder(s) "
            f"{', '.join('{' + u + '}' for u in unknown)}: only {{z}}, {{x}}, {{y}} and {{-y}}"
        )
    if "z" not in names or "x" not in names or ("y" in names) == ("-y" in names):
        raise ImageryError(
            f"XYZ template {template!r} must contain {{z}}, {{x}} and one of {{y}}/{{-y}}, "
            "e.g. xyz:https://host/{z}/{x}/{y}.png"
        )
    lower = template.lower()
    if lower.startswith(("http://", "https://")):
        if not urllib.parse.urlparse(template).netloc:
            raise ImageryError(f"XYZ template {template!r} has no host")
        return template, True
    if lower.startswith("file://"):
        template = urllib.request.url2pathname(urllib.parse.urlparse(template).path)
    elif "://" in template:
        raise ImageryError(
            f"XYZ template {_redact_url(template)!r}: only http(s):// URLs, file:// URLs and "
            "local paths are supported"
        )
    path = os.path.abspath(os.path.expanduser(template))
    prefix = path[: path.index("{")]
    root = Path(prefix) if prefix.endswith(os.sep) else Path(prefix).parent
    if not root.is_dir():
        raise ImageryError(f"XYZ tile folder {root} does not exist (template {path})")
    return path, False


# ---------------------------------------------------------------------------------------------
# helpers


def _split_options(spec: str) -> tuple[str, dict[str, str]]:
    head, sep, tail = spec.rpartition("#")
    if not sep or not tail or not all("=" in p for p in tail.split("&")):
        return spec, {}
    options: dict[str, str] = {}
    for part in tail.split("&"):
        key, _, value = part.partition("=")
        options[key.strip().lower()] = value.strip()
    return head, options


def _check_option_keys(options: dict[str, str], allowed: Sequence[str], spec: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ImageryError(
            f"unknown option(s) {', '.join(unknown)} in imagery spec {_redact_url(spec)!r}; "
            f"this kind of source takes: {', '.join(allowed)}"
        )


def _parse_int(text: str, key: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ImageryError(f"option {key}: {text!r} is not an integer") from None


def _parse_floats(text: str, key: str, count: int) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ImageryError(f"option {key}: need {count} comma-separated numbers, got {text!r}")
    return values


def _check_read_args(bounds: Sequence[float], out_px: int) -> tuple[float, float, float, float]:
    if isinstance(out_px, bool) or not isinstance(out_px, int | np.integer):
        raise ImageryError(f"out_px must be an integer, got {out_px!r}")
    if not 1 <= out_px <= MAX_OUT_PX:
        raise ImageryError(f"out_px must be in 1..{MAX_OUT_PX}, got {out_px}")
    try:
        minx, miny, maxx, maxy = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ImageryError(
            f"bounds must be 4 numbers (minx, miny, maxx, maxy), got {bounds!r}"
        ) from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)) or minx >= maxx or miny >= maxy:
        raise ImageryError(
            f"invalid footprint {bounds!r}: need finite EPSG:3857 metres with minx < maxx and "
            "miny < maxy"
        )
    return minx, miny, maxx, maxy


def _world_parts(
    bounds: tuple[float, float, float, float], out_px: int
) -> Iterator[tuple[int, int, tuple[float, float, float, float]]]:
    """Split output columns at the antimeridian: (col0, col1, bounds shifted into the world)."""
    minx, miny, maxx, maxy = bounds
    px = (maxx - minx) / out_px
    # Column i's centre is minx + (i + 0.5) px; columns left of -180° / right of 180° wrap.
    k1 = min(max(math.ceil((-HALF_WORLD - minx) / px - 0.5), 0), out_px)
    k2 = min(max(math.floor((HALF_WORLD - minx) / px - 0.5) + 1, k1), out_px)
    for c0, c1, shift in ((0, k1, WORLD), (k1, k2, 0.0), (k2, out_px, -WORLD)):
        if c1 > c0:
            yield c0, c1, (minx + c0 * px + shift, miny, minx + c1 * px + shift, maxy)


def _redact_url(text: str) -> str:
    """Hide passwords and secret-looking query values (API keys) in a URL."""
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{k}=***" if _SECRET_PARAM.search(k) else (f"{k}={v}" if sep else k)
        for k, sep, v in (p.partition("=") for p in parts.query.split("&") if p)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that readers see either nothing or all of it (rename in one folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
