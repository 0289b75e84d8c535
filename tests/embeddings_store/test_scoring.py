"""The scoring core on a real store: read_cells -> fuse -> score_region, against the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings_store.cells import Cells
from embeddings_store.fusion import CellFusion, FusedCells, MemoFusion, fuse
from embeddings_store.grid import CellExtent, Level
from embeddings_store.precompute import PrecomputeSpec, precompute
from embeddings_store.region import Region
from embeddings_store.scoring import BBox, Points, score_region, top_cells
from embeddings_store.store import EmbeddingStore
from model.checkpoint import load_checkpoint
from model.metadata import Metadata
from model.scoring import QueryEmbedding, match_probability, neg_csd_matrix

BBOX = (-103.0, 37.0, -100.0, 39.0)
LEVEL = Level(1, 8, 8)


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def store(bluemarble_tif, tiny_checkpoint, tmp_path_factory) -> EmbeddingStore:
    path = tmp_path_factory.mktemp("scoring") / "s.zarr"
    spec = PrecomputeSpec(
        imagery=str(bluemarble_tif), checkpoint=str(tiny_checkpoint), store=str(path),
        levels=(LEVEL,), region=Region(BBOX), base_footprint_m=20000.0, with_fused=True,
    )  # fmt: skip
    precompute(spec, progress=False)
    return EmbeddingStore.open(path)


@pytest.fixture(scope="module")
def query(model) -> QueryEmbedding:
    return QueryEmbedding.from_text(model, "frogs calling from a marsh")


def reference_scores(model, store: EmbeddingStore, query, metadata: Metadata, extent):
    """-CSD, probability and ||sigma||_1 of every cell, straight from the model (no core code)."""
    cells = store.read_cells(extent)
    rows, cols = extent.shape
    lon, lat = np.meshgrid(extent.lon, extent.lat)
    h = torch.from_numpy(cells.h.reshape(rows * cols, -1).astype(np.float32))
    meta = metadata.encode(lat.reshape(-1), lon.reshape(-1))
    with torch.inference_mode():
        g = model.fuse(h, meta)
        q = model.embed_texts(["frogs calling from a marsh"])
        score = neg_csd_matrix(g.mu, g.logvar, q.mu, q.logvar)[:, 0].numpy()
        unc = (0.5 * g.logvar).exp().sum(-1).numpy()
    a, b = model.match_parameters()
    valid = cells.valid.reshape(-1)
    nan = np.full(rows * cols, np.nan)
    return (
        np.where(valid, score, nan).reshape(rows, cols),
        np.where(valid, match_probability(score, a, b), nan).reshape(rows, cols),
        np.where(valid, unc, nan).reshape(rows, cols),
    )


@pytest.mark.parametrize("metadata", [Metadata(month=6, hour=5, asource="inat"), Metadata()])
def test_score_region_equals_the_model(model, store, query, metadata):
    extent = store.extent(1).cells
    ds = score_region(model, store, query, metadata, LEVEL, extent)
    score, prob, unc = reference_scores(model, store, query, metadata, extent)
    assert np.isfinite(score).sum() > 50 and (~np.isfinite(score)).any()  # coverage edges
    np.testing.assert_array_equal(np.isfinite(ds.score.values), np.isfinite(score))
    np.testing.assert_allclose(ds.score.values, score, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.probability.values, prob, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.uncertainty.values, unc, rtol=1e-5)
    # Coordinates and CRS as a GIS reader expects them.
    np.testing.assert_array_equal(ds.x.values, extent.x)
    np.testing.assert_array_equal(ds.lat.values, extent.lat)
    assert ds.attrs["crs"] == "EPSG:3857" and ds.attrs["model_id"] == store.model_id
    assert "EPSG" in ds.spatial_ref.attrs["crs_wkt"] and ds.score.attrs["grid_mapping"]


def test_masked_metadata_is_served_from_the_stores_precomputed_cells(model, store, query):
    extent = store.extent(1).cells
    masked = Metadata.none()
    cells = store.read_cells(extent, precomputed=True)
    assert cells.precomputed
    from_store = fuse(model, cells, masked)
    fused = fuse(model, store.read_cells(extent), masked)  # the model on the float16 h
    np.testing.assert_array_equal(from_store.valid, fused.valid)
    v = fused.valid
    # The store's mu0/c0/u0 come from the full-precision h: equal to the float16 fusion up to
    # float16 rounding of h and mu0.
    np.testing.assert_allclose(from_store.aug[v], fused.aug[v], atol=3e-3)
    np.testing.assert_allclose(from_store.unc[v], fused.unc[v], rtol=1e-3)
    ds = score_region(model, store, query, masked, LEVEL, extent)
    assert np.isfinite(ds.uncertainty.values).sum() == v.sum()


def test_bbox_region_is_the_cells_whose_centres_lie_inside(model, store, query):
    bbox = BBox(-102.5, 37.5, -101.0, 38.5)
    ds = score_region(model, store, query, Metadata(), LEVEL, bbox)
    lon, lat = ds.lon.values, ds.lat.values
    assert ((lon >= bbox.west) & (lon <= bbox.east)).all()
    assert ((lat >= bbox.south) & (lat <= bbox.north)).all()
    # One more cell on any side would have its centre outside.
    step = LEVEL.cell_size
    assert lon.size > 3 and lat.size > 3
    whole = score_region(model, store, query, Metadata(), LEVEL, store.extent(1).cells)
    inside = (
        (whole.lon >= bbox.west) & (whole.lon <= bbox.east)
        & (whole.lat >= bbox.south) & (whole.lat <= bbox.north)
    )  # fmt: skip
    assert int(inside.sum()) == lon.size * lat.size
    # Equal up to float32 rounding: a block fused on its own is a smaller batch for the fuser
    # than the whole chunk (CPU kernels round differently for other batch sizes).
    got = whole.score.where(inside, drop=True).values
    np.testing.assert_allclose(got, ds.score.values, rtol=1e-6)
    assert abs(float(ds.x.values[1] - ds.x.values[0]) - step) < 1e-6


def test_points_give_the_cell_under_each_point(model, store, query):
    lat = np.array([38.0, 37.9, 38.0, 60.0, 89.0])
    lon = np.array([-101.5, -101.5, -80.0, -101.5, 0.0])
    ds = score_region(model, store, query, Metadata(month=3), LEVEL, Points.of(lat, lon))
    assert ds.score.dims == ("point",)
    assert np.isfinite(ds.score.values[:2]).all() and np.isnan(ds.score.values[2:]).all()
    grid = score_region(model, store, query, Metadata(month=3), LEVEL, store.extent(1).cells)
    cx, cy = LEVEL.cell_of_lonlat(lon[:1], lat[:1])
    ext = store.extent(1)
    want = grid.score.values[cy[0] - ext.cy0, cx[0] - ext.cx0]
    assert ds.score.values[0] == pytest.approx(want, rel=1e-6)
    assert np.isnan(ds.x.values[4])  # beyond the Mercator latitude limit: no cell at all


def test_top_cells_are_the_best_scores_best_first(model, store, query):
    ds = score_region(model, store, query, Metadata(hour=4), LEVEL, store.extent(1).cells)
    best = top_cells(ds, 7)
    finite = np.sort(ds.score.values[np.isfinite(ds.score.values)])[::-1]
    np.testing.assert_array_equal(best.score.values, finite[:7])
    assert best.score.dims == ("cell",) and set(best.coords) >= {"x", "y", "lat", "lon"}
    assert top_cells(ds, 10**6).sizes["cell"] == finite.size


def test_blocks_of_a_chunk_fuse_like_the_whole_chunk(model, store):
    ext = store.extent(1)
    chunk = CellExtent.chunk(LEVEL, ext.tx0 + 1, ext.ty0 + 1)
    block = CellExtent(LEVEL, chunk.cx0 + 2, chunk.cx0 + 5, chunk.cy0 + 1, chunk.cy0 + 3)
    meta = Metadata(month=8, tsource="qwen")
    whole = fuse(model, store.read_cells(chunk), meta)
    part = fuse(model, store.read_cells(block), meta)
    flat = np.arange(LEVEL.n**2).reshape(LEVEL.n, LEVEL.n)[block.slices_in(chunk)].reshape(-1)
    np.testing.assert_allclose(part.aug, whole.aug[flat], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(part.valid, whole.valid[flat])


def test_memo_fusion_fuses_each_block_once(model, store, query, monkeypatch):
    calls = []
    real = CellFusion.block

    def counted(self, extent, metadata):
        calls.append((extent, metadata))
        return real(self, extent, metadata)

    monkeypatch.setattr(CellFusion, "block", counted)
    memo = MemoFusion(model, store)
    extent = store.extent(1).cells
    for _ in range(3):
        score_region(model, store, query, Metadata(hour=7), LEVEL, extent, fusion=memo)
    assert len(calls) == store.extent(1).n_chunks()


def test_fused_cells_with_no_valid_cell_need_no_model(model):
    extent = CellExtent(LEVEL, 0, 4, 0, 4)
    cells = Cells(extent, np.zeros((4, 4, 16), np.float16), np.zeros((4, 4), bool))
    out = fuse(model, cells, Metadata(month=1))
    assert isinstance(out, FusedCells) and not out.valid.any() and not out.aug.any()


def test_bad_variables_and_levels_are_refused(model, store, query):
    extent = store.extent(1).cells
    with pytest.raises(ValueError, match="unknown variables"):
        score_region(model, store, query, Metadata(), LEVEL, extent, variables=("nope",))
    with pytest.raises(ValueError, match="need a query"):
        score_region(model, store, None, Metadata(), LEVEL, extent, variables=("score",))
    with pytest.raises(ValueError, match="not"):
        score_region(model, store, query, Metadata(), Level(5, 6, 8), extent)
    with pytest.raises(ValueError, match="invalid bbox"):
        BBox(10, 0, 5, 1)


# -- the time sweep behind scale=absolute ---------------------------------------------------
def test_time_sweep_is_every_month_and_hour_of_the_sampled_cells(model, store, query):
    from embeddings_store.timesweep import sample_cells, sweep_values, time_sweep

    meta = Metadata(month=3, hour=9, asource="inat", location=True)  # month/hour are ignored
    sweep = time_sweep(model, store, LEVEL, meta, max_cells=5)
    h, lat, lon = sample_cells(store, LEVEL, 5)
    assert h.shape[0] == 5 and sweep.aug.shape[0] == 5 * 12 * 24 and sweep.valid.all()
    # Deterministic, spread over the level, and each one a valid cell of the store.
    h2, lat2, lon2 = sample_cells(store, LEVEL, 5)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(np.stack([lat, lon]), np.stack([lat2, lon2]))
    assert np.ptp(lat) > 0.5 and np.ptp(lon) > 0.5
    under = score_region(model, store, None, Metadata(), LEVEL, Points.of(lat, lon),
                         variables=("uncertainty",))  # fmt: skip
    assert np.isfinite(under["uncertainty"].values).all()  # every sample is a held cell
    np.testing.assert_allclose(under["cell_lat"].values, lat)
    values = sweep_values(sweep, query)
    unc = sweep_values(sweep, None)
    # Row (month m, hour t, cell k) = the score of cell k fused under (m, t), straight from the
    # model (the same arithmetic as reference_scores, independent of the sweep's batching).
    for month, hour in ((1, 0), (7, 13), (12, 23)):
        row0 = ((month - 1) * 24 + hour) * 5
        with torch.inference_mode():
            enc = meta.replace(month=month, hour=hour).encode(lat, lon)
            g = model.fuse(torch.from_numpy(h), enc)
            q = model.embed_texts(["frogs calling from a marsh"])
            want = neg_csd_matrix(g.mu, g.logvar, q.mu, q.logvar)[:, 0].numpy()
            want_unc = (0.5 * g.logvar).exp().sum(-1).numpy()
        np.testing.assert_allclose(values[row0 : row0 + 5], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(unc[row0 : row0 + 5], want_unc, rtol=1e-5)
    # Different hours give different scores (the sweep really varies the time).
    assert np.ptp(values.reshape(12, 24, 5), axis=1).max() > 0


def test_time_sweep_of_an_empty_level_is_empty(model, tmp_path):
    from embeddings_store.timesweep import sweep_values, time_sweep

    empty = EmbeddingStore.create(
        tmp_path / "e.zarr", levels=[LEVEL], bbox=BBOX, model_id=model.model_id,
        config_name="test", embed_dim=model.config.embed_dim, imagery={},
    )  # fmt: skip
    sweep = time_sweep(model, empty, LEVEL, Metadata())
    assert sweep.aug.shape[0] == 0 and sweep_values(sweep, None).size == 0
