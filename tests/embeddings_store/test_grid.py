"""Grid arithmetic checked against mercantile (XYZ tiles) and rasterio (affine transforms)."""

from __future__ import annotations

import math

import mercantile
import numpy as np
import pytest
from rasterio.transform import from_bounds
from rasterio.transform import xy as transform_xy

from embeddings_store.grid import (
    HALF_WORLD,
    MAX_LATITUDE,
    WORLD,
    CellExtent,
    Level,
    auto_level_ranges,
    level_for_web_zoom,
    lonlat_to_mercator,
    mercator_y_to_lat,
    tile_window,
    tiles_for_bbox,
    web_zoom_range,
)

PYRAMID = [Level(5, 5, 16), Level(3, 6, 16), Level(1, 7, 16)]
USA = (-124.85, 24.40, -66.88, 49.38)


def _random_cells(level: Level, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    side = level.cells_per_side
    cx = rng.integers(0, side, size=k)
    cy = rng.integers(0, side, size=k)
    # Always include the world's corners.
    return np.r_[cx, 0, side - 1], np.r_[cy, 0, side - 1]


def _mercantile_range(bbox: tuple[float, float, float, float], zoom: int) -> tuple[int, ...]:
    tiles = list(mercantile.tiles(*bbox, zooms=[zoom]))
    xs, ys = [t.x for t in tiles], [t.y for t in tiles]
    return min(xs), max(xs), min(ys), max(ys)


def _ancestor(tile: mercantile.Tile, zoom: int) -> mercantile.Tile:
    """mercantile.parent, also for zoom == tile.z (where mercantile returns None)."""
    return tile if zoom == tile.z else mercantile.parent(tile, zoom=zoom)


def _window_cells(win) -> set[tuple[int, int]]:
    return {(cx, cy) for cy in range(win.cy0, win.cy1) for cx in range(win.cx0, win.cx1)}


# -- Level ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("level", "cell_zoom", "side"),
    [
        (Level(1, 0, 1), 0, 1),
        (Level(3, 6, 16), 10, 1024),
        (Level(5, 5, 64), 11, 2048),
        (Level(1, 12, 256), 20, 1 << 20),
        (Level(1, 24, 2), 25, 1 << 25),
    ],
)
def test_level_properties(level: Level, cell_zoom: int, side: int) -> None:
    assert level.cell_zoom == cell_zoom
    assert level.cells_per_side == side
    assert level.cell_size == pytest.approx(WORLD / side, rel=1e-15)
    assert level.name == f"psm{level.psm_zoom}"
    # A cell is exactly an XYZ tile at cell_zoom.
    b = mercantile.xy_bounds(0, 0, cell_zoom)
    assert b.right - b.left == pytest.approx(level.cell_size, abs=1e-6)
    assert b.top - b.bottom == pytest.approx(level.cell_size, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"psm_zoom": 2, "tile_zoom": 5, "n": 16}, "psm_zoom"),
        ({"psm_zoom": 0, "tile_zoom": 5, "n": 16}, "psm_zoom"),
        ({"psm_zoom": 4, "tile_zoom": 5, "n": 16}, "psm_zoom"),
        ({"psm_zoom": 1, "tile_zoom": -1, "n": 16}, "tile_zoom"),
        ({"psm_zoom": 1, "tile_zoom": 25, "n": 16}, "tile_zoom"),
        ({"psm_zoom": 1, "tile_zoom": 5, "n": 0}, "power of two"),
        ({"psm_zoom": 1, "tile_zoom": 5, "n": -4}, "power of two"),
        ({"psm_zoom": 1, "tile_zoom": 5, "n": 3}, "power of two"),
        ({"psm_zoom": 1, "tile_zoom": 5, "n": 12}, "power of two"),
    ],
)
def test_level_validation(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Level(**kwargs)


def test_levels_sort_by_psm_zoom() -> None:
    assert sorted([Level(5, 5, 16), Level(1, 7, 16), Level(3, 6, 16)]) == [
        Level(1, 7, 16),
        Level(3, 6, 16),
        Level(5, 5, 16),
    ]


# -- cell centres -----------------------------------------------------------------------------
@pytest.mark.parametrize("level", [Level(1, 0, 1), Level(3, 6, 16), Level(5, 9, 64), *PYRAMID])
def test_cell_centres_match_mercantile(level: Level) -> None:
    cx, cy = _random_cells(level, 50, seed=level.cell_zoom)
    xs, ys = level.cell_centers_x(cx), level.cell_centers_y(cy)
    lons, lats = level.cell_centers_lon(cx), level.cell_centers_lat(cy)
    tol_m = 1e-6
    for i, (x, y) in enumerate(zip(cx.tolist(), cy.tolist(), strict=True)):
        tile = mercantile.Tile(x, y, level.cell_zoom)
        xb = mercantile.xy_bounds(tile)
        assert xs[i] == pytest.approx((xb.left + xb.right) / 2, abs=tol_m)
        assert ys[i] == pytest.approx((xb.bottom + xb.top) / 2, abs=tol_m)
        gb = mercantile.bounds(tile)
        assert lons[i] == pytest.approx((gb.west + gb.east) / 2, abs=1e-9)
        assert gb.south < lats[i] < gb.north
        # The centre is the Mercator midpoint, not the latitude midpoint.
        centre = mercantile.lnglat((xb.left + xb.right) / 2, (xb.bottom + xb.top) / 2)
        assert lons[i] == pytest.approx(centre.lng, abs=1e-9)
        assert lats[i] == pytest.approx(centre.lat, abs=1e-9)
        assert mercantile.tile(lons[i], lats[i], level.cell_zoom) == tile


# rasterio's transformer applies the affine with `*`, which affine >= 3 deprecates.
@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")
@pytest.mark.parametrize("level", [Level(3, 6, 16), Level(1, 11, 8), Level(5, 2, 32)])
def test_cell_centres_match_rasterio_transform(level: Level) -> None:
    rng = np.random.default_rng(level.tile_zoom)
    n = level.n
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    for tx, ty in rng.integers(0, 1 << level.tile_zoom, size=(5, 2)).tolist():
        transform = from_bounds(*mercantile.xy_bounds(tx, ty, level.tile_zoom), n, n)
        xs, ys = transform_xy(transform, rows.ravel(), cols.ravel(), offset="center")
        cx0, cx1, cy0, cy1 = level.chunk_cells(tx, ty)
        assert (cx1 - cx0, cy1 - cy0) == (n, n)
        gx = level.cell_centers_x(cx0 + cols.ravel())
        gy = level.cell_centers_y(cy0 + rows.ravel())
        np.testing.assert_allclose(gx, np.asarray(xs), rtol=0, atol=1e-6)
        np.testing.assert_allclose(gy, np.asarray(ys), rtol=0, atol=1e-6)


def test_mercator_round_trip() -> None:
    rng = np.random.default_rng(0)
    lon = rng.uniform(-180, 180, 200)
    lat = rng.uniform(-MAX_LATITUDE, MAX_LATITUDE, 200)
    x, y = lonlat_to_mercator(lon, lat)
    for i in range(0, 200, 20):
        mx, my = mercantile.xy(lon[i], lat[i])
        assert x[i] == pytest.approx(mx, abs=1e-6)
        assert y[i] == pytest.approx(my, abs=1e-6)
    np.testing.assert_allclose(mercator_y_to_lat(y), lat, atol=1e-10)
    # Latitudes beyond the Mercator limit are clipped to it.
    _, y_pole = lonlat_to_mercator(np.array([0.0, 0.0]), np.array([90.0, -90.0]))
    np.testing.assert_allclose(y_pole, [HALF_WORLD, -HALF_WORLD], rtol=1e-12)


# -- chunks and lookups -----------------------------------------------------------------------
@pytest.mark.parametrize("level", [Level(1, 7, 16), Level(3, 4, 1), Level(5, 10, 64)])
def test_chunk_cells_are_tile_children(level: Level) -> None:
    rng = np.random.default_rng(level.cell_zoom)
    for tx, ty in rng.integers(0, 1 << level.tile_zoom, size=(4, 2)).tolist():
        cx0, cx1, cy0, cy1 = level.chunk_cells(tx, ty)
        tile = mercantile.Tile(tx, ty, level.tile_zoom)
        kids = set()
        frontier = [tile]
        for _ in range(level.cell_zoom - level.tile_zoom):
            frontier = [c for t in frontier for c in mercantile.children(t)]
        kids = {(t.x, t.y) for t in frontier}
        assert kids == {(x, y) for y in range(cy0, cy1) for x in range(cx0, cx1)}
        # Every cell's ancestor at tile_zoom is the chunk's tile.
        for x, y in sorted(kids)[:20]:
            assert _ancestor(mercantile.Tile(x, y, level.cell_zoom), tile.z) == tile


@pytest.mark.parametrize("level", [Level(1, 7, 16), Level(3, 0, 1), Level(5, 12, 128)])
def test_cell_of_lonlat_matches_mercantile(level: Level) -> None:
    rng = np.random.default_rng(level.cell_zoom)
    lon = rng.uniform(-180, 180, 300)
    lat = rng.uniform(-85, 85, 300)
    cx, cy = level.cell_of_lonlat(lon, lat)
    for i in range(300):
        t = mercantile.tile(lon[i], lat[i], level.cell_zoom)
        assert (int(cx[i]), int(cy[i])) == (t.x, t.y)
        # Round trip through the chunk that holds the cell.
        tx, ty = int(cx[i]) // level.n, int(cy[i]) // level.n
        cx0, cx1, cy0, cy1 = level.chunk_cells(tx, ty)
        assert cx0 <= cx[i] < cx1 and cy0 <= cy[i] < cy1
        assert _ancestor(t, level.tile_zoom) == mercantile.Tile(tx, ty, level.tile_zoom)
    # Cell centres map back to their own cells.
    cells_x, cells_y = _random_cells(level, 100, seed=1)
    bx, by = level.cell_of_lonlat(level.cell_centers_lon(cells_x), level.cell_centers_lat(cells_y))
    np.testing.assert_array_equal(bx, cells_x)
    np.testing.assert_array_equal(by, cells_y)


def test_cell_of_lonlat_clips_to_world() -> None:
    level = Level(1, 3, 4)
    last = level.cells_per_side - 1
    cx, cy = level.cell_of_lonlat(np.array([-180.0, 180.0, 0.0]), np.array([90.0, -90.0, 0.0]))
    np.testing.assert_array_equal(cx, [0, last, level.cells_per_side // 2])
    np.testing.assert_array_equal(cy, [0, last, level.cells_per_side // 2])


# -- tile windows -----------------------------------------------------------------------------
def _check_window_geometry(level: Level, x: int, y: int, z: int, margin: int) -> None:
    """The tile's NW corner and size, in global cell units, agree with mercantile."""
    win = tile_window(level, x, y, z, margin)
    tb = mercantile.xy_bounds(x, y, z)
    size = level.cell_size
    assert win.tile_span == pytest.approx((tb.right - tb.left) / size, rel=1e-12)
    assert win.cx0 + win.offset_x == pytest.approx((tb.left + HALF_WORLD) / size, abs=1e-6)
    assert win.cy0 + win.offset_y == pytest.approx((HALF_WORLD - tb.top) / size, abs=1e-6)
    # The window covers the tile plus `margin` cells on each side.
    assert win.offset_x >= margin and win.offset_y >= margin
    assert win.offset_x + win.tile_span <= win.shape[1] - margin + 1e-9
    assert win.offset_y + win.tile_span <= win.shape[0] - margin + 1e-9


@pytest.mark.parametrize("level", [Level(1, 7, 16), Level(3, 6, 16), Level(5, 4, 4)])
@pytest.mark.parametrize("dz", [0, 1, 3, 6])
def test_tile_window_coarser_tiles_are_descendants(level: Level, dz: int) -> None:
    z = level.cell_zoom - dz
    rng = np.random.default_rng(z)
    for x, y in [(0, 0), *rng.integers(0, 1 << z, size=(3, 2)).tolist()]:
        win = tile_window(level, x, y, z)
        tile = mercantile.Tile(x, y, z)
        kids = {(t.x, t.y) for t in mercantile.children(tile, zoom=level.cell_zoom)}
        assert _window_cells(win) == kids
        assert win.shape == (1 << dz, 1 << dz)
        assert win.tile_span == float(1 << dz)
        assert (win.offset_x, win.offset_y) == (0.0, 0.0)
        # The union of the cells' bounds is the tile's bounds.
        first = mercantile.xy_bounds(win.cx0, win.cy0, level.cell_zoom)
        last = mercantile.xy_bounds(win.cx1 - 1, win.cy1 - 1, level.cell_zoom)
        tb = mercantile.xy_bounds(tile)
        assert (first.left, first.top) == pytest.approx((tb.left, tb.top), abs=1e-6)
        assert (last.right, last.bottom) == pytest.approx((tb.right, tb.bottom), abs=1e-6)
        for margin in (0, 1, 3):
            _check_window_geometry(level, x, y, z, margin)


@pytest.mark.parametrize("level", [Level(1, 7, 16), Level(5, 0, 1)])
@pytest.mark.parametrize("dz", [1, 2, 6])
def test_tile_window_finer_tiles_use_ancestor_cell(level: Level, dz: int) -> None:
    z = level.cell_zoom + dz
    rng = np.random.default_rng(z)
    for x, y in [(0, 0), ((1 << z) - 1, (1 << z) - 1), *rng.integers(0, 1 << z, size=(4, 2))]:
        x, y = int(x), int(y)
        win = tile_window(level, x, y, z)
        parent = _ancestor(mercantile.Tile(x, y, z), level.cell_zoom)
        assert (win.cx0, win.cx1, win.cy0, win.cy1) == (
            parent.x,
            parent.x + 1,
            parent.y,
            parent.y + 1,
        )
        assert win.shape == (1, 1)
        assert win.tile_span == pytest.approx(1 / (1 << dz))
        tb, pb = mercantile.xy_bounds(x, y, z), mercantile.xy_bounds(parent)
        assert win.offset_x == pytest.approx((tb.left - pb.left) / level.cell_size, abs=1e-9)
        assert win.offset_y == pytest.approx((pb.top - tb.top) / level.cell_size, abs=1e-9)
        assert 0 <= win.offset_x < 1 and 0 <= win.offset_y < 1
        assert win.chunks() == [(parent.x // level.n, parent.y // level.n)]
        for margin in (1, 2):
            m = tile_window(level, x, y, z, margin)
            assert (m.cx0, m.cx1, m.cy0, m.cy1) == (
                parent.x - margin,
                parent.x + 1 + margin,
                parent.y - margin,
                parent.y + 1 + margin,
            )
            assert m.offset_x == pytest.approx(win.offset_x + margin)
            assert m.offset_y == pytest.approx(win.offset_y + margin)
            _check_window_geometry(level, x, y, z, margin)


def test_tile_window_margin_extends_range() -> None:
    level = Level(3, 6, 16)
    base = tile_window(level, 20, 22, 7)
    for margin in (1, 2, 5):
        win = tile_window(level, 20, 22, 7, margin)
        assert (win.cx0, win.cx1) == (base.cx0 - margin, base.cx1 + margin)
        assert (win.cy0, win.cy1) == (base.cy0 - margin, base.cy1 + margin)
        assert win.shape == (base.shape[0] + 2 * margin, base.shape[1] + 2 * margin)
        assert (win.offset_x, win.offset_y) == (float(margin), float(margin))
        assert win.tile_span == base.tile_span


@pytest.mark.parametrize("level", [Level(1, 7, 16), Level(3, 6, 4), Level(5, 3, 2)])
@pytest.mark.parametrize("margin", [0, 1, 9])
def test_window_chunks_are_intersecting_tiles(level: Level, margin: int) -> None:
    rng = np.random.default_rng(level.tile_zoom + margin)
    side = level.cells_per_side
    zooms = range(max(level.tile_zoom - 2, 0), level.cell_zoom + 3)
    for z in zooms:
        corners = [(0, 0), ((1 << z) - 1, (1 << z) - 1), ((1 << z) - 1, 0)]
        for x, y in [*corners, *rng.integers(0, 1 << z, size=(2, 2)).tolist()]:
            win = tile_window(level, x, y, z, margin)
            expected = {
                (cx // level.n, cy // level.n)
                for cx, cy in _window_cells(win)
                if 0 <= cx < side and 0 <= cy < side
            }
            chunks = win.chunks()
            assert len(chunks) == len(set(chunks))
            assert set(chunks) == expected
            assert chunks == sorted(chunks, key=lambda t: (t[1], t[0]))  # row by row
            if margin == 0:
                # Without margin: exactly the tiles at tile_zoom that the web tile overlaps.
                inner = mercantile.bounds(x, y, z)
                eps = 1e-9
                shrunk = (inner.west + eps, inner.south + eps, inner.east - eps, inner.north - eps)
                tiles = {(t.x, t.y) for t in mercantile.tiles(*shrunk, zooms=[level.tile_zoom])}
                assert set(chunks) == tiles


@pytest.mark.parametrize(
    ("x", "y", "z"),
    [(4, 0, 2), (0, 4, 2), (-1, 0, 2), (0, -1, 2), (1, 0, 0), (0, 0, -1), (0, 0, 31), (0, 0, 40)],
)
def test_tile_window_rejects_invalid_tiles(x: int, y: int, z: int) -> None:
    with pytest.raises(ValueError):
        tile_window(Level(1, 7, 16), x, y, z)


def test_tile_window_accepts_extreme_valid_tiles() -> None:
    level = Level(1, 7, 16)
    win = tile_window(level, (1 << 30) - 1, (1 << 30) - 1, 30)
    assert (win.cx0, win.cy0) == (level.cells_per_side - 1, level.cells_per_side - 1)
    win = tile_window(level, 0, 0, 0)
    assert win.shape == (level.cells_per_side, level.cells_per_side)


# -- web zoom ranges --------------------------------------------------------------------------
def test_pyramid_zoom_range_and_choice() -> None:
    lo, hi = web_zoom_range(PYRAMID)
    # Coarsest: the psm5 chunks (tile zoom 5) span at most 4 x 4 per web tile -> zoom 3.
    # Finest: the psm1 cells (cell zoom 11) magnified at most 64 x -> zoom 17.
    assert (lo, hi) == (3, 17)
    assert web_zoom_range(reversed(PYRAMID)) == (lo, hi)
    chosen = {z: level_for_web_zoom(PYRAMID, z) for z in range(lo, hi + 1)}
    assert chosen[3].psm_zoom == 5
    assert chosen[4].psm_zoom == 3
    assert all(chosen[z].psm_zoom == 1 for z in range(5, hi + 1))
    for z in range(lo, hi):  # monotone: coarser PSM zoom at lower web zoom
        assert chosen[z].psm_zoom >= chosen[z + 1].psm_zoom
        assert chosen[z].cell_zoom <= chosen[z + 1].cell_zoom
    for z in (lo - 1, 0):
        with pytest.raises(ValueError, match="coarser"):
            level_for_web_zoom(PYRAMID, z)


def _check_serves(levels: list[Level]) -> None:
    lo, hi = web_zoom_range(levels)
    assert 0 <= lo <= hi <= 24
    for z in range(lo, hi + 1):
        level = level_for_web_zoom(levels, z)
        assert level in levels
        for x, y in ((0, 0), ((1 << z) - 1, (1 << z) // 2)):
            win = tile_window(level, x, y, z)
            assert len(win.chunks()) <= 16, (levels, z, level)
            assert max(win.shape) <= 256, (levels, z, level)
    if lo > 0:
        with pytest.raises(ValueError):
            level_for_web_zoom(levels, lo - 1)


def test_pyramid_serves_within_limits() -> None:
    _check_serves(PYRAMID)


def test_random_pyramids_serve_within_limits() -> None:
    rng = np.random.default_rng(0)
    for _ in range(150):
        k = int(rng.integers(1, 4))
        psm = rng.choice([1, 3, 5], size=k, replace=False)
        levels = [
            Level(int(p), int(rng.integers(0, 16)), 1 << int(rng.integers(0, 9))) for p in psm
        ]
        _check_serves(levels)


def test_large_chunks_raise_the_coarsest_zoom() -> None:
    # 256 cells per chunk side: a web tile at the chunk's own zoom already has 256 cells a side.
    level = Level(1, 8, 256)
    assert web_zoom_range([level]) == (8, 22)
    assert level_for_web_zoom([level], 8) == level
    with pytest.raises(ValueError):
        level_for_web_zoom([level], 7)


def test_web_zoom_range_needs_levels() -> None:
    with pytest.raises(ValueError, match="no levels"):
        web_zoom_range([])
    with pytest.raises(ValueError):
        level_for_web_zoom([], 5)


def test_level_choice_prefers_finer_psm_on_ties() -> None:
    levels = [Level(3, 6, 16), Level(1, 6, 16)]
    assert level_for_web_zoom(levels, 6).psm_zoom == 1


# -- bbox -> tiles ----------------------------------------------------------------------------
@pytest.mark.parametrize("zoom", [0, 1, 3, 5, 8, 10])
def test_tiles_for_bbox_usa(zoom: int) -> None:
    assert tiles_for_bbox(USA, zoom) == _mercantile_range(USA, zoom)


@pytest.mark.parametrize("zoom", [0, 2, 6, 11])
def test_tiles_for_bbox_world(zoom: int) -> None:
    last = (1 << zoom) - 1
    assert tiles_for_bbox((-180, -90, 180, 90), zoom) == (0, last, 0, last)
    if zoom <= 6:  # mercantile enumerates every tile
        assert _mercantile_range((-180, -90, 180, 90), zoom) == (0, last, 0, last)


@pytest.mark.parametrize("zoom", [2, 4, 9, 14])
def test_tiles_for_bbox_on_tile_edges(zoom: int) -> None:
    rng = np.random.default_rng(zoom)
    for _ in range(20):
        x0, y0 = (int(v) for v in rng.integers(0, (1 << zoom) - 2, size=2))
        w, h = (int(v) for v in rng.integers(1, 3, size=2))
        nw = mercantile.bounds(x0, y0, zoom)
        se = mercantile.bounds(x0 + w - 1, y0 + h - 1, zoom)
        bbox = (nw.west, se.south, se.east, nw.north)
        expected = (x0, x0 + w - 1, y0, y0 + h - 1)
        assert tiles_for_bbox(bbox, zoom) == expected
        assert _mercantile_range(bbox, zoom) == expected


@pytest.mark.parametrize("zoom", [0, 7, 16])
def test_tiles_for_tiny_bbox(zoom: int) -> None:
    bbox = (2.35, 48.85, 2.3501, 48.8501)
    tx0, tx1, ty0, ty1 = tiles_for_bbox(bbox, zoom)
    assert (tx0, tx1, ty0, ty1) == _mercantile_range(bbox, zoom)
    t = mercantile.tile(2.35, 48.85, zoom)
    assert (tx0, ty0) == (t.x, t.y)
    assert tx1 - tx0 <= 1 and ty1 - ty0 <= 1


@pytest.mark.parametrize(
    "bbox",
    [
        (10, 40, 10, 50),  # zero width
        (20, 40, 10, 50),  # west > east (antimeridian crossing is not supported)
        (10, 50, 20, 40),  # south > north
        (-181, 40, 10, 50),
        (10, 40, 181, 50),
        (10, -91, 20, 50),
        (10, 40, 20, 91),
        (math.nan, 40, 20, 50),
    ],
)
def test_tiles_for_bbox_rejects_invalid(bbox: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError, match="invalid bbox"):
        tiles_for_bbox(bbox, 5)


# -- footprints -------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [Level(1, 12, 16), Level(3, 10, 16), Level(5, 8, 16)])
def test_footprint_bounds(level: Level) -> None:
    base = 256 * 0.6  # e.g. 256 px at 0.6 m
    cx, cy = _random_cells(level, 20, seed=level.psm_zoom)
    for x, y in zip(cx.tolist(), cy.tolist(), strict=True):
        west, south, east, north = level.footprint_bounds(x, y, base)
        lat = math.radians(float(level.cell_centers_lat([y])[0]))
        width = level.psm_zoom * base / math.cos(lat)
        assert east - west == pytest.approx(width, rel=1e-9)
        assert north - south == pytest.approx(width, rel=1e-9)
        assert (west + east) / 2 == pytest.approx(level.cell_centers_x([x])[0], abs=1e-6)
        assert (south + north) / 2 == pytest.approx(level.cell_centers_y([y])[0], abs=1e-6)


def test_footprint_is_ground_size_at_equator() -> None:
    level = Level(3, 10, 16)
    row = level.cells_per_side // 2  # the row just south of the equator
    west, _, east, _ = level.footprint_bounds(0, row, 100.0)
    lat = float(level.cell_centers_lat([row])[0])
    assert abs(lat) < 0.1
    assert east - west == pytest.approx(300.0, rel=1e-5)


@pytest.mark.parametrize(
    ("levels", "runs"),
    [
        # The demo store: PSM 3 and 5 have equal cells (the smaller PSM zoom wins) and are the
        # only levels a z2/z3 tile does not over-span; from z4 the finer PSM 1 cells win.
        ([Level(1, 6, 16), Level(3, 4, 16), Level(5, 4, 16)], [(3, 2, 3), (1, 4, 16)]),
        ([Level(1, 8, 8), Level(5, 6, 8)], [(5, 4, 5), (1, 6, 17)]),
        ([Level(5, 12, 64)], [(5, 10, 24)]),
    ],
)
def test_auto_level_ranges(levels: list[Level], runs: list[tuple[int, int, int]]) -> None:
    assert auto_level_ranges(levels) == runs


@pytest.mark.parametrize("levels", [PYRAMID, [Level(1, 0, 1), Level(3, 0, 2), Level(5, 1, 256)]])
def test_auto_level_ranges_agree_with_level_for_web_zoom(levels: list[Level]) -> None:
    by_zoom = {z: psm for psm, lo, hi in auto_level_ranges(levels) for z in range(lo, hi + 1)}
    for z in range(25):
        try:
            want = level_for_web_zoom(levels, z).psm_zoom
        except ValueError:
            want = None
        lo, hi = web_zoom_range(levels)
        assert by_zoom.get(z) == (want if lo <= z <= hi else None), z


def test_cell_at_is_the_one_cell_under_a_point():
    level = Level(1, 6, 16)
    cell = CellExtent.cell_at(level, 38.0, -101.5)
    assert cell is not None and cell.size == 1
    assert cell.lat[0] == pytest.approx(38.0, abs=0.3)
    assert cell.lon[0] == pytest.approx(-101.5, abs=0.3)
    cx, cy = level.cell_of_lonlat(np.array([-101.5]), np.array([38.0]))
    assert (cell.cx0, cell.cy0) == (int(cx[0]), int(cy[0]))
    assert CellExtent.cell_at(level, 86.0, 0.0) is None
