"""The web map's manners: phone width, labelled keyboard controls, clear errors, legend text."""

from __future__ import annotations

import pytest

from tests.web.helpers import open_map, settled_tiles, wait_for

pytestmark = pytest.mark.slow

LABELLED = """() => {
  const unnamed = [];
  for (const el of document.querySelectorAll('input, select, button')) {
    if (el.closest('[hidden]')) continue;
    const name = (el.labels && [...el.labels].map((l) => l.textContent.trim()).join(' ')) ||
      el.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent.trim());
    if (!name) unnamed.push(el.outerHTML.slice(0, 80));
  }
  return unnamed;
}"""
NO_LEVEL = """() => {
  const layer = document.querySelector('.heatmap-layer.is-current');
  return layer !== null && !layer.dataset.url.includes('level=');
}"""


def test_every_control_has_a_label_and_takes_the_keyboard(map_page):
    page = map_page.page
    open_map(map_page)
    settled_tiles(page)
    assert page.evaluate(LABELLED) == []
    # Tab from the top reaches the query box first (after the skip link), then its button.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "query-text"
    page.keyboard.press("Control+a")  # replace the query on show
    page.keyboard.type("crickets chirping at night")
    page.keyboard.press("Enter")
    settled_tiles(page)
    wait_for(page, "() => document.body.textContent.includes('“crickets chirping at night”')")
    # The map itself takes the keyboard: Enter inspects its centre.
    page.focus("#map")
    page.keyboard.press("Enter")
    page.wait_for_selector(".leaflet-popup .inspect")


def test_phone_width_puts_the_map_first(open_page):
    mp = open_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = mp.page
    open_map(mp)
    settled_tiles(page)
    assert page.get_attribute("#panel-toggle", "aria-expanded") == "false"
    assert page.is_hidden("#panel")
    box = page.query_selector("#map").bounding_box()
    assert box["width"] >= 380 and box["height"] >= 600
    page.click("#panel-toggle")
    assert page.get_attribute("#panel-toggle", "aria-expanded") == "true"
    assert page.is_visible("#query-text") and page.is_visible("#month")
    page.select_option("#month", "1")
    settled_tiles(page, url_has="month=1")
    # Nothing overflows sideways.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390


