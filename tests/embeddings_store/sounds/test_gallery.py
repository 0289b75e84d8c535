"""Opening a gallery refuses foreign or damaged folders (and never unpickles); ranking is
-CSD, best first, and every label is ranked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embeddings_store.sounds.gallery import (
    FORMAT,
    VERSION,
    SoundGallery,
    pack_rows,
    pair_scores,
    rank_rows,
    row_scores,
)
from model.errors import MissingResourceError, StoreError
from model.scoring import augment_cells


def write_gallery(root, clips=3, labels=2, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir()
    (root / "clips").mkdir()

    def rows(n):
        mu = rng.normal(size=(n, dim))
        mu /= np.linalg.norm(mu, axis=1, keepdims=True)
        return pack_rows(mu, rng.uniform(0.1, 1, n), rng.uniform(1, 2, n))

    np.save(root / "clips.npy", rows(clips))
    np.save(root / "labels.npy", rows(labels))
    manifest = {
        "format": FORMAT, "version": VERSION, "model_id": "psm-test",
        "inputs": {"audio_dir": "/data/clips"},
        "clips": [{"id": f"{i:016x}", "ext": "wav", "caption": f"clip {i}", "source": f"{i}.wav",
                   "duration_s": 1.0, "sample_rate": 16000} for i in range(clips)],
        "labels": [{"label": f"l{i}", "query": f"query {i}"} for i in range(labels)],
        "skipped": [],
    }  # fmt: skip
    (root / "gallery.json").write_text(json.dumps(manifest))
    return manifest


def test_a_gallery_opens_and_ranks_by_csd(tmp_path):
    write_gallery(tmp_path / "g")
    g = SoundGallery.open(tmp_path / "g", expect_model_id="psm-test")
    assert g.clip(f"{1:016x}").caption == "clip 1" and g.clip("nope") is None
    cell = augment_cells(np.array([[1.0, 0, 0, 0]]), np.array([0.5]))[0]
    score = row_scores(g.clip_aug, cell)
    mu, c = g.clip_aug[:, :-1], -2 * g.clip_aug[:, -1]
    np.testing.assert_allclose(score, 2 * mu[:, 0] - 2 - 0.5 - c, rtol=1e-6)
    ranked = g.rank_clips(cell, 2, (1.0, 0.0))
    assert list(ranked.index) == list(np.argsort(-score)[:2])
    np.testing.assert_allclose(pair_scores(cell[None], g.clip_aug)[0], score, rtol=1e-6)
    assert len(g.rank_labels(cell, (1.0, 0.0)).index) == 2
    assert rank_rows(score, 0, (1.0, 0.0)).index.size == 0


def test_the_faiss_backend_ranks_as_numpy_does(tmp_path):
    write_gallery(tmp_path / "g", clips=50, dim=8, seed=3)
    plain = SoundGallery.open(tmp_path / "g")
    indexed = SoundGallery.open(tmp_path / "g", backend="faiss")
    cell = plain.clip_aug[7].copy()
    for k in (1, 5, 50, 80):
        a, b = plain.rank_clips(cell, k, (2.0, 1.0)), indexed.rank_clips(cell, k, (2.0, 1.0))
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_allclose(a.score, b.score, atol=1e-5)
        np.testing.assert_allclose(a.probability, b.probability, atol=1e-5)


def test_missing_foreign_and_damaged_galleries_are_refused(tmp_path):
    with pytest.raises(MissingResourceError, match="soundscape gallery build"):
        SoundGallery.open(tmp_path / "none")
    manifest = write_gallery(tmp_path / "g")
    (tmp_path / "g" / "gallery.json").write_text(json.dumps({**manifest, "format": "other"}))
    with pytest.raises(StoreError, match="not a sound gallery"):
        SoundGallery.open(tmp_path / "g")
    (tmp_path / "g" / "gallery.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(StoreError, match="version 99"):
        SoundGallery.open(tmp_path / "g")
    (tmp_path / "g" / "gallery.json").write_text("{not json")
    with pytest.raises(StoreError, match="not a gallery manifest"):
        SoundGallery.open(tmp_path / "g")
    (tmp_path / "g" / "gallery.json").write_text(json.dumps({**manifest, "clips": []}))
    with pytest.raises(StoreError, match="expected"):
        SoundGallery.open(tmp_path / "g")


def test_a_pickled_array_is_never_loaded(tmp_path):
    write_gallery(tmp_path / "g")
    ran = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    with open(tmp_path / "g" / "clips.npy", "wb") as f:
        np.save(f, np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(StoreError, match="cannot be read"):
        SoundGallery.open(tmp_path / "g")
    assert not ran.exists()


def test_non_finite_rows_are_refused(tmp_path):
    write_gallery(tmp_path / "g")
    rows = np.load(tmp_path / "g" / "labels.npy", allow_pickle=False)
    rows[0, 0] = np.nan
    np.save(tmp_path / "g" / "labels.npy", rows)
    with pytest.raises(StoreError, match="non-finite"):
        SoundGallery.open(tmp_path / "g")
