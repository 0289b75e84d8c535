"""CachedFusion: thin blocks fused in one batched pass hold the bytes `block` makes alone."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
from fastapi.testclient import TestClient

from embeddings_store.fusion import CellFusion
from embeddings_store.grid import CellExtent
from model.metadata import Metadata
from server.settings import Settings


def thin_blocks(level, held) -> list[CellExtent]:
    """Corners and one-cell strips of a few stored chunks, as a view's tile margins are."""
    n, out = level.n, []
    for tx, ty in list(held.tiles())[:4]:
        chunk = CellExtent.chunk(level, tx, ty)
        x0, y0 = chunk.cx0, chunk.cy0
        out += [
            CellExtent(level, x0, x0 + 1, y0, y0 + 1),
            CellExtent(level, x0, x0 + n, y0 + n - 1, y0 + n),
            CellExtent(level, x0 + n - 1, x0 + n, y0, y0 + n),
        ]
    return out


def test_margins_fuse_thin_blocks_to_the_bytes_block_makes(app_factory, monkeypatch):
    app = app_factory()
    with TestClient(app):
        fusion = app.state.svc.engine.fusion
        level = app.state.svc.engine.default_level()
        held = fusion.store.extent(level.psm_zoom)
        meta = Metadata(month=4, hour=9, asource="inat")
        blocks = thin_blocks(level, held)
        assert all(fusion.thin_key(b, meta) is not None for b in blocks)
        assert fusion.margins(blocks, meta) == len(blocks)
        assert fusion.margins(blocks, meta) == 0  # all cached now

        calls = []
        monkeypatch.setattr(CellFusion, "block", lambda *a: calls.append(a))
        cached = [fusion.block(b, meta) for b in blocks]  # served from the cache
        assert calls == []
        monkeypatch.undo()
        for block, got in zip(blocks, cached, strict=True):
            alone = CellFusion.block(fusion, block, meta)
            assert got.to_bytes() == alone.to_bytes()
        assert sum(int(c.valid.sum()) for c in cached) > 0


def test_parts_taken_from_the_whole_chunk_are_not_margins(app_factory):
    app = app_factory()
    with TestClient(app):
        fusion = app.state.svc.engine.fusion
        level = app.state.svc.engine.default_level()
        held = fusion.store.extent(level.psm_zoom)
        (tx, ty), n = next(iter(held.tiles())), level.n
        chunk = CellExtent.chunk(level, tx, ty)
        corner = CellExtent(level, chunk.cx0, chunk.cx0 + 1, chunk.cy0, chunk.cy0 + 1)
        wide = CellExtent(level, chunk.cx0, chunk.cx0 + n, chunk.cy0, chunk.cy0 + n // 2)
        meta = Metadata(month=4)
        assert fusion.thin_key(wide, meta) is None  # a wide part: the whole chunk is fused
        assert fusion.thin_key(corner, Metadata(location=False)) is None  # the store's mu0
        fusion.chunk(level, tx, ty, meta)
        assert fusion.thin_key(corner, meta) is None  # its chunk is at hand
        assert fusion.margins([corner, wide], meta) == 0


def test_bf16_fusion_is_reported_and_keyed_apart_from_fp32(app_factory):
    with pytest.raises(pydantic.ValidationError):
        Settings(fusion_precision="fp16")
    fp32, bf16 = app_factory(), app_factory(fusion_precision="bf16")
    with TestClient(fp32) as a, TestClient(bf16) as b:
        assert a.get("/api/info").json()["compute"]["fusion_precision"] == "fp32"
        assert b.get("/api/info").json()["compute"]["fusion_precision"] == "bf16"
        ea, eb = fp32.state.svc.engine, bf16.state.svc.engine
        level = ea.default_level()
        tx, ty = next(iter(ea.store.extent(level.psm_zoom).tiles()))
        meta = Metadata(month=4, hour=9, asource="inat")
        # Other bits, so other keys in a shared cache, and other drawn-answer keys too; what
        # comes from the store alone (the level cache's entries) keeps one name.
        assert ea.fusion.key(level, tx, ty, meta) != eb.fusion.key(level, tx, ty, meta)
        assert ea.store_token != eb.store_token
        assert ea._kept_name(level, "gallery") == eb._kept_name(level, "gallery")
        got_a = ea.fusion.chunk(level, tx, ty, meta, cached=False)
        got_b = eb.fusion.chunk(level, tx, ty, meta, cached=False)
        assert got_a.to_bytes() != got_b.to_bytes()
        valid = got_a.valid
        assert valid.any()
        np.testing.assert_allclose(got_b.aug[valid], got_a.aug[valid], atol=0.05)
        # Near, not equal: bf16 keeps 8 bits of mantissa.
        assert np.abs(got_b.aug[valid] - got_a.aug[valid]).max() > 0
