"""Calibration of the match probability: reliability, ECE and a Platt fit on -CSD.

PCME++ learns p(match) = sigmoid(a * score + b) (score = -CSD) from in-batch pairs, where a
positive is one recording's own image or caption. What a map user reads as "probability" is
whether a sound like the query is heard at the place, so a model can be confident and still be
off. These functions measure that on held-out pairs (expected calibration error over equal-width
bins, a reliability table) and refit (a, b) by logistic regression on the same scores (Platt
scaling), which keeps the probability a monotone function of the score: rankings and maps are
unchanged, only what the numbers say.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ECE_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Equal-width bins of predicted probability: count, mean prediction and observed rate."""

    edges: list[float]
    count: list[int]
    confidence: list[float]  # mean predicted probability per bin (NaN where empty)
    accuracy: list[float]  # observed share of positives per bin (NaN where empty)
    ece: float

    def to_json(self) -> dict[str, object]:
        """Plain data (NaN as None)."""
        data = asdict(self)
        for key in ("confidence", "accuracy"):
            data[key] = [None if not np.isfinite(v) else v for v in data[key]]
        return data


def reliability(prob: np.ndarray, label: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Reliability table and expected calibration error of predictions `prob` for 0/1 `label`."""
    p = np.asarray(prob, np.float64).reshape(-1)
    y = np.asarray(label, np.float64).reshape(-1)
    if p.size == 0 or p.size != y.size:
        raise ValueError(f"need as many labels as predictions, got {p.size} and {y.size}")
    if not np.all((p >= 0) & (p <= 1)) or not np.all((y == 0) | (y == 1)):
        raise ValueError("predictions must lie in [0, 1] and labels be 0 or 1")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=p, minlength=bins)
    pos_sum = np.bincount(which, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf, acc = conf_sum / count, pos_sum / count
    ece = float(np.sum(np.abs(pos_sum - conf_sum)) / p.size)
    return Reliability(edges.tolist(), count.tolist(), conf.tolist(), acc.tolist(), ece)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))


def fit_platt(
    score: np.ndarray, label: np.ndarray, init: tuple[float, float] = (1.0, 0.0), steps: int = 100
) -> tuple[float, float]:
    """(a, b) maximising the likelihood of `label` under sigmoid(a * score + b) (Newton steps
    with a backtracking line search; the problem is convex, so it converges from any start)."""
    s = np.asarray(score, np.float64).reshape(-1)
    y = np.asarray(label, np.float64).reshape(-1)
    if s.size != y.size or s.size < 2 or not np.all(np.isfinite(s)):
        raise ValueError("need finite scores and as many 0/1 labels, at least two")
    if y.min() == y.max():
        raise ValueError("labels are all the same: there is nothing to calibrate against")
    x = np.stack([s, np.ones_like(s)], axis=1)
    w = np.asarray(init, np.float64)

    def loss(v: np.ndarray) -> float:
        z = x @ v
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    current = loss(w)
    for _ in range(steps):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) / s.size
        hess = (x * (p * (1 - p))[:, None]).T @ x / s.size + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-6:
            trial = w - t * step
            new = loss(trial)
            if new <= current:
                break
            t *= 0.5
        else:
            break
        converged = current - new < 1e-12
        w, current = trial, new
        if converged:
            break
    return float(w[0]), float(w[1])
