"""The shipped demo model's quality on held-out data of its world (issue 4's measures).

The test split is drawn from the training recipe's world (same seed, so the same 1 deg cells
are held out) but smaller, and the store grid is coarser than the demo's, so the test runs in
about a minute. R@10% is a fraction of the test set, so it does not depend on the set's size,
and the oracle is measured on the same pairs. The asserted levels are regression guards below
issue 4's targets, which the shipped model does not meet yet (README, "The demo world").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from embeddings_store.demo_build import DEMO_STORE_BBOX, DemoRecipe, packaged_checkpoint
from embeddings_store.demo_dataset import DemoWorldDataset
from embeddings_store.demo_quality import class_audio_means, map_report, retrieval_report
from embeddings_store.grid import Level
from embeddings_store.precompute import PrecomputeSpec, precompute
from embeddings_store.region import Region
from embeddings_store.store import EmbeddingStore
from model.checkpoint import load_checkpoint
from model.demo_world.geo import GeoLayers, default_cache_dir
from model.demo_world.imagery import write_demo_imagery

RECIPE = DemoRecipe()
# What the shipped model reaches here (I2A 0.85 and A2I 0.72 x oracle on 676 pairs, mean AUC
# 0.874, 6 hour classes), with a margin: regression guards at or below issue 4's targets
# (0.9 x oracle, AUC 0.85, 80% hour wins per class), which the model does not yet all meet.
TARGET_I2A_SHARE = 0.78
TARGET_A2I_SHARE = 0.65
TARGET_AUC = 0.85
TARGET_HOUR_CLASSES = 6
TARGET_HOUR_CLASSES_MEAN_ONLY = 8  # the model reaches 9 with the mean distance alone
TEST_WORLD = dataclasses.replace(RECIPE.world, n_samples=6000)


@pytest.fixture(scope="module")
def shipped():
    path = packaged_checkpoint()
    if not path.exists():
        pytest.fail(f"{path} is missing: train it with `make demo-model`")
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def layers() -> GeoLayers:
    return GeoLayers.load(default_cache_dir())


@pytest.fixture(scope="module")
def imagery(layers, tmp_path_factory) -> Path:
    w, s, e, n = RECIPE.world.bbox
    return write_demo_imagery(
        tmp_path_factory.mktemp("imagery") / "imagery.tif", layers, (w - 5, s - 5, e + 5, n + 5)
    )


@pytest.fixture(scope="module")
def test_split(shipped, layers, imagery, tmp_path_factory) -> DemoWorldDataset:
    img = shipped.config.image
    return DemoWorldDataset(
        "test",
        TEST_WORLD,
        layers,
        imagery,
        img.tile_size,
        img.tile_size * img.native_gsd,
        cache_dir=tmp_path_factory.mktemp("samples"),
    )


@pytest.fixture(scope="module")
def usa_store(shipped, imagery, tmp_path_factory) -> EmbeddingStore:
    path = tmp_path_factory.mktemp("store") / "usa.zarr"
    spec = PrecomputeSpec(
        imagery=str(imagery),
        checkpoint=str(packaged_checkpoint()),
        store=str(path),
        levels=(Level(1, 5, 16),),  # cells at web zoom 9 (~60 km): coarser than the demo's
        region=Region(DEMO_STORE_BBOX),
    )
    precompute(spec, progress=False)
    return EmbeddingStore.open(path, expect_model_id=shipped.model_id)


def test_retrieval_at_zoom_1_with_metadata(shipped, test_split):
    report = retrieval_report(shipped, test_split, n=len(test_split), zooms=(1,))
    row = report.row(1, metadata=True)
    oracle = report.oracle
    assert len(test_split) > 400
    # Issue 4's target is 0.9 x oracle; the shipped model reaches 0.95 (I2A) and 0.79 (A2I) x
    # oracle on the full test split (README). Guard what it reaches, so a regression fails.
    assert row.i2a_recall >= TARGET_I2A_SHARE * oracle["metadata_i2a_recall"], (row, oracle)
    assert row.a2i_recall >= TARGET_A2I_SHARE * oracle["metadata_a2i_recall"], (row, oracle)
    # Metadata helps, and the model is far from random (0.10) without it too.
    plain = report.row(1, metadata=False)
    assert row.i2a_recall > plain.i2a_recall and row.a2i_recall > plain.a2i_recall
    assert plain.i2a_recall > 0.15 and plain.a2i_recall > 0.15


def test_maps_find_where_classes_are_likely_and_when(shipped, usa_store, layers, test_split):
    means = class_audio_means(shipped, test_split, n=len(test_split))
    report = map_report(shipped, usa_store, layers, psm_zoom=1, class_means=means)
    assert report.n_cells > 1000
    assert np.isfinite(list(report.auc.values())).sum() >= 10
    # Issue 4's target is a mean ROC-AUC of 0.85 (the shipped model: 0.877 on the demo store,
    # 0.874 on this coarser grid).
    assert report.mean_auc >= TARGET_AUC, report.auc
    # Time-dependent classes: issue 4 wants right hour > wrong hour on 80% of the cells for
    # each; the shipped model does so for 6 of the 10 (songbirds and the five urban classes;
    # at the hours when insects, frogs, roosters and thunderstorms are active, the cells'
    # larger uncertainty can outweigh the closer mean, README).
    assert report.hour_wins, "no time-dependent class occurs in the region"
    strong = {k for k, v in report.hour_wins.items() if v >= 0.8}
    assert len(strong) >= TARGET_HOUR_CLASSES, report.hour_wins
    # Where the shortfall comes from: the distance between the means alone passes the test for
    # 9 of the 10 classes here (all but the rooster), so the cells' variance term decides the
    # insects', frogs' and thunderstorms' cases (README, "The demo world").
    assert report.hour_wins_mean_only.keys() == report.hour_wins.keys()
    mean_only = {k for k, v in report.hour_wins_mean_only.items() if v >= 0.8}
    assert len(mean_only) >= TARGET_HOUR_CLASSES_MEAN_ONLY, report.hour_wins_mean_only
    # Ideal cells (the true class mixture of the model's class audio means) show what the means
    # could reach with these queries: near-perfect maps (mean AUC 0.965 here), and the hour
    # test passed for all but the rooster (71 %; frogs 86 %), whose free-form query sits off its
    # clips' mean.
    assert report.ideal_mean_auc is not None and report.ideal_hour_wins is not None
    assert report.ideal_mean_auc >= 0.95 > report.mean_auc, report.ideal_auc
    ideal = {k for k, v in report.ideal_hour_wins.items() if v >= 0.8}
    assert ideal >= set(report.ideal_hour_wins) - {"rooster"}, report.ideal_hour_wins
