"""The map's place popup (what would I hear here, when does it peak) and compare mode, in a real
browser against the real server on the demo store, whose build includes a sound gallery."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.web.helpers import (
    PIXEL_COUNTS,
    click_map_at,
    land_points,
    open_map,
    settled_tiles,
    text_id,
    tile_params,
    wait_for,
)

pytestmark = pytest.mark.slow

POPUP = ".leaflet-popup .inspect"


def click_and_catch(page, info: dict, route: str, n: int = 3):
    """Click a land point of the store; the JSON answer to the page's request to `route`."""
    lat, lon = land_points(info["store"]["bounds"], n)[0]
    with page.expect_response(lambda r: f"{route}?" in r.url) as caught:
        click_map_at(page, lat, lon)
    response = caught.value
    assert response.status == 200, response.text()
    return response


def test_clicking_the_map_lists_sounds_that_play(map_page):
    page = map_page.page
    info = open_map(map_page)
    assert info["gallery"] and info["gallery"]["clips"] > 0
    gallery_requests: list[str] = []
    page.on("request", lambda r: "/gallery/" in r.url and gallery_requests.append(r.url))
    page.select_option("#month", "7")
    settled_tiles(page, url_has="month=7")
    response = click_and_catch(page, info, "/listen")
    params = tile_params(response.url)
    assert params["month"] == "7" and int(params["k"]) >= 1  # the map's metadata goes along
    listen = response.json()
    assert listen["sounds"] and listen["labels"]

    page.wait_for_selector(f"{POPUP} .listen .sound audio")
    # The score rows are still there (behind the "Numbers" toggle).
    page.wait_for_selector(f"{POPUP} dd[data-field=score]", state="attached")
    items = page.query_selector_all(f"{POPUP} .sound")
    assert [li.get_attribute("data-id") for li in items] == [s["id"] for s in listen["sounds"]]
    for li, sound in zip(items, listen["sounds"], strict=True):
        assert sound["caption"] in li.inner_text()
        assert f"{sound['probability'] * 100:.1f} %" in li.inner_text()
        audio = li.query_selector("audio")
        assert audio.get_attribute("src") == sound["audio_url"]
        assert audio.get_attribute("preload") == "none"
        assert audio.get_attribute("controls") is not None
    labels = page.inner_text(f"{POPUP} .listen-labels")
    assert labels.startswith("Most likely: ")
    for label in listen["labels"][:3]:
        assert f"{label['label']} {round(label['probability'] * 100)} %" in labels
    assert gallery_requests == []  # preload=none: nothing is fetched before play

    # The first sound plays: its clock advances.
    first = f"{POPUP} .sound audio"
    page.evaluate("(sel) => document.querySelector(sel).play()", first)
    wait_for(
        page,
        "(sel) => document.querySelector(sel).currentTime > 0.25",
        first,
        timeout=30,
        what="the sound to play",
    )
    assert gallery_requests and gallery_requests[0].endswith(listen["sounds"][0]["audio_url"])
    # Closing the popup stops it (a detached <audio> would otherwise play on).
    audio = page.query_selector(first)
    page.evaluate("() => window.soundscape.map.closePopup()")
    assert audio.evaluate("(a) => a.paused")


def test_sounds_are_offered_without_a_query(map_page):
    page = map_page.page
    info = open_map(map_page, "/?q=")
    click_and_catch(page, info, "/listen")
    page.wait_for_selector(f"{POPUP} .sound audio")
    assert "Ask for a sound first" in page.inner_text(POPUP)
    assert page.query_selector(f"{POPUP} .profile-chart") is None  # no query, no day to draw


def test_without_a_gallery_the_popup_has_no_sounds(map_page):
    """A service without a sound gallery says so in /api/info (gallery: null): the page asks
    nothing of /listen and the popup shows the rest."""
    page = map_page.page
    page.route(
        "**/api/info",
        lambda route: route.fulfill(
            response=(r := route.fetch()), json={**r.json(), "gallery": None}
        ),
    )
    listens: list[str] = []
    page.on("request", lambda r: "/listen?" in r.url and listens.append(r.url))
    info = open_map(map_page)
    settled_tiles(page)
    click_and_catch(page, info, "/profile")
    page.wait_for_selector(f"{POPUP} dd[data-field=score]", state="attached")
    page.wait_for_selector(f"{POPUP} .profile-chart")
    assert page.query_selector(f"{POPUP} .inspect-listen") is None
    assert listens == []


