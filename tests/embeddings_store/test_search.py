"""The surrogate top-k search on synthetic cells whose 'fusion' is a known nonlinear map."""

from __future__ import annotations

import numpy as np
import pytest

import embeddings_store.search as search_mod
from embeddings_store.search import (
    Candidates,
    CellMatrix,
    SearchBudget,
    Surrogate,
    build_surrogate,
    fit_surrogate,
    location_features,
    sample_rows,
    search_top_k,
)

N, D1 = 6000, 17


def world(seed: int, bend: float):
    """Cells with no-metadata vectors and a 'fusion' that is linear plus a `bend` of tanh."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N, D1)).astype(np.float32)
    lat, lon = rng.uniform(25, 49, N), rng.uniform(-124, -67, N)
    extra = location_features(lat, lon)
    a = rng.normal(size=(D1, D1)).astype(np.float32) / np.sqrt(D1)
    b = rng.normal(size=(D1, D1)).astype(np.float32)
    loc = rng.normal(size=(5, D1)).astype(np.float32)
    fused = base @ a + extra @ loc + bend * np.tanh(base @ b)
    unc = rng.uniform(5, 15, N).astype(np.float32)
    base = CellMatrix.of(base, half=False)

    def fuse_rows(rows: np.ndarray):
        return fused[rows], unc[rows]

    return base, extra, fused, unc, fuse_rows


def exhaustive(fused: np.ndarray, pool: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    inner = fused[pool] @ query
    return pool[np.argsort(-inner, kind="stable")[:k]]


def test_fit_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 9))
    extra = location_features(rng.uniform(-80, 80, 500), rng.uniform(-180, 180, 500))
    w = rng.normal(size=(14, 9))
    fused = np.concatenate([base, extra], axis=1) @ w
    got = fit_surrogate(base.astype(np.float32), extra, fused.astype(np.float32))
    np.testing.assert_allclose(got, w, atol=1e-2)


def test_surrogate_keeps_each_row_once_in_order():
    sur = Surrogate(np.zeros((3, 2), np.float32))
    sur.add(np.array([5, 1]), np.array([[5.0, 5], [1, 1]], np.float32), np.array([5.0, 1]))
    sur.add(np.array([3, 5]), np.array([[3.0, 3], [9, 9]], np.float32), np.array([3.0, 9]))
    assert sur.rows.tolist() == [1, 3, 5]
    assert sur.aug[:, 0].tolist() == [1, 3, 5]  # the first fusion of row 5 is kept
    assert sur.known(np.array([0, 1, 2, 3, 5, 7])).tolist() == [0, 1, 0, 1, 1, 0]


def test_sample_is_deterministic_and_reads_few_chunks():
    rows = np.arange(100_000)
    chunk = rows // 100  # 1,000 chunks
    budget = SearchBudget(sample=512, sample_chunks=20)
    a = sample_rows(rows, chunk, budget, "m1h2")
    assert np.array_equal(a, sample_rows(rows, chunk, budget, "m1h2"))
    assert not np.array_equal(a, sample_rows(rows, chunk, budget, "m1h3"))
    assert a.size == 512 and np.unique(chunk[a]).size <= 20
    small = sample_rows(rows[:300], chunk[:300], budget, "x")
    assert np.array_equal(small, rows[:300])


@pytest.mark.parametrize("bend", [0.0, 0.05, 0.3])
def test_recall_and_honest_exact_flag(bend):
    """Over random queries and bboxes: recall@10 >= 0.95, and an answer marked exact is the
    exhaustive one (a large bend makes the surrogate poor, so the search must fuse more)."""
    base, extra, fused, _, fuse_rows = world(1, bend)
    rng = np.random.default_rng(2)
    budget = SearchBudget(sample=400, sample_chunks=60, max_fused=2000, first_batch=8)
    chunk = np.arange(N) // 50
    sur = build_surrogate(Candidates(base, extra, np.arange(N)),
                          sample_rows(np.arange(N), chunk, budget, "meta"), fuse_rows)  # fmt: skip
    recalls, exact = [], 0
    for _ in range(40):
        pool = np.sort(rng.choice(N, rng.integers(1000, N), replace=False))
        query = rng.normal(size=D1).astype(np.float32)
        res = search_top_k(sur, Candidates(base, extra, pool), query, 10, fuse_rows, budget)
        truth = exhaustive(fused, pool, query, 10)
        recalls.append(len(set(truth) & set(res.rows)) / 10)
        assert res.pool == pool.size and res.fused <= budget.max_fused
        assert np.all(np.diff(res.inner) <= 0)
        np.testing.assert_allclose(res.inner, fused[res.rows] @ query, rtol=1e-5, atol=1e-5)
        if res.exact:
            exact += 1
            assert list(res.rows) == list(truth)
    assert np.mean(recalls) >= 0.95
    assert exact >= 30  # the budget suffices for most queries


def test_a_linear_world_needs_few_fusions():
    base, extra, fused, _, fuse_rows = world(3, 0.0)
    budget = SearchBudget(sample=300, max_fused=5000, first_batch=64)
    cands = Candidates(base, extra, np.arange(N))
    sur = build_surrogate(cands, sample_rows(np.arange(N), np.arange(N), budget, "m"), fuse_rows)
    query = np.random.default_rng(4).normal(size=D1).astype(np.float32)
    res = search_top_k(sur, cands, query, 10, fuse_rows, budget)
    assert res.exact and res.fused <= 64
    assert list(res.rows) == list(exhaustive(fused, np.arange(N), query, 10))


def test_a_spent_budget_says_inexact():
    base, extra, _, _, fuse_rows = world(5, 1.0)  # a surrogate that predicts badly
    budget = SearchBudget(sample=100, max_fused=50, first_batch=16)
    cands = Candidates(base, extra, np.arange(N))
    sur = build_surrogate(cands, sample_rows(np.arange(N), np.arange(N), budget, "m"), fuse_rows)
    query = np.random.default_rng(6).normal(size=D1).astype(np.float32)
    res = search_top_k(sur, cands, query, 10, fuse_rows, budget)
    assert not res.exact and res.fused == 50 and res.rows.size == 10


def test_a_full_scan_equals_exhaustive():
    """A budget that allows fusing the whole pool and a margin no prediction can beat: the
    search scans everything and answers the exhaustive top-k, exact."""
    base, extra, fused, unc, fuse_rows = world(7, 1.0)
    pool = np.arange(0, N, 3)
    budget = SearchBudget(sample=100, max_fused=N, first_batch=16, margin_factor=100.0)
    cands = Candidates(base, extra, pool)
    sur = build_surrogate(cands, sample_rows(pool, np.arange(N), budget, "m"), fuse_rows)
    query = np.random.default_rng(8).normal(size=D1).astype(np.float32)
    res = search_top_k(sur, cands, query, 25, fuse_rows, budget)
    assert res.exact and res.margin == 0.0 and sur.known(pool).all()
    assert list(res.rows) == list(exhaustive(fused, pool, query, 25))
    np.testing.assert_array_equal(res.unc, unc[res.rows])


def test_empty_pool_and_small_pool():
    base, extra, _, _, fuse_rows = world(9, 0.1)
    budget = SearchBudget(sample=50)
    sur = build_surrogate(Candidates(base, extra, np.arange(N)), np.arange(50), fuse_rows)
    query = np.ones(D1, np.float32)
    res = search_top_k(sur, Candidates(base, extra, np.zeros(0, np.int64)), query, 5, fuse_rows,
                       budget)  # fmt: skip
    assert res.rows.size == 0 and res.exact
    pool = np.array([7, 3000, 11])
    res = search_top_k(sur, Candidates(base, extra, pool), query, 5, fuse_rows, budget)
    assert res.exact and sorted(res.rows) == [7, 11, 3000]


def test_cell_matrix_products_match_float32(monkeypatch):
    """Half-precision rows (as a store keeps mu0) multiply exactly like their float32 values,
    block by block, for all rows and for a few."""
    monkeypatch.setattr(search_mod, "BLOCK_BYTES", 1000 * 4 * 9)  # blocks of 1,000 rows: several
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(4500, 9)).astype(np.float16)
    tail = rng.normal(size=4500).astype(np.float32)
    aug = np.concatenate([mu.astype(np.float32), tail[:, None]], axis=1)
    half, full = CellMatrix.of(aug, half=True), CellMatrix.of(aug, half=False)
    assert half.mu.dtype == np.float16 and half.nbytes < full.nbytes
    vec = rng.normal(size=10).astype(np.float32)
    want = aug @ vec
    for m in (half, full):
        np.testing.assert_allclose(m.dot(vec), want, rtol=1e-5, atol=1e-5)
        for idx in (np.array([3, 4499, 7]), np.arange(0, 4500, 2)):
            np.testing.assert_allclose(m.dot(vec, idx), want[idx], rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(m.rows(idx), aug[idx])
    assert half.shape == (4500, 10)


def test_blocks_are_sized_by_bytes_so_wide_rows_stay_in_cache():
    """A block's float32 copy is BLOCK_BYTES whatever the width (at D=512, 32 MiB blocks made a
    1M-cell prediction 10x slower than 1 MiB ones), and never empty."""
    assert search_mod.block_rows(128) * 4 * 128 == search_mod.BLOCK_BYTES
    assert search_mod.block_rows(512) * 4 * 512 == search_mod.BLOCK_BYTES
    assert search_mod.block_rows(search_mod.BLOCK_BYTES) == 1
