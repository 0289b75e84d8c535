"""The Web Mercator cell grid, aligned to XYZ tiles, and the arithmetic the server needs.

A level is (psm_zoom, tile_zoom, n): its cells are the n x n sub-cells of every XYZ tile at
`tile_zoom`, i.e. the XYZ "pixel" grid at `cell_zoom = tile_zoom + log2(n)`. One store chunk
holds one tile's n x n cells. The image of a cell is the imagery footprint of
`psm_zoom x base_footprint_m` ground metres centred on the cell centre.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import mercantile
import numpy as np

EARTH_RADIUS = 6378137.0
WORLD = 2 * math.pi * EARTH_RADIUS  # width of the Web Mercator plane in metres
HALF_WORLD = WORLD / 2
MAX_LATITUDE = 85.0511287798066

# A web tile may span at most 2^2 x 2^2 chunks (so a tile reads at most 16 chunks) and may
# magnify a cell at most 2^6 = 64 times (a cell covering 64 x 64 tile pixels).
MAX_CHUNK_SPAN_LOG2 = 2
MAX_MAGNIFY_LOG2 = 6
# A web tile is 256 px: more than 256 cells per side would be sub-pixel.
TILE_PX_LOG2 = 8


@dataclass(frozen=True, order=True)
class Level:
    """One level of the cell pyramid."""

    psm_zoom: int
    tile_zoom: int
    n: int

    def __post_init__(self) -> None:
        if self.psm_zoom not in (1, 3, 5):
            raise ValueError(f"psm_zoom must be 1, 3 or 5, got {self.psm_zoom}")
        if not 0 <= self.tile_zoom <= 24:
            raise ValueError(f"tile_zoom must be in 0..24, got {self.tile_zoom}")
        if self.n < 1 or self.n & (self.n - 1):
            raise ValueError(f"cells per tile side must be a power of two, got {self.n}")

    @property
    def name(self) -> str:
        """Group name in the store."""
        return f"psm{self.psm_zoom}"

    @property
    def cell_zoom(self) -> int:
        """XYZ zoom whose 'pixels' are this level's cells."""
        return self.tile_zoom + int(math.log2(self.n))

    @property
    def cells_per_side(self) -> int:
        """Cells across the whole world."""
        return (1 << self.tile_zoom) * self.n

    @property
    def cell_size(self) -> float:
        """Cell edge in Web Mercator metres (ground metres at the equator)."""
        return WORLD / self.cells_per_side

    def cell_centers_x(self, cx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Mercator x (m) of cell columns."""
        return -HALF_WORLD + (np.asarray(cx, dtype=np.float64) + 0.5) * self.cell_size

    def cell_centers_y(self, cy: np.ndarray | Sequence[int]) -> np.ndarray:
        """Mercator y (m) of cell rows (row 0 is the north edge, as XYZ)."""
        return HALF_WORLD - (np.asarray(cy, dtype=np.float64) + 0.5) * self.cell_size

    def cell_centers_lon(self, cx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Longitude (deg) of cell columns."""
        return np.degrees(self.cell_centers_x(cx) / EARTH_RADIUS)

    def cell_centers_lat(self, cy: np.ndarray | Sequence[int]) -> np.ndarray:
        """Latitude (deg) of cell rows."""
        return mercator_y_to_lat(self.cell_centers_y(cy))

    def chunk_cells(self, tx: int, ty: int) -> tuple[int, int, int, int]:
        """Global cell range (cx0, cx1, cy0, cy1), half-open, of the chunk of tile (tx, ty)."""
        return tx * self.n, (tx + 1) * self.n, ty * self.n, (ty + 1) * self.n

    def cell_of_lonlat(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell column and row containing each point (clipped to the world)."""
        x, y = lonlat_to_mercator(lon, lat)
        cx = np.floor((np.asarray(x) + HALF_WORLD) / self.cell_size).astype(np.int64)
        cy = np.floor((HALF_WORLD - np.asarray(y)) / self.cell_size).astype(np.int64)
        last = self.cells_per_side - 1
        return np.clip(cx, 0, last), np.clip(cy, 0, last)

    def footprint_bounds(
        self, cx: int, cy: int, base_footprint_m: float
    ) -> tuple[float, float, float, float]:
        """EPSG:3857 bounds of the imagery footprint of a cell.

        The footprint is `psm_zoom * base_footprint_m` ground metres; Web Mercator stretches
        ground distances by 1/cos(lat), so its half-size in projected metres grows with latitude.
        """
        x = float(self.cell_centers_x([cx])[0])
        y = float(self.cell_centers_y([cy])[0])
        return footprint_around(x, y, self.psm_zoom, base_footprint_m)


def footprint_around(
    x: float, y: float, psm_zoom: int, base_footprint_m: float
) -> tuple[float, float, float, float]:
    """EPSG:3857 bounds of a `psm_zoom * base_footprint_m` ground-metre square centred at (x, y).

    Shared by precompute and the demo dataset, so training images and stored cells are framed
    identically.
    """
    lat = math.radians(float(mercator_y_to_lat(np.array([y]))[0]))
    half = 0.5 * psm_zoom * base_footprint_m / math.cos(lat)
    return x - half, y - half, x + half, y + half


@dataclass(frozen=True)
class CellExtent:
    """A rectangle of cells of one level: global columns [cx0, cx1) and rows [cy0, cy1).

    Row 0 is the north edge, as in XYZ. An extent may reach past the world's edge (a tile's
    margin); such cells simply have no data.
    """

    level: Level
    cx0: int
    cx1: int
    cy0: int
    cy1: int

    @classmethod
    def cell_at(cls, level: Level, lat: float, lon: float) -> CellExtent | None:
        """The 1 x 1 block of the cell under a point (None beyond the web map's latitudes)."""
        if not abs(lat) <= MAX_LATITUDE:
            return None
        cx, cy = (int(v[0]) for v in level.cell_of_lonlat(np.array([lon]), np.array([lat])))
        return cls(level, cx, cx + 1, cy, cy + 1)

    @classmethod
    def chunk(cls, level: Level, tx: int, ty: int) -> CellExtent:
        """The cells of one store chunk (XYZ tile (tx, ty) at the level's tile zoom)."""
        cx0, cx1, cy0, cy1 = level.chunk_cells(tx, ty)
        return cls(level, cx0, cx1, cy0, cy1)

    @classmethod
    def for_bbox(cls, level: Level, bbox: tuple[float, float, float, float]) -> CellExtent:
        """The cells whose centres lie inside (west, south, east, north) degrees (may be empty)."""
        west, south, east, north = bbox
        x0, y1 = lonlat_to_mercator(np.array(west), np.array(south))
        x1, y0 = lonlat_to_mercator(np.array(east), np.array(north))
        size = level.cell_size
        # Centre of column c is -HALF_WORLD + (c + 0.5) * size: solve for the first and last.
        cx0 = math.ceil((float(x0) + HALF_WORLD) / size - 0.5)
        cx1 = math.floor((float(x1) + HALF_WORLD) / size - 0.5) + 1
        cy0 = math.ceil((HALF_WORLD - float(y0)) / size - 0.5)
        cy1 = math.floor((HALF_WORLD - float(y1)) / size - 0.5) + 1
        last = level.cells_per_side
        cx0, cy0 = max(cx0, 0), max(cy0, 0)
        return cls(level, cx0, max(min(cx1, last), cx0), cy0, max(min(cy1, last), cy0))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of cells."""
        return self.cy1 - self.cy0, self.cx1 - self.cx0

    @property
    def size(self) -> int:
        """Number of cells."""
        rows, cols = self.shape
        return rows * cols

    def chunks(self) -> list[tuple[int, int]]:
        """(tx, ty) tiles at the level's tile zoom whose chunks hold these cells, row by row."""
        if self.size == 0:
            return []
        n, last = self.level.n, (1 << self.level.tile_zoom) - 1
        tx0, tx1 = max(self.cx0 // n, 0), min((self.cx1 - 1) // n, last)
        ty0, ty1 = max(self.cy0 // n, 0), min((self.cy1 - 1) // n, last)
        return [(tx, ty) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]

    def intersection(self, other: CellExtent) -> CellExtent | None:
        """The cells in both extents (None when they do not overlap)."""
        cx0, cx1 = max(self.cx0, other.cx0), min(self.cx1, other.cx1)
        cy0, cy1 = max(self.cy0, other.cy0), min(self.cy1, other.cy1)
        if cx0 >= cx1 or cy0 >= cy1:
            return None
        return CellExtent(self.level, cx0, cx1, cy0, cy1)

    def slices_in(self, outer: CellExtent) -> tuple[slice, slice]:
        """(rows, cols) of this extent inside an array laid out over `outer` (which holds it)."""
        return (
            slice(self.cy0 - outer.cy0, self.cy1 - outer.cy0),
            slice(self.cx0 - outer.cx0, self.cx1 - outer.cx0),
        )

    @property
    def x(self) -> np.ndarray:
        """EPSG:3857 x (m) of the column centres."""
        return self.level.cell_centers_x(np.arange(self.cx0, self.cx1))

    @property
    def y(self) -> np.ndarray:
        """EPSG:3857 y (m) of the row centres."""
        return self.level.cell_centers_y(np.arange(self.cy0, self.cy1))

    @property
    def lon(self) -> np.ndarray:
        """Longitude (deg) of the column centres."""
        return self.level.cell_centers_lon(np.arange(self.cx0, self.cx1))

    @property
    def lat(self) -> np.ndarray:
        """Latitude (deg) of the row centres."""
        return self.level.cell_centers_lat(np.arange(self.cy0, self.cy1))


@dataclass(frozen=True)
class TileWindow(CellExtent):
    """The cells one web tile needs from a level.

    Cells [cx0, cx1) x [cy0, cy1) cover the tile (plus a margin of cells around it); `tile_span`
    is how many cells the tile itself spans per side (a fraction when a cell is magnified);
    `offset` is the tile's north-west corner in cell units relative to (cx0, cy0).
    """

    tile_span: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0


def tile_window(level: Level, x: int, y: int, z: int, margin: int = 0) -> TileWindow:
    """Cells of `level` that cover XYZ tile (x, y, z), with `margin` extra cells on each side."""
    check_tile(x, y, z)
    dz = level.cell_zoom - z
    if dz >= 0:
        span = 1 << dz
        cx, cy = x * span, y * span
        return TileWindow(level, cx - margin, cx + span + margin, cy - margin, cy + span + margin,
                          float(span), float(margin), float(margin))  # fmt: skip
    shrink = 1 << -dz
    cx, cy = x // shrink, y // shrink
    frac = 1.0 / shrink
    return TileWindow(
        level, cx - margin, cx + 1 + margin, cy - margin, cy + 1 + margin, frac,
        margin + (x % shrink) * frac, margin + (y % shrink) * frac,
    )  # fmt: skip


def check_tile(x: int, y: int, z: int) -> None:
    """Raise ValueError for a tile outside the XYZ pyramid."""
    if not 0 <= z <= 30:
        raise ValueError(f"zoom {z} out of range")
    if not (0 <= x < (1 << z) and 0 <= y < (1 << z)):
        raise ValueError(f"tile {z}/{x}/{y} does not exist (x, y must be in 0..{(1 << z) - 1})")


def web_zoom_range(levels: Iterable[Level]) -> tuple[int, int]:
    """Web zooms a set of levels can serve: (min, max) inclusive."""
    levels = list(levels)
    if not levels:
        raise ValueError("no levels")
    lo = min(_min_web_zoom(lv) for lv in levels)
    hi = max(lv.cell_zoom for lv in levels) + MAX_MAGNIFY_LOG2
    return max(lo, 0), min(hi, 24)


def _min_web_zoom(level: Level) -> int:
    """Coarsest web zoom whose tiles span at most 4 x 4 chunks and 256 x 256 cells of `level`."""
    return max(level.tile_zoom - MAX_CHUNK_SPAN_LOG2, level.cell_zoom - TILE_PX_LOG2)


def level_for_web_zoom(levels: Iterable[Level], z: int) -> Level:
    """The level that best serves web zoom z: the finest whose cells are at least a tile pixel,
    among the levels whose chunks a tile at z does not over-span."""
    usable = [lv for lv in levels if z >= _min_web_zoom(lv)]
    if not usable:
        raise ValueError(f"web zoom {z} is coarser than every level can serve")
    return max(usable, key=lambda lv: (lv.cell_zoom, -lv.psm_zoom))


def auto_level_ranges(levels: Iterable[Level]) -> list[tuple[int, int, int]]:
    """(psm_zoom, lo, hi): the runs of web zooms in `web_zoom_range` that `level_for_web_zoom`
    gives to each level, coarse to fine (what a client needs to ask only for existing tiles)."""
    levels = list(levels)
    lo, hi = web_zoom_range(levels)
    runs: list[tuple[int, int, int]] = []
    for z in range(lo, hi + 1):
        try:
            psm = level_for_web_zoom(levels, z).psm_zoom
        except ValueError:
            continue  # coarser than any level serves: no tiles here
        if runs and runs[-1][0] == psm and runs[-1][2] == z - 1:
            runs[-1] = (psm, runs[-1][1], z)
        else:
            runs.append((psm, z, z))
    return runs


def lonlat_to_mercator(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:4326 degrees -> EPSG:3857 metres (latitude clipped to the Mercator limit)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.clip(np.asarray(lat, dtype=np.float64), -MAX_LATITUDE, MAX_LATITUDE)
    x = EARTH_RADIUS * np.radians(lon)
    y = EARTH_RADIUS * np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))
    return x, y


def mercator_y_to_lat(y: np.ndarray) -> np.ndarray:
    """EPSG:3857 y (m) -> latitude (deg)."""
    return np.degrees(
        2 * np.arctan(np.exp(np.asarray(y, dtype=np.float64) / EARTH_RADIUS)) - np.pi / 2
    )


def tiles_for_bbox(bbox: tuple[float, float, float, float], zoom: int) -> tuple[int, int, int, int]:
    """Inclusive tile range (tx0, tx1, ty0, ty1) at `zoom` covering (west, south, east, north)."""
    west, south, east, north = bbox
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ValueError(
            f"invalid bbox {bbox}: need west < east in -180..180 and south < north in -90..90"
        )
    south, north = max(south, -MAX_LATITUDE), min(north, MAX_LATITUDE)
    nw = mercantile.tile(west, north, zoom)
    # Nudge the south-east corner inwards so a bbox ending exactly on a tile edge does not
    # pull in the next row/column of tiles.
    eps = 1e-9
    se = mercantile.tile(east - eps, south + eps, zoom)
    return nw.x, se.x, nw.y, se.y


@functools.lru_cache(maxsize=1)
def crs_attrs() -> dict[str, str]:
    """CF grid-mapping attributes of EPSG:3857 (what rioxarray and GDAL read back)."""
    from rasterio.crs import CRS

    wkt = CRS.from_epsg(3857).to_wkt()
    return {
        "grid_mapping_name": "mercator",
        "crs_wkt": wkt,
        "spatial_ref": wkt,
        "epsg_code": "EPSG:3857",
    }
