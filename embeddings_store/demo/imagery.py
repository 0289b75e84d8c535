"""The demo world's imagery: Blue Marble with the world's land cover and settlements drawn in.

Blue Marble is a 7 km cloud-free vegetation composite: towns, villages, croplands and small lakes
(which drive half of the demo's sound classes) are invisible in it, whereas the imagery PSM is
trained on (Sentinel-2, Bing) shows every field and street. An image model cannot learn what its
images do not show, so the demo imagery is drawn from the same layers as the world's ground
truth, the way a satellite would see them:

* Blue Marble colours (resampled to the layers' 0.05 deg grid), blended over land with a colour
  per MODIS land-cover class (forests dark green, cropland tan, barren sand, lakes dark blue...);
* settlements (the world's urban density, from GeoNames places and MODIS built-up pixels) as
  grey-beige built-up land, stronger where the density is higher.

The sea keeps Blue Marble's colours. The result is written as a georeferenced GeoTIFF and read
through the same rasterio imagery path as real users' imagery.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings_store.demo.geo import (
    N_COLS,
    N_ROWS,
    RES_DEG,
    GeoLayers,
    grid_window,
    write_rgb_geotiff,
)

# How each MODIS IGBP class looks from space (rows 0..16; row 0 is inland water on land).
# fmt: off
LANDCOVER_RGB = np.array([
    [ 25,  45,  85],  #  0 water (lakes, rivers)
    [ 25,  60,  35],  #  1 evergreen needleleaf: dark conifer green
    [ 15,  85,  25],  #  2 evergreen broadleaf: deep rainforest green
    [ 55,  85,  45],  #  3 deciduous needleleaf
    [ 60, 115,  40],  #  4 deciduous broadleaf
    [ 40,  90,  40],  #  5 mixed forest
    [110, 110,  60],  #  6 closed shrubland: olive
    [170, 150, 110],  #  7 open shrubland: dry brown
    [ 90, 120,  50],  #  8 woody savanna
    [150, 145,  70],  #  9 savanna: yellow-green
    [135, 170,  85],  # 10 grassland: light green
    [ 45, 100,  95],  # 11 permanent wetland: teal
    [200, 175,  90],  # 12 cropland: tan fields
    [150, 145, 140],  # 13 urban and built-up: grey
    [125, 145,  70],  # 14 cropland/natural mosaic
    [240, 245, 250],  # 15 snow and ice
    [215, 195, 160],  # 16 barren: sand
], dtype=np.float32)
# fmt: on

# Share of the land-cover colour in a land pixel (the rest is Blue Marble's texture).
LANDCOVER_WEIGHT = 0.6
# Colour of built-up land and the opacity per unit of urban density (saturating at 1).
SETTLEMENT_RGB = np.array([200, 190, 180], dtype=np.float32)
SETTLEMENT_GAIN = 1.3


def _bluemarble_on_grid(window: tuple[int, int, int, int]) -> np.ndarray:
    """Blue Marble resampled to the layers' 0.05 deg grid over a window: (H, W, 3) uint8.

    Only the window is resampled (PIL's `box`), with the same result as resampling the whole
    5400 x 2700 image to 7200 x 3600 and cropping.
    """
    from PIL import Image

    from embeddings_store.demo.geo import bluemarble_path

    c0, r0, c1, r1 = window
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(bluemarble_path()) as im:
        sx, sy = im.width / N_COLS, im.height / N_ROWS
        box = (c0 * sx, r0 * sy, c1 * sx, r1 * sy)
        resized = im.convert("RGB").resize((c1 - c0, r1 - r0), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized)


def compose_imagery(
    layers: GeoLayers, bbox: tuple[float, float, float, float] | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The demo imagery over `bbox` (all if None): ((H, W, 3) uint8, (col0, row0, col1, row1))."""
    window = grid_window(bbox, RES_DEG, N_COLS, N_ROWS)
    c0, r0, c1, r1 = window
    rgb = _bluemarble_on_grid(window).astype(np.float32)
    land = layers.land[r0:r1, c0:c1, None]
    cover = LANDCOVER_RGB[np.clip(layers.landcover[r0:r1, c0:c1], 0, 16)]
    rgb = np.where(land, (1 - LANDCOVER_WEIGHT) * rgb + LANDCOVER_WEIGHT * cover, rgb)
    alpha = np.clip(SETTLEMENT_GAIN * layers.urban[r0:r1, c0:c1], 0.0, 1.0)[..., None] * land
    rgb = (1 - alpha) * rgb + alpha * SETTLEMENT_RGB
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), window


def write_demo_imagery(
    path: Path, layers: GeoLayers, bbox: tuple[float, float, float, float] | None = None
) -> Path:
    """Write the demo imagery (or a west, south, east, north crop) as a tiled EPSG:4326 GeoTIFF."""
    rgb, (c0, r0, _, _) = compose_imagery(layers, bbox)
    return write_rgb_geotiff(path, rgb, -180 + c0 * RES_DEG, 90 - r0 * RES_DEG, RES_DEG)
