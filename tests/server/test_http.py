"""The HTTP contract (docs/ARCHITECTURE.md, "HTTP") against a real uvicorn process backed by a
real redis-server."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings_store.grid import Level
from model.scoring import match_probability
from tests.server.conftest import BBOX, LEVELS
from tests.server.helpers import decode_tile, tile_value

L1: Level = LEVELS[0]
CENTER = (0.5 * (BBOX[1] + BBOX[3]), 0.5 * (BBOX[0] + BBOX[2]))  # lat, lon


def tile_of(lat: float, lon: float, z: int) -> tuple[int, int]:
    import mercantile

    t = mercantile.tile(lon, lat, z)
    return t.x, t.y


def nearest_boundary(lat: float, lon: float, z: int) -> tuple[int, int, bool, bool]:
    """(x, y, x_inside, y_inside): tile edges x|x+1 and y|y+1 pass closest to the point;
    the flags say whether that edge crosses the store's bbox."""
    import mercantile

    from embeddings_store.grid import HALF_WORLD, WORLD, lonlat_to_mercator

    mx, my = lonlat_to_mercator(np.array(lon), np.array(lat))
    x = round((float(mx) + HALF_WORLD) / WORLD * 2**z) - 1
    y = round((HALF_WORLD - float(my)) / WORLD * 2**z) - 1
    edge = mercantile.bounds(x, y, z)
    return x, y, BBOX[0] < edge.east < BBOX[2], BBOX[1] < edge.south < BBOX[3]


@pytest.fixture(scope="module")
def text_query(client) -> dict:
    r = client.post("/queries", json={"text": "  Birds   singing at dawn "})
    assert r.status_code == 200, r.text
    return r.json()


def test_text_query_ids_are_content_hashes(client, text_query):
    assert text_query["kind"] == "text"
    assert text_query["id"].startswith("txt-")
    assert text_query["tiles"] == f"/tiles/{text_query['id']}/{{z}}/{{x}}/{{y}}.png"
    # Same text after NFKC / trimming / space collapsing -> same id.
    again = client.post("/queries", json={"text": "Birds singing\u3000at dawn"}).json()
    assert again["id"] == text_query["id"]
    other = client.post("/queries", json={"text": "traffic noise"}).json()
    assert other["id"] != text_query["id"]


@pytest.mark.parametrize(
    "body",
    [{"text": ""}, {"text": "   "}, {"text": "x" * 300}, {"nope": "a"}, {"text": 3}, [1, 2]],
)
def test_bad_text_queries_are_422(client, body):
    r = client.post("/queries", json=body)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()


def test_queries_need_json_or_multipart(client):
    r = client.post("/queries", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/queries", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


@pytest.mark.parametrize("z", [4, 6, 8, 10, 12, 17])
def test_tiles_decode_as_256_png(client, text_query, z):
    x, y = tile_of(*CENTER, z)
    r = client.get(f"/tiles/{text_query['id']}/{z}/{x}/{y}.png")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    idx = decode_tile(r.content)
    assert (idx > 0).any()  # the centre of the store is covered
    u = client.get(f"/uncertainty/{z}/{x}/{y}.png")
    assert u.status_code == 200
    assert (decode_tile(u.content) > 0).any()


def test_tile_by_text_equals_tile_by_id(client, text_query):
    x, y = tile_of(*CENTER, 8)
    by_id = client.get(f"/tiles/{text_query['id']}/8/{x}/{y}.png?month=6")
    by_text = client.get(f"/tiles/Birds%20singing%20at%20dawn/8/{x}/{y}.png?month=6")
    assert by_id.status_code == by_text.status_code == 200
    assert by_id.content == by_text.content


def test_no_coverage_is_transparent(client, text_query):
    x, y = tile_of(10.0, 10.0, 8)  # far outside the store
    r = client.get(f"/tiles/{text_query['id']}/8/{x}/{y}.png")
    assert r.status_code == 200
    assert (decode_tile(r.content) == 0).all()


@pytest.mark.parametrize(
    "path",
    [
        "/tiles/{q}/3/0/0.png",  # below the zoom range
        "/tiles/{q}/18/0/0.png",  # above it
        "/tiles/{q}/8/256/0.png",  # x beyond 2^z - 1
        "/tiles/{q}/8/0/256.png",
        "/tiles/{q}/8/-1/0.png",
        "/tiles/{q}/40/0/0.png",
        "/uncertainty/8/0/999.png",
        "/imagery/31/0/0.png",
        "/tiles/{q}/4/3/6.png?level=1",  # level 1 cannot serve zoom 4
        "/tiles/{q}/5/6/12.png?level=1",  # ... nor 5 (its web_zooms are 6..17)
        "/tiles/{q}/16/0/0.png?level=5",  # level 5's web_zooms end at 15
    ],
)
def test_out_of_range_tiles_are_404(client, text_query, path):
    r = client.get(path.format(q=text_query["id"]))
    assert r.status_code == 404, r.text
    assert "detail" in r.json()


@pytest.mark.parametrize(("level", "z"), [(1, 6), (1, 17), (5, 4), (5, 15)])
def test_a_named_level_serves_the_ends_of_its_web_zooms(client, text_query, level, z):
    x, y = tile_of(*CENTER, z)
    r = client.get(f"/tiles/{text_query['id']}/{z}/{x}/{y}.png?level={level}")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "query",
    ["month=0", "month=13", "hour=24", "hour=-1", "asource=radio", "tsource=gpt", "level=2",
     "scale=linear", "colormap=jet", "location=maybe", "month=abc"],
)  # fmt: skip
def test_bad_metadata_is_422(client, text_query, query):
    x, y = tile_of(*CENTER, 8)
    r = client.get(f"/tiles/{text_query['id']}/8/{x}/{y}.png?{query}")
    assert r.status_code == 422, r.text
    assert "detail" in r.json()


