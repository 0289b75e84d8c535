"""The shipped demo model's quality on held-out data of its world (issue 4's measures).

The test split is drawn from the training recipe's world (same seed, so the same 1 deg cells
are held out) but smaller, and the store grid is coarser than the demo's, so the test runs in
about a minute. R@10% is a fraction of the test set, so it does not depend on the set's size,
and the oracle is measured on the same pairs. The test asserts issue 4's targets (README,
"The demo world").
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from embeddings_store.demo.build import DEMO_STORE_BBOX, packaged_checkpoint
from embeddings_store.demo.calibration import calibration_report, fit_calibration
from embeddings_store.demo.dataset import DemoWorldDataset
from embeddings_store.demo.geo import GeoLayers, default_cache_dir
from embeddings_store.demo.imagery import write_demo_imagery
from embeddings_store.demo.listen_quality import listen_report
from embeddings_store.demo.quality import (
    class_audio_means,
    clip_means,
    heldout_retrieval,
    map_report,
    retrieval_report,
)
from embeddings_store.demo.recipe import DemoRecipe
from embeddings_store.demo.sounds import write_gallery_audio
from embeddings_store.demo.uncertainty_quality import (
    CLOSENESS_CLIPS,
    optimal_variance_report,
    uncertainty_report,
)
from embeddings_store.grid import Level
from embeddings_store.precompute import PrecomputeSpec, precompute
from embeddings_store.region import Region
from embeddings_store.sounds.build import build_sound_gallery
from embeddings_store.sounds.gallery import SoundGallery
from embeddings_store.store import EmbeddingStore
from model.checkpoint import load_checkpoint
from tests.embeddings_store.demo.quality_golden import GOLDEN, report_fields

RECIPE = DemoRecipe.load()
# What the shipped model reaches here: I2A 0.99 and A2I 0.94 x oracle on 676 pairs, mean AUC
# 0.915, the hour test passed on every cell for all 10 time-dependent classes. Issue 4's
# targets: 0.9 x oracle, AUC 0.85, 80 % hour wins for every class. R@10% on 676 pairs has a
# standard error of ~0.05 x oracle; the evaluation's 2,000 pairs and every held-out pair give
# I2A 1.00-1.06 and A2I 0.94-0.98 (README).
TARGET_I2A_SHARE = 0.9
TARGET_A2I_SHARE = 0.9
TARGET_AUC = 0.85
HOUR_WIN_SHARE = 0.8
TARGET_HOUR_CLASSES_MEAN_ONLY = 10  # the mean distance alone passes for every class
TEST_WORLD = dataclasses.replace(RECIPE.world, n_samples=6000)
# Issue 23: the true top class among /listen's top 3 labels, songbirds dawn > midnight.
TARGET_LABEL_TOP3 = 0.70
TARGET_COMPARE_SHARE = 0.8
# What the shipped model's June profiles reach on 100 cells per class (see the test).
PROFILE_FLOORS = {"songbirds": 0.9, "insects": 0.8, "rain_thunder": 0.7, "road_traffic": 0.5,
                  "bells": 0.5}  # fmt: skip
# Issue 24: expected calibration error (15 bins) of the match probability on held-out pairs.
TARGET_ECE = 0.05
# Issue 26's diagnosis: ||sigma||_1 falls with the distance of a cell's mean to recordings
# (Spearman -0.85 / -0.87 at zoom 1 / 5 on the demo store, -0.8 or lower here).
CLOSENESS_RHO_MAX = -0.6
# ... and follows the loss-optimal variance given the means (Spearman 0.89 / 0.88, 1,200 pairs).
OPTIMAL_RHO_MIN = 0.7


def load_shipped():
    path = packaged_checkpoint()
    if not path.exists():
        pytest.fail(f"{path} is missing: train it with `make demo-model`")
    return load_checkpoint(path)


def world_layers() -> GeoLayers:
    return GeoLayers.load(default_cache_dir())


def write_imagery(layers: GeoLayers, folder: Path) -> Path:
    w, s, e, n = RECIPE.world.bbox
    return write_demo_imagery(folder / "imagery.tif", layers, (w - 5, s - 5, e + 5, n + 5))


def build_usa_store(shipped, imagery: Path, folder: Path) -> EmbeddingStore:
    """The USA at PSM zoom 1 and 5 on a grid coarser than the demo's (cells at web zoom 9,
    ~60 km)."""
    path = folder / "usa.zarr"
    spec = PrecomputeSpec(
        imagery=str(imagery),
        checkpoint=str(packaged_checkpoint()),
        store=str(path),
        levels=(Level(1, 5, 16), Level(5, 5, 16)),
        region=Region(DEMO_STORE_BBOX),
    )
    precompute(spec, progress=False)
    return EmbeddingStore.open(path, expect_model_id=shipped.model_id)


@pytest.fixture(scope="module")
def shipped():
    return load_shipped()


@pytest.fixture(scope="module")
def layers() -> GeoLayers:
    return world_layers()


@pytest.fixture(scope="module")
def imagery(layers, tmp_path_factory) -> Path:
    return write_imagery(layers, tmp_path_factory.mktemp("imagery"))


@pytest.fixture(scope="module")
def usa_store(shipped, imagery, tmp_path_factory) -> EmbeddingStore:
    return build_usa_store(shipped, imagery, tmp_path_factory.mktemp("store"))


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


def test_retrieval_at_zoom_1_with_metadata(shipped, test_split):
    report = retrieval_report(shipped, test_split, n=len(test_split), zooms=(1,))
    row = report.row(1, metadata=True)
    oracle = report.oracle
    assert len(test_split) > 400
    # Issue 4's target is 0.9 x oracle; the shipped model reaches 1.06 (I2A) and 0.98 (A2I) x
    # oracle on the evaluation's 2,000 test pairs, 1.00-1.02 and 0.94-0.96 on every held-out
    # pair of the demo world's val and test splits (README).
    assert row.i2a_recall >= TARGET_I2A_SHARE * oracle["metadata_i2a_recall"], (row, oracle)
    assert row.a2i_recall >= TARGET_A2I_SHARE * oracle["metadata_a2i_recall"], (row, oracle)
    # The every-pair figures of the evaluation are the same measure as the table's row.
    (held,) = heldout_retrieval(shipped, {"test": test_split}).values()
    assert held["a2i_recall"] == row.a2i_recall and held["i2a_recall"] == row.i2a_recall
    assert held["oracle_a2i_recall"] == oracle["metadata_a2i_recall"]
    # Metadata helps, and the model is far from random (0.10) without it too.
    plain = report.row(1, metadata=False)
    assert row.i2a_recall > plain.i2a_recall and row.a2i_recall > plain.a2i_recall
    assert plain.i2a_recall > 0.15 and plain.a2i_recall > 0.15


@pytest.fixture(scope="module")
def class_means(shipped, test_split) -> np.ndarray:
    return class_audio_means(shipped, test_split, n=len(test_split))


def test_maps_find_where_classes_are_likely_and_when(shipped, usa_store, layers, class_means):
    means = class_means
    report = map_report(shipped, usa_store, layers, psm_zoom=1, class_means=means)
    assert report.n_cells > 1000
    # The same figures as before the scoring core became one path (issue 20): the evaluation now
    # scores maps through score_region, as the tiles are drawn.
    golden = json.loads(GOLDEN.read_text())
    got = report_fields(report)
    assert got["n_cells"] == golden["n_cells"] and got["psm_zoom"] == golden["psm_zoom"]
    for field in ("auc", "hour_wins", "hour_wins_mean_only"):
        assert got[field].keys() == golden[field].keys(), field
        for name, value in golden[field].items():
            assert got[field][name] == pytest.approx(value, abs=1e-6), (field, name)
    assert got["mean_auc"] == pytest.approx(golden["mean_auc"], abs=1e-6)
    assert np.isfinite(list(report.auc.values())).sum() >= 10
    # Issue 4's target is a mean ROC-AUC of 0.85 (the shipped model: 0.915 on the demo store and
    # on this coarser grid).
    assert report.mean_auc >= TARGET_AUC, report.auc
    # Time-dependent classes: issue 4 wants right hour > wrong hour on 80% of the cells for
    # each; the shipped model does so for all 10 here (100 %).
    assert len(report.hour_wins) == 10, "a time-dependent class does not occur in the region"
    assert min(report.hour_wins.values()) >= HOUR_WIN_SHARE, report.hour_wins
    # The means carry the hours too: their distance alone passes for all 10 here.
    assert report.hour_wins_mean_only.keys() == report.hour_wins.keys()
    mean_only = {k for k, v in report.hour_wins_mean_only.items() if v >= 0.8}
    assert len(mean_only) >= TARGET_HOUR_CLASSES_MEAN_ONLY, report.hour_wins_mean_only
    # Ideal cells (the true class mixture of the model's class audio means) show what the means
    # could reach with these queries: near-perfect maps (mean AUC 0.991 here) and the hour test
    # passed for every class.
    assert report.ideal_mean_auc is not None and report.ideal_hour_wins is not None
    assert report.ideal_mean_auc >= 0.95 > report.mean_auc, report.ideal_auc
    assert min(report.ideal_hour_wins.values()) >= HOUR_WIN_SHARE, report.ideal_hour_wins


@pytest.fixture(scope="module")
def demo_gallery(shipped, tmp_path_factory) -> SoundGallery:
    """The demo's gallery recipe (one clip per class here) and its 14 labels, embedded."""
    folder = tmp_path_factory.mktemp("gallery")
    write_gallery_audio(folder / "audio", clips_per_class=1)
    build_sound_gallery(
        shipped, folder / "audio", folder / "gallery", captions=folder / "audio/captions.csv",
        labels=folder / "audio/labels.txt", progress=False, log=lambda _: None,
    )  # fmt: skip
    return SoundGallery.open(folder / "gallery", expect_model_id=shipped.model_id)


