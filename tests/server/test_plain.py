"""What a non-expert reads (issue 25): place names, a place's rank and confidence, top places off
the store's edge and inside its region, legends in words, the percentile scale, ranges fitted on
land, and hints for unfamiliar queries. Against the real service on the tiny store."""

from __future__ import annotations

import mercantile
import numpy as np
import pytest
from scipy import ndimage

from embeddings_store.demo.captions import CLASS_QUERIES
from embeddings_store.demo.sounds import LABELS
from tests.server.conftest import BBOX
from tests.server.helpers import decode_tile, tile_value

LAT, LON = 38.0, -101.5


def test_places_in_a_box_are_the_largest_first(client):
    r = client.get("/places", params={"bbox": "-105,36,-99,41", "limit": 5})
    assert r.status_code == 200, r.text
    places = r.json()["places"]
    assert places[0]["name"] == "Denver" and places[0]["admin1"] == "Colorado"
    assert [p["population"] for p in places] == sorted((p["population"] for p in places),
                                                        reverse=True)  # fmt: skip
    assert all(-105 <= p["lon"] <= -99 and 36 <= p["lat"] <= 41 for p in places)


def test_place_search_finds_names_without_accents(client):
    places = client.get("/places/search", params={"q": "DÉNVER"}).json()["places"]
    assert places[0]["name"] == "Denver" and places[0]["country_code"] == "US"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/places", {"bbox": "1,2,3"}),
        ("/places", {"bbox": "5,0,1,1"}),
        ("/places", {"bbox": "-105,36,-99,41", "limit": 0}),
        ("/places", {"bbox": "-105,36,-99,41", "limit": 500}),
        ("/places/search", {"q": ""}),
        ("/places/search", {"q": " "}),
        ("/places/search", {"q": "x" * 101}),
        ("/places/search", {"q": "a", "limit": 21}),
    ],
)
def test_place_routes_refuse_bad_input(client, path, params):
    r = client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_points_say_where_they_are_how_they_rank_and_how_sure(client):
    body = {"query": {"text": "birds singing"}, "metadata": {"month": 6},
            "points": [[LAT, LON], [0.0, 0.0]]}  # fmt: skip
    res = client.post("/similarity", json=body).json()["results"]
    here, nowhere = res
    assert here["place"]["country_code"] == "US" and here["place"]["name"]
    assert 0 <= here["percentile"] <= 100
    assert here["confidence"] in ("high", "medium", "low")
    assert nowhere["place"] is None and nowhere["percentile"] is None
    assert nowhere["confidence"] is None
    # The rank is the share of the map's places scoring lower: the map's best cell is at 100.
    top = client.post("/similarity", json={
        "query": {"text": "birds singing"}, "metadata": {"month": 6}, "bbox": list(BBOX),
        "top_k": 3, "level": 5,
    }).json()["results"]  # fmt: skip
    assert top[0]["percentile"] >= 90 and top[0]["place"] is not None


def test_geojson_rows_carry_the_same_facts(client):
    r = client.post("/similarity", json={
        "query": {"text": "birds"}, "points": [[LAT, LON]], "format": "geojson",
    })  # fmt: skip
    props = r.json()["features"][0]["properties"]
    assert {"place", "percentile", "confidence"} <= set(props)


def test_top_places_are_never_edge_cells(client, tiny_store):
    """Over the 14 class queries no top-10 place lies on a cell touching the store's edge."""
    from embeddings_store.store import EmbeddingStore

    store = EmbeddingStore.open(tiny_store)
    level = next(lv for lv in store.levels if lv.psm_zoom == 1)
    valid = np.asarray(store.array(1, "valid")[:], bool)
    inner = ndimage.binary_erosion(valid, np.ones((3, 3), bool), border_value=0)
    edge = valid & ~inner
    assert 0.05 < edge.sum() / valid.sum() < 0.5  # the check below can tell
    held = store.extent(1).cells
    on_edge = 0
    for text in CLASS_QUERIES:
        res = client.post("/similarity", json={
            "query": {"text": text}, "bbox": list(BBOX), "top_k": 10, "level": 1,
        }).json()["results"]  # fmt: skip
        assert len(res) == 10
        cx, cy = level.cell_of_lonlat(np.array([r["lon"] for r in res]),
                                      np.array([r["lat"] for r in res]))  # fmt: skip
        on_edge += int(edge[cy - held.cy0, cx - held.cx0].sum())
        assert all(r["place"]["country_code"] == "US" for r in res)
    assert on_edge == 0


