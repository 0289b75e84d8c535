"""The Zarr v3 embedding store, on disk: layout, round trips, resume, refusal, determinism."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mercantile
import numpy as np
import pytest
import zarr

from embeddings_store import store as store_mod
from embeddings_store.grid import CellExtent, Level, TileWindow, tile_window
from embeddings_store.store import (
    CODE_VERSION,
    SCHEMA_VERSION,
    EmbeddingStore,
    LevelExtent,
    StoreError,
    StoreMismatchError,
)

D = 8
LEVELS = [Level(1, 6, 4), Level(3, 5, 4), Level(5, 4, 4)]
BBOX = (-3.0, 43.0, 8.0, 49.0)  # 3 x 3, 2 x 2 and 2 x 1 chunks
IMAGERY = {"source": "bluemarble", "gsd_m": 463.3, "bands": ("r", "g", "b")}


def make(path: Path, **overrides: Any) -> EmbeddingStore:
    kwargs: dict[str, Any] = dict(
        model_id="sha256:abc123",
        config_name="test",
        embed_dim=D,
        levels=LEVELS,
        bbox=BBOX,
        imagery=IMAGERY,
    )
    kwargs.update(overrides)
    return EmbeddingStore.create(path, **kwargs)


def read_chunk(store: EmbeddingStore, psm_zoom: int, tx: int, ty: int) -> tuple[np.ndarray, ...]:
    """(h, valid) of one chunk, through the store's one reader."""
    cells = store.read_cells(CellExtent.chunk(store.extent(psm_zoom).level, tx, ty))
    return cells.h, cells.valid


