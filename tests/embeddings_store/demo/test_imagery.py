"""The demo imagery: Blue Marble with the world's land cover and settlements drawn in."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings_store.demo.geo import (
    N_COLS,
    N_ROWS,
    RES_DEG,
    GeoLayers,
    bluemarble_path,
    default_cache_dir,
    grid_window,
)
from embeddings_store.demo.imagery import (
    LANDCOVER_RGB,
    SETTLEMENT_RGB,
    compose_imagery,
    write_demo_imagery,
)

MIDWEST = (-92.0, 38.0, -84.0, 44.0)  # Chicago, St. Louis, farmland, Lake Michigan


@pytest.fixture(scope="module")
def layers() -> GeoLayers:
    return GeoLayers.load(default_cache_dir())


@pytest.fixture(scope="module")
def midwest(layers) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    return compose_imagery(layers, MIDWEST)


def _window_layers(layers: GeoLayers, window: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    c0, r0, c1, r1 = window
    return {
        "land": layers.land[r0:r1, c0:c1],
        "landcover": layers.landcover[r0:r1, c0:c1],
        "urban": layers.urban[r0:r1, c0:c1],
    }


def test_window_is_on_the_layer_grid(midwest):
    rgb, window = midwest
    c0, r0, c1, r1 = window
    assert window == grid_window(MIDWEST, RES_DEG, 7200, 3600)
    assert rgb.dtype == np.uint8 and rgb.shape == (r1 - r0, c1 - c0, 3) == (120, 160, 3)


def test_settlements_are_drawn_as_built_up_land(layers, midwest):
    rgb, window = midwest
    lay = _window_layers(layers, window)
    dist = np.linalg.norm(rgb.astype(np.float32) - SETTLEMENT_RGB, axis=-1)
    city = lay["land"] & (lay["urban"] > 0.7)
    country = lay["land"] & (lay["urban"] < 0.05)
    assert city.sum() > 20 and country.sum() > 1000
    # Cities look like built-up land, the countryside does not.
    assert np.median(dist[city]) < 25 < np.median(dist[country])


def test_land_cover_shows_in_the_colours(layers, midwest):
    rgb, window = midwest
    lay = _window_layers(layers, window)
    rural = lay["land"] & (lay["urban"] < 0.05)
    crop = rgb[rural & (lay["landcover"] == 12)].astype(np.float32).mean(0)
    forest = rgb[rural & (lay["landcover"] == 4)].astype(np.float32).mean(0)
    lake = rgb[lay["land"] & (lay["landcover"] == 0)].astype(np.float32).mean(0)
    # Tan fields are redder than deciduous forest; lakes are blue and dark.
    assert crop[0] - forest[0] > 40 and LANDCOVER_RGB[12, 0] > LANDCOVER_RGB[4, 0]
    assert lake[2] > lake[0] and lake.sum() < forest.sum()


def test_sea_keeps_blue_marble(layers, midwest):
    _, window = midwest
    c0, r0, c1, r1 = window
    sea = ~layers.land[r0:r1, c0:c1]
    assert sea.sum() == 0  # the Midwest window has no sea: check one that has
    coast_rgb, (c0, r0, c1, r1) = compose_imagery(layers, (-76.0, 36.0, -72.0, 40.0))
    sea = ~layers.land[r0:r1, c0:c1]
    assert sea.sum() > 500
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(bluemarble_path()) as im:  # the whole image on the grid, then cropped
        whole = np.asarray(im.convert("RGB").resize((N_COLS, N_ROWS), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(coast_rgb[sea], whole[r0:r1, c0:c1][sea])


def test_crops_agree_with_a_larger_composition(layers, midwest):
    rgb, (c0, r0, _, _) = midwest
    big, (bc0, br0, _, _) = compose_imagery(layers, (-95.0, 35.0, -80.0, 46.0))
    ro, co = r0 - br0, c0 - bc0
    np.testing.assert_array_equal(big[ro : ro + rgb.shape[0], co : co + rgb.shape[1]], rgb)


def test_geotiff_is_georeferenced_and_read_back_exactly(layers, midwest, tmp_path):
    import rasterio

    rgb, _ = midwest
    path = write_demo_imagery(tmp_path / "imagery.tif", layers, MIDWEST)
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 4326
        assert ds.res == pytest.approx((RES_DEG, RES_DEG))
        assert ds.bounds.left == pytest.approx(-92) and ds.bounds.top == pytest.approx(44)
        assert ds.bounds.right == pytest.approx(-84) and ds.bounds.bottom == pytest.approx(38)
        np.testing.assert_array_equal(ds.read().transpose(1, 2, 0), rgb)
    assert not list(tmp_path.glob(".imagery.tif*"))


def test_bad_bbox_is_refused(layers):
    with pytest.raises(ValueError, match="west, south, east, north"):
        compose_imagery(layers, (10.0, 50.0, 5.0, 40.0))
    with pytest.raises(ValueError, match="does not overlap"):
        compose_imagery(layers, (190.0, 10.0, 200.0, 20.0))