def test_listening_answers_match_the_world(shipped, usa_store, layers, demo_gallery, class_means):
    """Issue 23's measures on the served code paths (README, "Listen and compare")."""
    report = listen_report(shipped, usa_store, layers, demo_gallery, psm_zoom=1,
                           class_means=class_means, max_profile_cells=100)  # fmt: skip
    assert report.land_cells > 1000
    # /listen labels: the world's most probable class is in the top 3 on >= 70 % of land cells
    # and times (the shipped model: 0.80), far above a metadata-blind model (0.54); ideal cells
    # show what the label queries allow at best.
    assert report.label_top3 >= TARGET_LABEL_TOP3, report
    assert report.label_top3 > report.label_top3_blind + 0.15, report
    assert report.label_top3_ideal is not None and report.label_top3_ideal >= report.label_top3
    # Compare: songbirds at dawn minus midnight is positive on >= 80 % of songbird cells (1.00).
    assert report.compare_cells > 100
    assert report.compare_songbirds >= TARGET_COMPARE_SHARE, report
    # /profile: the world's own June profile peaks within the right hours for 7 of the 10
    # classes (crowds peak at 21 h, horns at 8 h and construction at 11 h, outside the hours
    # TIME_DEPENDENT names), so the measure is honest for those 7. /profile reads the peak from
    # the query's share among the labels (the shipped model on the demo store: songbirds 0.99,
    # insects 0.93, rain 0.82, road traffic 0.66, bells 0.70); frogs and the rooster peak hours
    # off (the model's day is smoother than the world's). Issue 23's 80 % target is not met for
    # every class; these floors guard what the model does reach.
    assert len(report.profile_peak) == 10
    honest = {k for k, v in report.profile_peak_truth.items() if v >= 0.95}
    assert honest == set(PROFILE_FLOORS) | {"frogs", "rooster"}
    for name, floor in PROFILE_FLOORS.items():
        assert report.profile_peak[name] >= floor, (name, report.profile_peak)


