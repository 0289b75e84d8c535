import numpy as np
import torch

from model.gaussian import GaussianEmbedding
from model.scoring import (
    augment_cells,
    augment_query,
    match_probability,
    neg_csd_matrix,
    score_cells,
    score_from_inner_product,
    variance_sum,
)


def random_gaussians(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return GaussianEmbedding.from_head(
        torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) - 4
    )


def test_matvec_form_equals_pairwise_csd_for_many_cells():
    cells, query = random_gaussians(5000, 64, 0), random_gaussians(1, 64, 1)
    expected = neg_csd_matrix(query.mu, query.logvar, cells.mu, cells.logvar)[0].numpy()
    got = score_cells(
        cells.mu.numpy(),
        variance_sum(cells.logvar).numpy(),
        query.mu[0].numpy(),
        float(variance_sum(query.logvar)[0]),
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_augmented_inner_product_gives_exact_top_k():
    cells, query = random_gaussians(2000, 32, 2), random_gaussians(1, 32, 3)
    c = variance_sum(cells.logvar).numpy()
    inner = augment_cells(cells.mu.numpy(), c) @ augment_query(query.mu[0].numpy())
    scores = score_from_inner_product(inner, float(variance_sum(query.logvar)[0]))
    direct = score_cells(
        cells.mu.numpy(), c, query.mu[0].numpy(), float(variance_sum(query.logvar)[0])
    )
    np.testing.assert_allclose(scores, direct, rtol=1e-5, atol=1e-5)
    assert list(np.argsort(-inner)[:10]) == list(np.argsort(-direct)[:10])


def test_match_probability_numpy_and_torch_agree():
    s = np.array([-4.0, -2.0, -1.0, 0.0])
    p_np = match_probability(s, 5.0, 5.0)
    p_t = match_probability(torch.tensor(s), 5.0, 5.0).numpy()
    np.testing.assert_allclose(p_np, p_t, rtol=1e-6)
    np.testing.assert_allclose(p_np, 1 / (1 + np.exp(-(5 * s + 5))), rtol=1e-6)
    assert np.all(np.diff(p_np) > 0)


def test_match_share_is_a_softmax_that_a_cells_own_offset_cannot_move():
    from model.scoring import match_share

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4))
    shares = np.stack(
        [match_share(logits[:, i], np.delete(logits, i, axis=1)) for i in range(4)], axis=1
    )
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-6)
    expect = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shares, expect, rtol=1e-6)
    # A row's variance lowers all its logits alike (a * c); the share does not see it.
    offset = rng.normal(size=(5, 1)) * 50
    moved = match_share(logits[:, 0] - offset[:, 0], logits[:, 1:] - offset)
    np.testing.assert_allclose(moved, shares[:, 0], rtol=1e-5)
    # Large logits do not overflow.
    assert np.isfinite(match_share(np.array([900.0]), np.array([[1000.0]]))).all()