def test_the_popup_draws_the_day_and_names_its_peak(map_page, api):
    page = map_page.page
    info = open_map(map_page)
    qid = text_id(api, "birds singing")
    settled_tiles(page, url_has=f"/tiles/{qid}/")
    response = click_and_catch(page, info, "/profile")
    assert tile_params(response.url)["query"] == qid
    profile = response.json()
    peak = profile["peak_hour"]

    chart = page.wait_for_selector(f"{POPUP} svg.profile-chart")
    assert chart.get_attribute("data-peak-hour") == str(peak)
    assert chart.get_attribute("role") == "img"
    name = chart.get_attribute("aria-label")
    assert f"{peak:02d}:00" in name
    assert chart.query_selector("title").text_content() == name
    points = chart.query_selector_all(".profile-point")
    assert [int(p.get_attribute("data-hour")) for p in points] == list(range(24))
    scores = [float(p.get_attribute("data-score")) for p in points]
    assert scores == [h["score"] for h in profile["hours"]]
    # The line is the value the peak was read from: the share among the demo's labels.
    assert profile["peak_by"] == "share" and chart.get_attribute("data-value") == "share"
    drawn = [float(p.get_attribute("data-value")) for p in points]
    assert drawn == [h["share"] for h in profile["hours"]]
    assert "what you would hear" in name
    # The marked peak is the highest point of the line (SVG y grows downwards).
    peak_y = float(chart.query_selector(".profile-peak").get_attribute("cy"))
    assert peak_y == pytest.approx(min(float(p.get_attribute("cy")) for p in points))
    assert drawn[peak] == max(drawn)
    assert points[peak].query_selector("title").text_content().endswith("%")

    summary = page.inner_text(f"{POPUP} .profile-summary")
    assert f"{peak:02d}:00" in summary  # the peak hour in words, as the server says it
    assert profile["summary"][1:] in summary


def test_compare_mode_draws_a_difference_map_and_shares_it(map_page, open_page, api):
    page = map_page.page
    open_map(map_page)
    qid = text_id(api, "birds singing")
    page.uncheck("#hour-any")
    page.fill("#hour", "6")
    page.dispatch_event("#hour", "input")
    settled_tiles(page, url_has="hour=6")

    # On, with B still equal to A: the page asks for B and keeps the plain map.
    page.check("#compare-on")
    assert "B is the same as A" in page.inner_text("#compare-status")
    assert "cmp=1" in page.url
    assert "/tiles/" in settled_tiles(page)["url"]

    # B = the same query at 22:00.
    page.select_option("#compare-hour", "22")
    tiles = settled_tiles(page, url_has=f"/compare/{qid}/{qid}/")
    params = tile_params(tiles["url"])
    assert (params["hour"], params["b_hour"]) == ("6", "22")
    counts = page.evaluate(PIXEL_COUNTS, "heatmap-layer")
    assert counts["tiles"] >= 1 and counts["coloured"] > 0, counts
    src = urlsplit(tiles["srcs"][0])
    tile = api.get(f"{src.path}?{src.query}")  # the diverging PNG, as the server sends it
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(tile.content)).size == (256, 256)

    # The legend is the compare legend: centred at 0, its ends in words, A and B named.
    page.wait_for_selector("#legend-heat[data-kind=compare]", state="attached")
    legend = api.get("/legend", params={"query": qid, "query_b": qid, "hour": 6, "b_hour": 22})
    assert legend.status_code == 200, legend.text
    want = legend.json()
    assert want["kind"] == "compare" and want["min"] == -want["max"]
    assert float(page.get_attribute("#legend-heat-min", "data-value")) == want["min"]
    assert float(page.get_attribute("#legend-heat-max", "data-value")) == want["max"]
    assert page.is_visible("#legend-heat-words")
    assert "A more likely" in page.inner_text("#legend-heat-words")
    assert "B more likely" in page.inner_text("#legend-heat-words")
    note = page.inner_text("#legend-heat-note")
    assert "06:00" in note and "22:00" in note
    assert "b_hour=22" in page.url and "cmp=1" in page.url

    # A shared link opens in compare mode.
    other = open_page()
    open_map(other, page.url[len(other.base_url) :])
    shared = settled_tiles(other.page, url_has="/compare/")
    assert shared["url"] == tiles["url"]
    assert other.page.is_checked("#compare-on")
    assert other.page.input_value("#compare-hour") == "22"
    other.page.wait_for_selector("#legend-heat[data-kind=compare]", state="attached")

    # B = another query (at 22:00 still).
    frogs = "frogs croaking near a pond"
    page.fill("#compare-query", frogs)
    page.click("#compare-submit")
    fid = text_id(api, frogs)
    settled_tiles(page, url_has=f"/compare/{qid}/{fid}/")
    assert "qb=frogs+croaking+near+a+pond" in page.url

    # Off: back to the plain heatmap, its legend, and a plain link.
    page.uncheck("#compare-on")
    settled_tiles(page, url_has=f"/tiles/{qid}/")
    page.wait_for_selector("#legend-heat[data-kind=heatmap]", state="attached")
    assert page.inner_text("#legend-heat-words").split() == ["less", "likely", "more", "likely"]
    assert page.is_hidden("#legend-heat-note")
    assert "cmp=" not in page.url and "qb=" not in page.url
    wait_for(page, "() => document.body.dataset.compare === 'false'")
