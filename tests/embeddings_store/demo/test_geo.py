"""Demo-world geodata layers and soundscape rules, on the real data shipped in PyPI packages.

The layers are built once (about 20 s) into the user cache folder ($SOUNDSCAPE_DEMO_CACHE
overrides it) and loaded from there in well under a second afterwards.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from embeddings_store.demo import CLASS_NAMES
from embeddings_store.demo.geo import (
    BMNG_DEG_PER_PX,
    GeoLayers,
    bluemarble_path,
    default_cache_dir,
    write_bluemarble_geotiff,
)
from embeddings_store.demo.soundscape import (
    AUDIO_SOURCES,
    CAPTION_SOURCES,
    N_CLASSES,
    TIME_DEPENDENT,
    class_distribution,
    class_likely_here,
    sample_world,
    split_of,
)

C = {name: i for i, name in enumerate(CLASS_NAMES)}


@pytest.fixture(scope="module")
def layers() -> GeoLayers:
    return GeoLayers.load(default_cache_dir())


def _point(layers: GeoLayers, lat: float, lon: float) -> dict[str, np.ndarray]:
    return layers.sample(np.array([lat]), np.array([lon]))


def _feats(n: int = 1, **kw: float) -> dict[str, np.ndarray]:
    """Synthetic place features (a rural land cell by default)."""
    base = {"landcover": 12, "land": True, "urban": 0.0, "coast_km": 500.0, "fresh_water": 0.0}
    base.update(kw)
    return {k: np.full(n, v) for k, v in base.items()}


def _p(feats, lat, month, hour, cls: str) -> float:
    m = None if month is None else np.array([month])
    h = None if hour is None else np.array([hour])
    return float(class_distribution(feats, np.array([float(lat)]), m, h)[0, C[cls]])


# --- geodata layers -----------------------------------------------------------------------


def test_layers_grid_and_types(layers):
    assert layers.landcover.shape == layers.land.shape == (3600, 7200)
    assert layers.landcover.dtype == np.uint8 and layers.landcover.max() <= 16
    assert layers.land.dtype == bool and 0.25 < layers.land.mean() < 0.4  # Earth: ~29% land
    assert layers.urban.min() >= 0 and layers.urban.max() <= 1
    assert layers.coast_km.min() == 0 and 2000 < layers.coast_km.max() < 3000  # Point Nemo


@pytest.mark.parametrize(
    ("lat", "lon", "igbp"),
    [(-3.5, -62.0, 2), (-5.0, -65.0, 2), (23.0, 12.0, 16), (25.0, 5.0, 16), (-80.0, 30.0, 15)],
)
def test_landcover_at_known_places(layers, lat, lon, igbp):
    # Central Amazon: evergreen broadleaf forest; Sahara: barren; East Antarctica: snow and ice.
    f = _point(layers, lat, lon)
    assert int(f["landcover"][0]) == igbp
    assert bool(f["land"][0])


def test_land_mask_and_urban_density(layers):
    pac = _point(layers, 0.0, -150.0)
    assert not pac["land"][0] and pac["landcover"][0] == 0
    for lat, lon in [(48.86, 2.35), (40.75, -73.98), (35.68, 139.70), (51.50, -0.12)]:
        assert _point(layers, lat, lon)["urban"][0] > 0.6  # Paris, NYC, Tokyo, London
    for lat, lon in [(38.5, -98.5), (-3.5, -62.0), (23.0, 12.0)]:
        assert _point(layers, lat, lon)["urban"][0] < 0.1  # rural Kansas, Amazon, Sahara


def test_coast_distance(layers):
    east_coast = [(39.36, -74.43), (36.85, -75.98), (41.5, -71.3)]  # Atlantic City, VA Beach, RI
    for lat, lon in east_coast:
        f = _point(layers, lat, lon)
        assert f["coast_km"][0] < 20
    assert _point(layers, 38.5, -98.5)["coast_km"][0] > 500  # Kansas
    assert _point(layers, 0.0, -150.0)["coast_km"][0] > 300  # mid-Pacific, far from islands
    # Longitude wraps: the same distance either side of the dateline.
    a, b = _point(layers, -30.0, 179.99), _point(layers, -30.0, -179.99)
    assert abs(float(a["coast_km"][0]) - float(b["coast_km"][0])) < 15


def test_cached_load_is_fast_and_identical(layers, tmp_path):
    src = GeoLayers.cache_path(default_cache_dir())
    assert src.exists()
    shutil.copy(src, GeoLayers.cache_path(tmp_path))
    t0 = time.perf_counter()
    again = GeoLayers.load(tmp_path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0  # about 0.3 s here; the bound leaves room for a busy machine
    for name in ("landcover", "land", "urban_q", "coast_q", "fresh_water_q"):
        assert np.array_equal(getattr(again, name), getattr(layers, name)), name


def test_sample_is_vectorised_and_wraps(layers):
    lat = np.array([10.0, 10.0, 89.99, -90.0])
    lon = np.array([-180.0, 180.0, 0.0, 0.0])
    f = layers.sample(lat, lon)
    assert all(v.shape == (4,) for v in f.values())
    assert f["coast_km"][0] == f["coast_km"][1]  # -180 and 180 are the same meridian


# --- Blue Marble GeoTIFF -------------------------------------------------------------------


def _jpeg() -> np.ndarray:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(bluemarble_path()) as im:
        return np.asarray(im.convert("RGB"))


def test_bluemarble_geotiff_whole_world(tmp_path):
    import rasterio

    path = write_bluemarble_geotiff(tmp_path / "bm.tif")
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 4326
        assert (ds.width, ds.height, ds.count) == (5400, 2700, 3)
        assert ds.transform.almost_equals(
            rasterio.Affine(BMNG_DEG_PER_PX, 0, -180, 0, -BMNG_DEG_PER_PX, 90)
        )
        assert ds.overviews(1)  # internal overviews for zoomed-out reads
        assert ds.block_shapes[0] == (256, 256)
        data = ds.read()
    np.testing.assert_array_equal(data.transpose(1, 2, 0), _jpeg())
    assert not list(tmp_path.glob(".bm.tif*"))  # the temporary file was renamed away


def test_bluemarble_geotiff_bbox_crop(tmp_path):
    import rasterio

    path = write_bluemarble_geotiff(tmp_path / "usa.tif", (-110.0, 30.0, -90.0, 45.0))
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 4326
        assert (ds.width, ds.height) == (300, 225)
        assert ds.bounds.left == pytest.approx(-110) and ds.bounds.top == pytest.approx(45)
        assert ds.bounds.right == pytest.approx(-90) and ds.bounds.bottom == pytest.approx(30)
        data = ds.read().transpose(1, 2, 0)
    np.testing.assert_array_equal(data, _jpeg()[675:900, 1050:1350])


# --- soundscape rules ----------------------------------------------------------------------


def test_distributions_sum_to_one_with_floor(layers):
    rng = np.random.default_rng(0)
    lat = rng.uniform(-60, 80, 500)
    lon = rng.uniform(-180, 180, 500)
    feats = layers.sample(lat, lon)
    month = rng.integers(1, 13, 500)
    hour = rng.integers(-1, 24, 500)  # includes unknown hours
    for m, h in [(month, hour), (None, hour), (month, None), (None, None)]:
        p = class_distribution(feats, lat, m, h)
        assert p.shape == (500, N_CLASSES)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
        assert p.min() > 0  # background floor


def test_unknown_time_is_the_average():
    f = _feats()
    lat = np.array([45.0])
    per_hour = [class_distribution(f, lat, np.array([4]), np.array([h])) for h in range(24)]
    marg = class_distribution(f, lat, np.array([4]), None)
    np.testing.assert_allclose(marg, np.mean(per_hour, axis=0))
    np.testing.assert_allclose(marg, class_distribution(f, lat, np.array([4]), np.array([-1])))


def test_rooster_at_dawn_in_cropland():
    f = _feats(landcover=12)
    assert _p(f, 40, 6, 6, "rooster") > 2 * _p(f, 40, 6, 14, "rooster")


def test_songbirds_dawn_chorus_and_quiet_winter():
    forest = _feats(landcover=5)
    may_dawn = _p(forest, 60, 5, 5, "songbirds")
    assert may_dawn > 3 * _p(forest, 60, 5, 23, "songbirds")
    assert may_dawn > 3 * _p(forest, 60, 1, 5, "songbirds")
    assert _p(forest, 60, 1, None, "songbirds") < 0.05  # nearly absent in a 60 N winter


def test_southern_hemisphere_seasons_flipped():
    forest = _feats(landcover=4)
    north_may = _p(forest, 45, 5, 5, "songbirds")
    south_nov = _p(forest, -45, 11, 5, "songbirds")
    assert south_nov > 3 * _p(forest, -45, 5, 5, "songbirds")
    assert south_nov == pytest.approx(north_may, rel=0.2)
    assert _p(forest, -40, 1, 22, "insects") > 3 * _p(forest, -40, 7, 22, "insects")


def test_night_insects_and_frogs_in_warm_months():
    wet = _feats(landcover=11, fresh_water=1.0)
    savanna = _feats(landcover=9)
    for cls, f in (("insects", savanna), ("frogs", wet)):
        assert _p(f, 30, 7, 22, cls) > 2 * _p(f, 30, 7, 12, cls)
        assert _p(f, 55, 7, 22, cls) > 5 * _p(f, 55, 1, 22, cls)
    assert _p(wet, 30, 7, 22, "frogs") > 5 * _p(_feats(landcover=16), 30, 7, 22, "frogs")


def test_waves_near_coast(layers):
    near = _feats(coast_km=1.0)
    far = _feats(coast_km=200.0)
    assert _p(near, 40, None, None, "waves") > 20 * _p(far, 40, None, None, "waves")
    coast = _point(layers, 39.36, -74.43)
    kansas = _point(layers, 38.5, -98.5)
    assert _p(coast, 39.36, 7, 12, "waves") > 10 * _p(kansas, 38.5, 7, 12, "waves")


def test_rush_hour_traffic_in_nyc(layers):
    nyc = _point(layers, 40.75, -73.98)
    assert _p(nyc, 40.75, 3, 8, "road_traffic") > 2 * _p(nyc, 40.75, 3, 3, "road_traffic")
    paris = _point(layers, 48.86, 2.35)
    kansas = _point(layers, 38.5, -98.5)
    for cls in ("road_traffic", "horns_sirens", "crowd", "construction"):
        assert _p(paris, 48.86, None, None, cls) > 5 * _p(kansas, 38.5, None, None, cls)


def test_time_dependent_classes_peak_at_their_hours():
    places = {
        "songbirds": _feats(landcover=4),
        "insects": _feats(landcover=9),
        "frogs": _feats(landcover=11, fresh_water=1.0),
        "rooster": _feats(landcover=14),
        "rain_thunder": _feats(landcover=2),
    }
    city = _feats(landcover=13, urban=0.9)
    for ci, (right, wrong) in TIME_DEPENDENT.items():
        f = places.get(CLASS_NAMES[ci], city)
        for month in (4, 7):  # spring and warm summer at 35 N
            p_right = np.mean([_p(f, 35, month, h, CLASS_NAMES[ci]) for h in right])
            p_wrong = np.mean([_p(f, 35, month, h, CLASS_NAMES[ci]) for h in wrong])
            assert p_right > 1.3 * p_wrong, (CLASS_NAMES[ci], month)


def test_class_likely_here_is_nontrivial_over_the_usa(layers):
    lat, lon = np.meshgrid(np.arange(25.0, 49.0, 0.5), np.arange(-125.0, -66.0, 0.5), indexing="ij")
    for ci, name in enumerate(CLASS_NAMES):
        likely = class_likely_here(layers, lat, lon, ci)
        assert likely.shape == lat.shape and likely.dtype == bool
        assert 0 < likely.sum() < likely.size, name
    # Threshold override, and plausible geography for a few classes.
    assert class_likely_here(layers, lat, lon, C["wind"], threshold=0.0).all()
    assert class_likely_here(layers, np.array([40.75]), np.array([-73.98]), C["road_traffic"])[0]
    assert not class_likely_here(layers, np.array([38.5]), np.array([-98.5]), C["waves"])[0]
    assert class_likely_here(layers, np.array([42.0]), np.array([-93.5]), C["farm_animals"])[0]


# --- sampled world and splits --------------------------------------------------------------


def test_sample_world_deterministic_and_plausible(layers):
    a = sample_world(layers, 3000, seed=7)
    b = sample_world(layers, 3000, seed=7)
    c = sample_world(layers, 3000, seed=8)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["lat"], c["lat"])
    assert not np.array_equal(a["class_index"], c["class_index"])

    n = 3000
    assert set(a) >= {"lat", "lon", "month", "hour", "class_index", "audio_source"}
    assert np.all((a["month"] >= 1) & (a["month"] <= 12))
    assert np.all((a["hour"] >= -1) & (a["hour"] <= 23))
    assert 0.05 < np.mean(a["hour"] == -1) < 0.2
    freesound = a["audio_source"] == AUDIO_SOURCES.index("freesound")
    assert np.all(a["hour"][freesound] == -1)
    assert set(np.unique(a["caption_source"])) <= set(range(len(CAPTION_SOURCES)))
    counts = np.bincount(a["class_index"], minlength=N_CLASSES)
    assert counts.min() > 0.005 * n and counts.max() < 0.3 * n  # every class is represented
    f = layers.sample(a["lat"], a["lon"])
    assert 0.75 < f["land"].mean() < 0.97  # land-biased, with some sea
    assert np.mean(f["coast_km"] < 10) > 0.1
    inat = a["audio_source"] == AUDIO_SOURCES.index("inat")
    animals = np.isin(a["class_index"], [C["songbirds"], C["insects"], C["frogs"]])
    assert animals[inat].mean() > 0.8


def test_land_weights_set_how_much_towns_are_favoured(layers):
    towns = sample_world(layers, 3000, seed=7)  # the shipped weights: 0.1 + 10 x urban
    flat = sample_world(layers, 3000, seed=7, land_weights=(1.0, 0.0))  # area only
    urban_towns = layers.sample(towns["lat"], towns["lon"])["urban"]
    urban_flat = layers.sample(flat["lat"], flat["lon"])["urban"]
    assert urban_towns.mean() > 3 * urban_flat.mean()


def test_split_of_per_cell_and_proportions():
    rng = np.random.default_rng(0)
    lat = rng.uniform(-60, 70, 200_000)
    lon = rng.uniform(-180, 180, 200_000)
    s = split_of(lat, lon, seed=0)
    # Every point of a 1 deg cell gets the cell's split.
    same_cell = split_of(np.floor(lat) + 0.999, np.floor(lon) + 0.001, seed=0)
    np.testing.assert_array_equal(s, same_cell)
    frac = {k: np.mean(s == k) for k in ("train", "val", "test")}
    assert frac["train"] == pytest.approx(0.8, abs=0.03)
    assert frac["val"] == pytest.approx(0.1, abs=0.02)
    assert frac["test"] == pytest.approx(0.1, abs=0.02)
    np.testing.assert_array_equal(s, split_of(lat, lon, seed=0))
    assert np.mean(s != split_of(lat, lon, seed=1)) > 0.1
