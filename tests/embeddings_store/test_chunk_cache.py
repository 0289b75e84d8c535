"""The decoded-chunk cache: a byte budget, least recently used out, read-only arrays."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from embeddings_store.chunk_cache import ChunkCache


def arrays(fill: float, size: int = 100) -> dict[str, np.ndarray]:
    """One chunk's arrays: h of `size` float32 values (400 bytes at 100) and a valid mask."""
    return {"h": np.full(size, fill, np.float32), "valid": np.ones(10, bool)}


def test_it_keeps_the_most_recently_used_chunks_within_its_budget():
    seen: list[tuple[str, str]] = []
    cache = ChunkCache(1_000, observer=lambda tier, outcome: seen.append((tier, outcome)))
    cache.put("a", arrays(1))
    cache.put("b", arrays(2))
    assert cache.nbytes == 820 and len(cache) == 2
    got = cache.get("a", ("h", "valid"))  # a is now the most recently used
    assert got is not None and got["h"][0] == 1
    cache.put("c", arrays(3))  # over budget: b, the least recently used, goes
    assert cache.get("b", ("h",)) is None
    assert cache.get("a", ("h",)) is not None and cache.get("c", ("h",)) is not None
    assert cache.nbytes == 820 <= cache.max_bytes
    assert seen == [("chunks", "hit"), ("chunks", "miss"), ("chunks", "hit"), ("chunks", "hit")]


def test_arrays_are_read_only_and_names_merge():
    cache = ChunkCache(10_000)
    held = cache.put("a", arrays(1))
    with pytest.raises(ValueError, match="read-only"):
        held["h"][0] = 5
    assert cache.get("a", ("h", "mu0")) is None  # mu0 was never read for this chunk
    merged = cache.put("a", {"mu0": np.zeros(4, np.float16)})
    assert set(merged) == {"h", "valid", "mu0"}
    assert cache.nbytes == 400 + 10 + 8
    got = cache.get("a", ("h", "valid", "mu0"))
    assert got is not None and got["h"][0] == 1
    got.pop("h")  # the caller's dict, not the cache's
    assert cache.get("a", ("h",)) is not None


def test_a_chunk_larger_than_the_budget_is_returned_but_not_kept():
    cache = ChunkCache(100)
    got = cache.put("big", arrays(1))
    assert got["h"].size == 100
    assert len(cache) == 0 and cache.nbytes == 0
    with pytest.raises(ValueError, match="positive budget"):
        ChunkCache(0)


def test_threads_sharing_it_keep_its_accounting_true():
    cache = ChunkCache(50 * 410)

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for key in rng.integers(0, 200, 400).tolist():
            if cache.get(key, ("h", "valid")) is None:
                cache.put(key, arrays(key))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes == 410 * len(cache) <= cache.max_bytes
    for key in range(200):
        got = cache.get(key, ("h",))
        assert got is None or got["h"][0] == key
