"""The demo world dataset: deterministic samples, GeoSound-like splits, precompute's framing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from embeddings_store.demo import dataset as demo_dataset
from embeddings_store.demo.dataset import DemoWorldDataset, DemoWorldSpec
from embeddings_store.demo.geo import GeoLayers, default_cache_dir
from embeddings_store.grid import footprint_around, lonlat_to_mercator
from embeddings_store.imagery import open_imagery
from model.data import SoundscapeDataset

# A small world inside the Blue Marble crop of the `bluemarble_tif` fixture (-110..-90, 30..45).
BBOX = (-108.0, 32.0, -92.0, 43.0)
PX, FOOTPRINT = 8, 30_000.0


@pytest.fixture(scope="module")
def layers() -> GeoLayers:
    return GeoLayers.load(default_cache_dir())


def make(split: str, layers, tif: Path, cache: Path | None = None, **spec) -> DemoWorldDataset:
    spec = DemoWorldSpec(**{"n_samples": 400, "bbox": BBOX, "clip_seconds": 1.0, **spec})
    return DemoWorldDataset(split, spec, layers, tif, PX, FOOTPRINT, cache_dir=cache)


@pytest.fixture(scope="module")
def train(layers, bluemarble_tif, tmp_path_factory) -> DemoWorldDataset:
    return make("train", layers, bluemarble_tif, tmp_path_factory.mktemp("samples"))


def test_implements_the_dataset_protocol(train):
    assert isinstance(train, SoundscapeDataset)
    assert 250 < len(train) < 400  # about 80 % of the draw


def test_samples_are_deterministic_and_seeded(layers, bluemarble_tif, train):
    again = make("train", layers, bluemarble_tif)
    for i in (0, 7, len(train) - 1):
        a, b = train.sample(i, 3), again.sample(i, 3)
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.audio, b.audio)
        assert (a.caption, a.lat, a.lon, a.month, a.hour) == (
            b.caption,
            b.lat,
            b.lon,
            b.month,
            b.hour,
        )
    other = make("train", layers, bluemarble_tif, seed=1)
    assert not np.array_equal(other.world["lat"][:10], train.world["lat"][:10])


def test_samples_stay_in_the_region_and_splits_never_share_a_degree_cell(
    layers, bluemarble_tif, train
):
    test = make("test", layers, bluemarble_tif)
    for ds in (train, test):
        assert np.all((ds.world["lon"] >= BBOX[0]) & (ds.world["lon"] <= BBOX[2]))
        assert np.all((ds.world["lat"] >= BBOX[1]) & (ds.world["lat"] <= BBOX[3]))

    def cells(ds):
        return set(zip(np.floor(ds.world["lat"]), np.floor(ds.world["lon"]), strict=True))

    assert len(test) > 0
    assert not cells(train) & cells(test)


def test_footprints_are_framed_like_precompute(layers, bluemarble_tif):
    centred = make("train", layers, bluemarble_tif, footprint_jitter=0.0)
    imagery = open_imagery(bluemarble_tif)
    for i in (0, 5):
        x, y = lonlat_to_mercator(centred.world["lon"][i], centred.world["lat"][i])
        for zoom in (1, 3, 5):
            expected = imagery.read(footprint_around(float(x), float(y), zoom, FOOTPRINT), PX)[0]
            assert np.array_equal(centred.image(i, zoom), expected)
            assert centred.sample(i, zoom).image.shape == (PX, PX, 3)
    # Zooming out shows a larger area: the images differ.
    assert not np.array_equal(centred.image(0, 1), centred.image(0, 5))
    with pytest.raises(ValueError, match="PSM zoom"):
        centred.image(0, 2)


def test_recordings_lie_anywhere_in_their_footprint_at_every_zoom(layers, train, bluemarble_tif):
    """footprint_jitter (issue 26's second experiment): the image around a recording is framed
    like a store cell, its centre off the recording by a uniform share of the footprint's side,
    drawn per zoom."""
    assert not train.image_offsets.any()  # the shipped world centres every image
    train = make("train", layers, bluemarble_tif, footprint_jitter=1.0)
    off = train.image_offsets
    assert off.shape == (len(train), 3, 2)
    assert np.all(np.abs(off) <= 0.5) and np.abs(off).max() > 0.4
    assert abs(float(off.mean())) < 0.05 and float(off.std()) == pytest.approx(12**-0.5, rel=0.1)
    assert not np.allclose(off[:, 0], off[:, 2])  # independent per zoom
    imagery = open_imagery(bluemarble_tif)
    for i in (0, 5):
        x, y = lonlat_to_mercator(train.world["lon"][i], train.world["lat"][i])
        for k, zoom in enumerate((1, 3, 5)):
            x0, y0, x1, y1 = footprint_around(float(x), float(y), zoom, FOOTPRINT)
            dx, dy = off[i, k] * (x1 - x0)
            expected = imagery.read((x0 + dx, y0 + dy, x1 + dx, y1 + dy), PX)[0]
            assert np.array_equal(train.image(i, zoom), expected)
    # The recording itself (place, class, audio) does not move with the framing.
    centred = make("train", layers, bluemarble_tif, footprint_jitter=0.0)
    assert np.array_equal(centred.world["lat"], train.world["lat"])
    assert np.array_equal(centred.labels, train.labels)
    assert np.array_equal(centred.audio(3), train.audio(3))


def test_rendered_footprints_are_reused_from_the_cache(
    layers, bluemarble_tif, monkeypatch, tmp_path_factory
):
    def boom(*args, **kwargs):
        raise AssertionError("footprints rendered again")

    folder = tmp_path_factory.mktemp("reuse")
    first = make("train", layers, bluemarble_tif, folder)
    monkeypatch.setattr(demo_dataset, "render_footprints", boom)
    second = make("train", layers, bluemarble_tif, folder)
    assert np.array_equal(np.asarray(first.images), np.asarray(second.images))
    # A different spec is a different cache entry.
    with pytest.raises(AssertionError, match="rendered again"):
        make("train", layers, bluemarble_tif, folder, seed=3)


def test_audio_has_variety_and_follows_the_class(train):
    labels = train.labels
    cls = int(np.bincount(labels).argmax())
    same = np.flatnonzero(labels == cls)[:2]
    a, b = (train.audio(int(i)) for i in same)
    assert a.shape == b.shape == (16000,)
    assert not np.allclose(a, b)
    assert np.isfinite(a).all() and 0 < np.abs(a).max() <= 1.0


def test_sampled_mixtures_draw_other_sounds_by_their_probability_at_the_place():
    probs = np.array([0.4, 0.3, 0.2, 0.1] + [0.0] * 10)
    picked = np.zeros(14)
    for seed in range(3000):
        w = demo_dataset.sampled_mixture_weights(probs, 0, np.random.default_rng(seed))
        others = np.flatnonzero(w)[1:] if w[0] == 1.0 else None
        assert others is not None and 1 <= others.size <= 2
        assert np.all(w[others] < 1.0)  # the drawn class stays the loudest
        # as loud as their probability says, relative to the main class
        assert np.allclose(w[others], np.sqrt(probs[others] / probs[0]))
        picked[others] += 1
    assert picked[4:].sum() == 0  # impossible here, never drawn
    # one draw (without replacement, 1 or 2 per clip) follows the probabilities' order
    assert picked[1] > picked[2] > picked[3] > 0


def test_the_mixture_knob_changes_only_the_mixed_clips(layers, bluemarble_tif, train):
    sampled = make("train", layers, bluemarble_tif, mixture_secondaries="sampled")
    same = [np.array_equal(train.audio(i), sampled.audio(i)) for i in range(40)]
    # Pure clips (about half at the default mixture_rate) are identical; mixed ones differ.
    assert 5 < sum(same) < 35
    assert np.array_equal(sampled.audio(3), sampled.audio(3))  # still deterministic
    with pytest.raises(ValueError, match="mixture_secondaries"):
        DemoWorldSpec(mixture_secondaries="loud")


def test_captions_and_metadata_match_the_world(train):
    s = train.sample(3, 1)
    assert isinstance(s.caption, str) and s.caption
    assert s.asource == int(train.world["audio_source"][3])
    hour = int(train.world["hour"][3])
    assert s.hour == (hour if hour >= 0 else None)
    assert np.allclose(train.probs.sum(1), 1.0)
    assert np.allclose(train.place_probs.sum(1), 1.0)


def test_cached_collator_matches_plain_collation(train):
    from model.config import load_config
    from model.data import CachedCollator, collate
    from model.psm import PSM

    torch.manual_seed(0)
    model = PSM(load_config("test"))
    size = model.config.image.img_size
    idx, zooms = [0, 4, 9], [1, 5, 3]
    cached = CachedCollator(train, model.audio_tower.features, model.text_tower.tokenize, size)
    plain = collate(
        [train.sample(i, z) for i, z in zip(idx, zooms, strict=True)],
        zooms,
        model.audio_tower.features,
        model.text_tower.tokenize,
        size,
    )
    for _ in range(2):  # the second call is served from the cache
        got = cached(idx, zooms, None)
        assert torch.equal(got.images, plain.images)
        assert torch.equal(got.zoom, plain.zoom)
        feats = plain.audio["input_features"]
        assert torch.allclose(got.audio["input_features"], feats, atol=1e-2 * feats.abs().max())
        assert torch.equal(got.text["input_ids"], plain.text["input_ids"])
        for name in ("latlong", "month", "time", "asource", "tsource"):
            assert torch.equal(getattr(got.metadata, name), getattr(plain.metadata, name))
            got_mask, plain_mask = got.metadata.present, plain.metadata.present
            assert (name in got_mask) == (name in plain_mask)
            if name in got_mask:
                assert torch.equal(got_mask[name], plain_mask[name])
    assert len(cached) == 3


def test_pickles_small_for_worker_processes_and_samples_identically(train):
    import pickle

    blob = pickle.dumps(train)
    assert len(blob) < 1_000_000  # no geo layers, and the cached footprints are not copied
    copy = pickle.loads(blob)
    assert isinstance(copy.images, np.memmap) and copy.layers is None
    for i in (0, len(train) - 1):
        a, b = train.sample(i, 5), copy.sample(i, 5)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.audio, b.audio)
        assert a.caption == b.caption


def test_cached_collator_warmed_in_worker_processes_matches_lazy_filling(train):
    from model.config import load_config
    from model.data import CachedCollator
    from model.psm import PSM

    torch.manual_seed(0)
    model = PSM(load_config("test"))
    size = model.config.image.img_size
    parts = (train, model.audio_tower.features, model.text_tower.tokenize, size)
    lazy, warm = CachedCollator(*parts), CachedCollator(*parts)
    warm.warm(range(40), zoom=1, workers=2, chunk=16)
    assert len(warm) == 40 and warm.cached(range(40)) and not warm.cached([40])
    idx, zooms = [3, 17, 39], [5, 1, 3]
    a, b = lazy(idx, zooms, None), warm(idx, zooms, None)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.audio["input_features"], b.audio["input_features"])
    assert torch.equal(a.text["input_ids"], b.text["input_ids"])
    assert torch.equal(a.metadata.latlong, b.metadata.latlong)
