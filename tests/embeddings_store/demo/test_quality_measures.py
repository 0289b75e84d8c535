"""The measures behind the demo's quality targets: ROC-AUC and the oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from embeddings_store.demo.quality import roc_auc


def brute_force_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return float(np.mean(wins))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_equals_the_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels))


def test_roc_auc_extremes_and_degenerate_labels():
    s = np.arange(10.0)
    assert roc_auc(s, s >= 5) == 1.0
    assert roc_auc(-s, s >= 5) == 0.0
    assert np.isnan(roc_auc(s, np.zeros(10, bool)))


def test_evaluation_markdown_has_every_table_and_the_reference_columns():
    from dataclasses import asdict

    from embeddings_store.demo.build import format_evaluation
    from model.evaluate import EvalRow

    rows = [asdict(EvalRow(1, m, t, 0.3, 300.0, 0.25, 320.0)) for m in (0, 1) for t in (0, 1)]
    oracle = {
        f"{k}_{d}_{f}": v
        for k in ("metadata", "place_only", "bayes")
        for d in ("i2a", "a2i")
        for f, v in (("recall", 0.35), ("median_rank", 280.0))
    }
    maps = {
        "psm_zoom": 1,
        "n_cells": 1234,
        "auc": {"songbirds": 0.96, "waves": 0.99},
        "mean_auc": 0.975,
        "hour_wins": {"songbirds": 0.5},
        "mean_hour_wins": 0.5,
        "hour_wins_mean_only": {"songbirds": 1.0},
        "ideal_auc": {"songbirds": 0.97, "waves": 1.0},
        "ideal_mean_auc": 0.985,
        "ideal_hour_wins": {"songbirds": 0.9},
    }
    heldout = {
        "val": {
            "n": 2933,
            "i2a_recall": 0.345,
            "a2i_recall": 0.3,
            "oracle_i2a_recall": 0.36,
            "oracle_a2i_recall": 0.4,
        }
    }
    md = format_evaluation(
        {"retrieval": {"n": 2000, "rows": rows, "oracle": oracle}, "map": maps, "heldout": heldout}
    )
    assert "| val | 2,933 | 0.345 | 0.96 | 0.300 | 0.75 |" in md
    assert "| oracle (place, time, source) | 0.350 | 280 | 0.350 | 280 |" in md
    assert "| Bayes-optimal (place, time, source) | 0.350 | 280 | 0.350 | 280 |" in md
    assert "divides by the class's frequency" in md
    assert "| songbirds | 0.960 | 0.970 | 50% | 100% | 90% |" in md
    assert "| waves | 0.990 | 1.000 |  |  |  |" in md
    assert "| **mean** | **0.975** | 0.985 | **50%** | 100% | 90% |" in md
    assert "1,234 cells" in md
    # An evaluation.json written before the extra columns and rows existed still formats.
    for key in [k for k in oracle if k.startswith("bayes")]:
        del oracle[key]
    for key in ("hour_wins_mean_only", "ideal_auc", "ideal_mean_auc", "ideal_hour_wins"):
        del maps[key]
    md = format_evaluation({"retrieval": {"n": 2000, "rows": rows, "oracle": oracle}, "map": maps})
    assert "| songbirds | 0.960 |  | 50% |  |  |" in md
    assert "Bayes-optimal" not in md
    assert "held-out splits" not in md


class _World:
    """The fields of a demo split that the oracle reads, for a synthetic world."""

    def __init__(self, n: int, seed: int) -> None:
        from embeddings_store.demo import CLASS_NAMES
        from embeddings_store.demo.soundscape import class_posterior

        rng = np.random.default_rng(seed)
        k = len(CLASS_NAMES)
        # Skewed class frequencies, as in the demo world (wind and traffic are everywhere).
        self.probs = rng.dirichlet(np.linspace(3.0, 0.2, k), n)
        self.place_probs = self.probs
        self.world = {"audio_source": rng.integers(0, 4, n)}
        # Each pair's class is drawn from what the metadata oracle knows about it.
        post = class_posterior(self.probs, self.world["audio_source"])
        self.labels = np.array([rng.choice(k, p=p) for p in post])


def test_bayes_ranking_beats_the_oracle_on_i2a_and_equals_it_on_a2i():
    from embeddings_store.demo.quality import oracle_rows

    world = _World(1500, seed=3)
    o = oracle_rows(world, 1500)  # type: ignore[arg-type]
    # A2I: dividing every image's score for one audio by the same p(class) changes nothing.
    assert o["bayes_a2i_recall"] == o["metadata_a2i_recall"]
    assert o["bayes_a2i_median_rank"] == o["metadata_a2i_median_rank"]
    # I2A: the pair's audio is likelier p(c | i) / p(c) (Bayes), not p(c | i) (oracle).
    assert o["bayes_i2a_recall"] > o["metadata_i2a_recall"] + 0.01
    # Bayes maximises the chance of the pair being in the top k, not the median rank.
