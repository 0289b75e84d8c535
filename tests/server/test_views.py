"""Views and time-lapses prepared as one job (POST /views/...): the tiles fetched afterwards are
cache hits holding the single-tile route's own bytes."""

from __future__ import annotations

import mercantile
import pytest
from fastapi.testclient import TestClient

from embeddings_store.grid import tile_window
from server.views import view_blocks, view_tiles

VIEW = (-103.0, 37.0, -100.0, 39.0)  # inside the test store
Z = 8
META = "month=3&asource=yfcc"


def bbox_param(box=VIEW) -> str:
    return ",".join(map(str, box))


def tile_urls(template: str, hours: list[int] | None) -> list[str]:
    tiles = view_tiles(VIEW, Z)
    frames = [f"&hour={h}" for h in hours] if hours else [""]
    return [template.format(z=t.z, x=t.x, y=t.y) + f for f in frames for t in tiles]


@pytest.mark.parametrize(
    ("view", "template", "hours"),
    [
        (f"/views/tiles/owls%20at%20night/{Z}?{META}&hour=5", "/tiles/owls%20at%20night/{z}/{x}/{y}.png?" + META + "&hour=5", None),  # noqa: E501
        (f"/views/tiles/owls%20at%20night/{Z}?{META}&scale=absolute&hours=22,23,0",
         "/tiles/owls%20at%20night/{z}/{x}/{y}.png?" + META + "&scale=absolute", [22, 23, 0]),
        (f"/views/uncertainty/{Z}?{META}&hours=4,5", "/uncertainty/{z}/{x}/{y}.png?" + META,
         [4, 5]),
    ],
)  # fmt: skip
def test_prepared_tiles_are_the_single_tile_bytes(app_factory, view, template, hours):
    # Two services, two caches; the cold one decodes every chunk it reads from zarr again.
    prepared, cold = app_factory(), app_factory(chunk_cache_mb=0)
    with TestClient(prepared) as a, TestClient(cold) as b:
        r = a.post(view + f"&bbox={bbox_param()}")
        assert r.status_code == 200, r.text
        out = r.json()
        urls = tile_urls(template, hours)
        assert out["tiles"] == len(urls) > 4 and out["rendered"] == len(urls)
        assert out["frames"] == (len(hours) if hours else 1) and out["hours"] == hours
        assert out["chunks"] > 0
        for url in urls:
            got = a.get(url)
            assert got.status_code == 200 and 'desc="lru"' in got.headers["server-timing"], url
            assert got.content == b.get(url).content, url
        again = a.post(view + f"&bbox={bbox_param()}").json()
        assert again["rendered"] == 0 and again["chunks"] == 0


def chunk_lookups(client: TestClient) -> dict[str, float]:
    """The chunk cache's hits and misses from /metrics."""
    out = {"hit": 0.0, "miss": 0.0}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("soundscape_cache_lookups_total{") and 'tier="chunks"' in line:
            outcome = line.split('outcome="')[1].split('"')[0]
            out[outcome] = float(line.rsplit(" ", 1)[1])
    return out


def test_a_time_lapse_decodes_each_chunk_once(app_factory):
    """Frames after the first read their chunks from memory, not zarr (the `chunks` tier of
    soundscape_cache_lookups_total); with the cache off there is no such tier."""
    view = f"/views/tiles/owls%20at%20night/{Z}?{META}&hours=1,2,3&bbox={bbox_param()}"
    with TestClient(app_factory()) as client:
        assert client.post(view).status_code == 200
        seen = chunk_lookups(client)
    assert seen["miss"] > 0 and seen["hit"] >= 2 * seen["miss"], seen
    with TestClient(app_factory(chunk_cache_mb=0)) as client:
        assert client.post(view).status_code == 200
        assert chunk_lookups(client) == {"hit": 0.0, "miss": 0.0}


def test_a_frame_reads_its_chunks_whole_and_only_thin_margins_around():
    from embeddings_store.grid import Level
    from embeddings_store.store import LevelExtent
    from model.metadata import Metadata
    from server.tiles import TileRequest

    level = Level(1, 8, 8)
    held = LevelExtent.for_bbox(level, (-104.0, 36.0, -99.0, 40.0))
    frame = [TileRequest(t.z, t.x, t.y, Metadata()) for t in view_tiles(VIEW, Z)]
    chunks, margins = view_blocks(level, frame, held)
    assert sorted(chunks) == sorted({(t.x, t.y) for t in view_tiles(VIEW, Z)})
    for block in margins:
        ((tx, ty),) = block.chunks()
        assert (tx, ty) not in chunks and held.holds_chunk(tx, ty)
        assert min(block.shape) == 1  # a one-cell strip or corner of a neighbour
    # Every cell a tile window reads is in a whole chunk or a margin block.
    for req in frame:
        window = tile_window(level, req.x, req.y, req.z, margin=1)
        for key in window.chunks():
            if held.holds_chunk(*key) and key not in chunks:
                assert any(b.chunks() == [key] for b in margins)


def test_bad_view_requests_are_refused(app_factory):
    with TestClient(app_factory(max_view_tiles=20)) as c:
        qid = c.post("/queries", json={"text": "owls"}).json()["id"]
        base = f"/views/tiles/{qid}/{Z}"
        box = f"bbox={bbox_param()}"
        cases = [
            (f"{base}?{box}&hours=24", 422, "0..23"),
            (f"{base}?{box}&hours=3,3", 422, "distinct"),
            (f"{base}?{box}&hours=1,x", 422, "hours"),
            (f"{base}?bbox=1,2,3", 422, "bbox"),
            (f"{base}?bbox=-100,37,-103,39", 422, "west"),
            (f"{base}", 422, "bbox"),
            (f"/views/tiles/{qid}/2?{box}", 404, "zoom"),
            (f"{base}?{box}&hours=1,2,3,4,5,6", 413, "at most 20"),
            (f"{base}?{box}&colormap=nope", 422, "colormap"),
            (f"/views/tiles/txt-{'0' * 24}/{Z}?{box}", 404, "query"),
            (f"/views/uncertainty/{Z}?{box}&level=4", 422, "level"),
        ]
        for url, status, words in cases:
            r = c.post(url)
            assert r.status_code == status, (url, r.text)
            assert words in r.text.lower() or words in r.text, (url, r.text)
        assert c.get(f"{base}?{box}").status_code == 405  # a POST: it does work


def test_view_tiles_cover_the_bbox():
    tiles = view_tiles(VIEW, Z)
    west = min(mercantile.bounds(t).west for t in tiles)
    north = max(mercantile.bounds(t).north for t in tiles)
    assert west <= VIEW[0] and north >= VIEW[3]
    assert len({(t.x, t.y) for t in tiles}) == len(tiles)
