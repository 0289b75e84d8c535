"""Top-k cells under metadata without fusing every cell: a fitted surrogate picks what to fuse.

Fusing a cell under metadata is the costly step (about 80 µs a cell on one CPU core), so an
exhaustive top-k of a large region costs seconds to hours. Under one metadata, the fused
augmented vector [mu, -c/2] of a cell is almost a linear function of its no-metadata one
(the store's mu0/c0) and its location encoding: on the demo store a least-squares map fitted on
2,048 fused cells predicts -CSD with a correlation of 0.997 to 1.000 for any query
(docs/ARCHITECTURE.md, "Top places"). The search:

1. fits that map once per (level, metadata) on a sample of cells fused exactly;
2. predicts every candidate's inner product with the query (one matvec over no-metadata
   vectors, no model work);
3. fuses candidates in order of prediction, in doubling batches, keeping every fused row;
4. stops when the k-th best exact score beats every unfused candidate's prediction plus a
   margin (`margin_factor` x the largest prediction error seen on any fused cell, for this
   query): `exact` is then true. Reaching `max_fused` first ends it with `exact` false. A pool
   small enough to fuse whole is fused whole (exact by exhaustion).

The margin is measured, not proven: a cell whose prediction error exceeds it could be missed
while `exact` says true. The tests measure recall against the exhaustive answer under random
metadata and check that every answer marked exact equals it.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from model.metadata import encode_latlong

# Ridge strength, relative to the mean diagonal of the features' Gram matrix.
RIDGE = 1e-4
# Bytes of the float32 copy of one block when a float16 matrix is multiplied: a block this size
# stays in cache while it is widened and read. Measured on 1 GB of float16 (2 cores): 1 MiB
# blocks took 145 ms at D=512 and 124 ms at D=128; 8 MiB blocks 330-390 ms, 32 MiB 1.5 s.
BLOCK_BYTES = 1 << 20


def block_rows(dim: int) -> int:
    """Rows per block for D-wide rows (BLOCK_BYTES of float32)."""
    return max(1, BLOCK_BYTES // (4 * dim))


@dataclass(frozen=True)
class CellMatrix:
    """Augmented vectors [mu, -c/2] of many cells, held compactly: `mu` in float16 when that is
    exact (a store keeps mu0 in float16), the last column in float32. Products go block by
    block, so a world-size level costs its float16 bytes, never a float32 copy."""

    mu: np.ndarray  # (N, D) float16 or float32
    tail: np.ndarray  # (N,) float32: -c/2

    @classmethod
    def of(cls, aug: np.ndarray, half: bool) -> CellMatrix:
        """From (N, D+1) float32 rows; `half` stores mu in float16 (exact only if it came so)."""
        mu = aug[:, :-1].astype(np.float16 if half else np.float32)
        return cls(mu, np.ascontiguousarray(aug[:, -1], np.float32))

    @property
    def shape(self) -> tuple[int, int]:
        """(N, D+1)."""
        return self.mu.shape[0], self.mu.shape[1] + 1

    @property
    def nbytes(self) -> int:
        """Memory held (a file-mapped `mu` is the page cache's, not counted)."""
        mapped = isinstance(self.mu, np.memmap)
        return (0 if mapped else self.mu.nbytes) + self.tail.nbytes

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), D+1) float32 rows."""
        return np.concatenate([self.mu[idx].astype(np.float32), self.tail[idx, None]], axis=1)

    def dot(self, vec: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """Inner products of rows (all, or `idx`) with a (D+1,) vector, float32."""
        vec = np.asarray(vec, np.float32)
        head, last = vec[:-1], vec[-1]
        n, step = self.mu.shape[0], block_rows(self.mu.shape[1])
        if idx is not None and idx.size * 4 < n:
            out = np.empty(idx.size, np.float32)
            for b in range(0, idx.size, step):
                part = idx[b : b + step]
                out[b : b + part.size] = _matvec(self.mu[part], head)
            return out + self.tail[idx] * last
        full = np.empty(n, np.float32)
        for b in range(0, n, step):
            full[b : b + step] = _matvec(self.mu[b : b + step], head)
        full += self.tail * last
        return full if idx is None else full[idx]


def _matvec(block: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """float32 block @ vec, a float16 block widened by torch (vectorised: several times numpy's
    half-to-single conversion)."""
    if block.dtype == np.float32:
        return block @ vec
    with warnings.catch_warnings():  # a mapped block is read-only; torch only reads it
        warnings.simplefilter("ignore", UserWarning)
        wide = torch.from_numpy(block).float()
    return (wide @ torch.from_numpy(vec)).numpy()


@dataclass(frozen=True)
class SearchBudget:
    """How much model work one top-k request may do."""

    sample: int = 2048  # cells fused to fit a (level, metadata) surrogate
    sample_chunks: int = 128  # chunks the sample is drawn from (reads stay few at any size)
    max_fused: int = 4096  # cells one request may fuse after the sample
    first_batch: int = 256  # candidates fused in the first round (then doubling)
    margin_factor: float = 2.0  # times the largest prediction error seen


def location_features(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(N, 5) float32: the fusion's location encoding and a constant 1."""
    enc = encode_latlong(lat, lon).numpy()
    return np.concatenate([enc, np.ones((enc.shape[0], 1), np.float32)], axis=1)


