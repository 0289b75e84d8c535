"""GET /listen, /gallery/{id}.{ext}, /profile and /compare tiles against the real service (tiny
store, tiny model, a gallery beside the store with a corrupt clip among the good ones)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import mercantile
import numpy as np
import pytest

from tests.server.conftest import BBOX, ROOT
from tests.server.helpers import decode_tile

LAT, LON = 38.0, -101.5  # inside the tiny store
META = {"month": 6, "hour": 5}


@pytest.fixture(scope="module")
def info(client) -> dict:
    return client.get("/api/info").json()


def tile_at(info: dict, lat: float, lon: float) -> tuple[int, int, int]:
    """The coarsest tile served at the point that lies inside the store's bbox."""
    lo, hi = info["zoom_range"]
    for z in range(lo, hi + 1):
        t = mercantile.tile(lon, lat, z)
        b = mercantile.bounds(t)
        if BBOX[0] <= b.west and b.east <= BBOX[2] and BBOX[1] <= b.south and b.north <= BBOX[3]:
            return z, t.x, t.y
    raise AssertionError("no tile of the store lies inside its bbox")


def test_listen_ranks_the_gallery_and_the_labels_for_the_place(client, info, tiny_gallery):
    assert info["gallery"] == {"clips": 14, "labels": 14}
    r = client.get("/listen", params={"lat": LAT, "lon": LON, **META, "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    cell = body["cell"]
    assert abs(cell["lat"] - LAT) < 1 and abs(cell["lon"] - LON) < 1
    assert cell["uncertainty"] > 0
    sounds = body["sounds"]
    assert len(sounds) == 4
    scores = [s["score"] for s in sounds]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s["probability"] < 1 and s["caption"] for s in sounds)
    assert all(s["audio_url"] == f"/gallery/{s['id']}.flac" for s in sounds)
    labels = body["labels"]
    assert len(labels) == 14 and {x["label"] for x in labels} >= {"songbirds", "road traffic"}
    assert [x["score"] for x in labels] == sorted((x["score"] for x in labels), reverse=True)
    # The corrupt clip was skipped at build time, with its reason kept in the manifest.
    manifest = json.loads((tiny_gallery / "gallery.json").read_text())
    assert [s["file"] for s in manifest["skipped"]] == ["broken.wav"]


def test_listen_labels_score_as_the_label_query_does_on_the_map(client):
    """A label's score at a place is the -CSD /similarity gives its query text there."""
    body = client.get("/listen", params={"lat": LAT, "lon": LON, **META}).json()
    top = body["labels"][0]
    from embeddings_store.demo.captions import CLASS_QUERIES
    from embeddings_store.demo.sounds import LABELS

    text = CLASS_QUERIES[LABELS.index(top["label"])]
    sim = client.post("/similarity", json={
        "query": {"text": text}, "metadata": META, "points": [[LAT, LON]],
    }).json()  # fmt: skip
    assert sim["results"][0]["score"] == pytest.approx(top["score"], abs=1e-4)
    assert sim["results"][0]["probability"] == pytest.approx(top["probability"], abs=1e-5)


def test_listen_depends_on_the_metadata(client):
    dawn = client.get("/listen", params={"lat": LAT, "lon": LON, **META}).json()
    night = client.get("/listen", params={"lat": LAT, "lon": LON, "month": 6, "hour": 22}).json()
    assert dawn["labels"] != night["labels"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"lat": 95, "lon": 0}, 422),
        ({"lat": 0, "lon": 200}, 422),
        ({"lat": "north", "lon": 0}, 422),
        ({"lon": 0}, 422),
        ({"lat": LAT, "lon": LON, "k": 0}, 422),
        ({"lat": LAT, "lon": LON, "k": 100000}, 422),
        ({"lat": LAT, "lon": LON, "month": 13}, 422),
        ({"lat": LAT, "lon": LON, "asource": "nowhere"}, 422),
        ({"lat": 0.0, "lon": 0.0}, 404),  # outside the store
        ({"lat": 89.9, "lon": 0.0}, 404),  # beyond the web map
    ],
)
def test_listen_refuses_bad_input_clearly(client, params, status):
    r = client.get("/listen", params=params)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"detail"} and r.json()["detail"]


