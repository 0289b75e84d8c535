"""The page's copies of server rules agree with the server (run in Node, no browser needed).

web/js/levels.js mirrors embeddings_store/grid.py (which web zooms each PSM level serves): if
they drift apart the page asks for tiles that 404. web/js/state.js mirrors the query-id shape.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from embeddings_store.grid import Level, level_for_web_zoom, web_zoom_range
from server.engine import MAX_MAGNIFY_LOG2
from server.queries import QUERY_ID
from tests.server.conftest import ROOT

SCRIPT = """
import { autoLevel, levelZoomRange } from './web/js/levels.js';
const cases = JSON.parse(process.argv[1]);
const out = cases.map((levels) => {
  const info = levels.map(([psm, tz, n]) => ({ psm_zoom: psm, tile_zoom: tz, cells_per_tile: n }));
  const auto = [];
  for (let z = 0; z <= 24; z += 1) auto.push(autoLevel(info, z)?.psm_zoom ?? null);
  return { ranges: info.map(levelZoomRange), auto };
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


def test_levels_js_matches_the_server_grid_rules():
    res = subprocess.run(
        [node(), "--input-type=module", "-e", SCRIPT, json.dumps(CASES)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for case, got in zip(CASES, json.loads(res.stdout), strict=True):
        levels = [Level(*c) for c in case]
        for lv, rng in zip(levels, got["ranges"], strict=True):
            lo, hi = web_zoom_range([lv])
            # The server serves a fixed level up to its cell zoom + MAX_MAGNIFY_LOG2 (engine.py).
            assert rng == [lo, min(hi, lv.cell_zoom + MAX_MAGNIFY_LOG2)], (case, lv)
        for z, psm in enumerate(got["auto"]):
            try:
                want = level_for_web_zoom(levels, z).psm_zoom
            except ValueError:
                want = None
            assert psm == want, (case, z)


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
