"""A whole level's fused cells as one matrix, for exact top-k search over large bboxes.

-CSD ranks like the inner product of [mu, -c/2] with [mu_q, 1] (docs/ARCHITECTURE.md, "Scores"),
so an exact inner-product search over the augmented vectors is an exact -CSD top-k. Backends:
numpy (one float32 matvec, memory-bound: on CPU it beat faiss's flat index 3x for a single
query here) or faiss (IndexFlatIP with a bitmap selector for the bbox; on GPU hosts the index
moves to the GPUs when faiss-gpu is installed).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings_store.grid import CellExtent, Level
from embeddings_store.search import CellMatrix

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
    cx: np.ndarray  # (N,) int32 global cell columns
    cy: np.ndarray  # (N,) int32 global cell rows
    unc: np.ndarray  # (N,) float32, NaN where not known
    backend: str
    matrix: CellMatrix  # the augmented vectors (float16 where exact)
    index: object | None = None  # faiss index for faiss (besides the matrix)

    @property
    def nbytes(self) -> int:
        """Approximate memory held."""
        n, dim = self.matrix.shape
        index = 4 * n * dim if self.index is not None else 0
        return self.matrix.nbytes + index + n * (4 * 3)

    def inside(self, extent: CellExtent) -> np.ndarray:
        """Which rows are cells of `extent` (a bbox's cells: the ones whose centres it holds)."""
        cx, cy = self.cx, self.cy
        return (cx >= extent.cx0) & (cx < extent.cx1) & (cy >= extent.cy0) & (cy < extent.cy1)

    def search(self, query: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inner products, rows) of the k best rows where `mask` is True, best first."""
        count = int(mask.sum())
        k = min(k, count)
        if k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if self.backend == "faiss":
            return self._search_faiss(query, k, mask)
        if count < self.cx.shape[0] // 4:  # a small bbox: gather its rows first
            rows = np.flatnonzero(mask)
            inner = self.matrix.dot(query, rows)
        else:
            rows = None
            inner = self.matrix.dot(query)
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


def allocate(shape: tuple[int, int], dtype: type, spill: tuple[Path, int] | None, name: str):
    """An array in memory, or in a mapped file of `spill`'s folder when larger than its bytes."""
    if spill is not None and shape[0] * shape[1] * np.dtype(dtype).itemsize > spill[1]:
        path = spill[0] / f"{name}-{uuid.uuid4().hex}.npy"
        log.info("%s of %d rows mapped from %s", name, shape[0], path)
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    return np.empty(shape, dtype)


def settle(array: np.ndarray) -> np.ndarray:
    """A written array, read-only mapped again if it lives in a file."""
    if isinstance(array, np.memmap):
        array.flush()
        return np.load(array.filename, mmap_mode="r")
    return array


def level_h(
    level: Level,
    tiles: list[tuple[int, int]],
    band_of: Callable[[int], dict[str, np.ndarray]],
    x0: int,
    total: int,
    dim: int,
    spill: tuple[Path, int] | None = None,
) -> np.ndarray:
    """(total, D) float16 image embeddings h of a level's valid cells, in `build_gallery`'s row
    order (chunks row-major, cells row-major in a chunk), read a row of chunks at a time by
    `band_of(ty)` (arrays `h` and `valid` over the level's width; chunk column 0 is tile x0)."""
    n = level.n
    out = allocate((total, dim), np.float16, spill, f"h-psm{level.psm_zoom}")
    pos, band, band_ty = 0, {}, None
    for tx, ty in tiles:
        if ty != band_ty:
            band, band_ty = band_of(ty), ty
        c = slice((tx - x0) * n, (tx - x0 + 1) * n)
        valid = band["valid"][:, c].reshape(-1)
        idx = np.flatnonzero(valid)
        out[pos : pos + idx.size] = band["h"][:, c].reshape(n * n, dim)[idx]
        pos += idx.size
    if pos != total:
        raise ValueError(f"the level holds {pos} valid cells, its gallery {total}")
    return settle(out)


def build_gallery(
    level: Level,
    tiles: list[tuple[int, int]],
    valid_of: Callable[[int, int], np.ndarray],
    chunk_of: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    dim: int,
    backend: str,
    half: bool = False,
    spill: tuple[Path, int] | None = None,
) -> Gallery:
    """Assemble a level's valid cells chunk by chunk into one preallocated matrix.

    `valid_of(tx, ty)` gives a chunk's validity (cheap), `chunk_of(tx, ty)` its
    (augmented vectors, uncertainty, valid) arrays; `half` keeps mu in float16 (exact for a
    store's mu0, which is float16: a world-size level then fits in memory). With `spill` =
    (folder, bytes), a matrix larger than `bytes` is written to a file in `folder` and mapped.
    """
    n = level.n
    counts = [int(valid_of(tx, ty).sum()) for tx, ty in tiles]
    total = sum(counts)
    # Larger than the memory allowed, the matrix lives in a file the scans map.
    mu = allocate((total, dim), np.float16 if half else np.float32, spill,
                  f"gallery-psm{level.psm_zoom}")  # fmt: skip
    tail = np.empty(total, np.float32)
    cx = np.empty(total, np.int32)
    cy = np.empty(total, np.int32)
    unc = np.empty(total, np.float32)
    pos = 0
    for (tx, ty), count in zip(tiles, counts, strict=True):
        if count == 0:
            continue
        aug, u, valid = chunk_of(tx, ty)
        idx = np.flatnonzero(valid)[:count]
        end = pos + idx.size
        mu[pos:end] = aug[idx, :-1]
        tail[pos:end] = aug[idx, -1]
        unc[pos:end] = u[idx]
        r, c = np.divmod(idx, n)
        cx0, _, cy0, _ = level.chunk_cells(tx, ty)
        cx[pos:end], cy[pos:end] = cx0 + c, cy0 + r
        pos = end
    matrix = CellMatrix(settle(mu)[:pos], tail[:pos])
    return gallery_of(level, cx[:pos], cy[:pos], unc[:pos], matrix, backend)


def gallery_of(
    level: Level, cx: np.ndarray, cy: np.ndarray, unc: np.ndarray, matrix: CellMatrix, backend: str
) -> Gallery:
    """A gallery of assembled arrays (built now or mapped from the level cache), with its
    faiss index when the backend is faiss."""
    dim, pos = matrix.shape[1] - 1, matrix.shape[0]
    index = None
    if backend == "faiss":
        import faiss

        index = faiss.IndexFlatIP(dim + 1)
        if faiss_gpus() > 0:
            index = faiss.index_cpu_to_all_gpus(index)
        for b in range(0, pos, 1 << 18):  # in blocks: no float32 copy of the whole level
            index.add(matrix.rows(np.arange(b, min(b + (1 << 18), pos))))
    return Gallery(level, cx, cy, unc, backend, matrix, index)
