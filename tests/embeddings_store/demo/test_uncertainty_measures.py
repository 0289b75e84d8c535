"""The loss-optimal image variance (`loss_optimal_variance`), issue 26's diagnosis tool."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from embeddings_store.demo.uncertainty_quality import loss_optimal_variance

A, B = 2.0, 5.0


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def row_loss(c: float, i: int, img: np.ndarray, aud: np.ndarray, var: np.ndarray, batch: int):
    """Image i's row of the matching BCE, written out plainly."""
    d = ((img[i] - aud) ** 2).sum(1) + var + c
    x = B - A * d
    pos = np.logaddexp(0.0, -x[i])
    neg = np.delete(np.logaddexp(0.0, x), i).mean() * (batch - 1)
    return pos + neg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_direct_minimisation_of_the_row_loss(seed):
    rng = np.random.default_rng(seed)
    img, aud = unit(rng.normal(size=(30, 8))), unit(rng.normal(size=(30, 8)))
    aud = unit(aud + 2.0 * img)  # positives nearer than the negatives, as after training
    var = rng.uniform(0.1, 1.0, 30)
    got = loss_optimal_variance(img, aud, var, A, B, batch=64)
    for i in range(30):
        best = minimize_scalar(row_loss, bounds=(0.0, 20.0), method="bounded",
                               args=(i, img, aud, var, 64), options={"xatol": 1e-9})  # fmt: skip
        assert got[i] == pytest.approx(best.x, abs=1e-5), i


def test_close_negatives_ask_for_more_variance_and_far_ones_for_none():
    # Two images, each 0.2 from its own recording; image 0's other recordings crowd close to
    # it, image 1's lie far away.
    d = 16
    e = np.eye(d)
    img = np.stack([e[0], e[1]])
    near = unit(e[0] + 0.35 * e[2 : 2 + 10])  # ten recordings close to image 0
    aud = np.vstack([unit(e[0] + 0.3 * e[12]), unit(e[1] + 0.3 * e[13]), near])
    img = np.vstack([img, unit(e[0] + 0.35 * e[2:12])])  # their own images sit on them
    var = np.zeros(len(aud))
    c = loss_optimal_variance(img, aud, var, A, B, batch=12)
    assert c[0] > c[1] + 0.5
    # With every negative far and the positive on top, the loss wants no variance at all.
    far = loss_optimal_variance(np.stack([e[0], e[5]]), np.stack([e[0], e[5]]), np.zeros(2),
                                A, -B, batch=2)  # fmt: skip
    assert far == pytest.approx([0.0, 0.0], abs=1e-9)


def test_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="paired"):
        loss_optimal_variance(np.ones((3, 4)), np.ones((2, 4)), np.ones(2), A, B)
    with pytest.raises(ValueError, match="paired"):
        loss_optimal_variance(np.ones((1, 4)), np.ones((1, 4)), np.ones(1), A, B)