def test_gallery_clips_play_and_seek(client):
    sound = client.get("/listen", params={"lat": LAT, "lon": LON}).json()["sounds"][0]
    whole = client.get(sound["audio_url"])
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "audio/flac"
    assert whole.content[:4] == b"fLaC"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(sound["audio_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    beyond = client.get(sound["audio_url"], headers={"Range": f"bytes={len(whole.content) + 9}-"})
    assert beyond.status_code == 416


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/gallery/0123456789abcdef.flac", 404),  # well-formed, unknown
        ("/gallery/../gallery.json", 404),
        ("/gallery/..%2Fgallery.flac", 404),  # decoded to a path no route has
        ("/gallery/ABCDEF0123456789.flac", 422),
        ("/gallery/0123456789abcdef.exe", 422),
    ],
)
def test_gallery_serves_only_clips_it_names(client, path, status):
    assert client.get(path).status_code == status


def test_gallery_clip_with_the_wrong_extension_is_not_found(client):
    sound = client.get("/listen", params={"lat": LAT, "lon": LON}).json()["sounds"][0]
    assert client.get(f"/gallery/{sound['id']}.wav").status_code == 404


def test_profile_gives_every_hour_and_month_and_names_the_peak(client):
    r = client.get("/profile", params={"lat": LAT, "lon": LON, "query": "birds", "month": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    hours, months = body["hours"], body["months"]
    assert [h["hour"] for h in hours] == list(range(24))
    assert [m["month"] for m in months] == list(range(1, 13))
    # With the gallery's labels the peaks are the query's share's (module doc of
    # embeddings_store/sounds/profile.py), not the raw score's.
    assert body["peak_by"] == "share"
    peak = max(hours, key=lambda h: h["share"])["hour"]
    assert body["peak_hour"] == peak
    assert body["summary"] == f"peaks around {peak:02d}:00"
    assert body["peak_month"] == max(months, key=lambda m: m["share"])["month"]
    assert all(0 < row["share"] < 1 for row in hours + months)
    assert len({round(h["score"], 6) for h in hours}) > 1, "the hour changes nothing"
    # Each hour's value is the map's value at that place and time (one batched fusion vs the
    # tile path's fusion agree to float rounding).
    for hour in (0, 5, 17):
        sim = client.post("/similarity", json={
            "query": {"text": "birds"}, "metadata": {"month": 6, "hour": hour},
            "points": [[LAT, LON]],
        }).json()  # fmt: skip
        assert hours[hour]["score"] == pytest.approx(sim["results"][0]["score"], abs=1e-4)
    # The months run at the asked hour.
    sim = client.post("/similarity", json={
        "query": {"text": "birds"}, "metadata": {"month": 3}, "points": [[LAT, LON]],
    }).json()  # fmt: skip
    assert months[2]["score"] == pytest.approx(sim["results"][0]["score"], abs=1e-4)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_profile_share_is_the_query_against_the_labels_that_listen_ranks(client):
    """The share at an hour is the softmax of the match logits of the query and of every
    label /listen gives at that place and hour; a label's own text counts once."""
    for text in ("birds", "songbirds singing at sunrise"):
        body = client.get("/profile", params={"lat": LAT, "lon": LON, "query": text,
                                              "month": 6}).json()  # fmt: skip
        for hour in (2, 14):
            heard = client.get("/listen", params={"lat": LAT, "lon": LON, "month": 6,
                                                  "hour": hour}).json()  # fmt: skip
            row = body["hours"][hour]
            labels = [logit(x["probability"]) for x in heard["labels"]
                      if not math.isclose(x["score"], row["score"], abs_tol=1e-5)]  # fmt: skip
            own = logit(row["probability"])
            expect = 1 / (1 + sum(math.exp(v - own) for v in labels))
            assert row["share"] == pytest.approx(expect, rel=2e-3), (text, hour)
        assert len(labels) == (14 if text == "birds" else 13)


@pytest.mark.parametrize(
    "params",
    [
        {"lat": LAT, "lon": LON},
        {"lat": LAT, "lon": LON, "query": ""},
        {"lat": LAT, "lon": LON, "query": "x" * 300},
        {"lat": -91, "lon": LON, "query": "birds"},
        {"lat": LAT, "lon": LON, "query": "birds", "hour": 24},
    ],
)
def test_profile_refuses_bad_input(client, params):
    r = client.get("/profile", params=params)
    assert r.status_code == 422, r.text


def test_profile_outside_the_store_and_unknown_query_are_not_found(client):
    assert client.get("/profile", params={"lat": 0, "lon": 0, "query": "x"}).status_code == 404
    unknown = {"lat": LAT, "lon": LON, "query": "txt-" + "0" * 24}
    assert client.get("/profile", params=unknown).status_code == 404


def compare_tile(client, info, a: str, b: str, **params) -> np.ndarray:
    z, x, y = tile_at(info, LAT, LON)
    r = client.get(f"/compare/{a}/{b}/{z}/{x}/{y}.png", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return decode_tile(r.content)


def test_compare_is_centred_at_zero_and_antisymmetric(client, info):
    same = compare_tile(client, info, "birds", "birds", **META)
    covered = same > 0
    assert covered.mean() > 0.5
    assert np.all(same[covered] == 128), "A - A must be the ramp's middle"
    ab = compare_tile(client, info, "birds", "traffic", **META)
    ba = compare_tile(client, info, "traffic", "birds", **META)
    assert np.array_equal(ab > 0, ba > 0)
    assert np.all(ab[covered].astype(int) + ba[covered] == 256), "B - A is A - B mirrored"
    assert len(np.unique(ab[covered])) > 5
    la = client.get("/legend", params={"query": "birds", "query_b": "traffic", **META}).json()
    lb = client.get("/legend", params={"query": "traffic", "query_b": "birds", **META}).json()
    assert la["kind"] == "compare" and la["min"] == -la["max"] < 0
    assert (lb["min"], lb["max"]) == (la["min"], la["max"])
    assert la["colormap"] == "RdBu_r" and len(la["colors"]) == 11


def test_compare_hours_of_one_query_matches_the_two_maps(client, info):
    """The same query at two hours: the tile's values are score(A) - score(B) of /similarity."""
    legend = client.get("/legend", params={
        "query": "birds", "query_b": "birds", **META, "b_hour": 0,
    }).json()  # fmt: skip
    lo, hi = legend["min"], legend["max"]
    assert legend["metadata_b"].startswith("m6h0")
    idx = compare_tile(client, info, "birds", "birds", **META, b_hour=0)
    z, x, y = tile_at(info, LAT, LON)
    bounds = mercantile.bounds(x, y, z)
    # Sample a few pixels' places and compare them with the two maps' difference there.
    rows, cols = np.nonzero(idx)
    pick = np.linspace(0, rows.size - 1, 12).astype(int)
    lat = bounds.north - (rows[pick] + 0.5) / 256 * (bounds.north - bounds.south)
    lon = bounds.west + (cols[pick] + 0.5) / 256 * (bounds.east - bounds.west)
    pts = np.stack([lat, lon], axis=1).tolist()
    got = lo + (idx[rows[pick], cols[pick]] - 1) / 254 * (hi - lo)
    a, b = (client.post("/similarity", json={
        "query": {"text": "birds"}, "metadata": {"month": 6, "hour": h}, "points": pts,
    }).json()["results"] for h in (5, 0))  # fmt: skip
    want = np.array([ra["score"] - rb["score"] for ra, rb in zip(a, b, strict=True)])
    # Tiles interpolate between cell centres; signs and sizes agree within a few ramp steps.
    step = (hi - lo) / 254
    close = np.abs(np.clip(want, lo, hi) - got) <= 0.25 * (hi - lo) + 2 * step
    assert close.mean() >= 0.75, (got, want)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/compare/birds/traffic/0/0/0.png", 404),  # outside the zoom range
        ("/compare/birds/txt-000000000000000000000000/{z}/{x}/{y}.png", 404),
        ("/compare/birds/traffic/{z}/{x}/{y}.png?b_hour=25", 422),
        ("/compare/birds/traffic/{z}/{x}/{y}.png?b_asource=nowhere", 422),
        ("/compare/birds/traffic/{z}/{x}/{y}.png?colormap=jet", 422),
        ("/compare/birds/traffic/{z}/{x}/{y}.png?rescale=1", 422),
        ("/compare/%20/traffic/{z}/{x}/{y}.png", 422),
    ],
)
def test_compare_refuses_bad_input(client, info, path, status):
    z, x, y = tile_at(info, LAT, LON)
    r = client.get(path.format(z=z, x=x, y=y))
    assert r.status_code == status, r.text


def test_compare_legend_needs_query_a(client):
    r = client.get("/legend", params={"query_b": "birds"})
    assert r.status_code == 422 and "query" in r.json()["detail"]


def test_serve_refuses_a_gallery_of_another_model(tiny_store, tiny_checkpoint, tmp_path):
    import torch

    from embeddings_store.demo.sounds import write_gallery_audio
    from embeddings_store.sounds.build import build_sound_gallery
    from model.config import load_config
    from model.psm import PSM

    torch.manual_seed(7)
    other = PSM(load_config("test")).eval()
    audio = tmp_path / "audio"
    write_gallery_audio(audio, clips_per_class=1)
    gallery = tmp_path / "other-gallery"
    build_sound_gallery(other, audio, gallery, progress=False, log=lambda _: None)
    res = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--store", str(tiny_store),
         "--checkpoint", str(tiny_checkpoint), "--gallery", str(gallery), "--port", "9"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert "was embedded by model" in line and "soundscape gallery build" in line
    assert f"--out {gallery}" in line


def test_bbox_fixture_is_what_the_points_assume():
    assert BBOX[0] < LON < BBOX[2] and BBOX[1] < LAT < BBOX[3]


def test_without_a_gallery_listen_says_how_to_get_one():
    from model.errors import NotFoundError
    from model.metadata import Metadata
    from server.errors import status_of
    from server.listening import Listener

    with pytest.raises(NotFoundError) as err:
        Listener(engine=None, sounds=None).listen(LAT, LON, Metadata(), None, 5)  # type: ignore[arg-type]
    assert status_of(err.value) == 404
    assert "soundscape gallery build" in str(err.value) and "--gallery" in str(err.value)


def test_without_a_gallery_the_profile_peaks_by_the_score(app_factory, client):
    """A service with no label vocabulary answers the same profile without a share, its peaks
    read from the score (the HTTP answer's scores are the same cell's)."""
    from fastapi.testclient import TestClient

    from model.metadata import Metadata
    from model.scoring import QueryEmbedding
    from server.listening import Listener

    app = app_factory()
    with TestClient(app):
        svc = app.state.svc
        query = QueryEmbedding.from_text(svc.model, "birds")
        level = svc.engine.default_level()
        got = Listener(svc.engine, None).profile(query, LAT, LON, Metadata(month=6), level)
    assert got["peak_by"] == "score"
    assert all("share" not in row for row in got["hours"] + got["months"])
    scores = [row["score"] for row in got["hours"]]
    assert got["peak_hour"] == int(np.argmax(scores))
    assert got["peak_month"] == 1 + int(np.argmax([row["score"] for row in got["months"]]))
    served = client.get("/profile", params={"lat": LAT, "lon": LON, "query": "birds",
                                            "month": 6}).json()  # fmt: skip
    assert scores == pytest.approx([row["score"] for row in served["hours"]], abs=1e-5)