def test_a_file_that_is_not_audio_gets_a_clear_message(map_page):
    page = map_page.page
    map_page.watch.allowed = ["Failed to load resource", "POST", "/queries"]
    open_map(map_page)
    settled_tiles(page)
    not_audio = {"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"no samples here" * 10}
    page.set_input_files("#audio-file", files=[not_audio])
    page.wait_for_selector("#audio-feedback[data-kind=error]")
    # Said once, next to the sound controls, in the server's words.
    text = page.inner_text("#audio-feedback")
    assert text.startswith("Could not use notes.wav: ")
    assert text.lower().count("wav, flac") == 1, text
    assert page.get_attribute("body", "data-query-kind") == "text"  # the map stays as it was
    assert page.is_hidden("#error")  # the controls are open: no second copy in the banner


def test_a_link_to_a_sound_the_server_does_not_know_says_so(map_page):
    page = map_page.page
    map_page.watch.allowed = ["Failed to load resource", "404 GET"]
    open_map(map_page, "/?qid=aud-0123456789abcdef01234567&qname=lost.wav")
    page.wait_for_selector("#error:not([hidden])")
    assert "does not know this sound" in page.inner_text("#error-text")
    assert page.query_selector(".heatmap-layer") is None


def test_probability_scale_legend_reads_in_percent(map_page, api):
    page = map_page.page
    open_map(map_page)
    page.check("input[name=scale][value=probability]")
    settled_tiles(page, url_has="scale=probability")
    wait_for(
        page,
        "() => document.getElementById('legend-heat-title').textContent === 'Chance of a match'",
    )
    # The range is the one fitted to the map's values (not 0..100 %), written in percent.
    qid = page.evaluate("() => window.soundscape.queryId")
    want = api.get("/legend", params={"query": qid, "scale": "probability"}).json()
    assert 0 < want["min"] < want["max"] < 1
    assert float(page.get_attribute("#legend-heat-min", "data-value")) == want["min"]
    assert float(page.get_attribute("#legend-heat-max", "data-value")) == want["max"]
    lo, hi = page.inner_text("#legend-heat-min"), page.inner_text("#legend-heat-max")
    assert lo.endswith(" %") and hi.endswith(" %") and (lo, hi) != ("0 %", "100 %")
    assert float(lo[:-2]) == pytest.approx(want["min"] * 100, abs=0.06)
    assert float(hi[:-2]) == pytest.approx(want["max"] * 100, abs=0.06)
    page.check("#unc-on")
    settled_tiles(page, "uncertainty-layer")
    page.wait_for_selector("#legend-unc:not([hidden])")
    legend = api.get("/legend").json()
    assert float(page.get_attribute("#legend-unc-min", "data-value")) == legend["min"]
    assert float(page.get_attribute("#legend-unc-max", "data-value")) == legend["max"]


def test_a_busy_server_is_reported_with_when_to_retry(map_page):
    page = map_page.page
    map_page.watch.allowed = ["Failed to load resource", "503 POST"]
    open_map(map_page)
    settled_tiles(page)
    # The real server answers 503 + Retry-After when its queue is full; stand in for that.
    page.route(
        "**/queries",
        lambda route: route.fulfill(
            status=503,
            headers={"Retry-After": "7"},
            content_type="application/json",
            body='{"detail": "server busy: 64 jobs waiting"}',
        ),
    )
    page.fill("#query-text", "wind blowing")
    page.press("#query-text", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error-text") == "The server is busy right now; try again in 7 s."


def test_each_psm_level_draws_without_asking_for_missing_tiles(map_page):
    page = map_page.page
    info = open_map(map_page)
    settled_tiles(page)
    for level in info["store"]["levels"]:
        psm = str(level["psm_zoom"])
        page.select_option("#level", psm)
        settled_tiles(page, url_has=f"level={psm}")
        assert f"level={psm}" in page.url
    # Zoomed out past the finest level's range: the page asks for nothing the server lacks
    # (a 404 tile would fail this test through the page watch).
    finest = max(info["store"]["levels"], key=lambda lv: lv["tile_zoom"])
    page.select_option("#level", str(finest["psm_zoom"]))
    page.evaluate(f"() => window.soundscape.map.setZoom({info['zoom_range'][0]})")
    page.wait_for_selector("body[data-busy=false]", state="attached")
    page.wait_for_timeout(500)
    page.select_option("#level", "auto")
    wait_for(page, NO_LEVEL, what="the auto-level map")
    assert settled_tiles(page)["loaded"] >= 1


def test_everything_comes_from_our_own_origin(map_page):
    page = map_page.page
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    open_map(map_page)
    settled_tiles(page)
    page.wait_for_selector("body[data-busy=false]", state="attached")
    origin = map_page.base_url
    assert urls and all(u.startswith(origin + "/") for u in urls), urls
    paths = {u[len(origin) :].split("?")[0] for u in urls}
    assert "/vendor/leaflet/leaflet-src.esm.js" in paths  # Leaflet from npm, via our server
    assert "/vendor/leaflet/leaflet.css" in paths
    assert any(p.startswith("/imagery/") for p in paths)  # the offline base map
    # The page's CSP (script-src 'self', no inline script) is in force.
    csp = page.request.get(origin + "/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_an_external_base_map_from_the_server_settings_is_offered(map_page):
    """With SOUNDSCAPE_BASEMAP_URL set, /api/info carries the base map and the page offers it.

    The server side (settings, CSP, /api/info) is tested in tests/server; here /api/info is
    answered with a base map on our own origin, so the page's handling runs in a real browser.
    """
    page = map_page.page
    origin = map_page.base_url

    def with_basemap(route):
        response = route.fetch()
        info = response.json()
        info["basemap"] = {
            "url": origin + "/imagery/{z}/{x}/{y}.png?external=1",
            "name": "Test base map",
            "attribution": "Test tiles credit",
            "max_zoom": 12,
        }
        route.fulfill(response=response, json=info)

    page.route("**/api/info", with_basemap)
    open_map(map_page)
    options = page.eval_on_selector_all("#base option", "els => els.map((e) => e.value)")
    assert options == ["imagery", "external", "none"]
    assert "Test base map" in page.inner_text("#base")
    page.select_option("#base", "external")
    js = """() => [...document.querySelectorAll('img.leaflet-tile-loaded')]
                   .some((img) => img.src.includes('external=1'))"""
    wait_for(page, js, what="external base-map tiles")
    assert "Test tiles credit" in page.inner_text(".leaflet-control-attribution")
    assert "base=external" in page.url  # the choice is part of the shareable state
