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