@pytest.mark.parametrize(
    ("text", "familiarity"),
    [
        ("frogs calling from a marsh", "familiar"),
        ("heavy road traffic", "familiar"),
        # The page's examples are all familiar (two sit a little above the labels' uncertainty).
        ("cows mooing in a field", "familiar"),
        ("waves crashing on the shore", "familiar"),
        ("sounds", "vague"),
        ("a quiet library", "unfamiliar"),
        ("jazz music in a bar", "unfamiliar"),
        ("typing on a keyboard", "unfamiliar"),
    ],
)
def test_unfamiliar_queries_are_told_apart(shipped, demo_gallery, text, familiarity):
    """Issue 25's hint, on the shipped model and the demo's labels."""
    from model.scoring import QueryEmbedding

    q = QueryEmbedding.from_text(shipped, text)
    level, hint = demo_gallery.familiarity("text", q.mu, q.uncertainty)
    assert level == familiarity, (text, level)
    assert (hint is None) == (familiarity == "familiar")


def test_the_pages_examples_get_no_hint(shipped, demo_gallery):
    """The example queries the page offers must not be called vague or unfamiliar."""
    import re

    from model.scoring import QueryEmbedding

    source = (Path(__file__).resolve().parents[3] / "web" / "js" / "query.js").read_text()
    block = source.split("export const EXAMPLES = [", 1)[1].split("];", 1)[0]
    examples = re.findall(r"'([^']+)'", block)
    assert len(examples) >= 10
    for text in examples:
        q = QueryEmbedding.from_text(shipped, text)
        assert demo_gallery.familiarity("text", q.mu, q.uncertainty)[0] == "familiar", text


