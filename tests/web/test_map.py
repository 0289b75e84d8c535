"""The web map in a real browser against a real server on the demo store (issue 6)."""

from __future__ import annotations

import math
import os
import shutil

import pytest

from tests.server.conftest import ROOT
from tests.server.helpers import audio_bytes
from tests.web.conftest import SCREENSHOTS
from tests.web.helpers import (
    PIXEL_DIGEST,
    SAMPLE,
    click_map_at,
    is_coloured,
    land_points,
    open_map,
    settled_tiles,
    text_id,
    tile_params,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_typed_query_colours_the_covered_land(map_page, api):
    page = map_page.page
    info = open_map(map_page)
    text = "frogs croaking near a pond"
    page.fill("#query-text", text)
    page.press("#query-text", "Enter")
    qid = text_id(api, text)
    tiles = settled_tiles(page, url_has=f"/tiles/{qid}/")
    assert tiles["loaded"] >= 1
    assert page.inner_text("#active-query-text") == f"“{text}”"
    assert page.input_value("#query-text") == text

    # Every land point of the store's region is coloured by the heatmap.
    pts = land_points(info["store"]["bounds"])
    samples = page.evaluate(SAMPLE, ["heatmap-layer", pts])
    bad = [(p, s) for p, s in zip(pts, samples, strict=True) if not is_coloured(s)]
    assert not bad, f"land points without heatmap colour: {bad[:5]}"

    # The legend states the map's range as text, as GET /legend gives it.
    legend = api.get("/legend", params={"query": qid}).json()
    assert page.is_visible("#legend-heat")
    assert float(page.get_attribute("#legend-heat-min", "data-value")) == legend["min"]
    assert float(page.get_attribute("#legend-heat-max", "data-value")) == legend["max"]
    assert page.inner_text("#legend-heat-min").strip() != ""
    assert "q=frogs+croaking+near+a+pond" in page.url


def test_changing_the_hour_changes_tile_urls_and_images(map_page, api):
    page = map_page.page
    open_map(map_page)
    before = settled_tiles(page)
    assert "hour" not in tile_params(before["url"])  # the default map masks the hour
    digest_before = page.evaluate(PIXEL_DIGEST, "heatmap-layer")

    page.uncheck("#hour-any")  # sets the slider's hour (12)
    page.focus("#hour")
    page.keyboard.press("ArrowRight")  # keyboard-operable: 13:00
    after = settled_tiles(page, url_has="hour=13")
    assert tile_params(after["url"])["hour"] == "13"
    assert page.inner_text("#hour-out") == "13:00"
    assert set(after["srcs"]).isdisjoint(before["srcs"])
    digest_after = page.evaluate(PIXEL_DIGEST, "heatmap-layer")
    shared = digest_before.keys() & digest_after.keys()
    assert shared, "the same tiles should be on screen before and after"
    assert any(digest_before[k] != digest_after[k] for k in shared), "tile images did not change"
    assert "hour=13" in page.url


def test_uploading_a_wav_switches_to_the_audio_query(map_page, api):
    page = map_page.page
    open_map(map_page)
    settled_tiles(page)
    wav = audio_bytes("WAV", "PCM_16", seconds=2.0, freq=880.0)
    page.set_input_files(
        "#audio-file", files=[{"name": "tone.wav", "mimeType": "audio/wav", "buffer": wav}]
    )
    res = api.post("/queries", files={"audio": ("tone.wav", wav, "audio/wav")})
    assert res.status_code == 200, res.text
    audio = res.json()
    assert audio["kind"] == "audio"
    tiles = settled_tiles(page, url_has=f"/tiles/{audio['id']}/")
    assert tiles["loaded"] >= 1
    assert page.inner_text("#active-query-text") == "tone.wav"
    assert page.get_attribute("body", "data-query-kind") == "audio"
    assert f"qid={audio['id']}" in page.url
    # The words box no longer shows text that is not being mapped.
    assert page.input_value("#query-text") == ""
    assert page.inner_text("#audio-feedback") == "Mapping tone.wav."


def test_dropping_a_sound_file_on_the_page_uploads_it(map_page, api):
    page = map_page.page
    open_map(map_page)
    wav = audio_bytes("WAV", "PCM_16", seconds=1.0, freq=300.0)
    page.evaluate(
        """(bytes) => {
          const dt = new DataTransfer();
          dt.items.add(new File([new Uint8Array(bytes)], 'drop.wav', { type: 'audio/wav' }));
          const target = document.getElementById('map');
          for (const type of ['dragenter', 'dragover', 'drop']) {
            const init = { dataTransfer: dt, bubbles: true, cancelable: true };
            target.dispatchEvent(new DragEvent(type, init));
          }
        }""",
        list(wav),
    )
    qid = api.post("/queries", files={"audio": ("drop.wav", wav, "audio/wav")}).json()["id"]
    settled_tiles(page, url_has=f"/tiles/{qid}/")
    assert page.inner_text("#active-query-text") == "drop.wav"
    assert page.is_hidden("#drop-overlay")


def test_recording_from_the_microphone_maps_the_recording(map_page):
    page = map_page.page
    open_map(map_page)
    settled_tiles(page)
    assert page.is_enabled("#record")
    page.click("#record")
    page.wait_for_selector("#record[aria-pressed=true]")
    page.wait_for_timeout(1500)
    page.click("#record")
    wait_for(page, "() => document.body.dataset.queryKind === 'audio'", what="the audio query")
    assert page.inner_text("#active-query-text") == "recording.wav"
    tiles = settled_tiles(page, url_has="/tiles/aud-")
    assert tiles["loaded"] >= 1


def test_click_popup_shows_the_similarity_of_that_point(map_page, api):
    page = map_page.page
    info = open_map(map_page)
    page.select_option("#month", "7")
    settled_tiles(page, url_has="month=7")
    lat, lon = land_points(info["store"]["bounds"], 3)[0]
    click_map_at(page, lat, lon)
    # The raw numbers wait behind the popup's "Numbers" toggle.
    page.wait_for_selector(".leaflet-popup .inspect dd[data-field=score]", state="attached")
    assert page.is_hidden(".leaflet-popup .inspect dd[data-field=score]")
    page.click(".leaflet-popup .inspect-numbers summary")
    assert page.is_visible(".leaflet-popup .inspect dd[data-field=score]")
    box = page.query_selector(".leaflet-popup .inspect")
    shown = {
        dd.get_attribute("data-field"): dd.get_attribute("data-value")
        for dd in box.query_selector_all("dd")
    }
    plat, plon = float(box.get_attribute("data-lat")), float(box.get_attribute("data-lon"))
    assert math.isclose(plat, lat, abs_tol=0.05) and math.isclose(plon, lon, abs_tol=0.05)
    body = {
        "query": {"text": "birds singing"},
        "metadata": {"month": 7, "location": True},
        "level": int(shown["level"]),
        "points": [[plat, plon]],
    }
    res = api.post("/similarity", json=body)
    assert res.status_code == 200, res.text
    expected = res.json()["results"][0]
    assert expected["score"] is not None
    for key in ("score", "probability", "uncertainty", "percentile"):
        assert float(shown[key]) == expected[key], key
    text = box.inner_text()
    assert f"{expected['probability'] * 100:.1f} %" in text


def test_top_places_fly_the_map_there(map_page):
    page = map_page.page
    open_map(map_page)
    settled_tiles(page)
    page.wait_for_selector("#places button.place")
    first = page.query_selector("#places button.place")
    lat, lon = float(first.get_attribute("data-lat")), float(first.get_attribute("data-lon"))
    zoom0 = page.evaluate("() => window.soundscape.map.getZoom()")
    first.click()
    wait_for(
        page,
        """([lat, lon, z0]) => {
          const m = window.soundscape.map, c = m.getCenter();
          return m.getZoom() > z0 && Math.abs(c.lat - lat) < 1e-3 && Math.abs(c.lng - lon) < 1e-3;
        }""",
        [lat, lon, zoom0],
        what="the map to fly to the place",
    )


def test_a_shared_url_reproduces_the_map(map_page, open_page):
    page = map_page.page
    open_map(map_page)
    page.select_option("#month", "5")
    page.uncheck("#hour-any")
    page.fill("#hour", "6")
    page.dispatch_event("#hour", "input")
    page.check("input[name=scale][value=probability]")
    page.select_option("#asource", index=1)
    page.check("#unc-on")
    page.fill("#heat-opacity", "0.5")
    page.dispatch_event("#heat-opacity", "input")
    page.evaluate("() => window.soundscape.map.setZoom(window.soundscape.map.getZoom() + 1)")
    heat = settled_tiles(page, url_has="scale=probability")
    unc = settled_tiles(page, "uncertainty-layer", url_has="hour=6")
    shared = page.url
    state = page.evaluate("() => window.soundscape.store.get()")

    other = open_page()
    open_map(other, shared[len(other.base_url) :])
    heat2 = settled_tiles(other.page, url_has="scale=probability")
    unc2 = settled_tiles(other.page, "uncertainty-layer", url_has="hour=6")
    state2 = other.page.evaluate("() => window.soundscape.store.get()")
    assert heat2["url"] == heat["url"] and unc2["url"] == unc["url"]
    for key in ("query", "month", "hour", "asource", "scale", "heat", "heatOpacity", "unc"):
        assert state2[key] == state[key], key
    assert state2["view"]["zoom"] == state["view"]["zoom"]
    assert math.isclose(state2["view"]["lat"], state["view"]["lat"], abs_tol=1e-4)
    assert math.isclose(state2["view"]["lon"], state["view"]["lon"], abs_tol=1e-4)
    assert other.page.input_value("#month") == "5"
    assert other.page.input_value("#hour") == "6"
    assert other.page.is_checked("#unc-on")
    assert other.page.is_checked("input[name=scale][value=probability]")
    opacity = other.page.evaluate(
        "() => getComputedStyle(document.querySelector('.heatmap-layer.is-current')).opacity"
    )
    assert float(opacity) == 0.5


def test_time_lapse_plays_through_the_hours(map_page):
    page = map_page.page
    open_map(map_page)
    settled_tiles(page)
    assert page.is_checked("#same-scale")  # on by default
    asked: list[str] = []
    views: list[tuple[str, int]] = []
    page.on("request", lambda r: asked.append(r.url) if "/views/" in r.url else None)
    page.on("response", lambda r: views.append((r.url, r.status)) if "/views/" in r.url else None)
    # The page records the hours it shows while playing: polled from here, a frame (0.9 s) can
    # pass unseen while a loaded machine keeps this process waiting.
    page.evaluate("""() => { window.shownHours = [];
        window.soundscape.store.subscribe((state, changed) => {
            if (changed.has('hour') && state.playing) window.shownHours.push(state.hour);
        }); }""")  # fmt: skip
    page.click("#play")
    assert page.get_attribute("#play", "aria-pressed") == "true"
    seen: list[int] = []
    ranges: set[tuple[str, str]] = set()

    def advanced() -> bool:
        seen[:] = page.evaluate("() => window.shownHours")
        title = page.text_content("#legend-heat-title") or ""
        if seen and "every hour" in title:
            ranges.add((page.get_attribute("#legend-heat-min", "data-value"),
                        page.get_attribute("#legend-heat-max", "data-value")))  # fmt: skip
        return len(seen) >= 4 and bool(ranges)

    for _ in range(1200):
        if advanced():
            break
        page.wait_for_timeout(100)
    # While playing, every frame is drawn in the query's one range over all hours.
    playing = settled_tiles(page, url_has="scale=absolute")
    assert playing["loaded"] >= 1
    page.click("#play")
    assert page.get_attribute("#play", "aria-pressed") == "false"
    assert seen[:3] == [0, 1, 2], seen
    # The hours of the view were asked of the server as one batch, in playing order.
    assert len(asked) == 1, asked
    assert "hours=0%2C1%2C2%2C3" in asked[0] and "scale=absolute" in asked[0], asked
    for _ in range(600):
        if views:
            break
        page.wait_for_timeout(100)
    assert views == [(asked[0], 200)], views
    assert len(ranges) == 1, ranges  # the legend shows one range for every frame
    # Paused, the map returns to its own (relative) range.
    tiles = settled_tiles(page, url_has=f"hour={seen[-1]}&scale=relative")
    assert tiles["loaded"] >= 1
    assert "relative" in (page.text_content("#legend-heat-title") or "")
    # Switched off, the time-lapse keeps each hour's own range (and the link says so).
    page.uncheck("#same-scale")
    assert "same_scale=0" in page.url
    page.click("#play")
    page.wait_for_timeout(1500)
    assert page.evaluate("() => window.soundscape.store.get().playing")
    url = page.evaluate("() => document.querySelector('.heatmap-layer.is-current').dataset.url")
    assert "scale=absolute" not in url
    page.click("#play")


def test_readme_screenshot(map_page):
    """The picture in the README: SOUNDSCAPE_UPDATE_SCREENSHOT=1 writes it to web/screenshot.png."""
    page = map_page.page
    open_map(map_page, "/?q=waves+crashing+on+the+shore&month=1&hour=15")
    settled_tiles(page, url_has="hour=15")
    page.wait_for_selector("#places button.place")
    page.wait_for_selector("body[data-busy=false]", state="attached")
    page.wait_for_timeout(500)  # Leaflet fades new tiles in over 200 ms
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "readme.png"), full_page=True)
    if os.environ.get("SOUNDSCAPE_UPDATE_SCREENSHOT") == "1":
        shutil.copy(SCREENSHOTS / "readme.png", ROOT / "web" / "screenshot.png")
