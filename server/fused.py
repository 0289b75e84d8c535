"""Fused cells per (store, level, chunk, metadata), through the tiered byte cache.

Fused cells depend on the metadata, not on the query, so one cached chunk serves every query:
a new query over warm chunks costs one matvec per chunk (docs/ARCHITECTURE.md, "Caches").
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor, Future

import numpy as np
from torch import nn

from embeddings_store.fusion import CellFusion, FusedCells, fuse_blocks
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
        self.store_id = store_token(store)
        # bf16 fusion gives other bits than fp32: a fleet mixing the two (a GPU worker beside a
        # CPU one, or a changed setting) must not share fused chunks or anything drawn from them.
        self.token = self.store_id + ("-bf16" if self.bf16 else "")

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
        key = self.thin_key(extent, metadata)
        if key is None:
            flat = np.arange(n * n).reshape(n, n)[extent.slices_in(whole)].reshape(-1)
            return self.chunk(level, tx, ty, metadata).take(flat)
        data, _ = self.cache.get_or_compute(
            key, lambda: CellFusion.block(self, extent, metadata).to_bytes()
        )
        return FusedCells.from_bytes(data)

    def thin_key(self, extent: CellExtent, metadata: Metadata) -> str | None:
        """The key `block` caches a part of a chunk under when it fuses it on its own; None when
        it takes the part from the whole chunk (a wide part, the store's own no-metadata cells,
        or a chunk already in the LRU)."""
        level, n = extent.level, extent.level.n
        ((tx, ty),) = extent.chunks()
        key = self.key(level, tx, ty, metadata)
        if self.from_store(metadata) or extent.size * 4 >= n * n or self.cache.lru.get(key):
            return None
        r, c = extent.slices_in(CellExtent.chunk(level, tx, ty))
        return f"{key}:{r.start}:{r.stop}:{c.start}:{c.stop}"

    def submit(
        self, pool: Executor, level: Level, chunks: list[tuple[int, int]],
        thin: list[CellExtent], metadata: Metadata,
    ) -> list[Future]:  # fmt: skip
        """Fuse into the cache on `pool`: the thin parts as one `margins` job (when any), then
        each of `chunks` (see `uncached`) as a job of its own."""
        jobs = [pool.submit(self.margins, thin, metadata)] if thin else []
        return jobs + [pool.submit(self.chunk, level, tx, ty, metadata) for tx, ty in chunks]

    def uncached(
        self, level: Level, chunks: list[tuple[int, int]], metadata: Metadata
    ) -> list[tuple[int, int]]:
        """The chunks whose fusion under `metadata` is not in the in-process LRU."""
        return [c for c in chunks if self.cache.lru.get(self.key(level, *c, metadata)) is None]

    def margins(self, extents: list[CellExtent], metadata: Metadata) -> int:
        """Fuse into the cache, in one batched pass, the parts of chunks that `block` would fuse
        one by one (a view's tile margins), with the bytes `block` makes; returns how many."""
        todo = [(e, k) for e in extents if (k := self.thin_key(e, metadata)) is not None]
        todo = [(e, k) for e, k in todo if self.cache.get(k)[0] is None]
        if not todo:
            return 0
        cells = [self.store.read_cells(e) for e, _ in todo]
        fused = fuse_blocks(self.model, cells, metadata, self.precision)
        for (_, key), block in zip(todo, fused, strict=True):
            self.cache.set(key, block.to_bytes())
        return len(todo)
