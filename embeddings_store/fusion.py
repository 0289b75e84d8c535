"""Fused cells: stored cells with metadata fused in, as the scoring core needs them.

`fuse(model, cells, metadata)` is the one way cells become fused Gaussians (precompute's
mu0/c0/u0, tiles, similarity and the demo's quality evaluation all call it). A fused block keeps,
per cell, the augmented vector [mu, -c/2] (its inner product with [mu_q, 1] is -CSD up to an
affine map, so scoring is one matvec), the uncertainty ||sigma||_1 and the validity flag.
`CellFusion` hands out fused blocks of a store; the server's subclass caches them.
"""

from __future__ import annotations

import struct
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from torch import nn

from embeddings_store.cells import Cells
from embeddings_store.grid import CellExtent, Level
from embeddings_store.store import EmbeddingStore
from model.inference import fuse_embeddings, use_bf16
from model.metadata import Metadata
from model.scoring import augment_cells

# Cells per fusion call in `fuse_h_at`: on CPU, 256 cells a call fuse 1.4-1.6x faster than
# thousands (the activations stay in cache; scripts/bench_model.py measures the model).
FUSE_BATCH = 256
_HEADER = struct.Struct("<4sII")  # magic, cells, D + 1
_MAGIC = b"SFC1"


@dataclass(frozen=True)
class FusedCells:
    """Fused cells of a block, row-major (rows * cols)."""

    aug: np.ndarray  # (N, D+1) float32: [mu, -c/2]; zeros where not valid
    unc: np.ndarray  # (N,) float32: ||sigma||_1; 0 where not valid
    valid: np.ndarray  # (N,) bool

    @property
    def variance(self) -> np.ndarray:
        """c = sum exp(logvar) per cell (the CSD's variance term)."""
        return -2.0 * self.aug[:, -1]

    def take(self, flat: np.ndarray) -> FusedCells:
        """The cells at row-major flat indices."""
        return FusedCells(self.aug[flat], self.unc[flat], self.valid[flat])

    def to_bytes(self) -> bytes:
        """Header + valid + uncertainty + augmented vectors (raw numpy bytes, never pickle)."""
        n, d1 = self.aug.shape
        return b"".join(
            [
                _HEADER.pack(_MAGIC, n, d1),
                np.ascontiguousarray(self.valid, dtype=np.bool_).tobytes(),
                np.ascontiguousarray(self.unc, dtype=np.float32).tobytes(),
                np.ascontiguousarray(self.aug, dtype=np.float32).tobytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> FusedCells:
        """Inverse of `to_bytes` (zero-copy, read-only arrays); ValueError on foreign bytes."""
        if len(data) < _HEADER.size:
            raise ValueError("not a fused block")
        magic, n, d1 = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + n + 4 * n + 4 * n * d1:
            raise ValueError("not a fused block")
        off = _HEADER.size
        valid = np.frombuffer(data, dtype=np.bool_, count=n, offset=off)
        unc = np.frombuffer(data, dtype=np.float32, count=n, offset=off + n)
        aug = np.frombuffer(data, dtype=np.float32, count=n * d1, offset=off + 5 * n)
        return cls(aug.reshape(n, d1), unc, valid)

    @classmethod
    def empty(cls, cells: int, dim: int) -> FusedCells:
        """A block with no valid cell."""
        return cls(
            np.zeros((cells, dim + 1), np.float32),
            np.zeros(cells, np.float32),
            np.zeros(cells, bool),
        )


def fuse(model: nn.Module, cells: Cells, metadata: Metadata, precision: str = "auto") -> FusedCells:
    """The cells' fused Gaussians under `metadata`.

    With every component masked and the cells' precomputed mu0/c0/u0 at hand, those are the
    answer (no model work); otherwise the valid cells' h is fused by the model.
    """
    dim = cells.h.shape[-1]
    if metadata.masked and cells.precomputed:
        assert cells.mu0 is not None and cells.c0 is not None and cells.u0 is not None
        valid = cells.valid.reshape(-1).astype(bool)
        aug = augment_cells(cells.mu0.reshape(-1, dim), cells.c0.reshape(-1))
        aug[~valid] = 0
        unc = np.where(valid, cells.u0.reshape(-1), 0).astype(np.float32)
        return FusedCells(aug, unc, valid)
    out = FusedCells.empty(cells.valid.size, dim)
    idx = cells.valid_index()
    if idx.size == 0:
        return out
    lat, lon = cells.centres(idx)
    h = np.asarray(cells.h.reshape(-1, dim)[idx], np.float32)  # float16 -> float32 before math
    fused = fuse_embeddings(model, h, lat, lon, metadata, precision)
    out.aug[idx] = augment_cells(fused.mu, fused.c)
    out.unc[idx] = fused.uncertainty
    out.valid[idx] = True
    return out


def fuse_blocks(
    model: nn.Module, blocks: list[Cells], metadata: Metadata, precision: str = "auto"
) -> list[FusedCells]:
    """`fuse` of each block of one level, the blocks' valid cells fused together by `fuse_h_at`:
    many thin blocks (a view's tile margins) cost a few model calls instead of one each, and
    each cell gets the bits `fuse` gives it alone (fusion is row-independent from 16 rows up,
    `model.inference.MIN_ROWS`)."""
    if not blocks:
        return []
    dim = blocks[0].h.shape[-1]
    index = [b.valid_index() for b in blocks]
    h, cx, cy = [], [], []
    for b, idx in zip(blocks, index, strict=True):
        rows, cols = np.divmod(idx, b.extent.cx1 - b.extent.cx0)
        h.append(b.h.reshape(-1, dim)[idx])
        cx.append(b.extent.cx0 + cols)
        cy.append(b.extent.cy0 + rows)
    level = blocks[0].extent.level
    fused = fuse_h_at(model, np.concatenate(h), level, np.concatenate(cx), np.concatenate(cy),
                      metadata, precision)  # fmt: skip
    outs, start = [], 0
    for b, idx in zip(blocks, index, strict=True):
        out = FusedCells.empty(b.valid.size, dim)
        part = fused.take(np.arange(start, start + idx.size))
        out.aug[idx], out.unc[idx], out.valid[idx] = part.aug, part.unc, True
        outs.append(out)
        start += idx.size
    return outs


def fuse_h_at(
    model: nn.Module,
    h: np.ndarray,
    level: Level,
    cx: np.ndarray,
    cy: np.ndarray,
    metadata: Metadata,
    precision: str = "auto",
    pool: Executor | None = None,
) -> FusedCells:
    """Fuse the stored image embeddings `h` (N, D; float16 as stored) of valid cells at global
    columns/rows, `FUSE_BATCH` cells a call; with `pool`, the calls run on its threads (torch
    releases the GIL; a cell's bits do not depend on which call fuses it)."""
    out = FusedCells.empty(h.shape[0], h.shape[1])

    def fuse_batch(start: int) -> None:
        sl = slice(start, start + FUSE_BATCH)
        lat, lon = level.cell_centers_lat(cy[sl]), level.cell_centers_lon(cx[sl])
        hb = np.asarray(h[sl], np.float32)  # float16 -> float32 before math, as `fuse`
        fused = fuse_embeddings(model, hb, lat, lon, metadata, precision)
        out.aug[sl] = augment_cells(fused.mu, fused.c)
        out.unc[sl] = fused.uncertainty

    starts = range(0, h.shape[0], FUSE_BATCH)
    if pool is None or len(starts) < 2:
        for start in starts:
            fuse_batch(start)
    else:
        for job in [pool.submit(fuse_batch, start) for start in starts]:
            job.result()
    out.valid[:] = True
    return out


class CellFusion:
    """Fused blocks of one store's cells for one model (computed on each call, no cache)."""

    def __init__(self, model: nn.Module, store: EmbeddingStore, precision: str = "auto") -> None:
        self.model = model
        self.store = store
        self.precision = precision
        # Checked now: a bad setting fails at start-up, not on the first fused chunk.
        self.bf16 = use_bf16(model.device, precision)

    def from_store(self, metadata: Metadata) -> bool:
        """Whether blocks under `metadata` are read from the store's mu0/c0/u0 (no model work)."""
        return metadata.masked and self.store.with_fused

    def block(self, extent: CellExtent, metadata: Metadata) -> FusedCells:
        """Fused cells of `extent` (a block inside one chunk, or a whole chunk)."""
        cells = self.store.read_cells(extent, precomputed=self.from_store(metadata))
        return fuse(self.model, cells, metadata, self.precision)


class MemoFusion(CellFusion):
    """`CellFusion` that keeps every block it fused (for a batch job that revisits them, such as
    the demo's quality evaluation; memory grows with blocks x metadata)."""

    def __init__(self, model: nn.Module, store: EmbeddingStore, precision: str = "auto") -> None:
        super().__init__(model, store, precision)
        self._memo: dict[tuple[int, int, int, int, int, str], FusedCells] = {}

    def block(self, extent: CellExtent, metadata: Metadata) -> FusedCells:
        """Fused cells of `extent`, computed once per (extent, metadata)."""
        key = (extent.level.psm_zoom, extent.cx0, extent.cx1, extent.cy0, extent.cy1,
               metadata.key())  # fmt: skip
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = super().block(extent, metadata)
        return found
