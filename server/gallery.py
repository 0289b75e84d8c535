"""A whole level's fused cells as one matrix, for exact top-k search over large bboxes.

-CSD ranks like the inner product of [mu, -c/2] with [mu_q, 1] (docs/ARCHITECTURE.md, "Scores"),
so an exact inner-product search over the augmented vectors is an exact -CSD top-k. Backends:
numpy (one float32 matvec, memory-bound: on CPU it beat faiss's flat index 3x for a single
query here) or faiss (IndexFlatIP with a bitmap selector for the bbox; on GPU hosts the index
moves to the GPUs when faiss-gpu is installed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embeddings_store.grid import Level

log = logging.getLogger("soundscape.gallery")


def faiss_gpus() -> int:
    """GPUs faiss can use (0 without faiss-gpu)."""
    try:
        import faiss
    except ImportError:
        return 0
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def pick_backend(name: str) -> str:
    """'auto' -> faiss on GPU hosts, numpy otherwise."""
    if name != "auto":
        return name
    return "faiss" if faiss_gpus() > 0 else "numpy"


@dataclass
class Gallery:
    """Valid cells of one level under one metadata: vectors, positions and uncertainty."""

    level: Level
    cx: np.ndarray  # (N,) int64 global cell columns
    cy: np.ndarray  # (N,) int64 global cell rows
    lat: np.ndarray  # (N,) float64
    lon: np.ndarray  # (N,) float64
    unc: np.ndarray  # (N,) float32, NaN where not known
    backend: str
    vectors: np.ndarray | None = None  # (N, D+1) float32
    index: object | None = None  # faiss index for faiss (besides the vectors)

    @property
    def nbytes(self) -> int:
        """Approximate memory held."""
        n = self.cx.shape[0]
        dim = self.vectors.shape[1] if self.vectors is not None else self.index.d  # type: ignore[union-attr]
        copies = 2 if self.vectors is not None and self.index is not None else 1
        return n * (4 * dim * copies + 8 * 4 + 4)

    def search(self, query: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inner products, rows) of the k best rows where `mask` is True, best first."""
        count = int(mask.sum())
        k = min(k, count)
        if k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if self.backend == "faiss":
            return self._search_faiss(query, k, mask)
        assert self.vectors is not None
        if count < self.cx.shape[0] // 4:  # a small bbox: gather its rows first
            rows = np.flatnonzero(mask)
            inner = self.vectors[rows] @ query
        else:
            rows = None
            inner = self.vectors @ query
            inner[~mask] = -np.inf
        part = np.argpartition(-inner, k - 1)[:k]
        order = part[np.argsort(-inner[part], kind="stable")]
        best = inner[order]
        return best, (order if rows is None else rows[order])

    def _search_faiss(
        self, query: np.ndarray, k: int, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        q = np.ascontiguousarray(query.reshape(1, -1), np.float32)
        if mask.all():
            dist, ids = self.index.search(q, k)  # type: ignore[union-attr]
        else:
            bitmap = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(mask.shape[0], faiss.swig_ptr(bitmap))
            try:
                params = faiss.SearchParameters(sel=sel)
                dist, ids = self.index.search(q, k, params=params)  # type: ignore[union-attr]
            except (RuntimeError, TypeError):  # GPU indexes take no selector
                return self._search_widening(q, k, mask)
        keep = ids[0] >= 0
        return dist[0][keep].astype(np.float32), ids[0][keep].astype(np.int64)

    def _search_widening(
        self, q: np.ndarray, k: int, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # The k best inside the mask are among the overall top-m once m results hold k of them.
        total = mask.shape[0]
        m = min(total, 4 * k)
        while True:
            dist, ids = self.index.search(q, m)  # type: ignore[union-attr]
            ids, dist = ids[0], dist[0]
            inside = (ids >= 0) & mask[np.clip(ids, 0, total - 1)]
            if inside.sum() >= k or m == total:
                return dist[inside][:k].astype(np.float32), ids[inside][:k].astype(np.int64)
            m = min(total, 4 * m)


def build_gallery(
    level: Level,
    tiles: list[tuple[int, int]],
    valid_of: Callable[[int, int], np.ndarray],
    chunk_of: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    dim: int,
    backend: str,
) -> Gallery:
    """Assemble a level's valid cells chunk by chunk into one preallocated matrix.

    `valid_of(tx, ty)` gives a chunk's validity (cheap), `chunk_of(tx, ty)` its
    (augmented vectors, uncertainty, valid) arrays.
    """
    n = level.n
    counts = [int(valid_of(tx, ty).sum()) for tx, ty in tiles]
    total = sum(counts)
    vectors = np.empty((total, dim + 1), np.float32)
    cx = np.empty(total, np.int64)
    cy = np.empty(total, np.int64)
    unc = np.empty(total, np.float32)
    pos = 0
    for (tx, ty), count in zip(tiles, counts, strict=True):
        if count == 0:
            continue
        aug, u, valid = chunk_of(tx, ty)
        idx = np.flatnonzero(valid)[:count]
        end = pos + idx.size
        vectors[pos:end] = aug[idx]
        unc[pos:end] = u[idx]
        r, c = np.divmod(idx, n)
        cx0, _, cy0, _ = level.chunk_cells(tx, ty)
        cx[pos:end], cy[pos:end] = cx0 + c, cy0 + r
        pos = end
    vectors, cx, cy, unc = vectors[:pos], cx[:pos], cy[:pos], unc[:pos]
    lat = level.cell_centers_lat(cy)
    lon = level.cell_centers_lon(cx)
    if backend == "faiss":
        import faiss

        index = faiss.IndexFlatIP(dim + 1)
        if faiss_gpus() > 0:
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(vectors)
        # The vectors stay on the host too: the top-k search predicts from them.
        return Gallery(level, cx, cy, lat, lon, unc, backend, vectors=vectors, index=index)
    return Gallery(level, cx, cy, lat, lon, unc, backend, vectors=vectors)
