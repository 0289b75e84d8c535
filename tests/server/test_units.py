"""Units of the service: caches, single flight, registry ids, byte formats, upsampling, limits."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embeddings_store.fusion import FusedCells
from embeddings_store.grid import CellExtent, Level, tile_window
from embeddings_store.scoring import BBox
from model.errors import BusyError
from model.metadata import Metadata
from model.scoring import QueryEmbedding
from server.cache import LRUCache, RedisCache, SingleFlight, TieredCache
from server.executor import BoundedExecutor
from server.queries import (
    audio_query_id,
    is_query_id,
    normalize_text,
    text_query_id,
)
from server.ratelimit import RateLimiter
from server.render import quantize, upsample


def test_lru_evicts_by_size_and_recency():
    lru = LRUCache(10)
    lru.set("a", b"1234")
    lru.set("b", b"5678")
    assert lru.get("a") == b"1234"  # a is now most recent
    lru.set("c", b"9999")  # 12 bytes > 10: evict b (least recent)
    assert lru.get("b") is None and lru.get("a") and lru.get("c")
    lru.set("huge", bytes(11))  # bigger than the budget: not stored
    assert lru.get("huge") is None and lru.size <= 10


def test_single_flight_computes_once():
    flight = SingleFlight()
    calls = []
    gate = threading.Event()

    def slow() -> bytes:
        calls.append(1)
        gate.wait(5)
        return b"v"

    results = []
    threads = [threading.Thread(target=lambda: results.append(flight.run("k", slow)))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [b"v"] * 8 and len(calls) == 1


def test_tiered_cache_survives_a_dead_redis():
    # Nothing listens on port 9 (discard): every Redis call fails fast and is skipped.
    redis = RedisCache("redis://127.0.0.1:9/0", timeout_s=0.05, retry_s=60, ttl_s=10)
    seen = []
    cache = TieredCache(
        LRUCache(1 << 20), redis, lambda tier, outcome: seen.append((tier, outcome))
    )
    value, where = cache.get_or_compute("k", lambda: b"computed")
    assert (value, where) == (b"computed", "miss")
    assert ("redis", "error") in seen and not redis.available
    t0 = time.perf_counter()
    assert cache.get_or_compute("k2", lambda: b"x") == (b"x", "miss")
    assert time.perf_counter() - t0 < 0.05  # paused: no more connection attempts
    assert cache.get("k") == (b"computed", "lru")


def test_text_normalisation_and_ids():
    assert normalize_text("  Caf\u00e9\u3000 \t birds \n") == "Café birds"
    assert normalize_text("\uff21\uff22") == "AB"  # NFKC folds full-width letters
    with pytest.raises(ValueError):
        normalize_text(" \t ")
    with pytest.raises(ValueError):
        normalize_text("a" * 257)
    a = text_query_id("psm-1", "birds  singing")
    assert a == text_query_id("psm-1", " birds singing ") != text_query_id("psm-2", "birds singing")
    assert is_query_id(a) and not is_query_id("birds singing")
    x = np.zeros((100, 1), np.float32)
    assert audio_query_id("m", x, 16000) != audio_query_id("m", x, 8000)
    assert is_query_id(audio_query_id("m", x, 16000))


def test_byte_formats_round_trip_without_pickle():
    q = QueryEmbedding("audio", np.arange(5, dtype=np.float32), 1.5, 2.5)
    back = QueryEmbedding.from_bytes(q.to_bytes())
    assert back.kind == "audio" and back.c == 1.5 and np.array_equal(back.mu, q.mu)
    rng = np.random.default_rng(0)
    chunk = FusedCells(rng.normal(size=(4, 3)).astype(np.float32),
                       rng.random(4).astype(np.float32), np.array([1, 0, 1, 1], bool))  # fmt: skip
    data = chunk.to_bytes()
    assert b"pickle" not in data and not data.startswith(b"\x80")
    again = FusedCells.from_bytes(data)
    assert np.array_equal(again.aug, chunk.aug) and np.array_equal(again.valid, chunk.valid)
    with pytest.raises(ValueError):
        FusedCells.from_bytes(b"SFC1" + data[4:-1])
    assert Metadata(3, None, "inat").key() != Metadata(3, None, "inat", location=False).key()


@pytest.mark.parametrize("z", [7, 8, 9, 11, 13])
def test_upsampling_reproduces_a_linear_field(z):
    level = Level(1, 8, 8)
    win = tile_window(level, 100 * 2 ** (z - 7), 90 * 2 ** (z - 7), z, margin=1)
    rows, cols = win.shape
    cy, cx = np.mgrid[0:rows, 0:cols] + 0.5  # cell centres in window cell units
    values = (2.0 * cx - 3.0 * cy).astype(np.float32)
    out, mask = upsample(win, values, np.ones((rows, cols), bool))
    assert mask.all()
    px = win.offset_x + (np.arange(256) + 0.5) * win.tile_span / 256
    py = win.offset_y + (np.arange(256) + 0.5) * win.tile_span / 256
    expect = 2.0 * px[None, :] - 3.0 * py[:, None]
    np.testing.assert_allclose(out, expect, atol=1e-3)


def test_upsampling_keeps_invalid_cells_transparent():
    level = Level(1, 8, 8)
    win = tile_window(level, 100, 90, 8, margin=1)
    valid = np.ones(win.shape, bool)
    valid[:, :5] = False  # the west half of the tile (cells 0..4 incl. margin)
    values = np.full(win.shape, 7.0, np.float32)
    out, mask = upsample(win, values, valid)
    assert not mask[:, :128].any() and mask[:, 128:].all()
    np.testing.assert_allclose(out[mask], 7.0, atol=1e-5)  # no pull towards 0 at the edge
    idx = quantize(np.full((256, 256), 0.5), mask)
    assert (idx[:, :128] == 0).all() and (idx[:, 128:] == 128).all()


def test_bounded_executor_refuses_beyond_its_queue():
    async def main() -> None:
        ex = BoundedExecutor(threads=1, queue_limit=1)
        gate = threading.Event()
        first = asyncio.create_task(ex.run(gate.wait, 5))
        second = asyncio.create_task(ex.run(gate.wait, 5))
        await asyncio.sleep(0.05)
        assert ex.depth == 2
        with pytest.raises(BusyError):
            await ex.run(time.sleep, 0)
        gate.set()
        await asyncio.gather(first, second)
        assert ex.depth == 0
        ex.shutdown()

    asyncio.run(main())


def test_rate_limiter_bursts_then_refills():
    rl = RateLimiter(rate_per_min=600, burst=3)
    assert [rl.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.acquire("a")
    assert 0 < wait <= 0.11
    assert rl.acquire("b") == 0.0  # per client
    time.sleep(wait + 0.01)
    assert rl.acquire("a") == 0.0


def test_post_rate_limit_answers_429(app_factory):
    with TestClient(app_factory(rate_limit_per_min=60, rate_burst=2)) as c:
        codes = [c.post("/queries", json={"text": f"t{i}"}).status_code for i in range(4)]
        assert codes[:2] == [200, 200] and codes[2:] == [429, 429]
        r = c.post("/queries", json={"text": "again"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert c.get("/tiles/birds/8/55/98.png").status_code == 200  # GETs are not limited


def test_full_queue_answers_503_with_retry_after(app_factory):
    app = app_factory(workers_threads=1, queue_limit=1)
    with TestClient(app) as c:
        ex = app.state.svc.executor
        ex._pending = ex.limit  # as if threads and queue were taken by other requests
        try:
            r = c.get("/tiles/brand%20new%20words/8/55/98.png")
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
        finally:
            ex._pending = 0
        assert c.get("/tiles/brand%20new%20words/8/55/98.png").status_code == 200
        assert "soundscape_rejected_total" in c.get("/metrics").text


def test_cors_is_off_by_default_and_configurable(app_factory):
    with TestClient(app_factory()) as c:
        r = c.get("/api/info", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in r.headers
    app = app_factory(cors_origins=["https://maps.example"])
    with TestClient(app) as c:
        r = c.get("/api/info", headers={"Origin": "https://maps.example"})
        assert r.headers["access-control-allow-origin"] == "https://maps.example"


def test_an_external_base_map_is_one_setting(app_factory):
    with TestClient(app_factory()) as c:
        assert c.get("/api/info").json()["basemap"] is None
        assert "img-src 'self' data: blob:;" in c.get("/").headers["content-security-policy"]
    url = "https://tiles.example/osm/{z}/{x}/{y}.png"
    app = app_factory(basemap_url=url, basemap_name="OSM", basemap_attribution="(c) OSM")
    with TestClient(app) as c:
        info = c.get("/api/info").json()
        assert info["basemap"] == {"url": url, "name": "OSM", "attribution": "(c) OSM",
                                   "max_zoom": 19}  # fmt: skip
        csp = c.get("/").headers["content-security-policy"]
        assert "img-src 'self' data: blob: https://tiles.example;" in csp
        assert "connect-src 'self';" in csp  # images only: scripts and fetches stay ours


def test_base_map_urls_are_checked():
    from pydantic import ValidationError

    from server.settings import Settings, basemap_origin

    assert basemap_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png") == (
        "https://*.tile.example.org"
    )
    assert basemap_origin("http://localhost:8080/t/{z}/{y}/{x}") == "http://localhost:8080"
    bad = {
        "ftp://tiles.example/{z}/{x}/{y}.png": "http(s)",
        "tiles.example/{z}/{x}/{y}.png": "http(s)",
        "https://tiles.example/{z}/{x}.png": "{y}",
        "https://tiles.{s}.example/{z}/{x}/{y}.png": "plain host name",
        "https://a;b.example/{z}/{x}/{y}.png": "plain host name",
        "https://user@tiles.example/{z}/{x}/{y}.png": "plain host name",
    }
    for url, why in bad.items():
        with pytest.raises(ValidationError, match=re.escape(why)):
            Settings(basemap_url=url)


def test_serve_without_demo_files_says_what_to_do(tmp_path, monkeypatch, capsys):
    from server.cli import main

    monkeypatch.setenv("SOUNDSCAPE_DEMO_CACHE", str(tmp_path / "empty"))
    for var in ("SOUNDSCAPE_STORE", "SOUNDSCAPE_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "soundscape demo" in err[0]


def test_store_of_another_model_is_refused(tiny_store, tmp_path):
    import torch

    from embeddings_store.store import StoreMismatchError
    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.psm import PSM
    from server.app import create_app
    from server.settings import Settings

    torch.manual_seed(99)
    other = tmp_path / "other.safetensors"
    save_checkpoint(PSM(load_config("test")).eval(), other)
    with pytest.raises(StoreMismatchError, match="rebuild"):
        create_app(Settings(store=str(tiny_store), checkpoint=str(other)))


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
@pytest.mark.parametrize("masked", [False, True])
def test_level_search_equals_chunk_search(app_factory, monkeypatch, backend, masked):
    import server.engine as engine_mod

    app = app_factory(similarity_backend=backend)
    engine = app.state.svc.engine
    registry = app.state.svc.registry
    _, query = registry.register_text("owls")
    meta = Metadata(location=False) if masked else Metadata(month=2, hour=3, asource="yfcc")
    level = engine.level(1)
    for first, box in [(True, (-104.0, 36.0, -99.0, 40.0)), (False, (-102.5, 37.2, -101.0, 38.1))]:
        bbox = BBox(*box)
        monkeypatch.setattr(engine_mod, "GALLERY_MIN_CHUNKS", 10_000)
        by_chunks = engine.top_k(query, meta, level, bbox, 7)
        monkeypatch.setattr(engine_mod, "GALLERY_MIN_CHUNKS", 0)
        by_level = engine.top_k(query, meta, level, bbox, 7)
        assert by_chunks.attrs["exact"] == by_level.attrs["exact"] == 1
        assert by_level.attrs["searched"] == by_chunks.attrs["searched"] > 7
        np.testing.assert_allclose(by_level.score, by_chunks.score, atol=1e-6)
        np.testing.assert_allclose(by_level.lat, by_chunks.lat)
        np.testing.assert_allclose(by_level.lon, by_chunks.lon)
        np.testing.assert_allclose(by_level.uncertainty, by_chunks.uncertainty, rtol=1e-5)
        assert np.isfinite(by_level.uncertainty).all()
        # Under new metadata the level search fuses cells; the store answers a no-metadata one.
        assert (by_level.attrs["fused"] > 0) == (first and not masked)
    assert engine.gallery(level, Metadata.none()).backend == backend


def test_level_search_recall_under_random_metadata(app_factory, monkeypatch):
    """On the test store with a small sample (so the surrogate really predicts): recall@10 of
    the level search against the chunk-by-chunk exhaustive answer >= 0.95 under random
    metadata, and every answer it marks exact is the exhaustive one."""
    import server.engine as engine_mod
    from embeddings_store.search import SearchBudget

    app = app_factory()
    engine, registry = app.state.svc.engine, app.state.svc.registry
    engine.search_budget = SearchBudget(sample=96, sample_chunks=6, max_fused=600, first_batch=8)
    level, bbox = engine.level(1), BBox(-104.0, 36.0, -99.0, 40.0)
    rng = np.random.default_rng(11)
    recalls, exact = [], 0
    for trial in range(6):
        source = str(rng.choice(["inat", "yfcc", "freesound", "aporee"]))
        meta = Metadata(int(rng.integers(1, 13)), int(rng.integers(0, 24)), source)
        for text in ("owls", "rain on a tin roof", f"traffic {trial}"):
            _, query = registry.register_text(text)
            monkeypatch.setattr(engine_mod, "GALLERY_MIN_CHUNKS", 10_000)
            truth = engine.top_k(query, meta, level, bbox, 10)
            monkeypatch.setattr(engine_mod, "GALLERY_MIN_CHUNKS", 0)
            got = engine.top_k(query, meta, level, bbox, 10)
            pairs = set(zip(truth.lat.values.tolist(), truth.lon.values.tolist(), strict=True))
            found = set(zip(got.lat.values.tolist(), got.lon.values.tolist(), strict=True))
            recalls.append(len(pairs & found) / 10)
            assert got.attrs["searched"] == truth.attrs["searched"]
            if got.attrs["exact"]:
                exact += 1
                np.testing.assert_allclose(got.score, truth.score, atol=1e-5)
                np.testing.assert_allclose(got.lat, truth.lat)
    assert np.mean(recalls) >= 0.95, recalls
    assert exact >= 12


def spy_fusion_threads(monkeypatch) -> list[str]:
    """The names of the threads that call `fuse_embeddings` from now on (a list that grows)."""
    import embeddings_store.fusion as fusion_mod

    real, seen = fusion_mod.fuse_embeddings, []

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(fusion_mod, "fuse_embeddings", spy)
    return seen


def test_a_search_fuses_on_its_own_threads_to_the_same_bits(app_factory, monkeypatch):
    """top_k_threads=2: a search's fusion calls run on the search pool's threads, and the answer
    is bit for bit the one-thread answer (a cell's bits do not depend on the call fusing it)."""
    import embeddings_store.fusion as fusion_mod
    import server.engine as engine_mod

    monkeypatch.setattr(engine_mod, "GALLERY_MIN_CHUNKS", 0)  # the level search, not chunks
    monkeypatch.setattr(fusion_mod, "FUSE_BATCH", 32)  # several calls for each set of rows
    seen = spy_fusion_threads(monkeypatch)
    answers, names = [], []
    for threads in (1, 2):
        svc = app_factory(top_k_threads=threads).state.svc
        _, query = svc.registry.register_text("owls")
        seen.clear()
        meta = Metadata(month=4, hour=6, asource="inat")
        answers.append(svc.engine.top_k(query, meta, svc.engine.level(1),
                                        BBox(-104.0, 36.0, -99.0, 40.0), 8))  # fmt: skip
        names.append(list(seen))
        assert answers[-1].attrs["fused"] > 64
    assert names[0] and not any(n.startswith("soundscape-search") for n in names[0])
    assert names[1] and all(n.startswith("soundscape-search") for n in names[1])
    one, two = answers
    for var in ("score", "lat", "lon", "uncertainty"):
        np.testing.assert_array_equal(one[var].values, two[var].values)


def test_maps_and_small_searches_fuse_ahead_on_the_pool_to_the_same_bytes(app_factory, monkeypatch):
    """A map (COG) and a small-bbox top-k under new metadata fuse their chunks and edge parts
    on the search pool first (then the scan finds them cached), to the bytes one thread makes."""

    seen = spy_fusion_threads(monkeypatch)
    bbox = BBox(-102.3, 37.1, -99.6, 39.2)  # edges cut chunks: whole chunks and thin parts
    outputs, names = [], []
    for threads in (1, 2):
        svc = app_factory(top_k_threads=threads).state.svc
        engine, level = svc.engine, svc.engine.level(1)
        _, query = svc.registry.register_text("owls")
        seen.clear()
        cog = engine.map_cog(query, Metadata(month=9, hour=20), level, bbox, None, "q")
        top = engine.top_k(query, Metadata(month=3, hour=8, asource="yfcc"), level, bbox, 6)
        outputs.append((cog, top))
        names.append(list(seen))
    assert names[0] and not any(n.startswith("soundscape-search") for n in names[0])
    assert names[1] and all(n.startswith("soundscape-search") for n in names[1])  # none left
    assert outputs[0][0] == outputs[1][0]
    for var in ("score", "lat", "lon", "uncertainty"):
        np.testing.assert_array_equal(outputs[0][1][var].values, outputs[1][1][var].values)
    warm = app_factory(top_k_threads=2).state.svc.engine
    extent = CellExtent.for_bbox(level, bbox.as_tuple())
    assert warm.fuse_ahead([extent], Metadata(month=1)) >= 2
    assert warm.fuse_ahead([extent], Metadata(month=1)) == 0  # all cached now
    assert warm.fuse_ahead([extent], Metadata.none()) == 0  # the store's own cells


def test_a_colour_range_under_new_metadata_fuses_on_the_pool_to_the_same_summary(
    app_factory, monkeypatch
):
    """A map's range (and a result's percentile) fuses its sample chunks on the search pool,
    to the summary one thread makes."""

    seen = spy_fusion_threads(monkeypatch)
    summaries, names = [], []
    for threads in (1, 2):
        svc = app_factory(top_k_threads=threads).state.svc
        _, query = svc.registry.register_text("owls")
        assert sum(len(list(r.chunks())) for r in svc.engine.range_regions()) >= 2
        seen.clear()
        meta = Metadata(month=6, hour=4, asource="inat")
        summaries.append((svc.engine.summary(meta, query), svc.engine.summary(meta, None)))
        names.append(list(seen))
    assert names[0] and not any(n.startswith("soundscape-search") for n in names[0])
    assert names[1] and all(n.startswith("soundscape-search") for n in names[1])
    for one, two in zip(*summaries, strict=True):
        np.testing.assert_array_equal(one, two)


def test_a_level_larger_than_gallery_memory_is_searched_from_a_mapped_file(app_factory):
    """gallery_mb below the level's size: the no-metadata matrix is written to a file and
    mapped, and every top-k answer is the one an in-memory engine gives."""
    from server.cache import LRUCache, TieredCache
    from server.engine import Engine

    svc = app_factory().state.svc
    roomy = svc.engine
    tight = Engine(svc.model, roomy.store, TieredCache(LRUCache(64 << 20)), gallery_mb=0)
    _, query = svc.registry.register_text("owls")
    level, bbox = roomy.level(1), BBox(-104.0, 36.0, -99.0, 40.0)
    for meta in (Metadata.none(), Metadata(month=5, hour=21)):
        want = roomy.top_k(query, meta, level, bbox, 9)
        got = tight.top_k(query, meta, level, bbox, 9)
        np.testing.assert_array_equal(got.score, want.score)
        np.testing.assert_array_equal(got.lat, want.lat)
    mapped = tight.gallery(level, Metadata.none()).matrix
    assert isinstance(mapped.mu, np.memmap) and mapped.nbytes == mapped.tail.nbytes
    assert str(tight.spill_dir()) in str(mapped.mu.filename)
    assert not isinstance(roomy.gallery(level, Metadata.none()).matrix.mu, np.memmap)


def test_top_k_over_too_many_cells_is_refused(app_factory):
    with TestClient(app_factory(max_bbox_cells=100)) as c:
        body = {"query": {"text": "owls"}, "bbox": [-104.0, 36.0, -99.0, 40.0], "top_k": 3}
        r = c.post("/similarity", json=body)
        assert r.status_code == 413 and "at most 100" in r.json()["detail"], r.text
        small = body | {"bbox": [-101.2, 38.0, -101.0, 38.2]}
        assert c.post("/similarity", json=small).status_code == 200


def test_web_folder_is_served_with_csp(app_factory, tmp_path):
    web = tmp_path / "web"
    (web / "node_modules" / "leaflet" / "dist").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>map</title><script src=app.js></script>")
    (web / "app.js").write_text("console.log('map');")
    (web / "node_modules" / "leaflet" / "dist" / "leaflet.js").write_text("/* leaflet */")
    with TestClient(app_factory(web_dir=str(web))) as c:
        page = c.get("/")
        assert page.status_code == 200 and "<title>map</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        js = c.get("/static/app.js")
        assert js.status_code == 200 and js.headers["x-content-type-options"] == "nosniff"
        assert c.get("/vendor/leaflet/leaflet.js").text == "/* leaflet */"
        assert c.get("/static/../pyproject.toml").status_code == 404
    with TestClient(app_factory(web_dir=str(tmp_path / "missing"))) as c:
        page = c.get("/")
        assert page.status_code == 200 and "not built" in page.text
        assert "content-security-policy" in page.headers


def test_audio_embeddings_are_deterministic(app_factory):
    from server.cache import LRUCache
    from tests.server.helpers import audio_bytes

    svc = app_factory().state.svc
    data = audio_bytes("OGG", "VORBIS", seconds=2.5, sr=22050, channels=2)
    qid, first = svc.registry.register_audio(data, svc.audio_limits)
    svc.cache.lru = LRUCache(1 << 20)  # forget it: the model embeds the clip again
    again_id, again = svc.registry.register_audio(data, svc.audio_limits)
    assert again_id == qid
    assert again.to_bytes() == first.to_bytes()


def test_workers_sharing_redis_compute_a_key_once(redis_server):
    """Two processes' caches (separate LRUs, one Redis): a concurrent miss computes once."""
    calls = []

    def slow() -> bytes:
        calls.append(1)
        time.sleep(0.3)
        return b"value"

    caches = [
        TieredCache(LRUCache(1 << 20), RedisCache(redis_server.url, 0.5, 1.0, 60)) for _ in range(2)
    ]
    key = f"once-{time.monotonic_ns()}"
    results = []
    threads = [threading.Thread(target=lambda c=c: results.append(c.get_or_compute(key, slow)))
               for c in caches]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert sorted(where for _, where in results) == ["miss", "redis"]
    assert all(value == b"value" for value, _ in results)


def two_workers(redis_server) -> list[TieredCache]:
    """Two workers' caches: separate LRUs and Redis connections, one Redis."""
    return [
        TieredCache(LRUCache(1 << 20), RedisCache(redis_server.url, 0.5, 1.0, 60)) for _ in range(2)
    ]


def lock_value(redis_server, key: str) -> bytes | None:
    import redis

    return redis.Redis.from_url(redis_server.url).get(f"lock:{key}")


def test_a_worker_that_stopped_waiting_never_deletes_the_other_workers_lock(
    redis_server, monkeypatch
):
    import server.cache as cache_mod

    monkeypatch.setattr(cache_mod, "LOCK_WAIT_S", 0.2)
    a, b = two_workers(redis_server)
    key = f"slow-{time.monotonic_ns()}"
    started, release = threading.Event(), threading.Event()

    def slow() -> bytes:
        started.set()
        release.wait(10)
        return b"from a"

    worker_a = threading.Thread(target=a.get_or_compute, args=(key, slow))
    worker_a.start()
    assert started.wait(5)
    held = lock_value(redis_server, key)
    assert held is not None  # a's lock, with a's own token
    # b waits 0.2 s for a's value, gives up and computes itself; its unlock must not touch a's.
    assert b.get_or_compute(key, lambda: b"from b") == (b"from b", "miss")
    assert lock_value(redis_server, key) == held
    release.set()
    worker_a.join(10)
    assert lock_value(redis_server, key) is None  # a released its own lock


def test_a_lock_that_expired_and_was_taken_over_is_left_to_its_new_owner(redis_server, monkeypatch):
    import server.cache as cache_mod

    monkeypatch.setattr(cache_mod, "LOCK_TTL_S", 0.3)
    monkeypatch.setattr(cache_mod, "LOCK_WAIT_S", 0.05)
    a, b = two_workers(redis_server)
    key = f"expiring-{time.monotonic_ns()}"
    a_started, a_go, b_started, b_go = (threading.Event() for _ in range(4))

    def slow_a() -> bytes:
        a_started.set()
        a_go.wait(10)
        return b"a"

    def slow_b() -> bytes:
        b_started.set()
        b_go.wait(10)
        return b"b"

    worker_a = threading.Thread(target=a.get_or_compute, args=(key, slow_a))
    worker_a.start()
    assert a_started.wait(5)
    time.sleep(0.5)  # a's lock expires while it computes
    # b takes the now free lock of the same key and computes slowly.
    worker_b = threading.Thread(target=b.get_or_compute, args=(key, slow_b))
    worker_b.start()
    assert b_started.wait(5)
    b_lock = lock_value(redis_server, key)
    assert b_lock is not None
    a_go.set()
    worker_a.join(10)
    assert lock_value(redis_server, key) == b_lock  # a did not delete b's lock
    b_go.set()
    worker_b.join(10)
    assert lock_value(redis_server, key) is None


def test_settings_come_from_the_environment(monkeypatch):
    from server.settings import Settings

    monkeypatch.setenv("REDIS_URL", "redis://other:1/0")
    monkeypatch.setenv("SOUNDSCAPE_CORS_ORIGINS", '["https://maps.example"]')
    monkeypatch.setenv("SOUNDSCAPE_QUEUE_LIMIT", "7")
    s = Settings()
    assert s.redis_url == "redis://other:1/0"
    assert s.cors_origins == ["https://maps.example"] and s.queue_limit == 7
    monkeypatch.setenv("SOUNDSCAPE_REDIS_URL", "redis://mine:2/0")
    assert Settings().redis_url == "redis://mine:2/0"  # the prefixed name wins


def test_serve_refuses_bad_inputs_in_one_line(tiny_store, tiny_checkpoint, tmp_path, capsys):
    import torch

    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.psm import PSM
    from server.cli import main

    assert main(["serve", "--store", str(tmp_path / "no.zarr"),
                 "--checkpoint", str(tiny_checkpoint)]) == 2  # fmt: skip
    assert "no embedding store" in capsys.readouterr().err
    torch.manual_seed(5)
    other = tmp_path / "other.safetensors"
    save_checkpoint(PSM(load_config("test")).eval(), other)
    assert main(["serve", "--store", str(tiny_store), "--checkpoint", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "soundscape precompute" in err[0]
