"""The page reads the server's rules right (run in Node, no browser needed).

web/js/levels.js answers "which level draws web zoom z" from /api/info's `web_zooms` and
`auto_levels`, which embeddings_store/grid.py computes: if the page misread them it would ask
for tiles that 404. web/js/state.js mirrors the query-id shape.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess

import pytest

from embeddings_store.grid import Level, auto_level_ranges, level_for_web_zoom, web_zoom_range
from server.queries import QUERY_ID
from tests.server.conftest import ROOT

SCRIPT = """
import { levelAt, levelZoomRange } from './web/js/levels.js';
const infos = JSON.parse(process.argv[1]);
const out = infos.map((info) => {
  const auto = [];
  for (let z = 0; z <= 24; z += 0.5) auto.push(levelAt(info, 'auto', z)?.psm_zoom ?? null);
  const fixed = info.store.levels.map((lv) => levelAt(info, String(lv.psm_zoom), 3).psm_zoom);
  return { ranges: info.store.levels.map(levelZoomRange), auto, fixed };
});
console.log(JSON.stringify(out));
"""

CASES = [
    [(1, 8, 8), (5, 6, 8)],
    [(1, 6, 16), (3, 4, 16), (5, 4, 16)],
    [(1, 10, 16), (3, 9, 16), (5, 8, 16)],
    [(1, 3, 4), (3, 3, 4)],
    [(5, 12, 64)],
    [(1, 0, 1), (3, 0, 2), (5, 1, 256)],
]


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed: apt-get install nodejs (it comes with npm)")
    return path


def info_for(levels: list[Level]) -> dict:
    """The level part of /api/info as the engine computes it (Engine.level_zooms, auto_levels)."""
    return {
        "store": {
            "levels": [
                {"psm_zoom": lv.psm_zoom, "web_zooms": list(web_zoom_range([lv]))} for lv in levels
            ]
        },
        "auto_levels": [
            {"psm_zoom": psm, "web_zooms": [lo, hi]} for psm, lo, hi in auto_level_ranges(levels)
        ],
    }


def test_levels_js_draws_the_levels_the_server_serves():
    cases = [[Level(*c) for c in case] for case in CASES]
    res = subprocess.run(
        [node(), "--input-type=module", "-e", SCRIPT, json.dumps([info_for(c) for c in cases])],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for levels, got in zip(cases, json.loads(res.stdout), strict=True):
        for lv, rng in zip(levels, got["ranges"], strict=True):
            # The zooms the engine accepts for a named level (Engine.level_zooms).
            assert rng == list(web_zoom_range([lv])), (levels, lv)
        assert got["fixed"] == [lv.psm_zoom for lv in levels]
        zmin, zmax = web_zoom_range(levels)
        for i, psm in enumerate(got["auto"]):
            z = math.floor(i / 2 + 0.5)  # fractional map zooms: JS Math.round (halves go up)
            try:
                want = level_for_web_zoom(levels, z).psm_zoom if zmin <= z <= zmax else None
            except ValueError:
                want = None
            assert psm == want, (levels, i / 2)


def test_state_js_accepts_exactly_the_server_query_ids():
    source = (ROOT / "web" / "js" / "state.js").read_text()
    assert "/^(aud|txt)-[0-9a-f]{24}$/" in source
    assert QUERY_ID.pattern == r"^(txt|aud)-[0-9a-f]{24}$"


def test_every_page_module_parses():
    """A syntax error would only show in a browser; Node finds it in milliseconds."""
    files = sorted((ROOT / "web" / "js").glob("*.js"))
    assert files
    for path in files:
        res = subprocess.run([node(), "--check", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, f"{path.name}: {res.stderr}"
        assert "Warning" not in res.stderr, res.stderr


STATE_SCRIPT = """
import { compareActive, compareParams, fromUrl, toUrl } from './web/js/state.js';
const info = {
  colormaps: { heatmap: ['viridis'] },
  vocabulary: { months: [1, 12], hours: [0, 23], audio_sources: [], caption_sources: [] },
  store: { levels: [{ psm_zoom: 1 }] },
  scales: ['relative'],
  zoom_range: [0, 12],
  limits: { text_chars: 256 },
};
const out = JSON.parse(process.argv[1]).map((search) => {
  const s = fromUrl(search, info, ['imagery']);
  return {
    compare: s.compare, queryB: s.queryB, bHour: s.bHour, bMonth: s.bMonth,
    active: compareActive(s), params: compareParams(s), url: toUrl(s, info),
  };
});
console.log(JSON.stringify(out));
"""


def test_state_js_keeps_compare_mode_in_the_url():
    """cmp, qb, b_hour and b_month round-trip; invalid values fall back; B leaves with cmp off."""
    searches = [
        "?q=birds&cmp=1&qb=frogs+croaking&b_hour=22&b_month=7",
        "?q=birds&cmp=1&b_hour=24&b_month=0&qb=+",
        "?q=birds&cmp=yes&b_hour=5",
        "?q=birds&cmp=0&qb=frogs&b_month=3",
    ]
    res = subprocess.run(
        [node(), "--input-type=module", "-e", STATE_SCRIPT, json.dumps(searches)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    full, invalid, bad_flag, off = json.loads(res.stdout)
    assert full["compare"] is True and full["active"] is True
    assert full["queryB"] == {"kind": "text", "text": "frogs croaking"}
    assert (full["bHour"], full["bMonth"]) == (22, 7)
    assert full["params"] == {"b_month": 7, "b_hour": 22}
    assert full["url"] == "?q=birds&cmp=1&qb=frogs+croaking&b_hour=22&b_month=7"
    # Out-of-range hours and months and a blank B query keep B = A: compare is on but idle.
    assert invalid["compare"] is True and invalid["active"] is False
    assert (invalid["queryB"], invalid["bHour"], invalid["bMonth"]) == (None, None, None)
    assert invalid["url"] == "?q=birds&cmp=1"
    assert bad_flag["compare"] is False and bad_flag["bHour"] == 5
    assert bad_flag["url"] == "?q=birds"  # B is not written while compare is off
    assert off["compare"] is False and off["active"] is False and "qb" not in off["url"]


WORDS_SCRIPT = """
import { fadeCap, FADE_FLOOR } from './web/js/levels.js';
import { describePlace, likelihoodWords, rankWords, formatPercentRange } from './web/js/format.js';
import { fromUrl, toUrl } from './web/js/state.js';
const info = {
  colormaps: { heatmap: ['viridis'] },
  vocabulary: { months: [1, 12], hours: [0, 23], audio_sources: [], caption_sources: [] },
  store: { levels: [{ psm_zoom: 1 }] },
  scales: ['relative', 'percentile'],
  zoom_range: [0, 16],
  limits: { text_chars: 256 },
};
const level = { tile_zoom: 6 };
const out = {
  fade: Array.from({ length: 17 }, (_, z) => fadeCap(level, z)),
  fadeFine: [fadeCap({ tile_zoom: 12 }, 13), fadeCap({ tile_zoom: 12 }, 14), fadeCap(null, 15)],
  floor: FADE_FLOOR,
  words: [0, 10, 20, 50, 80, 95].map(likelihoodWords),
  ranks: [null, 0, 93.4, 99.7].map(rankWords),
  place: [
    describePlace({ name: 'Tallahassee', admin1: 'Florida', country_code: 'US' }, 30.4, -84.3),
    describePlace(null, 30.4, -84.3),
  ],
  pct: formatPercentRange(0.0056, 0.0334),
  url: toUrl(fromUrl('?q=birds&scale=percentile&fade=0&labels=0', info, ['imagery']), info),
  defaults: toUrl(fromUrl('?q=birds&fade=1&labels=1&scale=nope', info, ['imagery']), info),
};
console.log(JSON.stringify(out));
"""


def test_words_fading_and_new_url_keys():
    """The page's plain words, the zoom fade and the new link keys (fade, labels, percentile)."""
    res = subprocess.run(
        [node(), "--input-type=module", "-e", WORDS_SCRIPT],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    fade = out["fade"]
    # Full up to the level's tile zoom + 1, then down to the floor by zoom 13, never lower.
    assert fade[:8] == [1] * 8
    assert all(a > b for a, b in itertools.pairwise(fade[7:14]))
    assert fade[13:] == [out["floor"]] * 4 and out["floor"] == pytest.approx(0.35)
    # A finer level starts fading later and still reaches the floor a zoom later.
    assert out["fadeFine"] == [1, out["floor"], 1]
    assert out["words"] == [
        "Very unlikely here", "Very unlikely here", "Unlikely here", "Possible here",
        "Likely here", "Very likely here",
    ]  # fmt: skip
    assert out["ranks"] == [
        "", "among the least likely places on this map",
        "better than 93 % of places on this map", "among the best places on this map",
    ]  # fmt: skip
    assert out["place"] == ["near Tallahassee, Florida, US", "30.400° N, 84.300° W"]
    assert out["pct"] == ["0.56 %", "3.34 %"]
    assert out["url"] == "?q=birds&scale=percentile&fade=0&labels=0"
    assert out["defaults"] == "?q=birds"


VIEW_SCRIPT = """
import { heatmapUrl, uncertaintyUrl, compareUrl, viewUrl } from './web/js/tiles.js';
const [id, bounds, z] = JSON.parse(process.argv[1]);
const state = { month: 7, hour: 5, asource: null, tsource: null, location: true, level: 'auto',
  scale: 'relative', colormap: 'magma', playing: true, sameScale: true };
console.log(JSON.stringify([
  viewUrl(heatmapUrl(id, state, null), z, bounds, [5, 6]),
  viewUrl(uncertaintyUrl(state, null), z, bounds, [5]),
  viewUrl(compareUrl(id, id, state, null), z, bounds, [5]),
]));
"""


def test_the_page_asks_for_views_the_server_prepares(api):
    """web/js/tiles.js turns a layer's tile template into the POST /views/... of its view; the
    server must accept exactly what the page sends (same parameters, hours, bbox)."""
    info = api.get("/api/info").json()
    w, s, e, n = info["store"]["bounds"]
    qid = api.post("/queries", json={"text": "birds at dawn"}).json()["id"]
    z = info["zoom_range"][0] + 1
    view = [w + (e - w) * 0.4, s + (n - s) * 0.4, w + (e - w) * 0.5, s + (n - s) * 0.5]
    run = subprocess.run([node(), "--input-type=module", "-e", VIEW_SCRIPT,
                          json.dumps([qid, view, z])],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    heat, unc, compare = json.loads(run.stdout)
    assert compare is None  # compare tiles are not prepared in batches
    for url, frames in ((heat, 2), (unc, 1)):
        r = api.post(url)
        assert r.status_code == 200, (url, r.text)
        assert r.json()["frames"] == frames and r.json()["tiles"] >= frames
