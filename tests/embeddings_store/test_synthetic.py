"""Synthetic world-size stores: land cells valid, no-metadata cells true to the model."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings_store.coverage import land_at_cells
from embeddings_store.fusion import CellFusion
from embeddings_store.grid import CellExtent
from embeddings_store.store import EmbeddingStore
from embeddings_store.synthetic import embedding_pool, plan_world, write_world_store
from model.errors import InputError
from model.metadata import Metadata


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    from model.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint)


def test_plan_sizes_the_box_to_the_cells():
    small, large = plan_world(20_000), plan_world(400_000)
    assert large.level.cell_zoom > small.level.cell_zoom or large.bbox != small.bbox
    for plan, cells in ((small, 20_000), (large, 400_000)):
        assert 0.8 * cells <= plan.land_cells <= 1.25 * cells, plan
    with pytest.raises(InputError, match="positive"):
        plan_world(0)


def test_written_store_is_land_and_true_to_the_model(model, tmp_path):
    store = write_world_store(tmp_path / "w.zarr", model, 3000, pool=64, seed=1)
    again = EmbeddingStore.open(tmp_path / "w.zarr", expect_model_id=model.model_id)
    assert again.is_complete() and again.with_fused and again.embed_dim == model.config.embed_dim
    (level,) = store.levels
    held = store.extent(1).cells
    valid = np.asarray(store.array(1, "valid")[:], bool)
    assert 0.75 * 3000 <= valid.sum() <= 1.35 * 3000
    lat = np.repeat(held.lat, held.shape[1])
    lon = np.tile(held.lon, held.shape[0])
    land = land_at_cells(level, lat, lon).reshape(valid.shape)
    box = CellExtent.for_bbox(level, tuple(store.attrs["bounds"]))
    land[~_inside(held, box)] = False
    np.testing.assert_array_equal(valid, land)  # the box's land cells, and only they, are valid
    h = np.asarray(store.array(1, "h")[:])
    assert not h[~valid].any()  # sea cells hold zeros
    assert len(np.unique(h[valid], axis=0)) <= 64  # drawn from the pool
    # The stored no-metadata cells are what fusing the stored h under no metadata gives.
    fusion = CellFusion(model, store)
    for tx, ty in list(store.extent(1).tiles())[:6]:
        chunk = CellExtent.chunk(level, tx, ty)
        cells = store.read_cells(chunk, precomputed=True)
        fused = fusion.block(chunk, Metadata.none())  # read from mu0/c0
        from_h = CellFusion(model, _without_fused(store)).block(chunk, Metadata.none())
        np.testing.assert_allclose(fused.aug, from_h.aug, atol=2e-3)
        assert cells.valid.sum() == fused.valid.sum()


def _inside(held: CellExtent, box: CellExtent) -> np.ndarray:
    out = np.zeros(held.shape, bool)
    out[box.slices_in(held)] = True
    return out


def _without_fused(store: EmbeddingStore) -> EmbeddingStore:
    """The same store seen as one without mu0/c0/u0 (so fusion runs the model on h)."""

    class Plain(EmbeddingStore):
        @property
        def with_fused(self) -> bool:
            return False

    return Plain(store.root, store.location, None)


def test_pool_draws_from_a_real_store_or_at_random(model, tmp_path):
    rng = np.random.default_rng(0)
    dim = model.config.embed_dim
    assert embedding_pool(10, dim, rng).shape == (10, dim)
    small = write_world_store(tmp_path / "s.zarr", model, 500, pool=8, seed=2)
    pool = embedding_pool(50, dim, rng, like=small)
    stored = np.asarray(small.array(1, "h")[:], np.float32).reshape(-1, dim)
    stored = stored[np.asarray(small.array(1, "valid")[:], bool).reshape(-1)]
    nearest = np.min(np.linalg.norm(pool[:, None] - stored[None], axis=2), axis=1)
    assert nearest.max() < 0.2 * np.linalg.norm(stored, axis=1).mean()  # jittered real cells
    with pytest.raises(InputError, match="D="):
        embedding_pool(5, dim + 1, rng, like=small)