def fit_surrogate(base: np.ndarray, extra: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """Ridge least squares W with [base, extra] @ W ~ fused; (D+1+5, D+1) float32."""
    x = np.concatenate([base, extra], axis=1).astype(np.float64)
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += RIDGE * max(float(np.trace(gram)) / gram.shape[0], 1.0)
    return np.linalg.solve(gram, x.T @ fused.astype(np.float64)).astype(np.float32)


@dataclass
class Surrogate:
    """One (level, metadata): the fitted map and every cell fused exactly so far."""

    weights: np.ndarray  # (D+1+5, D+1)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted
    aug: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    unc: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def add(self, rows: np.ndarray, aug: np.ndarray, unc: np.ndarray) -> None:
        """Keep fused rows (the new ones)."""
        new = ~self.known(rows)
        rows, aug, unc = rows[new], aug[new], unc[new]
        if rows.size == 0:
            return
        all_rows = np.concatenate([self.rows, rows])
        order = np.argsort(all_rows, kind="stable")
        self.rows = all_rows[order]
        base = self.aug if self.aug.size else np.zeros((0, aug.shape[1]), np.float32)
        self.aug = np.concatenate([base, aug])[order]
        self.unc = np.concatenate([self.unc, unc])[order]

    def known(self, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` are fused already."""
        if self.rows.size == 0:
            return np.zeros(rows.shape, bool)
        at = np.minimum(np.searchsorted(self.rows, rows), self.rows.size - 1)
        return self.rows[at] == rows

    def slots(self, rows: np.ndarray) -> np.ndarray:
        """Positions of known `rows` in `self.rows`."""
        return np.searchsorted(self.rows, rows)

    @property
    def nbytes(self) -> int:
        """Approximate memory held."""
        return self.weights.nbytes + self.rows.nbytes + self.aug.nbytes + self.unc.nbytes


@dataclass(frozen=True)
class Candidates:
    """The cells a search may name: rows of a level-wide no-metadata matrix."""

    base: CellMatrix  # no-metadata augmented vectors (all rows of the level)
    extra: np.ndarray  # (N, 5) location features
    pool: np.ndarray  # (P,) rows inside the request's bbox and eligible

    def predict(self, weights: np.ndarray, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Predicted inner products <fused(row), query> (float32)."""
        w = weights @ query
        d1 = self.base.shape[1]
        return self.base.dot(w[:d1], rows) + self.extra[rows] @ w[d1:]


@dataclass(frozen=True)
class SearchResult:
    """The best rows (best first) with exact inner products, and how they were found."""

    rows: np.ndarray
    inner: np.ndarray
    unc: np.ndarray
    exact: bool
    fused: int  # cells this request fused
    pool: int  # cells the request searched among
    margin: float  # inner-product margin of the stopping test (0 when exhaustive)


FuseRows = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # rows -> (aug, unc)


def sample_rows(
    eligible_rows: np.ndarray, chunk_of_row: np.ndarray, budget: SearchBudget, seed_text: str
) -> np.ndarray:
    """A deterministic sample of `budget.sample` rows drawn from at most `sample_chunks`
    chunks (so that a sample of a world-size level reads few chunks)."""
    if eligible_rows.size <= budget.sample:
        return np.sort(eligible_rows)
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    # Chunks picked through random rows (no pass over every row's chunk), then their rows.
    probe = chunk_of_row[rng.choice(eligible_rows, 8 * budget.sample_chunks)]
    chunks = np.unique(probe)
    if chunks.size > budget.sample_chunks:
        chunks = np.sort(rng.choice(chunks, budget.sample_chunks, replace=False))
        ids = chunk_of_row[eligible_rows]
        at = np.minimum(np.searchsorted(chunks, ids), chunks.size - 1)
        eligible_rows = eligible_rows[chunks[at] == ids]
    take = min(budget.sample, eligible_rows.size)
    return np.sort(rng.choice(eligible_rows, take, replace=False))


def build_surrogate(cands: Candidates, rows: np.ndarray, fuse_rows: FuseRows) -> Surrogate:
    """Fuse `rows` exactly and fit the surrogate on them."""
    aug, unc = fuse_rows(rows)
    weights = fit_surrogate(cands.base.rows(rows), cands.extra[rows], aug)
    sur = Surrogate(weights)
    sur.add(rows, aug, unc)
    return sur


def search_top_k(
    sur: Surrogate,
    cands: Candidates,
    query: np.ndarray,
    k: int,
    fuse_rows: FuseRows,
    budget: SearchBudget,
) -> SearchResult:
    """The k pool rows with the best exact <fused, query>, fusing as few as the margin allows.

    The surrogate's weights rank the whole pool once; the best `reach` candidates (all that the
    budget could ever fuse) are then re-ranked after every batch by weights refitted on every
    cell fused so far, which the batches make dense where the query's best cells are. The
    margin is `margin_factor` x the largest error seen out of sample: of the surrogate's
    weights on any fused cell, and of each refit on the batch fused after it.
    """
    pool = cands.pool
    empty = np.zeros(0, np.int64)
    if pool.size == 0 or k < 1:
        return SearchResult(empty, np.zeros(0, np.float32), np.zeros(0, np.float32), True, 0,
                            int(pool.size), 0.0)  # fmt: skip
    first = cands.predict(sur.weights, query, pool)
    fused_before = _in_sorted(pool, sur.rows)  # the surrogate's rows in the pool (pool sorted)
    # Only the best `reach` predictions can ever be fused; the rest share one bound.
    reach = min(pool.size, budget.max_fused + fused_before.size + k)
    if reach < pool.size:
        part = np.argpartition(-first, reach)
        top, beyond = part[:reach], float(first[part[reach]])
    else:
        top, beyond = np.arange(pool.size), -np.inf
    rows = pool[top]
    pred = first[top]
    # Cells fused before that the budget would never reach: scored once.
    outside = fused_before[~np.isin(fused_before, rows)]
    error = _largest_error(sur, cands, query)
    fused, batch = 0, budget.first_batch
    while True:
        known = sur.known(rows)
        found = np.concatenate([outside, rows[known]])
        margin = budget.margin_factor * error
        kth = _kth_exact(sur, found, query, k)
        waiting = np.flatnonzero(~known)
        bound = max(float(pred[waiting].max()) if waiting.size else -np.inf, beyond)
        done = waiting.size == 0 and beyond == -np.inf
        if done or kth >= bound + margin:
            return _result(sur, found, query, k, True, fused, pool.size, 0.0 if done else margin)
        if fused >= budget.max_fused or waiting.size == 0:
            return _result(sur, found, query, k, False, fused, pool.size, margin)
        size = min(batch, budget.max_fused - fused, waiting.size)
        take = waiting[np.argpartition(-pred[waiting], size - 1)[:size]]
        aug, unc = fuse_rows(rows[take])
        error = max(error, float(np.max(np.abs(aug @ query - pred[take]))))
        sur.add(rows[take], aug, unc)
        fused += take.size
        batch *= 2
        # Refit where the query's best cells are, for this query only (the kept weights stay
        # the ones fitted on the even sample, fair to every query).
        weights = fit_surrogate(cands.base.rows(sur.rows), cands.extra[sur.rows], sur.aug)
        pred = cands.predict(weights, query, rows)


def _in_sorted(sorted_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The `rows` that occur in `sorted_rows`."""
    if sorted_rows.size == 0 or rows.size == 0:
        return rows[:0]
    at = np.minimum(np.searchsorted(sorted_rows, rows), sorted_rows.size - 1)
    return rows[sorted_rows[at] == rows]


def _largest_error(sur: Surrogate, cands: Candidates, query: np.ndarray) -> float:
    if sur.rows.size == 0:
        return np.inf
    pred = cands.predict(sur.weights, query, sur.rows)
    return float(np.max(np.abs(sur.aug @ query - pred)))


def _kth_exact(sur: Surrogate, rows: np.ndarray, query: np.ndarray, k: int) -> float:
    if rows.size < k:
        return -np.inf
    inner = sur.aug[sur.slots(rows)] @ query
    return float(np.partition(inner, inner.size - k)[inner.size - k])


def _result(
    sur: Surrogate, rows: np.ndarray, query: np.ndarray, k: int, exact: bool, fused: int,
    pool: int, margin: float,
) -> SearchResult:  # fmt: skip
    slots = sur.slots(rows)
    inner = sur.aug[slots] @ query
    k = min(k, inner.size)
    best = np.argpartition(-inner, k - 1)[:k] if k else np.zeros(0, np.int64)
    best = best[np.argsort(-inner[best], kind="stable")]
    return SearchResult(rows[best], inner[best].astype(np.float32), sur.unc[slots][best], exact,
                        fused, pool, margin)  # fmt: skip
