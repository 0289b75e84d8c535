"""Every month and hour at once: a sample of a level's cells fused under all 12 x 24 times.

A time-lapse needs one colour range for all its frames (`scale=absolute`). The fused image side
does not depend on the query, so the sweep is computed once per (level, metadata without month
and hour) and each query's range is then one matrix product over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from embeddings_store.fusion import FusedCells
from embeddings_store.grid import CellExtent, Level
from embeddings_store.scoring import cell_values
from embeddings_store.store import EmbeddingStore
from model.inference import fuse_batch
from model.metadata import Metadata, MetadataBatch, make_metadata, source_index
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
    batch = time_batch(model, np.tile(lat, times), np.tile(lon, times), month, hour, metadata)
    fused = fuse_batch(model, np.tile(h, (times, 1)), batch, precision)
    n = k * times
    return FusedCells(augment_cells(fused.mu, fused.c), fused.uncertainty, np.ones(n, bool))


def time_batch(
    model: nn.Module,
    lat: np.ndarray,
    lon: np.ndarray,
    month: np.ndarray,
    hour: np.ndarray,
    metadata: Metadata,
) -> MetadataBatch:
    """Encoded metadata for rows at (lat, lon) with per-row month and hour (NaN: masked) and
    `metadata`'s sources and location switch."""
    cfg = model.config
    return make_metadata(
        lat, lon, month=month, hour=hour,
        asource=None if metadata.asource is None
        else source_index(metadata.asource, cfg.audio_sources),
        tsource=None if metadata.tsource is None
        else source_index(metadata.tsource, cfg.caption_sources),
        use_location=metadata.location,
    )  # fmt: skip


@dataclass(frozen=True)
class TimeProfile:
    """One cell fused under each of the 24 hours (month as asked) and each of the 12 months
    (hour as asked), the other metadata fixed."""

    cell: CellExtent  # the 1 x 1 block of the cell
    lat: float  # the cell centre
    lon: float
    hours: FusedCells  # 24 rows, hour 0..23
    months: FusedCells  # 12 rows, month 1..12


def time_profile(
    model: nn.Module,
    store: EmbeddingStore,
    block: CellExtent,
    metadata: Metadata,
    precision: str = "auto",
) -> TimeProfile | None:
    """One cell (a 1 x 1 block, see `CellExtent.cell_at`) fused at every hour and every month in
    one batch (36 rows); None where the store holds no valid cell there."""
    ((tx, ty),) = block.chunks()
    if block.size != 1 or not store.extent(block.level.psm_zoom).holds_chunk(tx, ty):
        return None
    cells = store.read_cells(block)
    if not bool(cells.valid.reshape(-1)[0]):
        return None
    c_lat, c_lon = (float(v[0]) for v in cells.centres(np.zeros(1, np.int64)))
    nan = np.nan
    month = np.concatenate([np.full(HOURS.size, nan if metadata.month is None
                                    else metadata.month), MONTHS])  # fmt: skip
    hour = np.concatenate([HOURS, np.full(MONTHS.size, nan if metadata.hour is None
                                          else metadata.hour)])  # fmt: skip
    rows = month.size
    batch = time_batch(model, np.full(rows, c_lat), np.full(rows, c_lon), month, hour, metadata)
    h = np.repeat(np.asarray(cells.h.reshape(1, -1), np.float32), rows, axis=0)
    fused = fuse_batch(model, h, batch, precision)
    all_rows = FusedCells(augment_cells(fused.mu, fused.c), fused.uncertainty, np.ones(rows, bool))
    hours = all_rows.take(np.arange(HOURS.size))
    months = all_rows.take(np.arange(HOURS.size, rows))
    return TimeProfile(block, c_lat, c_lon, hours, months)


def peak_words(hour: int) -> str:
    """A profile's peak hour in words, e.g. 'peaks around 05:00'."""
    return f"peaks around {int(hour):02d}:00"


def sweep_values(sweep: FusedCells, query: QueryEmbedding | None) -> np.ndarray:
    """The query's score (the uncertainty without a query) of every swept cell and time."""
    name = "uncertainty" if query is None else "score"
    return cell_values(sweep, query, (name,))[name]