def test_legends_speak_in_words_and_mark_the_top_5_percent(client):
    rel = client.get("/legend", params={"query": "birds", "month": 6}).json()
    assert rel["words"] == {"low": "less likely", "high": "more likely"}
    assert rel["fitted_on"] == "land"
    (mark,) = rel["marks"]
    assert mark["label"] == "top 5 % of this map" and rel["min"] < mark["at"] < rel["max"]
    unc = client.get("/legend", params={"month": 6}).json()
    assert unc["words"] == {"low": "more certain", "high": "less certain"}
    pct = client.get("/legend", params={"query": "birds", "month": 6, "scale": "percentile"})
    pct = pct.json()
    assert (pct["min"], pct["max"]) == (0.0, 100.0) and pct["marks"][0]["at"] == 95.0
    assert "share of this map" in pct["label"]
    prob = client.get("/legend", params={"query": "birds", "month": 6, "scale": "probability"})
    prob = prob.json()
    assert 0 < prob["min"] < prob["max"] < 1, "fitted to the probabilities present, not 0..1"
    fixed = client.get("/legend", params={"query": "birds", "rescale": "0,1"}).json()
    assert fixed["fitted_on"] == "rescale" and fixed["marks"] == []


def test_percentile_tiles_colour_by_rank(client):
    """A percentile tile's pixel is the share of places scoring lower than it (0..100)."""
    tile = mercantile.tile(LON, LAT, 9)  # inside the tiny store
    z, tx, ty = tile.z, tile.x, tile.y
    qs = {"month": 6, "level": 1}
    rel = decode_tile(client.get(f"/tiles/birds/{z}/{tx}/{ty}.png", params=qs).content)
    pct = decode_tile(client.get(f"/tiles/birds/{z}/{tx}/{ty}.png",
                                 params={**qs, "scale": "percentile"}).content)  # fmt: skip
    covered = (rel > 0) & (pct > 0)
    assert covered.mean() > 0.5
    values = tile_value(pct, 0, 100)[covered]
    assert values.min() >= 0 and values.max() <= 100 and values.max() - values.min() > 3
    # Rank is monotone in score: ordering the relative tile orders the percentile tile.
    r, p = rel[covered].astype(int), pct[covered].astype(int)
    order = np.argsort(r, kind="stable")
    assert np.all(np.diff(p[order]) >= -2)


def test_queries_say_how_familiar_they_are(client):
    known = client.post("/queries", json={"text": CLASS_QUERIES[0]}).json()
    assert known["familiarity"] == "familiar" and known["hint"] is None  # a label's own query
    other = client.post("/queries", json={"text": "zq"}).json()
    assert other["familiarity"] in ("familiar", "vague", "unfamiliar")
    if other["familiarity"] != "familiar":
        assert other["hint"]
    assert client.get(f"/queries/{known['id']}").json()["familiarity"] == "familiar"


def test_info_describes_levels_and_sources_in_words(client):
    info = client.get("/api/info").json()
    footprints = [lv["footprint_km"] for lv in info["store"]["levels"]]
    assert footprints == sorted(footprints) and len(set(footprints)) == len(footprints)
    help_ = info["vocabulary"]["source_help"]
    assert set(help_["audio"]) == set(info["vocabulary"]["audio_sources"])
    assert all(help_["audio"].values()) and all(help_["caption"].values())


def test_ranges_are_fitted_on_land(tiny_store, tiny_checkpoint):
    """With half the coarse level called sea, the relative range is that of the other half."""
    import dataclasses

    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint
    from model.metadata import Metadata
    from model.scoring import QueryEmbedding
    from server.cache import LRUCache, TieredCache
    from server.engine import Engine
    from server.render import percentile_range

    model = load_checkpoint(tiny_checkpoint)
    engine = Engine(model, EmbeddingStore.open(tiny_store), TieredCache(LRUCache(64 << 20), None))
    query = QueryEmbedding.from_text(model, "birds")
    meta = Metadata(month=6)
    cov = engine.coverage(engine.coarse)
    assert cov.land.sum() == cov.valid.sum()  # inland: all of it is land
    everything = engine.value_range(meta, query)
    half = cov.land.copy()
    half[:, : half.shape[1] // 2] = False
    engine._coverage[engine.coarse.psm_zoom] = dataclasses.replace(cov, land=half)
    values = engine.scores(query, meta, engine.coarse, engine.store.extent(5).cells, ("score",))
    want = percentile_range(values["score"].values[half])
    assert engine.value_range(meta, query) == pytest.approx(want)
    assert engine.value_range(meta, query) != pytest.approx(everything)


def test_labels_and_queries_agree(client):
    assert len(LABELS) == len(CLASS_QUERIES) == 14
