"""Fused cells per (store, level, chunk, metadata), through the tiered byte cache.

Fused cells depend on the metadata, not on the query, so one cached chunk serves every query:
a new query over warm chunks costs one matvec per chunk (docs/ARCHITECTURE.md, "Caches").
"""

from __future__ import annotations

import hashlib

import numpy as np
from torch import nn

from embeddings_store.fusion import CellFusion, FusedCells
from embeddings_store.grid import CellExtent, Level
from embeddings_store.store import EmbeddingStore
from model.metadata import Metadata
from server.cache import TieredCache


def store_token(store: EmbeddingStore) -> str:
    """Identifies a store's contents in shared cache keys (two stores may share one Redis)."""
    ident = f"{store.model_id}|{store.attrs.get('created')}|{store.attrs.get('levels')}"
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


class CachedFusion(CellFusion):
    """`CellFusion` whose blocks come from the cache, else the model (or the store's mu0/c0/u0)."""

    def __init__(
        self, model: nn.Module, store: EmbeddingStore, cache: TieredCache, precision: str = "auto"
    ) -> None:
        super().__init__(model, store, precision)
        self.cache = cache
        self.token = store_token(store)

    def key(self, level: Level, tx: int, ty: int, metadata: Metadata) -> str:
        """Cache key of a fused chunk."""
        return f"f:{self.token}:{level.psm_zoom}:{tx}:{ty}:{metadata.key()}"

    def chunk(
        self, level: Level, tx: int, ty: int, metadata: Metadata, cached: bool = True
    ) -> FusedCells:
        """A whole chunk's fused cells (`cached=False`: computed without touching the cache)."""
        extent = CellExtent.chunk(level, tx, ty)
        if not cached:
            return CellFusion.block(self, extent, metadata)
        data, _ = self.cache.get_or_compute(
            self.key(level, tx, ty, metadata),
            lambda: CellFusion.block(self, extent, metadata).to_bytes(),
        )
        return FusedCells.from_bytes(data)

    def block(self, extent: CellExtent, metadata: Metadata) -> FusedCells:
        """Fused cells of a block inside one chunk.

        A thin block (a tile's one-cell margin reaching into a neighbouring chunk) is fused and
        cached on its own unless the whole chunk is at hand: a cold tile then fuses about one
        chunk, not the nine its margins touch.
        """
        level, n = extent.level, extent.level.n
        ((tx, ty),) = extent.chunks()
        whole = CellExtent.chunk(level, tx, ty)
        if extent.shape == whole.shape:
            return self.chunk(level, tx, ty, metadata)
        key = self.key(level, tx, ty, metadata)
        if self.from_store(metadata) or extent.size * 4 >= n * n or self.cache.lru.get(key):
            flat = np.arange(n * n).reshape(n, n)[extent.slices_in(whole)].reshape(-1)
            return self.chunk(level, tx, ty, metadata).take(flat)
        r, c = extent.slices_in(whole)
        data, _ = self.cache.get_or_compute(
            f"{key}:{r.start}:{r.stop}:{c.start}:{c.stop}",
            lambda: CellFusion.block(self, extent, metadata).to_bytes(),
        )
        return FusedCells.from_bytes(data)
