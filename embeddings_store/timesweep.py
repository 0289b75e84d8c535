"""Every month and hour at once: a sample of a level's cells fused under all 12 x 24 times.

A time-lapse needs one colour range for all its frames (`scale=absolute`). The fused image side
does not depend on the query, so the sweep is computed once per (level, metadata without month
and hour) and each query's range is then one matrix product over it.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from embeddings_store.fusion import FusedCells
from embeddings_store.grid import CellExtent, Level
from embeddings_store.scoring import cell_values
from embeddings_store.store import EmbeddingStore
from model.inference import fuse_batch
from model.metadata import Metadata, make_metadata, source_index
from model.scoring import QueryEmbedding, augment_cells

MONTHS = np.arange(1, 13)
HOURS = np.arange(24)
# 32 cells x 288 times fuse in about 5 s on two CPU cores; the range is a 2..98 percentile, so
# a coarse sample of places is enough while every time is covered.
DEFAULT_SWEEP_CELLS = 32


def sample_cells(store: EmbeddingStore, level: Level, max_cells: int) -> tuple[np.ndarray, ...]:
    """(h float32 (K, D), lat, lon) of up to `max_cells` valid cells spread evenly over the
    level (deterministic: the same store gives the same sample)."""
    ext = store.extent(level.psm_zoom)
    valid = np.asarray(store.array(level.psm_zoom, "valid")[:], bool)
    flat = np.flatnonzero(valid.reshape(-1))
    if flat.size == 0:
        dim = store.embed_dim
        return np.zeros((0, dim), np.float32), np.zeros(0), np.zeros(0)
    picks = flat[np.unique(np.linspace(0, flat.size - 1, min(max_cells, flat.size)).round())
                 .astype(int)]  # fmt: skip
    rows, cols = np.divmod(picks, valid.shape[1])
    hs, lats, lons = [], [], []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        cx, cy = ext.cx0 + c, ext.cy0 + r
        cells = store.read_cells(CellExtent(level, cx, cx + 1, cy, cy + 1))
        lat, lon = cells.centres(np.zeros(1, np.int64))
        hs.append(np.asarray(cells.h.reshape(1, -1), np.float32))
        lats.append(lat)
        lons.append(lon)
    return np.concatenate(hs), np.concatenate(lats), np.concatenate(lons)


def time_sweep(
    model: nn.Module,
    store: EmbeddingStore,
    level: Level,
    metadata: Metadata,
    max_cells: int = DEFAULT_SWEEP_CELLS,
    precision: str = "auto",
) -> FusedCells:
    """The sampled cells fused under `metadata` at every (month, hour): rows are time-major
    (12 x 24 blocks of the K cells); `metadata.month`/`hour` are ignored."""
    h, lat, lon = sample_cells(store, level, max_cells)
    k, times = h.shape[0], MONTHS.size * HOURS.size
    if k == 0:
        return FusedCells.empty(0, store.embed_dim)
    month = np.repeat(MONTHS, HOURS.size * k)
    hour = np.tile(np.repeat(HOURS, k), MONTHS.size)
    cfg = model.config
    batch = make_metadata(
        np.tile(lat, times),
        np.tile(lon, times),
        month=month,
        hour=hour,
        asource=None if metadata.asource is None
        else source_index(metadata.asource, cfg.audio_sources),
        tsource=None if metadata.tsource is None
        else source_index(metadata.tsource, cfg.caption_sources),
        use_location=metadata.location,
    )  # fmt: skip
    fused = fuse_batch(model, np.tile(h, (times, 1)), batch, precision)
    n = k * times
    return FusedCells(augment_cells(fused.mu, fused.c), fused.uncertainty, np.ones(n, bool))


def sweep_values(sweep: FusedCells, query: QueryEmbedding | None) -> np.ndarray:
    """The query's score (the uncertainty without a query) of every swept cell and time."""
    name = "uncertainty" if query is None else "score"
    return cell_values(sweep, query, (name,))[name]