def test_unknown_query_id_is_404_with_one_wording_on_every_route(client):
    x, y = tile_of(*CENTER, 8)
    qid = f"aud-{'1' * 24}"
    answers = [
        client.get(f"/tiles/{qid}/8/{x}/{y}.png"),
        client.get(f"/queries/{qid}"),
        client.get(f"/queries/{qid}/tilejson.json"),
        client.get("/legend", params={"query": qid}),
        client.post("/similarity", json={"query": {"id": qid}, "points": [[38, -101]]}),
    ]
    assert [r.status_code for r in answers] == [404] * len(answers)
    want = f"unknown query id {qid!r}: register the query with POST /queries"
    assert {r.json()["detail"] for r in answers} == {want}
    # A string that is not shaped like an id is invalid input where only ids are accepted.
    for r in (
        client.get("/queries/nope"),
        client.get("/queries/nope/tilejson.json"),
        client.post("/similarity", json={"query": {"id": "nope"}, "points": [[38, -101]]}),
    ):
        assert r.status_code == 422, r.text


def test_etag_304_and_headers(client, text_query):
    x, y = tile_of(*CENTER, 9)
    url = f"/tiles/{text_query['id']}/9/{x}/{y}.png?month=3&hour=7&asource=inat"
    r = client.get(url)
    assert r.status_code == 200
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "max-age=" in r.headers["cache-control"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "cache;desc=" in r.headers["server-timing"]
    again = client.get(url)
    assert again.headers["etag"] == etag and again.content == r.content
    assert 'desc="lru"' in again.headers["server-timing"]
    nm = client.get(url, headers={"If-None-Match": etag})
    assert nm.status_code == 304 and nm.content == b""
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # Different metadata is a different tile.
    assert client.get(url.replace("month=3", "month=9")).headers["etag"] != etag


def neighbours_agree(left: np.ndarray, right: np.ndarray, axis: int) -> None:
    """Edge pixels across the tile boundary differ no more than adjacent interior pixels."""
    if axis == 1:
        a, b = left[:, -1].astype(int), right[:, 0].astype(int)
        inner = np.abs(np.diff(np.hstack([left[:, -8:], right[:, :8]]).astype(int), axis=1))
        inner = np.delete(inner, 7, axis=1)
    else:
        a, b = left[-1, :].astype(int), right[0, :].astype(int)
        inner = np.abs(np.diff(np.vstack([left[-8:, :], right[:8, :]]).astype(int), axis=0))
        inner = np.delete(inner, 7, axis=0)
    both = (a > 0) & (b > 0)
    assert both.sum() >= 16  # the tiles share covered edge pixels
    edge = np.abs(a - b)[both]
    assert edge.max() <= inner.max() + 1, (edge.max(), inner.max())
    assert edge.mean() <= inner.mean() * 1.5 + 1


@pytest.mark.parametrize("z", [5, 7, 8, 10, 13])
@pytest.mark.parametrize("kind", ["tiles", "uncertainty"])
def test_neighbouring_tiles_have_no_seams(client, text_query, z, kind):
    x, y, x_in, y_in = nearest_boundary(*CENTER, z)
    cx, cy = tile_of(*CENTER, z)
    prefix = f"/tiles/{text_query['id']}" if kind == "tiles" else "/uncertainty"

    def get(tx: int, ty: int) -> np.ndarray:
        r = client.get(f"{prefix}/{z}/{tx}/{ty}.png?month=4&hour=20")
        assert r.status_code == 200
        return decode_tile(r.content)

    assert x_in or y_in
    if x_in:
        neighbours_agree(get(x, cy), get(x + 1, cy), axis=1)
    if y_in:
        neighbours_agree(get(cx, y), get(cx, y + 1), axis=0)


def model_scores(checkpoint, store_path, text: str, cells, meta: dict):
    """-CSD, probability and uncertainty of store cells by the model's own functions."""
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint
    from model.metadata import make_metadata
    from model.scoring import match_probability, neg_csd_matrix, uncertainty
    from server.queries import normalize_text

    model = load_checkpoint(checkpoint)
    store = EmbeddingStore.open(store_path)
    ext = store.extent(L1.psm_zoom)
    h = np.stack(
        [np.asarray(store.array(1, "h")[cy - ext.cy0, cx - ext.cx0, :], np.float32)
         for cx, cy in cells]
    )  # fmt: skip
    lat = L1.cell_centers_lat([cy for _, cy in cells])
    lon = L1.cell_centers_lon([cx for cx, _ in cells])
    cfg = model.config
    batch = make_metadata(
        lat, lon, month=meta.get("month"), hour=meta.get("hour"),
        asource=cfg.audio_sources[meta["asource"]] if "asource" in meta else None,
        use_location=True,
    )  # fmt: skip
    with torch.no_grad():
        g = model.fuse(torch.from_numpy(h), batch)
        q = model.embed_texts([normalize_text(text)])
        score = neg_csd_matrix(g.mu, g.logvar, q.mu, q.logvar)[:, 0].numpy()
    a, b = model.match_parameters()
    return score, match_probability(score, a, b), uncertainty(g.logvar).numpy()


def test_tiles_similarity_and_model_agree(client, text_query, tiny_store, tiny_checkpoint):
    meta = {"month": 5, "hour": 6, "asource": "inat"}
    qs = "month=5&hour=6&asource=inat"
    ext_cx0, ext_cy0 = 54 * L1.n, 96 * L1.n  # the level's first chunk (see conftest extents)
    cells = [
        (ext_cx0 + 9, ext_cy0 + 10),
        (ext_cx0 + 17, ext_cy0 + 12),
        (ext_cx0 + 20, ext_cy0 + 21),
    ]
    score, prob, unc = model_scores(tiny_checkpoint, tiny_store, "Birds singing at dawn",
                                    cells, meta)  # fmt: skip
    points = [[float(L1.cell_centers_lat([cy])[0]), float(L1.cell_centers_lon([cx])[0])]
              for cx, cy in cells]  # fmt: skip
    body = {"query": {"id": text_query["id"]}, "metadata": meta, "level": 1, "points": points}
    r = client.post("/similarity", json=body)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    np.testing.assert_allclose([p["score"] for p in res], score, rtol=0, atol=2e-5)
    np.testing.assert_allclose([p["probability"] for p in res], prob, rtol=0, atol=2e-5)
    np.testing.assert_allclose([p["uncertainty"] for p in res], unc, rtol=1e-5)

    legend = client.get(f"/legend?query={text_query['id']}&{qs}").json()
    lo, hi = legend["min"], legend["max"]
    # The probability scale spans the probabilities of the same 2..98 % range (issue 25).
    pleg = client.get(f"/legend?query={text_query['id']}&{qs}&scale=probability").json()
    plo, phi = pleg["min"], pleg["max"]
    a, b = load_checkpoint_params(tiny_checkpoint)
    assert (plo, phi) == pytest.approx(tuple(match_probability(np.array([lo, hi]), a, b)),
                                       rel=1e-5)  # fmt: skip
    z = L1.cell_zoom + 1  # one cell = 512 px: the tile corner pixel sits at the cell centre
    for (cx, cy), s, p in zip(cells, score, prob, strict=True):
        tx, ty = 2 * cx, 2 * cy  # tile whose south-east corner is the cell centre
        png = client.get(f"/tiles/{text_query['id']}/{z}/{tx}/{ty}.png?{qs}&level=1").content
        v = tile_value(decode_tile(png), lo, hi)[255, 255]
        if lo <= s <= hi:
            assert abs(v - s) <= (hi - lo) * (0.5 / 254 + 0.01)
        else:  # outside the 2..98% range the ramp saturates
            assert v == pytest.approx(np.clip(s, lo, hi), abs=(hi - lo) * 0.01)
        png = client.get(
            f"/tiles/{text_query['id']}/{z}/{tx}/{ty}.png?{qs}&level=1&scale=probability"
        ).content
        pv = tile_value(decode_tile(png), plo, phi)[255, 255]
        assert abs(pv - np.clip(p, plo, phi)) <= (phi - plo) * (0.5 / 254 + 0.01) + 1e-6


def load_checkpoint_params(path) -> tuple[float, float]:
    """The (a, b) of a checkpoint's match probability."""
    from model.checkpoint import load_checkpoint

    return load_checkpoint(path).match_parameters()


def test_no_metadata_maps_come_from_the_stored_mu0(client, text_query, tiny_store,
                                                   tiny_checkpoint):  # fmt: skip
    """location=false with nothing else = every component masked: scored from mu0/c0."""
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint
    from model.scoring import neg_csd_matrix
    from server.queries import normalize_text

    model = load_checkpoint(tiny_checkpoint)
    store = EmbeddingStore.open(tiny_store)
    assert store.with_fused
    cx, cy = 54 * L1.n + 11, 96 * L1.n + 13
    h = np.asarray(store.array(1, "h")[cy - 96 * L1.n, cx - 54 * L1.n, :], np.float32)[None]
    with torch.no_grad():
        g = model.fuse(torch.from_numpy(h), None)
        q = model.embed_texts([normalize_text("Birds singing at dawn")])
        expect = float(neg_csd_matrix(g.mu, g.logvar, q.mu, q.logvar)[0, 0])
    point = [float(L1.cell_centers_lat([cy])[0]), float(L1.cell_centers_lon([cx])[0])]
    body = {"query": {"id": text_query["id"]}, "metadata": {"location": False}, "level": 1,
            "points": [point]}  # fmt: skip
    got = client.post("/similarity", json=body).json()["results"][0]
    assert got["score"] == pytest.approx(expect, abs=3e-3)  # mu0 is stored as float16
    # Tiles under the same (masked) metadata agree with /similarity.
    legend = client.get(f"/legend?query={text_query['id']}&location=false").json()
    z = L1.cell_zoom + 1
    png = client.get(f"/tiles/{text_query['id']}/{z}/{2 * cx}/{2 * cy}.png?location=false&level=1")
    v = tile_value(decode_tile(png.content), legend["min"], legend["max"])[255, 255]
    span = legend["max"] - legend["min"]
    assert abs(v - np.clip(got["score"], legend["min"], legend["max"])) <= span * 0.015


def test_top_k_is_exact(client, text_query):
    meta = {"month": 1, "hour": 12}
    body = {"query": {"text": "Birds singing at dawn"}, "metadata": meta, "level": 1,
            "bbox": [-103.0, 37.0, -100.0, 39.0], "top_k": 5}  # fmt: skip
    r = client.post("/similarity", json=body)
    assert r.status_code == 200, r.text
    top = r.json()["results"]
    assert len(top) == 5
    assert r.json()["exact"] is True and r.json()["fused_cells"] >= 0
    assert r.json()["searched_cells"] >= 5
    scores = [t["score"] for t in top]
    assert scores == sorted(scores, reverse=True)
    # Brute force: score every cell centre in the bbox as points.
    cx0, cy0 = L1.cell_of_lonlat(np.array([-103.0]), np.array([39.0]))
    cx1, cy1 = L1.cell_of_lonlat(np.array([-100.0]), np.array([37.0]))
    pts = [[float(L1.cell_centers_lat([cy])[0]), float(L1.cell_centers_lon([cx])[0])]
           for cy in range(cy0[0], cy1[0] + 1) for cx in range(cx0[0], cx1[0] + 1)]  # fmt: skip
    pts = [p for p in pts if 37 <= p[0] <= 39 and -103 <= p[1] <= -100]
    body = {"query": {"id": text_query["id"]}, "metadata": meta, "level": 1, "points": pts}
    every = client.post("/similarity", json=body).json()["results"]
    best = sorted((p["score"] for p in every if p["score"] is not None), reverse=True)[:5]
    np.testing.assert_allclose(scores, best, atol=1e-6)
    for t in top:
        assert 37 <= t["lat"] <= 39 and -103 <= t["lon"] <= -100
        assert 0 <= t["probability"] <= 1 and t["uncertainty"] > 0


@pytest.mark.parametrize(
    "body",
    [
        {"query": {"text": "x"}},
        {"query": {"text": "x"}, "points": [[0, 0]], "bbox": [0, 0, 1, 1]},
        {"query": {"text": "x"}, "points": [[91, 0]]},
        {"query": {"text": "x"}, "bbox": [1, 0, 0, 1]},
        {"query": {"text": "x"}, "bbox": [-104, 36, -99, 40], "top_k": 0},
        {"query": {}, "points": [[0, 0]]},
        {"query": {"text": "x"}, "points": [[0, 0]], "metadata": {"month": 13}},
        {"query": {"text": "x"}, "points": [[0, 0]], "level": 2},
        {"query": {"text": "x"}, "points": [[0, 0]] * 10001},
    ],
)
def test_bad_similarity_requests_are_422(client, body):
    r = client.post("/similarity", json=body)
    assert r.status_code == 422, r.text[:300]


def test_points_outside_the_store_are_null(client):
    body = {"query": {"text": "rain"}, "points": [[0.0, 0.0], [89.9, 10.0], [38.0, -101.0]]}
    res = client.post("/similarity", json=body).json()["results"]
    assert res[0]["score"] is None and res[1]["score"] is None
    assert res[2]["score"] is not None


def test_info_tilejson_legend_health_metrics(client, text_query):
    info = client.get("/api/info").json()
    assert info["zoom_range"] == [4, 17]
    assert [lv["psm_zoom"] for lv in info["store"]["levels"]] == [1, 5]
    # The level rules the page draws by (web/js/levels.js), from embeddings_store/grid.py.
    assert [lv["web_zooms"] for lv in info["store"]["levels"]] == [[6, 17], [4, 15]]
    assert info["auto_levels"] == [
        {"psm_zoom": 5, "web_zooms": [4, 5]},
        {"psm_zoom": 1, "web_zooms": [6, 17]},
    ]
    assert "inat" in info["vocabulary"]["audio_sources"]
    # The compute path is chosen automatically and reported (no GPU on the test machines).
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert info["compute"]["device"].startswith(expected)
    assert info["compute"]["fusion_precision"] == ("bf16" if expected == "cuda" else "fp32")
    assert info["compute"]["similarity_backend"] in ("numpy", "faiss")
    tj = client.get(f"/queries/{text_query['id']}/tilejson.json?month=2").json()
    assert tj["tilejson"] == "3.0.0" and tj["minzoom"] == 4 and tj["maxzoom"] == 17
    assert tj["tiles"][0].endswith("/{z}/{x}/{y}.png?month=2")
    # Where the store holds cells: the precompute bbox, widened to whole chunks of each level.
    w, s, e, n = tj["bounds"]
    assert w <= BBOX[0] and s <= BBOX[1] and e >= BBOX[2] and n >= BBOX[3]
    assert w > BBOX[0] - 6 and s > BBOX[1] - 6 and e < BBOX[2] + 6 and n < BBOX[3] + 6
    lg = client.get(f"/legend?query={text_query['id']}").json()
    assert lg["min"] < lg["max"] and len(lg["colors"]) == 11
    lg = client.get("/legend?month=3").json()
    assert lg["kind"] == "uncertainty" and lg["min"] < lg["max"]
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["redis"] == "up"
    text = client.get("/metrics").text
    for name in ("soundscape_tile_seconds", "soundscape_cache_lookups_total",
                 "soundscape_queue_depth"):  # fmt: skip
        assert name in text


def test_queries_can_be_looked_up_without_registering(client, text_query):
    assert client.get(f"/queries/{text_query['id']}").json() == text_query
    unknown = "txt-" + "0" * 24
    for _ in range(2):  # the lookup registers nothing: still unknown the second time
        r = client.get(f"/queries/{unknown}")
        assert r.status_code == 404 and "POST /queries" in r.json()["detail"]
    r = client.get("/queries/birds%20at%20dawn")
    assert (
        r.status_code == 422
        and "path query_id: String should match pattern" in (r.json()["detail"])
    )


def test_page_and_health_answer_head_requests(client):
    for path in ("/", "/healthz", "/readyz"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_page_has_csp_and_imagery_tiles_work(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data: blob:" in csp
    x, y = tile_of(*CENTER, 7)
    r = client.get(f"/imagery/7/{x}/{y}.png")
    assert r.status_code == 200 and r.headers["etag"]
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(r.content))
    assert img.size == (256, 256)
    assert np.asarray(img.convert("RGB")).std() > 1  # real Blue Marble pixels


def test_openapi_documents_parameters(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/tiles/{query}/{z}/{x}/{y}.png"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    for p in params.values():
        assert p.get("description"), p["name"]
    assert params["z"]["schema"]["minimum"] == 4 and params["z"]["schema"]["maximum"] == 17
    assert params["x"]["schema"]["minimum"] == 0
    month = params["month"]["schema"]
    month = next(s for s in month.get("anyOf", [month]) if s.get("type") == "integer")
    assert (month["minimum"], month["maximum"]) == (1, 12)

    def enum_of(name: str) -> list:
        schema = params[name]["schema"]
        for s in schema.get("anyOf", [schema]):
            if "$ref" in s:
                return spec["components"]["schemas"][s["$ref"].split("/")[-1]]["enum"]
            if "enum" in s:
                return s["enum"]
        raise AssertionError(schema)

    assert sorted(enum_of("asource")) == ["aporee", "freesound", "inat", "yfcc"]
    assert sorted(enum_of("tsource")) == ["meta", "pengi", "qwen"]
    assert sorted(enum_of("level")) == [1, 5]
    assert "viridis" in enum_of("colormap")
    body = spec["paths"]["/queries"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)


def test_requests_are_counted_by_route_template(client):
    text = "a very unusual query 12345"
    x, y = tile_of(*CENTER, 8)
    assert client.get(f"/tiles/{text}/8/{x}/{y}.png").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    metrics = client.get("/metrics").text
    counted = [
        line for line in metrics.splitlines() if line.startswith("soundscape_requests_total")
    ]
    tiles = [line for line in counted if 'route="/tiles/{query}/{z}/{x}/{y}.png"' in line]
    assert tiles and any('status="200"' in line for line in tiles)
    assert any('route="unmatched"' in line and 'status="404"' in line for line in counted)
    assert not any("12345" in line or "unusual" in line for line in counted)  # no raw paths


@pytest.mark.parametrize("text", ["rain / thunder", "100% wind", "birds? at dawn", "#frogs"])
def test_query_text_with_url_characters_maps(client, text):
    from urllib.parse import quote

    x, y = tile_of(*CENTER, 8)
    by_text = client.get(f"/tiles/{quote(text, safe='')}/8/{x}/{y}.png")
    assert by_text.status_code == 200, by_text.text
    qid = client.post("/queries", json={"text": text}).json()["id"]
    by_id = client.get(f"/tiles/{qid}/8/{x}/{y}.png")
    assert by_text.content == by_id.content
    legend = client.get("/legend", params={"query": text})
    assert legend.status_code == 200 and legend.json()["query"] == qid


def test_text_limits_are_the_declared_ones(client):
    assert client.post("/queries", json={"text": "x" * 256}).status_code == 200
    r = client.post("/queries", json={"text": "x" * 257})
    assert r.status_code == 422 and "256" in r.json()["detail"]
    body = client.get("/openapi.json").json()["paths"]["/queries"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["properties"]["text"]["maxLength"] == 256
    assert client.post("/queries", json={"text": " \t "}).status_code == 422
