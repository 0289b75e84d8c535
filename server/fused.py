"""Fused image embeddings per (level, chunk, metadata): computed by the model, cached as bytes.

A chunk's value holds, per cell, the augmented vector [mu, -c/2] (so that its inner product
with [mu_q, 1] gives -CSD up to an affine map, DESIGN §3), the uncertainty ||sigma||_1 and the
validity flag. Fused embeddings do not depend on the query: one fused chunk serves every query.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import torch

from embeddings_store.grid import Level
from embeddings_store.store import EmbeddingStore
from model.metadata import make_metadata
from model.scoring import augment_cells, uncertainty, variance_sum

_HEADER = struct.Struct("<4sII")  # magic, cells, D + 1
_MAGIC = b"SFC1"


@dataclass(frozen=True)
class Metadata:
    """User-chosen metadata; None = masked. Sources are vocabulary names."""

    month: int | None = None
    hour: int | None = None
    asource: str | None = None
    tsource: str | None = None
    location: bool = True

    @property
    def masked(self) -> bool:
        """Every component masked: the store's precomputed mu0/c0 are these fused embeddings."""
        return (
            self.month is None
            and self.hour is None
            and self.asource is None
            and self.tsource is None
            and not self.location
        )

    def key(self) -> str:
        """Canonical cache-key fragment (every field: location changes each cell's tokens)."""

        def part(v: object) -> str:
            return "-" if v is None else str(v)

        return (
            f"m{part(self.month)}h{part(self.hour)}a{part(self.asource)}"
            f"t{part(self.tsource)}l{int(self.location)}"
        )


@dataclass(frozen=True)
class FusedChunk:
    """One chunk's fused cells, row-major (n*n)."""

    aug: np.ndarray  # (N, D+1) float32: [mu, -c/2]
    unc: np.ndarray  # (N,) float32: ||sigma||_1
    valid: np.ndarray  # (N,) bool

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
    def from_bytes(cls, data: bytes) -> FusedChunk:
        """Inverse of `to_bytes` (zero-copy, read-only arrays); ValueError on foreign bytes."""
        magic, n, d1 = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + n + 4 * n + 4 * n * d1:
            raise ValueError("not a fused chunk")
        off = _HEADER.size
        valid = np.frombuffer(data, dtype=np.bool_, count=n, offset=off)
        unc = np.frombuffer(data, dtype=np.float32, count=n, offset=off + n)
        aug = np.frombuffer(data, dtype=np.float32, count=n * d1, offset=off + 5 * n)
        return cls(aug.reshape(n, d1), unc, valid)

    @classmethod
    def empty(cls, cells: int, dim: int) -> FusedChunk:
        """A chunk with no valid cell (outside the store)."""
        return cls(
            np.zeros((cells, dim + 1), np.float32),
            np.zeros(cells, np.float32),
            np.zeros(cells, bool),
        )


def fuse_cells(
    model: torch.nn.Module,
    h: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    meta: Metadata,
    vocabulary: tuple[dict[str, int], dict[str, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """(augmented vectors (N, D+1), uncertainty (N,)) of N cells' h under `meta`."""
    asources, tsources = vocabulary
    batch = make_metadata(
        lat,
        lon,
        month=meta.month,
        hour=meta.hour,
        asource=None if meta.asource is None else asources[meta.asource],
        tsource=None if meta.tsource is None else tsources[meta.tsource],
        use_location=meta.location,
    )
    device = next(model.parameters()).device
    # bf16 autocast on CUDA (DESIGN §6); CPU stays fp32 so CPU results match the model exactly.
    amp = device.type == "cuda"
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp),
    ):
        g = model.fuse(torch.from_numpy(np.ascontiguousarray(h, np.float32)).to(device), batch)
        mu = g.mu.float().cpu().numpy()
        c = variance_sum(g.logvar.float()).cpu().numpy()
        unc = uncertainty(g.logvar.float()).cpu().numpy()
    return augment_cells(mu, c), unc.astype(np.float32)


def compute_chunk(
    model: torch.nn.Module,
    store: EmbeddingStore,
    level: Level,
    tx: int,
    ty: int,
    meta: Metadata,
    vocabulary: tuple[dict[str, int], dict[str, int]],
) -> FusedChunk:
    """Fuse the valid cells of one stored chunk."""
    n, d = level.n, store.embed_dim
    h16, valid2 = store.read_chunk(level.psm_zoom, tx, ty)
    valid = np.asarray(valid2, bool).reshape(-1)
    out = FusedChunk.empty(n * n, d)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return out
    cx0, _, cy0, _ = level.chunk_cells(tx, ty)
    rows, cols = np.divmod(idx, n)
    lat = level.cell_centers_lat(cy0 + rows)
    lon = level.cell_centers_lon(cx0 + cols)
    h = np.asarray(h16, np.float32).reshape(n * n, d)[idx]  # float16 -> float32 before any math
    aug, unc = fuse_cells(model, h, lat, lon, meta, vocabulary)
    out.aug[idx] = aug
    out.unc[idx] = unc
    out.valid[idx] = True
    return out


def precomputed_chunk(store: EmbeddingStore, level: Level, tx: int, ty: int) -> FusedChunk:
    """A chunk's stored no-metadata fused embeddings (mu0, c0); uncertainty is not stored (NaN)."""
    ext = store.extent(level.psm_zoom)
    n, d = level.n, store.embed_dim
    rows = slice((ty - ext.ty0) * n, (ty - ext.ty0 + 1) * n)
    cols = slice((tx - ext.tx0) * n, (tx - ext.tx0 + 1) * n)
    mu0 = np.asarray(store.array(level.psm_zoom, "mu0")[rows, cols, :], np.float32)
    c0 = np.asarray(store.array(level.psm_zoom, "c0")[rows, cols], np.float32)
    valid = np.asarray(store.array(level.psm_zoom, "valid")[rows, cols], bool).reshape(-1)
    aug = augment_cells(mu0.reshape(n * n, d), c0.reshape(-1))
    aug[~valid] = 0
    return FusedChunk(aug, np.full(n * n, np.nan, np.float32), valid)
