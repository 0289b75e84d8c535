"""Fusing metadata into image embeddings for many cells, under one precision policy.

Everything that turns h_i into fused Gaussian cells (precompute's mu0/c0/u0, the tile engine,
similarity, the demo's quality evaluation) goes through `fuse_embeddings`, so a map and the
figures measured on it come from the same numbers (docs/ARCHITECTURE.md, "The scoring core").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from model.config import PRECISIONS
from model.metadata import ArrayLike, Metadata, MetadataBatch
from model.scoring import uncertainty, variance_sum


def use_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether inference runs under bf16 autocast: 'auto' means on CUDA only (CPU stays fp32, so
    CPU results match the model exactly)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return device.type == "cuda"
    return precision == "bf16"


@contextlib.contextmanager
def inference_precision(device: torch.device, precision: str = "auto") -> Iterator[None]:
    """Inference mode plus the autocast that `use_bf16` chooses."""
    enabled = use_bf16(device, precision)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=enabled):
        yield


@dataclass(frozen=True)
class FusedEmbeddings:
    """N fused image embeddings reduced to what scoring needs (float32 numpy)."""

    mu: np.ndarray  # (N, D) unit means
    c: np.ndarray  # (N,) sum exp(logvar)
    uncertainty: np.ndarray  # (N,) ||sigma||_1


def fuse_embeddings(
    model: nn.Module,
    h: np.ndarray | Tensor,
    lat: ArrayLike,
    lon: ArrayLike,
    metadata: Metadata,
    precision: str = "auto",
) -> FusedEmbeddings:
    """Fuse `metadata` at each cell's (lat, lon) into N image embeddings h (N, D) and apply the
    image heads."""
    cfg = model.config
    batch = metadata.encode(lat, lon, cfg.audio_sources, cfg.caption_sources)
    return fuse_batch(model, h, batch, precision)


# Batches shorter than this are padded (see `fuse_batch`).
MIN_ROWS = 16


def fuse_batch(
    model: nn.Module, h: np.ndarray | Tensor, batch: MetadataBatch, precision: str = "auto"
) -> FusedEmbeddings:
    """Like `fuse_embeddings`, for encoded metadata that may differ from row to row (sweeps
    over months and hours in one call)."""
    device = next(model.parameters()).device
    if isinstance(h, np.ndarray):
        h = torch.from_numpy(np.ascontiguousarray(h, np.float32))
    rows = h.shape[0]
    if 0 < rows < MIN_ROWS:
        # A few rows take the BLAS's small-matrix kernels, whose sums round differently: padded
        # (by repeating the last row), a few cells get the bits they get among many (a tile's
        # corner cell fused alone then matches the same cell fused with its chunk).
        pad = torch.cat([torch.arange(rows), torch.full((MIN_ROWS - rows,), rows - 1)])
        h, batch = h[pad], batch.select(pad)
    with inference_precision(device, precision):
        g = model.fuse(h.to(device), batch)
        logvar = g.logvar.float()[:rows]
        return FusedEmbeddings(
            g.mu.float()[:rows].cpu().numpy(),
            variance_sum(logvar).cpu().numpy(),
            uncertainty(logvar).cpu().numpy().astype(np.float32),
        )