def test_uncertainty_diagnosis_holds(shipped, usa_store, layers, test_split):
    """Issue 26 (docs/demo-model.md, "Uncertainty"), measured as POST /similarity answers points.

    The paper's two findings (zoom 5 more uncertain than zoom 1 at >= 80 % of places; Spearman
    >= 0.3 with the footprint's class entropy) are not reached by the shipped model, and issue 26
    stays open. This test keeps the diagnosis true: under PCME++'s closed-form distance a cell's
    ||sigma||_1 follows how near its mean lies to recordings, and the means of wider and more
    mixed footprints lie farther from every recording. A recipe that reaches the paper's findings
    changes these figures; then replace this test by one asserting the findings.
    """
    w, s, e, n = DEMO_STORE_BBOX
    clips = clip_means(shipped, test_split, CLOSENESS_CLIPS)
    report = uncertainty_report(shipped, usa_store, layers, (w + 2, s + 2, e - 2, n - 2), 400,
                                clips)  # fmt: skip
    assert report.points == 400
    for name in ("none", "full"):
        for zoom, rho in report.spearman_closeness[name].items():
            assert rho <= CLOSENESS_RHO_MAX, (name, zoom, report)
    dist = report.mean_clip_distance["none"]
    assert dist[5] > dist[1], report
    # ... so the paper's findings come out the other way round (0.23 and -0.29 / -0.53 on the
    # demo store).
    assert report.share_5_over_1["none"] < 0.5, report
    assert max(report.spearman_entropy["none"].values()) < 0, report
    # The variance head is not at fault: on held-out pairs the learned variance follows the one
    # that minimises the matching loss given the means (Spearman 0.89 / 0.88 on 1,200 pairs),
    # and that optimum is itself lower at zoom 5 (share 0.25): the means' geometry decides.
    opt = optimal_variance_report(shipped, test_split, 600)
    assert opt.pairs == min(600, len(test_split))
    assert min(opt.spearman.values()) >= OPTIMAL_RHO_MIN, opt
    assert opt.share_5_over_1_optimal < 0.5 and opt.share_5_over_1_learned < 0.5, opt


def test_match_probability_is_calibrated_on_held_out_pairs(shipped, test_split):
    """Issue 24: the shipped calibration was fitted on the validation split (no 1 deg cell in
    common with the test split); on test pairs its ECE meets the target, the learned one's not."""
    assert set(shipped.calibration) == {"text", "audio"}
    report = calibration_report(shipped, test_split, shipped.calibration, n=len(test_split))
    assert report.split == "test" and report.pairs["text"] == 14 * len(test_split)
    for kind in ("text", "audio"):
        assert report.calibrated[kind].ece <= TARGET_ECE, (kind, report.calibrated[kind])
        assert report.learned[kind].ece > TARGET_ECE, (kind, report.learned[kind])
    # Fitting and reporting refuse the wrong split.
    with pytest.raises(ValueError, match="validation"):
        fit_calibration(shipped, test_split)
