"""Level matrices and masks kept on disk between starts (`server/level_cache.py`)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from embeddings_store.scoring import BBox
from model.metadata import Metadata
from server.cache import LRUCache, TieredCache
from server.engine import Engine
from server.level_cache import LevelCache, level_digest
from server.settings import Settings

BOX = BBox(-104.0, 36.0, -99.0, 40.0)


def test_an_entry_round_trips_mapped_and_read_only(tmp_path):
    cache = LevelCache(tmp_path)
    arrays = {"mu": np.arange(12, dtype=np.float16).reshape(4, 3), "cx": np.arange(4, dtype="<i4")}
    got = cache.save("tok-psm1-gallery-abc", arrays)
    assert set(got) == {"mu", "cx"}
    for key, arr in arrays.items():
        assert isinstance(got[key], np.memmap) and not got[key].flags.writeable
        np.testing.assert_array_equal(got[key], arr)
    again = cache.load("tok-psm1-gallery-abc", {"mu": ((4, 3), "<f2"), "cx": (None, "<i4")})
    np.testing.assert_array_equal(again["mu"], arrays["mu"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_an_entry_that_does_not_hold_what_is_expected_is_dropped(tmp_path):
    cache = LevelCache(tmp_path)
    cache.save("e", {"h": np.zeros((5, 2), np.float16)})
    assert cache.load("e", {"h": ((6, 2), "<f2")}) is None  # another level size: rebuilt
    assert not (tmp_path / "e").exists()
    cache.save("e", {"h": np.zeros((5, 2), np.float16)})
    assert cache.load("e", {"h": ((5, 2), "<f4")}) is None  # another dtype
    cache.save("e", {"h": np.zeros((5, 2), np.float16)})
    assert cache.load("e", {"h": ((5, 2), "<f2"), "unc": (None, "<f4")}) is None  # missing part
    # A corrupt file is one more miss, not an error.
    cache.save("e", {"h": np.zeros((5, 2), np.float16)})
    (tmp_path / "e" / "h.npy").write_bytes(b"\x93NUMPY garbage")
    assert cache.load("e", {"h": ((5, 2), "<f2")}) is None
    assert cache.load("missing", {"h": ((5, 2), "<f2")}) is None


def test_a_pickled_array_is_never_loaded(tmp_path):
    cache = LevelCache(tmp_path)
    (tmp_path / "p").mkdir()
    np.save(tmp_path / "p" / "h.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert cache.load("p", {"h": (None, "|O")}) is None


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".tmp-x", "A B"])
def test_entry_names_cannot_reach_outside_the_folder(tmp_path, name):
    with pytest.raises(ValueError, match="entry name"):
        LevelCache(tmp_path).load(name, {})


def test_least_recently_used_entries_and_a_dead_writers_leftovers_are_pruned(tmp_path):
    cache = LevelCache(tmp_path, keep=2)
    for i, name in enumerate(["a", "b"]):
        cache.save(name, {"x": np.zeros(3)})
        os.utime(tmp_path / name, (time.time() - 100 + i, time.time() - 100 + i))
    cache.load("a", {"x": ((3,), "<f8")})  # a is now the most recently used
    stale = tmp_path / ".tmp-dead"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    young = tmp_path / ".tmp-live"  # another worker writing right now
    young.mkdir()
    cache.save("c", {"x": np.zeros(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-live", "a", "c"]


def test_pruning_goes_on_when_another_worker_removes_an_entry_meanwhile(tmp_path, monkeypatch):
    cache = LevelCache(tmp_path, keep=1)
    cache.save("a", {"x": np.zeros(3)})
    real_stat, seen = type(tmp_path).stat, []

    def gone(path, *args, **kwargs):  # "a" vanishes after it was seen to be a folder
        if path.name == "a":
            seen.append(path)
            if len(seen) > 1:
                raise FileNotFoundError(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "stat", gone)
    assert cache.save("b", {"x": np.ones(3)}) is not None
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # a: the other's to remove


def test_two_writers_of_one_entry_keep_the_first(tmp_path):
    cache = LevelCache(tmp_path)
    cache.save("e", {"x": np.ones(3)})
    got = cache.save("e", {"x": np.ones(3)})  # the other worker's copy is already in place
    np.testing.assert_array_equal(got["x"], np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_an_unwritable_folder_leaves_serving_to_the_arrays_in_hand(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert LevelCache(blocker / "levels").save("e", {"x": np.ones(3)}) is None


def test_the_digest_changes_when_chunks_are_added():
    a = level_digest(["psm1/done/c/0/0"], 128)
    assert a == level_digest(["psm1/done/c/0/0"], 128)
    assert a != level_digest(["psm1/done/c/0/0", "psm1/done/c/0/1"], 128)
    assert a != level_digest(["psm1/done/c/0/0"], 512)
    assert a != level_digest(["psm1/done/c/0/0"], 128, "other geodata")


def test_settings_name_the_folder_or_turn_it_off(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Settings().resolved_level_cache() == str(tmp_path / "soundscape-map" / "levels")
    # One user cache folder for everything the project keeps there.
    from embeddings_store.demo.geo import default_cache_dir
    from embeddings_store.places import _cache_file

    monkeypatch.delenv("SOUNDSCAPE_DEMO_CACHE", raising=False)
    assert default_cache_dir() == tmp_path / "soundscape-map" / "demo-world"
    assert _cache_file().parent == tmp_path / "soundscape-map"
    assert Settings(level_cache_dir="").resolved_level_cache() is None
    assert Settings(level_cache_dir="/srv/levels").resolved_level_cache() == "/srv/levels"


def engine(svc, folder, **kw) -> Engine:
    return Engine(svc.model, svc.engine.store, TieredCache(LRUCache(64 << 20)),
                  level_cache=LevelCache(folder, min_cells=kw.pop("min_cells", 0)),
                  **kw)  # fmt: skip


def test_a_second_start_maps_what_the_first_built_and_answers_the_same(
    app_factory, tmp_path, monkeypatch
):
    svc = app_factory().state.svc
    plain = svc.engine
    _, query = svc.registry.register_text("owls")
    first = engine(svc, tmp_path)
    level = first.level(1)
    built = first.gallery(level, Metadata.none())
    first.level_h(level, built)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n.split("-")[2] for n in names] == ["coverage", "gallery", "h"]

    # A fresh engine reads none of the level's arrays from the store: all three are mapped.
    store = plain.store
    reads = []
    monkeypatch.setattr(store, "read_band", lambda *a, **k: reads.append(a) or 1 / 0)
    opened = store.array

    def array(psm_zoom, name):
        if name != "done":  # the listing of written chunks opens `done`, reads no chunk
            reads.append((psm_zoom, name))
        return opened(psm_zoom, name)

    monkeypatch.setattr(store, "array", array)
    second = engine(svc, tmp_path)
    kept = second.gallery(level, Metadata.none())
    h = second.level_h(level, kept)
    cov = second.coverage(level)
    assert reads == []
    monkeypatch.undo()
    assert isinstance(kept.matrix.mu, np.memmap) and isinstance(h, np.memmap)
    for a, b in ((kept.matrix.mu, built.matrix.mu), (kept.cx, built.cx), (kept.unc, built.unc),
                 (h, first.level_h(level, built))):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    want = plain.coverage(level)
    for mask in ("valid", "land", "region", "edge"):
        np.testing.assert_array_equal(getattr(cov, mask), getattr(want, mask))
    assert cov.country == want.country
    for meta in (Metadata.none(), Metadata(month=5, hour=21)):
        got, ref = second.top_k(query, meta, level, BOX, 9), plain.top_k(query, meta, level, BOX, 9)
        np.testing.assert_array_equal(got.score, ref.score)
        np.testing.assert_array_equal(got.lat, ref.lat)
        np.testing.assert_array_equal(got.uncertainty, ref.uncertainty)


def test_a_store_that_gained_chunks_or_a_small_level_is_not_served_from_the_cache(
    app_factory, tmp_path, monkeypatch
):
    svc = app_factory().state.svc
    first = engine(svc, tmp_path)
    level = first.level(1)
    first.gallery(level, Metadata.none())
    before = {p.name for p in tmp_path.iterdir()}
    store = svc.engine.store
    written = store.written_chunks(1)
    monkeypatch.setattr(store, "written_chunks", lambda z: [*written, "psm1/done/c/99/99"])
    engine(svc, tmp_path).gallery(level, Metadata.none())
    after = {p.name for p in tmp_path.iterdir()}
    assert len(after - before) == 2  # new gallery and coverage entries, none reused
    # Below min_cells nothing is written: a small level builds in less time than a write.
    small = tmp_path / "small"
    engine(svc, small, min_cells=10**9).gallery(level, Metadata.none())
    assert not small.exists()


def test_a_store_lists_its_written_chunks(app_factory):
    store = app_factory().state.svc.engine.store
    for z in store.extents:
        assert len(store.written_chunks(z)) == int(store.done_mask(z).sum()) > 0


def test_a_read_only_cache_still_serves_its_entries(tmp_path, monkeypatch):
    cache = LevelCache(tmp_path)
    cache.save("e", {"x": np.arange(3.0)})

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(os, "utime", refuse)
    np.testing.assert_array_equal(cache.load("e", {"x": ((3,), "<f8")})["x"], np.arange(3.0))


def test_loading_an_entry_reads_its_files_through_in_the_background(tmp_path, monkeypatch):
    import server.level_cache as level_cache

    cache = LevelCache(tmp_path)
    threads, real = [], level_cache.prefetch
    monkeypatch.setattr(level_cache, "prefetch", lambda paths: threads.append(real(paths)))
    cache.save("e", {"x": np.arange(3.0), "y": np.zeros((2, 2), np.float16)})
    assert threads == []  # files just written are in the page cache: not read again
    read = []
    real_open = open

    def spy(path, *args, **kwargs):
        read.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(level_cache, "open", spy, raising=False)
    cache.load("e", {"x": ((3,), "<f8"), "y": ((2, 2), "<f2")})
    assert len(threads) == 1 and threads[0].daemon
    threads[0].join(10)
    assert sorted(p.name for p in read) == ["x.npy", "y.npy"]
    # A file that vanished is skipped, not an error on the thread.
    real([tmp_path / "gone.npy"]).join(10)