def chunk_data(
    level: Level, tx: int, ty: int, salt: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic (h, valid, mu0, c0, u0) for one chunk; invalid cells hold garbage."""
    rng = np.random.default_rng([level.psm_zoom, tx, ty, salt])
    n = level.n
    h = rng.normal(size=(n, n, D)).astype(np.float32)
    valid = rng.random((n, n)) > 0.25
    valid[0, 0] = True
    valid[-1, -1] = False
    h[~valid] = np.nan  # whatever the imagery reader left there
    mu0 = rng.normal(size=(n, n, D)).astype(np.float32)
    mu0[~valid] = 1e4
    c0 = rng.random((n, n)).astype(np.float32) + 0.5
    u0 = rng.random((n, n)).astype(np.float32) + 3.0
    return h, valid, mu0, c0, u0


def write(store: EmbeddingStore, psm_zoom: int, tx: int, ty: int, salt: int = 0) -> None:
    h, valid, mu0, c0, u0 = chunk_data(store.extent(psm_zoom).level, tx, ty, salt)
    if store.with_fused:
        store.write_chunk(psm_zoom, tx, ty, h, valid, mu0=mu0, c0=c0, u0=u0)
    else:
        store.write_chunk(psm_zoom, tx, ty, h, valid)


def all_chunks(store: EmbeddingStore) -> list[tuple[int, int, int]]:
    return [(z, tx, ty) for z in sorted(store.extents) for tx, ty in store.extent(z).tiles()]


def fill(store: EmbeddingStore) -> None:
    for z, tx, ty in all_chunks(store):
        write(store, z, tx, ty)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_same_store(a: Path, b: Path) -> None:
    """Byte-identical files; the root zarr.json may differ only by its creation time."""
    fa, fb = files(a), files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name == "zarr.json":
            ja, jb = json.loads(fa[name]), json.loads(fb[name])
            ja["attributes"].pop("created")
            jb["attributes"].pop("created")
            assert ja == jb
        else:
            assert fa[name] == fb[name], name


# -- creation and layout ----------------------------------------------------------------------
def test_create_attributes(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    attrs = EmbeddingStore.open(tmp_path / "s.zarr").attrs
    assert attrs == store.attrs
    assert attrs["schema_version"] == SCHEMA_VERSION
    assert attrs["model_id"] == "sha256:abc123"
    assert attrs["config_name"] == "test"
    assert attrs["embed_dim"] == D
    assert attrs["bounds"] == list(BBOX)
    assert attrs["imagery"] == {"source": "bluemarble", "gsd_m": 463.3, "bands": ["r", "g", "b"]}
    assert attrs["with_fused"] is False
    assert attrs["code_version"] == CODE_VERSION
    created = dt.datetime.fromisoformat(attrs["created"])
    assert created.tzinfo is not None
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=5)
    # Levels: sorted by PSM zoom, each with the tile range covering the bbox.
    assert [d["psm_zoom"] for d in attrs["levels"]] == [1, 3, 5]
    for d, level in zip(attrs["levels"], LEVELS, strict=True):
        tiles = list(mercantile.tiles(*BBOX, zooms=[level.tile_zoom]))
        assert d == {
            "psm_zoom": level.psm_zoom,
            "tile_zoom": level.tile_zoom,
            "n": level.n,
            "tx0": min(t.x for t in tiles),
            "tx1": max(t.x for t in tiles),
            "ty0": min(t.y for t in tiles),
            "ty1": max(t.y for t in tiles),
        }
        assert LevelExtent.from_json(d) == LevelExtent.for_bbox(level, BBOX)
    assert store.levels == LEVELS
    assert store.model_id == "sha256:abc123"
    assert store.embed_dim == D
    assert not store.with_fused
    assert [store.extent(z).n_chunks() for z in (1, 3, 5)] == [9, 4, 2]


def test_create_sorts_levels_and_validates(tmp_path: Path) -> None:
    store = make(tmp_path / "a.zarr", levels=list(reversed(LEVELS)))
    assert store.levels == LEVELS
    with pytest.raises(StoreError, match="at least one level"):
        make(tmp_path / "b.zarr", levels=[])
    with pytest.raises(StoreError, match="one level per PSM zoom"):
        make(tmp_path / "c.zarr", levels=[Level(1, 6, 4), Level(1, 5, 8)])
    with pytest.raises(ValueError, match="invalid bbox"):
        make(tmp_path / "d.zarr", bbox=(8.0, 43.0, -3.0, 49.0))
    with pytest.raises(StoreError, match="no level for PSM zoom 3"):
        make(tmp_path / "e.zarr", levels=[Level(1, 6, 4)]).extent(3)


@pytest.mark.parametrize("with_fused", [False, True])
def test_level_arrays(tmp_path: Path, with_fused: bool) -> None:
    make(tmp_path / "s.zarr", with_fused=with_fused)
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r", zarr_format=3)
    for level in LEVELS:
        ext = LevelExtent.for_bbox(level, BBOX)
        g = root[level.name]
        n, (rows, cols) = level.n, ext.shape
        assert dict(g.attrs) == ext.to_json()
        assert (rows, cols) == ((ext.ty1 - ext.ty0 + 1) * n, (ext.tx1 - ext.tx0 + 1) * n)
        h, valid, done = g["h"], g["valid"], g["done"]
        assert (h.dtype, h.shape, h.chunks) == (np.float16, (rows, cols, D), (n, n, D))
        assert h.metadata.dimension_names == ("y", "x", "d")
        assert (valid.dtype, valid.shape, valid.chunks) == (np.bool_, (rows, cols), (n, n))
        assert valid.metadata.dimension_names == ("y", "x")
        assert done.dtype == np.uint8
        assert done.shape == (ext.ty1 - ext.ty0 + 1, ext.tx1 - ext.tx0 + 1)
        assert not np.asarray(done[:]).any()
        assert not np.asarray(valid[:]).any()
        assert not np.asarray(h[:]).any()
        if with_fused:
            assert (g["mu0"].dtype, g["mu0"].shape, g["mu0"].chunks) == (
                np.float16,
                (rows, cols, D),
                (n, n, D),
            )
            for name in ("c0", "u0"):
                assert (g[name].dtype, g[name].shape, g[name].chunks) == (
                    np.float32,
                    (rows, cols),
                    (n, n),
                )
        else:
            assert "mu0" not in g and "c0" not in g and "u0" not in g
        cy = np.arange(ext.cy0, ext.cy0 + rows)
        cx = np.arange(ext.cx0, ext.cx0 + cols)
        np.testing.assert_array_equal(g["y"][:], level.cell_centers_y(cy))
        np.testing.assert_array_equal(g["x"][:], level.cell_centers_x(cx))
        np.testing.assert_array_equal(g["lat"][:], level.cell_centers_lat(cy))
        np.testing.assert_array_equal(g["lon"][:], level.cell_centers_lon(cx))
        # Row 0 / column 0 of the array is the north-west cell of the first tile.
        nw = mercantile.bounds(ext.tx0, ext.ty0, level.tile_zoom)
        assert nw.west < g["lon"][0] < nw.east and nw.south < g["lat"][0] < nw.north
        assert np.all(np.diff(g["lat"][:]) < 0) and np.all(np.diff(g["lon"][:]) > 0)


def test_to_xarray(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr", with_fused=True)
    fill(store)
    for level in LEVELS:
        ext = store.extent(level.psm_zoom)
        rows, cols = ext.shape
        ds = store.to_xarray(level.psm_zoom)
        assert ds["h"].dims == ("y", "x", "d")
        assert ds["valid"].dims == ("y", "x")
        assert ds["mu0"].dims == ("y", "x", "d")
        assert ds["c0"].dims == ("y", "x") and ds["u0"].dims == ("y", "x")
        assert ds["done"].dims == ("ty", "tx")
        assert ds["h"].dtype == np.float16
        assert ds["mu0"].dtype == np.float16
        assert ds["valid"].dtype == np.bool_
        assert ds["c0"].dtype == np.float32
        assert dict(ds.sizes) == {
            "y": rows,
            "x": cols,
            "d": D,
            "ty": ext.ty1 - ext.ty0 + 1,
            "tx": ext.tx1 - ext.tx0 + 1,
        }
        assert ds["h"].encoding["chunks"] == (level.n, level.n, D)
        assert {"x", "y", "lat", "lon"} <= set(ds.coords)
        assert ds["lat"].dims == ("y",) and ds["lon"].dims == ("x",)
        cy = np.arange(ext.cy0, ext.cy0 + rows)
        cx = np.arange(ext.cx0, ext.cx0 + cols)
        np.testing.assert_array_equal(ds["y"].values, level.cell_centers_y(cy))
        np.testing.assert_array_equal(ds["x"].values, level.cell_centers_x(cx))
        np.testing.assert_array_equal(ds["lat"].values, level.cell_centers_lat(cy))
        np.testing.assert_array_equal(ds["lon"].values, level.cell_centers_lon(cx))
        # The data are the stored bytes, not masked or rescaled.
        h, valid = read_chunk(store, level.psm_zoom, ext.tx0, ext.ty0)
        np.testing.assert_array_equal(ds["h"][: level.n, : level.n].values, h)
        np.testing.assert_array_equal(ds["valid"][: level.n, : level.n].values, valid)
        assert bool(ds["done"].all())
        # Selecting by coordinate finds the cell containing a point.
        lon, lat = 2.35, 48.85
        cell_x, cell_y = level.cell_of_lonlat(np.array([lon]), np.array([lat]))
        sel = ds["valid"].sel(x=level.cell_centers_x(cell_x)[0], y=level.cell_centers_y(cell_y)[0])
        row, col = int(cell_y[0]) - ext.cy0, int(cell_x[0]) - ext.cx0
        assert bool(sel) == bool(store.array(level.psm_zoom, "valid")[row, col])


def test_xarray_and_rioxarray_see_epsg_3857_untold(tmp_path: Path) -> None:
    """CF grid_mapping + spatial_ref: rioxarray finds the CRS and the cell grid by itself."""
    import rioxarray  # noqa: F401  registers .rio; a dev dependency (pip install -e .[dev])
    import xarray as xr

    store = make(tmp_path / "s.zarr", with_fused=True)
    fill(store)
    level = LEVELS[0]
    ds = xr.open_zarr(tmp_path / "s.zarr", group=level.name, consolidated=False,
                      zarr_format=3)  # fmt: skip
    assert ds["valid"].attrs["grid_mapping"] == "spatial_ref"
    for name in ("valid", "h", "mu0", "c0", "u0"):
        assert ds[name].rio.crs.to_epsg() == 3857, name
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    ext = store.extent(level.psm_zoom)
    left, bottom, right, top = ds["valid"].rio.bounds()
    cells = ext.cells
    assert left == pytest.approx(
        level.cell_centers_x(np.array([cells.cx0]))[0] - level.cell_size / 2
    )
    assert top == pytest.approx(
        level.cell_centers_y(np.array([cells.cy0]))[0] + level.cell_size / 2
    )
    assert ds["valid"].rio.resolution() == pytest.approx((level.cell_size, -level.cell_size))
    assert right > left and top > bottom


# -- writing and reading chunks ---------------------------------------------------------------
def test_write_read_chunk_round_trip(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    fill(store)
    for z, tx, ty in all_chunks(store):
        level = store.extent(z).level
        h_in, valid_in, *_ = chunk_data(level, tx, ty)
        h, valid = read_chunk(store, z, tx, ty)
        assert h.dtype == np.float16 and h.shape == (level.n, level.n, D)
        assert valid.dtype == np.bool_
        np.testing.assert_array_equal(valid, valid_in)
        np.testing.assert_array_equal(h[valid], h_in[valid].astype(np.float16))
        np.testing.assert_allclose(h[valid], h_in[valid], rtol=1e-3, atol=1e-3)
        assert not h[~valid].any()  # invalid cells are zeros, not the NaN garbage
        assert np.isfinite(h).all()
    # The same through a fresh read-only handle.
    again = EmbeddingStore.open(tmp_path / "s.zarr")
    for z, tx, ty in all_chunks(store)[:3]:
        for a, b in zip(read_chunk(again, z, tx, ty), read_chunk(store, z, tx, ty), strict=True):
            np.testing.assert_array_equal(a, b)


def test_write_chunk_validates(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    ext = store.extent(1)
    h, valid, *_ = chunk_data(ext.level, ext.tx0, ext.ty0)
    with pytest.raises(StoreError, match="do not fit"):
        store.write_chunk(1, ext.tx0, ext.ty0, h[:, :, :-1], valid)
    with pytest.raises(StoreError, match="do not fit"):
        store.write_chunk(1, ext.tx0, ext.ty0, h, valid[:-1])
    with pytest.raises(StoreError, match="outside"):
        store.write_chunk(1, ext.tx1 + 1, ext.ty0, h, valid)
    # Reading is total: cells the store does not hold are invalid zeros.
    h_out, valid_out = read_chunk(store, 1, ext.tx0, ext.ty0 - 1)
    assert not valid_out.any() and not h_out.any() and h_out.shape == h.shape
    with pytest.raises(StoreError, match="no level"):
        store.write_chunk(2, ext.tx0, ext.ty0, h, valid)
    assert len(store.pending_tiles(1)) == ext.n_chunks()
    # A read-only handle cannot write.
    with pytest.raises(Exception):  # noqa: B017 - zarr's own error type
        EmbeddingStore.open(tmp_path / "s.zarr").write_chunk(1, ext.tx0, ext.ty0, h, valid)


def test_done_markers(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    for z in (1, 3, 5):
        assert store.pending_tiles(z) == list(store.extent(z).tiles())
        assert not store.done_mask(z).any()
    assert not store.is_complete()
    chunks = all_chunks(store)
    written = chunks[::2]
    for z, tx, ty in written:
        write(store, z, tx, ty)
    for z in (1, 3, 5):
        ext = store.extent(z)
        expected = [(tx, ty) for zz, tx, ty in chunks if zz == z and (zz, tx, ty) not in written]
        assert store.pending_tiles(z) == expected
        mask = store.done_mask(z)
        assert mask.shape == (ext.ty1 - ext.ty0 + 1, ext.tx1 - ext.tx0 + 1)
        for tx, ty in ext.tiles():
            assert mask[ty - ext.ty0, tx - ext.tx0] == ((z, tx, ty) in written)
    assert not store.is_complete()
    # Rewriting a done chunk is harmless; the markers survive reopening.
    write(store, *written[0])
    reopened = EmbeddingStore.open(tmp_path / "s.zarr")
    assert {z: reopened.pending_tiles(z) for z in (1, 3, 5)} == {
        z: store.pending_tiles(z) for z in (1, 3, 5)
    }
    for z, tx, ty in chunks[1::2]:
        write(store, z, tx, ty)
    assert store.is_complete()
    assert all(store.pending_tiles(z) == [] for z in (1, 3, 5))
    assert EmbeddingStore.open(tmp_path / "s.zarr").is_complete()


def test_all_invalid_chunk(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    ext = store.extent(3)
    h = np.full((4, 4, D), np.nan, dtype=np.float32)
    store.write_chunk(3, ext.tx0, ext.ty0, h, np.zeros((4, 4), dtype=bool))
    h_out, valid = read_chunk(store, 3, ext.tx0, ext.ty0)
    assert not valid.any() and not h_out.any()
    assert (ext.tx0, ext.ty0) not in store.pending_tiles(3)


# -- windows ----------------------------------------------------------------------------------
Chunks = dict[tuple[int, int, int], tuple[np.ndarray, ...]]


def expected_window(
    store: EmbeddingStore, win: TileWindow, cache: Chunks
) -> tuple[np.ndarray, np.ndarray]:
    """The window assembled cell by cell from `read_chunk`; cells outside the store invalid."""
    level = win.level
    ext = store.extent(level.psm_zoom)
    rows, cols = win.shape
    h = np.zeros((rows, cols, D), dtype=np.float16)
    valid = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            cx, cy = win.cx0 + c, win.cy0 + r
            tx, ty = cx // level.n, cy // level.n
            if not (ext.tx0 <= tx <= ext.tx1 and ext.ty0 <= ty <= ext.ty1):
                continue
            key = (level.psm_zoom, tx, ty)
            if key not in cache:
                cache[key] = read_chunk(store, *key)
            ch, cv = cache[key]
            h[r, c] = ch[cy - ty * level.n, cx - tx * level.n]
            valid[r, c] = cv[cy - ty * level.n, cx - tx * level.n]
    return h, valid


def check_window(store: EmbeddingStore, win: TileWindow, cache: Chunks | None = None) -> None:
    got = store.read_cells(win)
    h, valid = expected_window(store, win, {} if cache is None else cache)
    assert got.h.dtype == np.float16 and got.h.shape == (*win.shape, D)
    assert got.valid.dtype == np.bool_ and got.valid.shape == win.shape
    np.testing.assert_array_equal(got.valid, valid)
    np.testing.assert_array_equal(got.h, h)
    level = win.level
    lat, lon = got.extent.lat, got.extent.lon
    np.testing.assert_array_equal(lat, level.cell_centers_lat(np.arange(win.cy0, win.cy1)))
    np.testing.assert_array_equal(lon, level.cell_centers_lon(np.arange(win.cx0, win.cx1)))
    assert got.mu0 is None and got.c0 is None and got.u0 is None and not got.precomputed


def test_read_cells_inside_one_chunk(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    fill(store)
    level = store.extent(1).level
    ext = store.extent(1)
    # A web tile one zoom below the chunk: 2 x 2 cells, in the middle chunk's south-east quarter.
    tx, ty = ext.tx0 + 1, ext.ty0 + 1
    win = tile_window(level, 2 * tx + 1, 2 * ty + 1, level.tile_zoom + 1)
    assert win.chunks() == [(tx, ty)] and win.shape == (2, 2)
    got = store.read_cells(win)
    h, valid = read_chunk(store, 1, tx, ty)
    np.testing.assert_array_equal(got.h, h[2:, 2:])
    np.testing.assert_array_equal(got.valid, valid[2:, 2:])
    # A web tile at the chunk's own zoom is exactly the chunk.
    got = store.read_cells(tile_window(level, tx, ty, level.tile_zoom))
    np.testing.assert_array_equal(got.h, h)
    np.testing.assert_array_equal(got.valid, valid)
    # A finer web tile reads the single cell that contains it.
    z = level.cell_zoom + 3
    x, y = (4 * tx + 1) * 8 + 5, (4 * ty + 3) * 8 + 2
    win = tile_window(level, x, y, z)
    assert (win.cx0, win.cy0, win.shape) == (4 * tx + 1, 4 * ty + 3, (1, 1))
    got = store.read_cells(win)
    np.testing.assert_array_equal(got.h[0, 0], h[3, 1])
    assert got.valid[0, 0] == valid[3, 1]
    check_window(store, win)


def test_read_cells_spanning_chunks(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    fill(store)
    level, ext = store.extent(1).level, store.extent(1)
    # The web tile one zoom above the chunks holds 2 x 2 of them.
    x, y = ext.tx0 // 2 + 1, ext.ty0 // 2 + 1
    win = tile_window(level, x, y, level.tile_zoom - 1)
    assert len(win.chunks()) == 4
    got = store.read_cells(win)
    for tx, ty in win.chunks():
        h, valid = read_chunk(store, 1, tx, ty)
        r, c = (ty - win.cy0 // level.n) * level.n, (tx - win.cx0 // level.n) * level.n
        np.testing.assert_array_equal(got.h[r : r + level.n, c : c + level.n], h)
        np.testing.assert_array_equal(got.valid[r : r + level.n, c : c + level.n], valid)
    check_window(store, win)


def test_read_cells_partly_outside_and_margin(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    fill(store)
    level, ext = store.extent(1).level, store.extent(1)
    # The north-west chunk with a margin: the margin's north and west cells are outside.
    win = tile_window(level, ext.tx0, ext.ty0, level.tile_zoom, margin=2)
    got = store.read_cells(win)
    assert got.h.shape == (level.n + 4, level.n + 4, D)
    assert not got.valid[:2].any() and not got.valid[:, :2].any()
    assert not got.h[:2].any() and not got.h[:, :2].any()
    h, valid = read_chunk(store, 1, ext.tx0, ext.ty0)
    np.testing.assert_array_equal(got.h[2 : 2 + level.n, 2 : 2 + level.n], h)
    np.testing.assert_array_equal(got.valid[2 : 2 + level.n, 2 : 2 + level.n], valid)
    # The margin's east and south cells come from the neighbouring chunks.
    east, _ = read_chunk(store, 1, ext.tx0 + 1, ext.ty0)
    np.testing.assert_array_equal(got.h[2 : 2 + level.n, -2:], east[:, :2])
    check_window(store, win)
    # A web tile straddling the store's west edge (tx0 is odd): half inside, half outside.
    assert ext.tx0 % 2 == 1
    win = tile_window(level, ext.tx0 // 2, ext.ty0 // 2 + 1, level.tile_zoom - 1)
    got = store.read_cells(win)
    inside = win.cx0 + np.arange(win.shape[1]) >= ext.cx0
    assert inside.any() and not inside.all()
    assert got.valid[:, inside].any() and not got.valid[:, ~inside].any()
    check_window(store, win)
    # A web tile far from the store: all invalid zeros.
    win = tile_window(level, 0, 0, 3, margin=1)
    got = store.read_cells(win)
    assert not got.valid.any() and not got.h.any()
    check_window(store, win)


def test_read_cells_every_tile_near_the_store(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    fill(store)
    checked = 0
    cache: Chunks = {}
    for level in LEVELS:
        ext = store.extent(level.psm_zoom)
        for z in range(max(level.tile_zoom - 2, 0), level.cell_zoom + 2):
            # Every tile at z overlapping the store's extent grown by one chunk.
            west = mercantile.bounds(ext.tx0 - 1, ext.ty0 - 1, level.tile_zoom)
            east = mercantile.bounds(ext.tx1 + 1, ext.ty1 + 1, level.tile_zoom)
            bbox = (west.west + 1e-9, east.south + 1e-9, east.east - 1e-9, west.north - 1e-9)
            tiles = list(mercantile.tiles(*bbox, zooms=[z]))
            for t in tiles[:: max(len(tiles) // 8, 1)]:
                for margin in (0, 3):
                    check_window(store, tile_window(level, t.x, t.y, t.z, margin), cache)
                    checked += 1
    assert checked > 100


def test_read_cells_refuses_foreign_level(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr", levels=LEVELS[:2])
    with pytest.raises(StoreError, match="not the store's level"):
        store.read_cells(tile_window(Level(1, 6, 8), 32, 22, 6))
    with pytest.raises(StoreError, match="no level for PSM zoom 5"):
        store.read_cells(tile_window(Level(5, 4, 4), 8, 5, 4))


# -- fused no-metadata embeddings -------------------------------------------------------------
def test_fused_store(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr", with_fused=True)
    assert store.with_fused and store.attrs["with_fused"] is True
    ext = store.extent(1)
    h, valid, mu0, c0, u0 = chunk_data(ext.level, ext.tx0, ext.ty0)
    with pytest.raises(StoreError, match="mu0, c0 and u0"):
        store.write_chunk(1, ext.tx0, ext.ty0, h, valid)
    with pytest.raises(StoreError, match="mu0, c0 and u0"):
        store.write_chunk(1, ext.tx0, ext.ty0, h, valid, mu0=mu0, c0=c0)
    assert (ext.tx0, ext.ty0) in store.pending_tiles(1)  # a refused write is not marked done
    fill(store)
    assert store.is_complete()
    level = ext.level
    win = tile_window(level, ext.tx0, ext.ty0, level.tile_zoom, margin=1)
    got = store.read_cells(win, precomputed=True)
    assert got.mu0 is not None and got.c0 is not None and got.u0 is not None
    assert got.precomputed
    assert got.mu0.dtype == np.float16 and got.mu0.shape == (*win.shape, D)
    assert got.c0.dtype == np.float32 and got.c0.shape == win.shape
    assert got.u0.dtype == np.float32 and got.u0.shape == win.shape
    inner = (slice(1, 1 + level.n), slice(1, 1 + level.n))
    np.testing.assert_array_equal(got.valid[inner], valid)
    np.testing.assert_array_equal(got.mu0[inner][valid], mu0[valid].astype(np.float16))
    np.testing.assert_array_equal(got.c0[inner][valid], c0[valid])
    np.testing.assert_array_equal(got.u0[inner][valid], u0[valid])
    assert not got.mu0[inner][~valid].any() and not got.c0[inner][~valid].any()
    assert not got.u0[inner][~valid].any()
    assert not got.mu0[0].any() and not got.c0[:, 0].any()  # outside the store
    assert not got.u0[:, 0].any()
    # The margin's south-east cells come from the neighbouring chunk.
    _, v2, mu2, c2, u2 = chunk_data(level, ext.tx0 + 1, ext.ty0 + 1)
    np.testing.assert_array_equal(got.c0[-1, -1], np.where(v2, c2, 0)[0, 0])
    np.testing.assert_array_equal(got.u0[-1, -1], np.where(v2, u2, 0)[0, 0])
    np.testing.assert_array_equal(
        got.mu0[-1, -1], np.where(v2[..., None], mu2, 0)[0, 0].astype(np.float16)
    )
    plain = store.read_cells(win)
    assert plain.mu0 is None and plain.c0 is None and plain.u0 is None
    np.testing.assert_array_equal(plain.h, got.h)


def test_unfused_store_ignores_fused_read(tmp_path: Path) -> None:
    store = make(tmp_path / "s.zarr")
    fill(store)
    level = store.extent(3).level
    got = store.read_cells(tile_window(level, 15, 10, 5), precomputed=True)
    assert got.mu0 is None and got.c0 is None and got.u0 is None
    assert got.valid.any()


# -- resume, refusal, overwrite ---------------------------------------------------------------
def test_recreate_identical_resumes(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store = make(path)
    chunks = all_chunks(store)
    for z, tx, ty in chunks[:5]:
        write(store, z, tx, ty)
    before = {z: store.pending_tiles(z) for z in (1, 3, 5)}
    created = store.attrs["created"]
    # Same arguments (levels in another order, imagery as a fresh dict) -> the same store.
    resumed = make(path, levels=list(reversed(LEVELS)), imagery=dict(IMAGERY))
    assert resumed.attrs["created"] == created
    assert {z: resumed.pending_tiles(z) for z in (1, 3, 5)} == before
    for z, tx, ty in chunks[:5]:
        h, valid = read_chunk(resumed, z, tx, ty)
        h_in, valid_in, *_ = chunk_data(resumed.extent(z).level, tx, ty)
        np.testing.assert_array_equal(valid, valid_in)
        np.testing.assert_array_equal(h[valid], h_in[valid].astype(np.float16))
    # Finishing the resumed job gives the same store as one uninterrupted run.
    for z in (1, 3, 5):
        for tx, ty in resumed.pending_tiles(z):
            write(resumed, z, tx, ty)
    assert resumed.is_complete()
    fill(make(tmp_path / "clean.zarr"))
    assert_same_store(path, tmp_path / "clean.zarr")


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        ({"model_id": "sha256:other"}, ["model_id"]),
        ({"config_name": "base"}, ["config_name"]),
        ({"embed_dim": D * 2}, ["embed_dim"]),
        ({"levels": [Level(1, 6, 8), Level(3, 5, 4), Level(5, 4, 4)]}, ["levels"]),
        ({"levels": LEVELS[:2]}, ["levels"]),
        ({"bbox": (-2.9, 43.0, 8.0, 49.0)}, ["bounds"]),  # same tiles, other bounds
        ({"bbox": (-3.0, 43.0, 12.0, 49.0)}, ["levels", "bounds"]),
        ({"imagery": {**IMAGERY, "gsd_m": 0.6}}, ["imagery"]),
        ({"with_fused": True}, ["with_fused"]),
    ],
)
def test_recreate_different_raises(
    tmp_path: Path, overrides: dict[str, Any], keys: list[str]
) -> None:
    path = tmp_path / "s.zarr"
    store = make(path)
    write(store, 1, store.extent(1).tx0, store.extent(1).ty0)
    snapshot = files(path)
    with pytest.raises(StoreMismatchError) as info:
        make(path, **overrides)
    message = str(info.value)
    assert "--overwrite" in message and str(path) in message
    named = {k for k in store.attrs if f"{k}: store has" in message}
    assert named == set(keys)
    assert files(path) == snapshot  # the existing store is untouched


def test_overwrite_replaces(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    old = make(path, with_fused=True)
    fill(old)
    new = make(path, model_id="sha256:other", levels=LEVELS[:1], overwrite=True)
    assert new.model_id == "sha256:other"
    assert not new.with_fused
    assert new.levels == LEVELS[:1]
    assert new.pending_tiles(1) == list(new.extent(1).tiles())
    assert not any(name.startswith(("psm3", "psm5")) for name in files(path))
    assert not any("/mu0/" in name for name in files(path))
    h, valid = read_chunk(new, 1, new.extent(1).tx0, new.extent(1).ty0)
    assert not h.any() and not valid.any()
    reopened = EmbeddingStore.open(path, expect_model_id="sha256:other")
    assert reopened.levels == LEVELS[:1]


def test_open_checks_model_id(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    make(path)
    assert EmbeddingStore.open(path, expect_model_id="sha256:abc123").model_id == "sha256:abc123"
    with pytest.raises(StoreMismatchError) as info:
        EmbeddingStore.open(path, expect_model_id="sha256:fff")
    message = str(info.value)
    # Names both models and says how to fix it.
    assert "sha256:abc123" in message and "sha256:fff" in message and "(test)" in message
    assert "soundscape precompute" in message and "--overwrite" in message
    assert f"--store {path}" in message


def test_open_refuses_missing_and_foreign(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no embedding store"):
        EmbeddingStore.open(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no embedding store"):
        EmbeddingStore.open(tmp_path / "empty")
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StoreError, match="no embedding store"):
        EmbeddingStore.open(other)
    file_path = tmp_path / "file.zarr"
    file_path.write_text("not a folder")
    with pytest.raises(StoreError):
        EmbeddingStore.open(file_path)
    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="not a readable Zarr v3 store"):
        EmbeddingStore.open(broken)
    # A Zarr v2 group is not an embedding store either.
    zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)
    with pytest.raises(StoreError):
        EmbeddingStore.open(tmp_path / "v2.zarr")
    # Nor is a Zarr v3 group without our attributes.
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    with pytest.raises(StoreMismatchError, match="schema None"):
        EmbeddingStore.open(tmp_path / "plain.zarr")


@pytest.mark.parametrize("other", [SCHEMA_VERSION - 1, SCHEMA_VERSION + 1])
def test_other_schema_version_refused(tmp_path: Path, other: int) -> None:
    """An older store (schema 1 had no u0) or a newer one: one line with the rebuild command."""
    path = tmp_path / "s.zarr"
    make(path)
    root = zarr.open_group(str(path), mode="r+", zarr_format=3)
    root.attrs["schema_version"] = other
    with pytest.raises(StoreMismatchError, match="schema") as info:
        EmbeddingStore.open(path)
    message = str(info.value)
    assert "\n" not in message and "--overwrite" in message
    # The line names the command that rebuilds it, with the store's own imagery and path.
    assert f"soundscape precompute --imagery {IMAGERY['source']}" in message
    assert f"--store {path}" in message
    with pytest.raises(StoreMismatchError, match="schema"):
        make(path)  # a resumed job refuses it too
    assert make(path, overwrite=True).attrs["schema_version"] == SCHEMA_VERSION


def test_killed_during_create_is_not_resumed(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "s.zarr"
    real = store_mod._create_level
    made: list[int] = []

    def dies_on_second_level(root, ext, dim, with_fused):
        if made:
            raise KeyboardInterrupt
        made.append(ext.level.psm_zoom)
        real(root, ext, dim, with_fused)

    monkeypatch.setattr(store_mod, "_create_level", dies_on_second_level)
    with pytest.raises(KeyboardInterrupt):
        make(path)
    monkeypatch.setattr(store_mod, "_create_level", real)
    # The half-made store lacks levels: a re-run must not take it for a finished creation.
    with pytest.raises(StoreMismatchError, match="--overwrite"):
        make(path)
    store = make(path, overwrite=True)
    fill(store)
    assert store.is_complete()


# -- determinism, interruption, concurrency ---------------------------------------------------
def test_bit_identical_stores(tmp_path: Path) -> None:
    a, b = make(tmp_path / "a.zarr", with_fused=True), make(tmp_path / "b.zarr", with_fused=True)
    chunks = all_chunks(a)
    for z, tx, ty in chunks:
        write(a, z, tx, ty)
    # Another order, and a chunk first written with other data then rewritten.
    write(b, *chunks[0], salt=7)
    for z, tx, ty in reversed(chunks):
        write(b, z, tx, ty)
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")
    for z in (1, 3, 5):
        for name in ("h", "valid", "mu0", "c0"):
            np.testing.assert_array_equal(a.array(z, name)[:], b.array(z, name)[:])


def test_interrupted_chunk_stays_pending(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store = make(path)
    ext = store.extent(1)
    tx, ty = ext.tx0 + 1, ext.ty0
    h, valid, *_ = chunk_data(ext.level, tx, ty)
    rows, cols = slice(0, 4), slice(4, 8)
    # Killed after the cells but before the done marker.
    store.array(1, "h")[rows, cols, :] = np.where(valid[..., None], h, 0).astype(np.float16)
    store.array(1, "valid")[rows, cols] = valid
    assert (tx, ty) in store.pending_tiles(1)
    resumed = make(path)
    assert (tx, ty) in resumed.pending_tiles(1)
    assert resumed.pending_tiles(1) == list(ext.tiles())
    # Killed half-way through the cells (a torn, garbage chunk), then re-run.
    store.array(1, "h")[0:4, 0:4, :] = np.full((4, 4, D), 9.0, dtype=np.float16)
    assert (ext.tx0, ext.ty0) in resumed.pending_tiles(1)
    fill(resumed)
    fill(make(tmp_path / "clean.zarr"))
    assert_same_store(path, tmp_path / "clean.zarr")


def test_concurrent_writes_match_sequential(tmp_path: Path) -> None:
    levels = [Level(1, 7, 4), Level(3, 6, 4)]  # 25 + 9 chunks
    seq = make(tmp_path / "seq.zarr", levels=levels, with_fused=True)
    fill(seq)
    par = make(tmp_path / "par.zarr", levels=levels, with_fused=True)
    chunks = all_chunks(par)
    assert len(chunks) == 34
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda c: write(par, *c), chunks))
    assert par.is_complete()
    assert_same_store(tmp_path / "seq.zarr", tmp_path / "par.zarr")


# -- chunks kept in memory (a server's store) -------------------------------------------------
def test_kept_chunks_read_what_zarr_reads_and_are_read_once(tmp_path: Path, monkeypatch) -> None:
    store = make(tmp_path / "s.zarr", with_fused=True)
    fill(store)
    plain = EmbeddingStore.open(tmp_path / "s.zarr")
    store.keep_chunks(1 << 20)
    level, ext = store.extent(1).level, store.extent(1)
    n = level.n
    windows = [
        CellExtent.chunk(level, ext.tx0 + 1, ext.ty0 + 1),  # a whole chunk
        CellExtent(level, ext.cx0 + n, ext.cx0 + 2 * n, ext.cy0 + n - 1, ext.cy0 + n),  # a row
        CellExtent(level, ext.cx0 + n, ext.cx0 + n + 1, ext.cy0 + n, ext.cy0 + n + 1),  # a cell
        tile_window(level, ext.tx0, ext.ty0, level.tile_zoom, margin=1),  # spans chunks
        CellExtent(level, ext.cx0 - 1, ext.cx0, ext.cy0, ext.cy0 + 1),  # outside the store
    ]
    for precomputed in (False, True):
        for win in windows:
            got, want = store.read_cells(win, precomputed), plain.read_cells(win, precomputed)
            for name in ("h", "valid", "mu0", "c0", "u0"):
                a, b = getattr(got, name), getattr(want, name)
                assert (a is None) == (b is None), name
                if a is not None:
                    np.testing.assert_array_equal(a, b)
    # Read again (a new hour's fusion), a chunk's parts come from memory: zarr is not asked.
    monkeypatch.setattr(store, "array", lambda *a: pytest.fail("read zarr again"))
    for win in windows[:3]:
        again = store.read_cells(win, precomputed=True)
        assert again.precomputed
        with pytest.raises(ValueError, match="read-only"):
            again.h[...] = 0  # what one reader gets, the next gets too


def test_without_kept_chunks_every_read_asks_zarr(tmp_path: Path, monkeypatch) -> None:
    store = make(tmp_path / "s.zarr")
    fill(store)
    store.keep_chunks(1 << 20)
    store.keep_chunks(0)
    win = CellExtent.chunk(store.extent(1).level, store.extent(1).tx0, store.extent(1).ty0)
    store.read_cells(win)
    reads = []
    real = store.array
    monkeypatch.setattr(store, "array", lambda *a: reads.append(a) or real(*a))
    store.read_cells(win)
    assert reads == [(1, "h"), (1, "valid")]
