"""Helpers for the browser tests: waiting on the page, reading its tiles' pixels.

The page's CSP forbids eval, so Playwright's string predicates (wait_for_function) cannot run
in it; waits poll page.evaluate instead, which the CSP does not govern.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from global_land_mask import globe

# JS: the loaded tiles of the layer on screen (`cls` = heatmap-layer or uncertainty-layer).
CURRENT_TILES = """(cls) => {
  const layer = document.querySelector(`.${cls}.is-current`);
  if (!layer) return null;
  const imgs = [...layer.querySelectorAll('img.leaflet-tile')];
  return {
    url: layer.dataset.url,
    total: imgs.length,
    loaded: imgs.filter((i) => i.classList.contains('leaflet-tile-loaded')).length,
    srcs: imgs.map((i) => i.src),
  };
}"""

# JS, shared by the snippets below: the RGBA bytes of a loaded tile image, read back through a
# canvas (tiles come from our origin, so the canvas is not tainted).
_PIXELS_OF = """  const pixelsOf = (img) => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    return ctx.getImageData(0, 0, c.width, c.height).data;
  };
"""

# JS: RGBA of the heatmap image at each [lat, lon] (null where no loaded tile covers it).
SAMPLE = (
    """([cls, points]) => {
"""
    + _PIXELS_OF
    + """  const map = window.soundscape.map;
  const layer = document.querySelector(`.${cls}.is-current`);
  const box = map.getContainer().getBoundingClientRect();
  const imgs = layer ? [...layer.querySelectorAll('img.leaflet-tile-loaded')] : [];
  return points.map(([lat, lon]) => {
    const p = map.latLngToContainerPoint([lat, lon]);
    const x = box.left + p.x, y = box.top + p.y;
    for (const img of imgs) {
      const r = img.getBoundingClientRect();
      if (x < r.left || x >= r.right || y < r.top || y >= r.bottom) continue;
      const px = Math.floor(((x - r.left) / r.width) * img.naturalWidth);
      const py = Math.floor(((y - r.top) / r.height) * img.naturalHeight);
      const at = 4 * (py * img.naturalWidth + px);
      return [...pixelsOf(img).slice(at, at + 4)];
    }
    return null;
  });
}"""
)

# JS: how many pixels of the on-screen layer's loaded tiles are drawn (alpha > 0) and how many
# of those are clearly coloured (not grey), over all its tiles.
PIXEL_COUNTS = (
    """(cls) => {
"""
    + _PIXELS_OF
    + """  const layer = document.querySelector(`.${cls}.is-current`);
  const out = { tiles: 0, drawn: 0, coloured: 0 };
  for (const img of layer ? layer.querySelectorAll('img.leaflet-tile-loaded') : []) {
    const d = pixelsOf(img);
    out.tiles += 1;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      out.drawn += 1;
      const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
      if (Math.max(r, g, b) - Math.min(r, g, b) >= 20) out.coloured += 1;
    }
  }
  return out;
}"""
)

# JS: the page (client) coordinates of [lat, lon] on the map, for mouse clicks.
CLIENT_POINT = """([lat, lon]) => {
  const map = window.soundscape.map;
  const p = map.latLngToContainerPoint([lat, lon]);
  const r = map.getContainer().getBoundingClientRect();
  return [r.left + p.x, r.top + p.y];
}"""

# JS: a digest of every loaded tile's pixels (to tell two maps apart).
PIXEL_DIGEST = (
    """(cls) => {
"""
    + _PIXELS_OF
    + """  const layer = document.querySelector(`.${cls}.is-current`);
  const out = {};
  for (const img of layer.querySelectorAll('img.leaflet-tile-loaded')) {
    const d = pixelsOf(img);
    let h = 0;
    for (let i = 0; i < d.length; i += 1) h = (h * 31 + d[i]) >>> 0;
    const key = new URL(img.src).pathname.split('/').slice(-3).join('/');
    out[key] = h;
  }
  return out;
}"""
)


def text_id(api, text: str) -> str:
    """The id of a text query registered through the API."""
    res = api.post("/queries", json={"text": text})
    assert res.status_code == 200, res.text
    return res.json()["id"]


def wait_for(page, js: str, arg: Any = None, timeout: float = 60.0, what: str = "") -> Any:
    """Poll a JS function until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(js, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or js}")
        page.wait_for_timeout(100)


def open_map(mp, path: str = "/") -> dict:
    """Open the page and wait until it has drawn; returns /api/info as the page saw it."""
    mp.page.goto(mp.base_url + path)
    mp.page.wait_for_selector("body[data-ready=true]", state="attached")
    return mp.page.evaluate("() => window.soundscape.info")


def settled_tiles(page, cls: str = "heatmap-layer", url_has: str = "", timeout: float = 90) -> dict:
    """The on-screen layer once its URL contains `url_has` and all its tiles have loaded."""
    js = """([cls, has]) => {
      const layer = document.querySelector(`.${cls}.is-current`);
      if (!layer || !layer.dataset.url.includes(has)) return null;
      const imgs = [...layer.querySelectorAll('img.leaflet-tile')];
      const loaded = (i) => i.classList.contains('leaflet-tile-loaded');
      return imgs.length > 0 && imgs.every(loaded);
    }"""
    wait_for(page, js, [cls, url_has], timeout, f"{cls} tiles with {url_has!r}")
    return page.evaluate(CURRENT_TILES, cls)


def tile_params(url: str) -> dict[str, str]:
    """Query parameters of a tile URL (single values)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def land_points(bounds: list[float], n: int = 7) -> list[list[float]]:
    """[lat, lon] on land on an n x n grid inside the store's bounds."""
    w, s, e, nn = bounds
    pts = []
    for lat in np.linspace(s, nn, n + 2)[1:-1]:
        for lon in np.linspace(w, e, n + 2)[1:-1]:
            if globe.is_land(lat, lon):
                pts.append([float(lat), float(lon)])
    assert pts, "the test region has no land"
    return pts


def click_map_at(page, lat: float, lon: float) -> None:
    """Click the map at [lat, lon] with the mouse."""
    x, y = page.evaluate(CLIENT_POINT, [lat, lon])
    page.mouse.click(x, y)


def is_coloured(rgba: list[int] | None) -> bool:
    """Opaque and clearly coloured (not grey/transparent)."""
    if rgba is None:
        return False
    r, g, b, a = rgba
    return a == 255 and max(r, g, b) - min(r, g, b) >= 20
