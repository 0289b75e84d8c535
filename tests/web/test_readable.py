"""A map a first-time user can read (issue 25, the page side): place names on the map, in the
top places and in the popup; a legend in words; plain-language popups with the numbers behind a
toggle; sources and levels explained; the heatmap fading when zoomed in past the data; a phone
layout that gets out of the way; and clear words for odd input. Desktop tests run at 1400x900,
phone tests at 390x844 (upright) and 844x390 (on its side); screenshots are kept."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.server.helpers import audio_bytes
from tests.web.conftest import SCREENSHOTS
from tests.web.helpers import (
    SAMPLE,
    click_map_at,
    land_points,
    open_map,
    settled_tiles,
    wait_for,
)

pytestmark = pytest.mark.slow

DESKTOP = {"viewport": {"width": 1400, "height": 900}}
PORTRAIT = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
LANDSCAPE = {"viewport": {"width": 844, "height": 390}, "is_mobile": True, "has_touch": True}
POPUP = ".leaflet-popup .inspect"
HEAT = ".heatmap-layer.is-current"
STATUS = "document.getElementById('place-search-status').textContent"

# JS: the place labels on screen: name, and the box of the text (page coordinates).
LABELS = """() => [...document.querySelectorAll('.map-label .map-label-text')].map((t) => {
  const r = t.getBoundingClientRect();
  return { name: t.textContent, x0: r.left, y0: r.top, x1: r.right, y1: r.bottom };
})"""
# JS: the map's view as west,south,east,north.
VIEW_BBOX = """() => {
  const b = window.soundscape.map.getBounds();
  return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
}"""
# JS: where the attribution is, and whether the controls panel covers it where they meet.
ATTRIBUTION = """() => {
  const a = document.querySelector('.leaflet-control-attribution').getBoundingClientRect();
  const panel = document.getElementById('panel');
  const p = panel.getBoundingClientRect();
  const shown = !panel.classList.contains('is-collapsed') && p.width > 0;
  const x0 = Math.max(a.left, p.left), x1 = Math.min(a.right, p.right);
  const y0 = Math.max(a.top, p.top), y1 = Math.min(a.bottom, p.bottom);
  const overlap = shown && x0 < x1 && y0 < y1;
  let panelOnTop = true;
  if (overlap) {
    const top = document.elementFromPoint((x0 + x1) / 2, (y0 + y1) / 2);
    panelOnTop = panel.contains(top);
  }
  const box = (el) => {
    if (!el || el.hidden) return null;
    const r = el.getBoundingClientRect();
    return r.width ? [r.left, r.top, r.right, r.bottom] : null;
  };
  return {
    overlap, panelOnTop, attribution: [a.left, a.top, a.right, a.bottom],
    legend: box(document.getElementById('legend-heat')),
    search: box(document.getElementById('place-search-form')),
  };
}"""


def boxes_overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def shot(page, clip: dict | None = None) -> np.ndarray:
    """RGB pixels of the page (or a clip of it)."""
    png = page.screenshot(clip=clip) if clip else page.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def save(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def idle(page) -> None:
    page.wait_for_selector("body[data-busy=false]", state="attached")
    page.wait_for_timeout(400)  # Leaflet fades tiles in over 200 ms


def text_query(api, text: str) -> dict:
    res = api.post("/queries", json={"text": text})
    assert res.status_code == 200, res.text
    return res.json()


def wav(samples: np.ndarray, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ---- 1. Top places: named, on land inside the region ----


def test_top_places_are_listed_by_place_name(open_page, api):
    mp = open_page(**DESKTOP)
    page = mp.page
    info = open_map(mp)
    settled_tiles(page)
    page.wait_for_selector("#places[data-mode=top] button.place")
    buttons = page.query_selector_all("#places button.place")
    assert len(buttons) >= 3
    pts = [[float(b.get_attribute(f"data-{k}")) for k in ("lat", "lon")] for b in buttons]
    w, s, e, n = info["store"]["bounds"]
    assert all(w <= lon <= e and s <= lat <= n for lat, lon in pts), pts
    # Each is named as the server names that place (nearest populated place), in words.
    qid = page.evaluate("() => window.soundscape.queryId")
    level = int(page.inner_text("#places-help").split("PSM zoom ")[1].split(")")[0])
    res = api.post(
        "/similarity", json={"query": {"id": qid}, "metadata": {}, "level": level, "points": pts}
    )
    assert res.status_code == 200, res.text
    for button, want in zip(buttons, res.json()["results"], strict=True):
        where = button.query_selector(".place-where").inner_text()
        place = want["place"]
        assert place is not None
        assert where == f"near {place['name']}, {place['admin1']}, {place['country_code']}"
        detail = button.query_selector(".place-detail").inner_text()
        assert "places on this map" in detail
        assert "score" not in detail and "CSD" not in detail


# ---- 2 and 3. Legend in words, top 5 % mark, percentile scale, probability range ----


def test_legend_says_less_and_more_likely_and_marks_the_top_5_percent(open_page, api):
    mp = open_page(**DESKTOP)
    page = mp.page
    open_map(mp)
    settled_tiles(page, url_has="scale=relative")
    qid = page.evaluate("() => window.soundscape.queryId")
    legend = api.get("/legend", params={"query": qid}).json()
    assert legend["fitted_on"] == "land"
    page.wait_for_selector("#legend-heat-words:not([hidden])")
    assert page.inner_text("#legend-heat-low") == legend["words"]["low"] == "less likely"
    assert page.inner_text("#legend-heat-high") == legend["words"]["high"] == "more likely"
    # The low words sit at the ramp's left end, the high ones at its right end.
    ramp = page.query_selector("#legend-heat-ramp").bounding_box()
    low = page.query_selector("#legend-heat-low").bounding_box()
    high = page.query_selector("#legend-heat-high").bounding_box()
    assert abs(low["x"] - ramp["x"]) < 4
    assert abs(high["x"] + high["width"] - ramp["x"] - ramp["width"]) < 4
    assert "CSD" not in page.inner_text("#legend-heat-title")

    mark = legend["marks"][0]
    assert mark["label"] == "top 5 % of this map"
    page.wait_for_selector("#legend-heat-marks:not([hidden]) .legend-mark")
    assert page.inner_text("#legend-heat-marks") == mark["label"]
    drawn = page.query_selector("#legend-heat-marks .legend-mark").bounding_box()
    frac = (mark["at"] - legend["min"]) / (legend["max"] - legend["min"])
    assert drawn["x"] == pytest.approx(ramp["x"] + frac * ramp["width"], abs=3)

    # The percentile scale: offered with a plain description, drawn, legend 0..100 %.
    page.check("input[name=scale][value=percentile]")
    assert "rank" in page.inner_text("#scale-help").lower()
    settled_tiles(page, url_has="scale=percentile")
    wait_for(page, "() => document.getElementById('legend-heat').dataset.scale === 'percentile'")
    assert page.inner_text("#legend-heat-min") == "0 %"
    assert page.inner_text("#legend-heat-max") == "100 %"
    assert page.inner_text("#legend-heat-marks") == "top 5 % of this map"
    drawn = page.query_selector("#legend-heat-marks .legend-mark").bounding_box()
    assert drawn["x"] == pytest.approx(ramp["x"] + 0.95 * ramp["width"], abs=3)
    assert "scale=percentile" in page.url
    save(page, "legend-percentile")

    # Every scale has its own description.
    helps = set()
    for value in ("relative", "absolute", "probability", "percentile"):
        page.check(f"input[name=scale][value={value}]")
        helps.add(page.inner_text("#scale-help"))
    assert len(helps) == 4


def test_probability_map_uses_the_whole_ramp(open_page, api):
    """Best places at a few percent no longer paint the map one dark colour: the legend's range
    (and the tiles') is fitted to the values present."""
    mp = open_page(**DESKTOP)
    page = mp.page
    info = open_map(mp)
    page.check("input[name=scale][value=probability]")
    settled_tiles(page, url_has="scale=probability")
    idle(page)

    samples = page.evaluate(SAMPLE, ["heatmap-layer", land_points(info["store"]["bounds"], 9)])
    colours = {tuple(s[:3]) for s in samples if s and s[3] == 255}
    assert len(colours) >= 10, colours  # many colours, not one dark purple wash
    brightness = [sum(c) for c in colours]
    assert max(brightness) - min(brightness) > 200


# ---- 4. The popup in plain words ----


def test_the_popup_names_the_place_and_says_how_likely_in_words(open_page, api):
    mp = open_page(**DESKTOP)
    page = mp.page
    info = open_map(mp)
    settled_tiles(page)
    lat, lon = land_points(info["store"]["bounds"], 3)[1]
    click_map_at(page, lat, lon)
    page.wait_for_selector(f"{POPUP} .inspect-likely")
    box = page.query_selector(POPUP)
    level = int(box.get_attribute("data-level"))
    plat, plon = float(box.get_attribute("data-lat")), float(box.get_attribute("data-lon"))
    body = {"query": {"text": "birds singing"}, "metadata": {}, "level": level,
            "points": [[plat, plon]]}  # fmt: skip
    want = api.post("/similarity", json=body).json()["results"][0]
    assert want["place"] and want["percentile"] is not None and want["confidence"]

    place = want["place"]
    name = f"near {place['name']}, {place['admin1']}, {place['country_code']}"
    assert page.inner_text(f"{POPUP} .inspect-place") == name
    likely = page.inner_text(f"{POPUP} .inspect-likely")
    pct = want["percentile"]
    if 0.5 <= pct < 99.5:
        assert f"better than {round(pct)} % of places on this map" in likely
    assert likely.split(":")[0] in {
        "Very likely here", "Likely here", "Possible here", "Unlikely here", "Very unlikely here"
    }  # fmt: skip
    conf = page.inner_text(f"{POPUP} .inspect-confidence")
    assert conf.startswith(f"Confidence: {want['confidence']}")
    # No jargon until asked for: the numbers are behind a toggle.
    visible = page.inner_text(POPUP)
    for jargon in ("CSD", "‖σ‖", "PSM zoom", "Score"):
        assert jargon not in visible, jargon
    page.click(f"{POPUP} .inspect-numbers summary")
    numbers = page.inner_text(f"{POPUP} .inspect-numbers")
    for label in ("Score (−CSD)", "Match probability", "Uncertainty (‖σ‖₁)", "PSM zoom"):
        assert label in numbers
    assert f"{want['probability'] * 100:.1f} %" in numbers
    save(page, "popup-plain-words")


# ---- 4. Sources and levels explained ----


def test_sources_and_levels_are_explained(open_page):
    mp = open_page(**DESKTOP)
    page = mp.page
    info = open_map(mp)
    helps = info["vocabulary"]["source_help"]
    assert page.inner_text("#asource-help").startswith("Any source")
    for source, sentence in helps["audio"].items():
        page.select_option("#asource", source)
        assert page.inner_text("#asource-help") == sentence
    for source, sentence in helps["caption"].items():
        page.select_option("#tsource", source)
        assert page.inner_text("#tsource-help") == sentence
    page.click("#sources-help summary")
    listed = page.inner_text("#sources-list")
    for sentence in [*helps["audio"].values(), *helps["caption"].values()]:
        assert sentence in listed

    # Levels by the ground they listen to: every level reads differently.
    texts = {}
    for level in info["store"]["levels"]:
        psm = str(level["psm_zoom"])
        km = level["footprint_km"]
        shown = f"{math.floor(km + 0.5)} km" if km >= 10 else f"{km:.1f} km"
        text = page.eval_on_selector(f"#level option[value='{psm}']", "o => o.textContent")
        assert f"about {shown} around each place" in text, text
        texts[psm] = text
        page.select_option("#level", psm)
        assert f"Listens to about {shown} around each place" in page.inner_text("#level-help")
    assert len(set(texts.values())) == len(texts)


# ---- 5. Place names on the map, place search, fading, places panel ----


@pytest.mark.parametrize("viewport", ["desktop", "portrait"])
def test_place_names_are_drawn_without_clutter(open_page, api, viewport):
    mp = open_page(**(DESKTOP if viewport == "desktop" else PORTRAIT))
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    wait_for(page, f"() => ({LABELS})().length >= 3", what="place labels")
    idle(page)
    labels = page.evaluate(LABELS)
    bbox = page.evaluate(VIEW_BBOX)
    known = api.get(
        "/places", params={"bbox": ",".join(f"{v:.5f}" for v in bbox), "limit": 200}
    ).json()["places"]
    assert {lb["name"] for lb in labels} <= {p["name"] for p in known}
    # Not cluttered: no two labels overlap.
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not boxes_overlap(
                [a["x0"], a["y0"], a["x1"], a["y1"]], [b["x0"], b["y0"], b["x1"], b["y1"]]
            ), (a, b)
    # Drawn: dark letters on a light halo, whatever is under them.
    for lb in labels[:3]:
        clip = {"x": lb["x0"], "y": lb["y0"], "width": lb["x1"] - lb["x0"],
                "height": lb["y1"] - lb["y0"]}  # fmt: skip
        px = shot(page, clip)
        dark = (px.sum(axis=2) < 200).sum()
        light = (px.min(axis=2) > 225).sum()
        assert dark > 15 and light > 15, (lb["name"], dark, light)
    save(page, f"place-names-{viewport}")

    # Zoomed in, more (smaller) places are named.
    names = {lb["name"] for lb in labels}
    page.evaluate("() => window.soundscape.map.setZoom(window.soundscape.map.getZoom() + 2)")
    wait_for(
        page,
        f"(names) => ({LABELS})().some((l) => !names.includes(l.name))",
        sorted(names),
        what="new labels after zooming in",
    )
    # They can be switched off, and the link says so.
    if viewport == "desktop":
        page.uncheck("#labels-on")
        assert page.query_selector(".map-label") is None
        assert "labels=0" in page.url


@pytest.mark.parametrize("viewport", ["desktop", "portrait"])
def test_searching_a_place_flies_there(open_page, viewport):
    mp = open_page(**(DESKTOP if viewport == "desktop" else PORTRAIT))
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    assert page.is_visible("#place-search")
    page.fill("#place-search", "bost")
    page.wait_for_selector("#place-results:not([hidden]) button.place-result")
    first = page.query_selector("#place-results button.place-result")
    assert first.query_selector(".place-result-name").inner_text() == "Boston"
    assert "Massachusetts" in first.inner_text()
    lat, lon = float(first.get_attribute("data-lat")), float(first.get_attribute("data-lon"))
    save(page, f"place-search-{viewport}")
    first.click()
    wait_for(
        page,
        """([lat, lon]) => {
          const c = window.soundscape.map.getCenter();
          return Math.abs(c.lat - lat) < 1e-3 && Math.abs(c.lng - lon) < 1e-3;
        }""",
        [lat, lon],
        what="the map to fly to Boston",
    )
    assert page.is_hidden("#place-results")
    assert page.inner_text("#place-search-status").startswith("Showing Boston, Massachusetts")
    # A place outside the map's data says so; Enter takes the first match.
    page.fill("#place-search", "Paris")
    page.wait_for_selector("#place-results:not([hidden]) button.place-result")
    assert "outside the map" in page.inner_text("#place-results button.place-result >> nth=0")
    page.press("#place-search", "Enter")
    wait_for(page, f"() => {STATUS}.includes('outside')", what="the outside-the-map note")
    # A name that matches nothing says that too.
    page.fill("#place-search", "Qqqzzx")
    wait_for(page, f"() => {STATUS}.startsWith('No place')", what="the no-place note")


def test_zoomed_in_the_heatmap_fades_and_the_places_panel_agrees(open_page):
    mp = open_page(**DESKTOP)
    page = mp.page
    info = open_map(mp)
    settled_tiles(page)
    # Zoomed out, the heatmap is at the chosen opacity.
    opacity = f"() => Number(getComputedStyle(document.querySelector('{HEAT}')).opacity)"
    assert page.evaluate(opacity) == pytest.approx(0.75)
    lat, lon = land_points(info["store"]["bounds"], 3)[4]
    page.evaluate(f"() => window.soundscape.map.setView([{lat}, {lon}], 13)")
    settled_tiles(page)
    idle(page)
    wait_for(page, f"() => Math.abs(({opacity})() - 0.35) < 0.01", what="the faded heatmap")
    assert "Faded to 35 %" in page.inner_text("#heat-fade-note")

    # Pixels: the faded map lets the imagery through, about half as strong as unfaded.
    box = page.query_selector("#map").bounding_box()
    clip = {"x": box["x"] + box["width"] / 2, "y": box["y"] + 60,
            "width": box["width"] / 2 - 20, "height": box["height"] / 2 - 60}  # fmt: skip
    faded = shot(page, clip)
    save(page, "heatmap-faded-z13")
    page.uncheck("#heat-fade")
    wait_for(page, f"() => Math.abs(({opacity})() - 0.75) < 0.01", what="the unfaded heatmap")
    idle(page)
    full = shot(page, clip)
    page.uncheck("#heat-on")
    page.wait_for_selector(".heatmap-layer", state="detached")
    idle(page)
    bare = shot(page, clip)
    d_faded = np.abs(faded - bare).mean()
    d_full = np.abs(full - bare).mean()
    assert d_faded > 1, "the faded heatmap is still drawn"
    assert d_faded < 0.65 * d_full, (d_faded, d_full)
    page.check("#heat-on")
    page.check("#heat-fade")

    # The places panel describes what is drawn in view instead of "no place has data".
    page.wait_for_selector("#places[data-mode=centre] button.place")
    assert "zoomed in closer than the map" in page.inner_text("#places-help")
    entry = page.inner_text("#places button.place")
    assert entry.startswith("The view’s centre, near ")
    assert "no place in view has data" not in page.inner_text("#places-heading + p").lower()


# ---- 6. Phone: the sheet steps aside, landscape keeps its button, attribution clear ----


def test_phone_sheet_closes_when_a_map_is_asked_for(open_page):
    mp = open_page(**PORTRAIT)
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    clip = {"x": 0, "y": 844 * 0.6, "width": 390, "height": 844 * 0.38}

    def white_share() -> float:
        px = shot(page, clip)
        return float((px.min(axis=2) > 235).mean())

    page.click("#panel-toggle")
    assert page.is_visible("#panel")
    geo = page.evaluate(ATTRIBUTION)
    assert not geo["overlap"] or geo["panelOnTop"], geo  # the panel is above the attribution
    open_share = white_share()
    assert open_share > 0.5, open_share  # the sheet (white cards) covers the lower screen
    save(page, "phone-sheet-open")

    page.click("button.example >> text=frogs croaking near a pond")
    assert page.get_attribute("#panel-toggle", "aria-expanded") == "false"
    assert page.is_hidden("#panel")
    settled_tiles(page, url_has="/tiles/")
    idle(page)
    closed_share = white_share()
    assert closed_share < 0.3, closed_share  # the map shows there now
    assert page.evaluate("() => document.elementFromPoint(195, 700).closest('#map') !== null")
    save(page, "phone-sheet-closed")

    # The attribution stays clear of the legend and the search box.
    geo = page.evaluate(ATTRIBUTION)
    for other in ("legend", "search"):
        if geo[other]:
            assert not boxes_overlap(geo["attribution"], geo[other]), (other, geo)

    # Typing a query and pressing Enter closes the sheet too.
    page.click("#panel-toggle")
    page.fill("#query-text", "wind blowing")
    page.press("#query-text", "Enter")
    assert page.is_hidden("#panel")


def test_landscape_phone_keeps_a_controls_button(open_page):
    mp = open_page(**LANDSCAPE)
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    assert page.is_visible("#panel-toggle")
    assert page.is_hidden("#panel")  # the map first
    page.click("#panel-toggle")
    assert page.is_visible("#panel") and page.is_visible("#query-text")
    panel = page.query_selector("#panel").bounding_box()
    assert panel["width"] <= 844 * 0.65  # a side sheet: the map stays in sight beside it
    geo = page.evaluate(ATTRIBUTION)
    assert not geo["overlap"] or geo["panelOnTop"], geo
    save(page, "landscape-sheet-open")
    page.click("button.example >> text=wind blowing")
    assert page.is_hidden("#panel")
    assert page.is_visible("#panel-toggle")
    save(page, "landscape-sheet-closed")


def test_rotating_the_phone_never_strands_the_controls(open_page):
    mp = open_page(**PORTRAIT)
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    assert page.is_visible("#panel-toggle")
    page.set_viewport_size({"width": 844, "height": 390})  # on its side
    assert page.is_visible("#panel-toggle")
    page.click("#panel-toggle")
    assert page.is_visible("#panel")
    page.click("#panel-toggle")
    assert page.is_hidden("#panel")
    page.set_viewport_size({"width": 1400, "height": 900})  # a wide screen: side by side
    wait_for(page, "() => !document.getElementById('panel').classList.contains('is-collapsed')")
    assert page.is_visible("#panel") and page.is_hidden("#panel-toggle")
    page.set_viewport_size({"width": 390, "height": 844})  # back upright: map first, button
    wait_for(page, "() => document.getElementById('panel').classList.contains('is-collapsed')")
    assert page.is_visible("#panel-toggle")


# ---- 8. Odd input gets words next to the control ----


def test_a_blank_query_says_what_to_do(open_page):
    mp = open_page(**DESKTOP)
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    posted: list[str] = []
    page.on("request", lambda r: "/queries" in r.url and posted.append(r.method))
    page.fill("#query-text", "     ")
    page.press("#query-text", "Enter")
    page.wait_for_selector("#query-feedback[data-kind=error]")
    assert "Type a few words" in page.inner_text("#query-feedback")
    assert "POST" not in posted
    assert page.inner_text("#active-query-text") == "“birds singing”"
    # Typing clears the message.
    page.fill("#query-text", "wind")
    assert page.is_hidden("#query-feedback")


def test_a_long_query_is_not_cut_silently(open_page, api):
    mp = open_page(**DESKTOP)
    page = mp.page
    info = open_map(mp)
    settled_tiles(page)
    limit = info["limits"]["text_chars"]
    text = ("waves crashing on the shore " * 80)[:2000]
    page.fill("#query-text", text)
    assert len(page.input_value("#query-text")) == 2000  # nothing cut while typing
    note = page.inner_text("#query-feedback")
    assert f"2,000 characters: the map reads at most {limit}" in note
    page.press("#query-text", "Enter")
    wait_for(page, "() => document.getElementById('query-feedback').textContent.startsWith('Map')")
    assert page.inner_text("#query-feedback") == f"Mapped the first {limit} of 2,000 characters."
    mapped = page.evaluate("() => window.soundscape.store.get().query.text")
    assert mapped == text[:limit].strip()
    qid = text_query(api, mapped)["id"]
    settled_tiles(page, url_has=f"/tiles/{qid}/")


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [
        ("silence.wav", lambda: wav(np.zeros(32000)), "silent"),
        ("blip.wav", lambda: audio_bytes("WAV", "PCM_16", seconds=0.05), "0.05 s long"),
    ],
)
def test_sounds_too_quiet_or_short_are_refused_in_words(open_page, api, name, make, words):
    mp = open_page(**DESKTOP)
    mp.watch.allowed = ["Failed to load resource", "422 POST"]
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    data = make()
    refused = api.post("/queries", files={"audio": (name, data, "audio/wav")})
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert words in detail
    page.set_input_files(
        "#audio-file", files=[{"name": name, "mimeType": "audio/wav", "buffer": data}]
    )
    page.wait_for_selector("#audio-feedback[data-kind=error]")
    text = page.inner_text("#audio-feedback")
    # The server's reason, once, as a sentence next to the control.
    assert text.startswith(f"Could not use {name}: ") and detail[1:] in text, text
    assert text.count(detail[1:]) == 1
    assert page.get_attribute("body", "data-query-kind") == "text"  # the map stays as it was
    assert page.input_value("#query-text") == "birds singing"
    assert page.is_hidden("#error")


# ---- 9. The unfamiliar-query hint ----


def test_an_unfamiliar_query_shows_the_servers_hint(open_page, api):
    mp = open_page(**DESKTOP)
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    assert page.is_hidden("#query-hint")
    # Descriptions the demo model does not know (the first the server gives a hint for).
    candidates = ["the sound of a fax modem", "xylophone quantum spreadsheet", "zzqx"]
    hinted = [(text, q) for text in candidates if (q := text_query(api, text))["hint"]]
    assert hinted, "the server gave none of these a hint"
    odd, want = hinted[0]
    assert want["familiarity"] in {"vague", "unfamiliar"}
    page.fill("#query-text", odd)
    page.press("#query-text", "Enter")
    page.wait_for_selector("#query-hint:not([hidden])")
    assert page.inner_text("#query-hint") == want["hint"]
    # Near the active query: right under the bar that names it.
    bar = page.query_selector(".topbar").bounding_box()
    hint = page.query_selector("#query-hint").bounding_box()
    assert abs(hint["y"] - (bar["y"] + bar["height"])) < 3
    save(page, "unfamiliar-hint")
    assert text_query(api, "birds singing")["hint"] is None
    page.click("button.example >> text=birds singing")
    page.wait_for_selector("#query-hint", state="hidden")
