"""Retrieval metrics as the reference computes them: R@10% (strict <) and median rank."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def ground_truth_ranks(sim: np.ndarray) -> np.ndarray:
    """1-based descending rank of each row's diagonal entry, ties averaged (pandas 'average')."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity matrix must be square, got {sim.shape}")
    gt = np.diagonal(sim)[:, None]
    greater = (sim > gt).sum(axis=1)
    equal = (sim == gt).sum(axis=1)  # includes the item itself
    return greater + (equal + 1) / 2.0


@dataclass(frozen=True)
class RetrievalScores:
    """R@k% and median rank for one direction."""

    recall: float
    median_rank: float


def retrieval_scores(sim: np.ndarray, recall_at_percent: float = 10.0) -> RetrievalScores:
    """R@k% = mean(rank < k/100 * N) (strict, as the reference) and median rank."""
    ranks = ground_truth_ranks(sim)
    k = recall_at_percent / 100.0 * ranks.shape[0]
    return RetrievalScores(float(np.mean(ranks < k)), float(np.median(ranks)))
