"""A block of stored cells: what `EmbeddingStore.read_cells` returns and what fusion consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embeddings_store.grid import CellExtent


@dataclass(frozen=True)
class Cells:
    """The cells of an extent, row-major; cells the store does not hold are invalid zeros.

    `h` is the pre-fusion image embedding as stored (float16 from a store, float32 straight from
    the image tower); `mu0`/`c0`/`u0`, when present, are the fused embedding's unit mean, sum
    exp(logvar) and ||sigma||_1 with every metadata component masked, precomputed from the
    full-precision h.
    """

    extent: CellExtent
    h: np.ndarray  # (rows, cols, D)
    valid: np.ndarray  # (rows, cols) bool
    mu0: np.ndarray | None = None  # (rows, cols, D)
    c0: np.ndarray | None = None  # (rows, cols) float32
    u0: np.ndarray | None = None  # (rows, cols) float32

    @property
    def precomputed(self) -> bool:
        """Whether the no-metadata fused embeddings came with the cells."""
        return self.mu0 is not None and self.c0 is not None and self.u0 is not None

    def valid_index(self) -> np.ndarray:
        """Row-major flat indices of the valid cells."""
        return np.flatnonzero(self.valid.reshape(-1))

    def centres(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) in degrees of the cells at row-major flat indices."""
        ext = self.extent
        rows, cols = np.divmod(np.asarray(flat, np.int64), ext.cx1 - ext.cx0)
        lv = ext.level
        return lv.cell_centers_lat(ext.cy0 + rows), lv.cell_centers_lon(ext.cx0 + cols)
