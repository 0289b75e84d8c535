"""The measures behind the demo's quality targets: ROC-AUC and the oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from embeddings_store.demo_quality import roc_auc


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

    from embeddings_store.demo_build import format_evaluation
    from model.evaluate import EvalRow

    rows = [asdict(EvalRow(1, m, t, 0.3, 300.0, 0.25, 320.0)) for m in (0, 1) for t in (0, 1)]
    oracle = {
        f"{k}_{d}_{f}": v
        for k in ("metadata", "place_only")
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
    md = format_evaluation({"retrieval": {"n": 2000, "rows": rows, "oracle": oracle}, "map": maps})
    assert "| oracle (place, time, source) | 0.350 | 280 | 0.350 | 280 |" in md
    assert "| songbirds | 0.960 | 0.970 | 50% | 100% | 90% |" in md
    assert "| waves | 0.990 | 1.000 |  |  |  |" in md
    assert "| **mean** | **0.975** | 0.985 | **50%** | 100% | 90% |" in md
    assert "1,234 cells" in md
    # An evaluation.json written before the extra columns existed still formats.
    for key in ("hour_wins_mean_only", "ideal_auc", "ideal_mean_auc", "ideal_hour_wins"):
        del maps[key]
    md = format_evaluation({"retrieval": {"n": 2000, "rows": rows, "oracle": oracle}, "map": maps})
    assert "| songbirds | 0.960 |  | 50% |  |  |" in md
