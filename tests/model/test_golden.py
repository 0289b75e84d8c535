"""Every value of the reference golden vectors, reproduced through the project's own code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import (
    AUDIO_SOURCES,
    CAPTION_SOURCES,
    FusionConfig,
    ImageEncoderConfig,
    LossConfig,
)
from model.fusion import MetadataEmbedding
from model.gaussian import GaussianEmbedding, l2normalize
from model.gsdpe import gsd_positional_embedding, sincos_1d
from model.losses import (
    InfoNCELoss,
    PCMEppLoss,
    combine_pair_losses,
    kl_to_standard_normal,
    pseudo_positive_mask,
)
from model.metadata import drop_mask, encode_hour, encode_latlong, encode_month, source_index
from model.metrics import ground_truth_ranks, retrieval_scores
from model.scoring import (
    augment_cells,
    augment_query,
    csd_matrix,
    neg_csd_matrix,
    score_cells,
    score_from_inner_product,
    uncertainty,
    variance_sum,
)
from model.transforms import SAT_TYPES, zoom_geometry
from model.vit import ImageEncoder
from tests.golden import g, raw

RTOL = 1e-5
ATOL = 1e-6


def t32(prefix: str) -> torch.Tensor:
    return torch.tensor(g(prefix), dtype=torch.float32)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    actual = (
        actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    )
    np.testing.assert_allclose(actual, np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- A. CSD and scores
@pytest.fixture
def section_a():
    q = GaussianEmbedding.from_head(t32("A.mu_q_raw"), t32("A.logvar_q"))
    gal = GaussianEmbedding.from_head(t32("A.mu_g_raw"), t32("A.logvar_g"))
    return q, gal


def test_a_normalisation(section_a):
    q, gal = section_a
    close(q.mu, g("A.mu_q = "))
    close(gal.mu, g("A.mu_g = "))


def test_a_csd_pieces(section_a):
    q, gal = section_a
    close(variance_sum(q.logvar), g("A.sum_exp_logvar_q"))
    close(variance_sum(gal.logvar), g("A.sum_exp_logvar_g"))
    sigma = variance_sum(q.logvar)[:, None] + variance_sum(gal.logvar)[None, :]
    close(sigma, g("A.sigma_pdist"))
    mu_pdist = csd_matrix(q.mu, q.logvar, gal.mu, gal.logvar) - sigma
    close(mu_pdist, g("A.mu_pdist"))


def test_a_csd_training_and_eval_forms(section_a):
    q, gal = section_a
    close(csd_matrix(q.mu, q.logvar, gal.mu, gal.logvar), g("A.CSD[3x4]"))
    score = neg_csd_matrix(q.mu, q.logvar, gal.mu, gal.logvar)
    assert score.dtype == torch.float64
    close(score, g("A.score[3x4]"))
    gap = (csd_matrix(q.mu, q.logvar, gal.mu, gal.logvar).double() + score).abs().max().item()
    assert gap < 1e-5 and float(raw("A.max|CSD")) < 1e-12


def test_a_matvec_and_augmented_inner_product_paths(section_a):
    q, gal = section_a
    mu_g, c_g = gal.mu.numpy(), variance_sum(gal.logvar).numpy()
    expected = g("A.score[3x4]")
    aug = augment_cells(mu_g, c_g)
    for i in range(3):
        c_q = float(variance_sum(q.logvar)[i])
        close(score_cells(mu_g, c_g, q.mu[i].numpy(), c_q), expected[i], atol=1e-5)
        close(
            score_from_inner_product(aug @ augment_query(q.mu[i].numpy()), c_q),
            expected[i],
            atol=1e-5,
        )
        assert (
            list(np.argsort(-score_cells(mu_g, c_g, q.mu[i].numpy(), c_q)))
            == raw("A.argsort_desc")[i]
        )


def test_a_uncertainty(section_a):
    q, gal = section_a
    close(uncertainty(q.logvar), g("A.uncertainty ||sigma_q||_1"))
    close(uncertainty(gal.logvar), g("A.uncertainty ||sigma_g||_1"))


def test_a_pitfalls_are_not_what_we_compute(section_a):
    q, gal = section_a
    ours = csd_matrix(q.mu, q.logvar, gal.mu, gal.logvar).numpy()
    assert not np.allclose(ours, g("A.PITFALL CSD"), rtol=1e-2)
    assert not np.allclose(
        -neg_csd_matrix(q.mu, q.logvar, gal.mu, gal.logvar).numpy(),
        g("A.PITFALL eval-form"),
        rtol=1e-2,
    )
    assert float(raw("A.float32 max abs deviation")) < 1e-6


# --------------------------------------------------------------------------- B/C. losses
@pytest.fixture
def section_b():
    mods = {}
    for name in ("sat", "aud", "txt"):
        mods[name] = GaussianEmbedding.from_head(t32(f"B.{name}_mu_raw"), t32(f"B.{name}_logvar"))
    return mods


PAIRS = {"ia": ("sat", "aud"), "it": ("sat", "txt"), "at": ("aud", "txt")}
P = "B[a=5.0,b=5.0]."


def test_b_normalised_means(section_b):
    for name in ("sat", "aud", "txt"):
        close(section_b[name].mu, g(f"B.{name}_mu (normalised)"))


@pytest.mark.parametrize("pair", list(PAIRS))
def test_b_pcmepp_pair(section_b, pair):
    crit = PCMEppLoss(LossConfig())
    e1, e2 = (section_b[m] for m in PAIRS[pair])
    close(csd_matrix(e1.mu, e1.logvar, e2.mu, e2.logvar), g(f"{P}{pair}.csd"))
    logits = crit.logits(e1, e2)
    close(logits, g(f"{P}{pair}.logits"), atol=1e-5)
    close(pseudo_positive_mask(logits), g(f"{P}{pair}.pseudo_mask_i2t"))
    close(pseudo_positive_mask(logits.T), g(f"{P}{pair}.pseudo_mask_t2i"))
    close(kl_to_standard_normal(e1.mu, e1.logvar), g(f"{P}{pair}.kl_1"))
    close(kl_to_standard_normal(e2.mu, e2.logvar), g(f"{P}{pair}.kl_2"))
    loss, logs = crit(e1, e2)
    close(loss, g(f"{P}{pair}.loss"))
    close(logs["bce_match"], g(f"{P}{pair}.bce_match"))
    close(logs["vib"], g(f"{P}{pair}.vib"))
    close(logs["bce_pseudo_i2t"], g(f"{P}{pair}.bce_pseudo_i2t"))
    close(logs["bce_pseudo_t2i"], g(f"{P}{pair}.bce_pseudo_t2i"))
    assert logs["n_pseudo"] == g(f"{P}{pair}.n_pseudo_gts")
    no_pp, _ = PCMEppLoss(LossConfig(pseudo_match_alpha=0.0))(e1, e2)
    close(no_pp, g(f"{P}{pair}.loss_no_pp"))
    d = csd_matrix(e1.mu, e1.logvar, e2.mu, e2.logvar)
    sig = variance_sum(e1.logvar)[:, None] + variance_sum(e2.logvar)[None, :]
    close((d - sig).mean(), g(f"{P}{pair}.logged_mu_pdist_mean"))
    close(sig.mean(), g(f"{P}{pair}.logged_sigma_pdist_mean"))


@pytest.mark.parametrize("alpha,key", [(0.1, "TOTAL ="), (0.0, "TOTAL_without_pseudo_positives")])
def test_b_total(section_b, alpha, key):
    crit = PCMEppLoss(LossConfig(pseudo_match_alpha=alpha))
    losses = {p: crit(section_b[a], section_b[b])[0] for p, (a, b) in PAIRS.items()}
    total = combine_pair_losses(losses["ia"], losses["it"], losses["at"], LossConfig().text_weight)
    close(total, g(P + key))


def test_c_vib_pieces(section_b):
    for name, key in (("sat", "C.KL(sat)"), ("aud", "C.KL(aud)"), ("txt", "C.KL(txt)")):
        e = section_b[name]
        close(kl_to_standard_normal(e.mu, e.logvar), g(key))
    e = section_b["sat"]
    close(kl_to_standard_normal(e.raw_mu, e.logvar), g("C.KL(sat) if mu were NOT"))
    _, logs = PCMEppLoss(LossConfig())(section_b["sat"], section_b["aud"])
    close(logs["vib"], g("C.vib_ia"))


@pytest.mark.parametrize("tau", [1.0, 10.0])
def test_b_infonce(section_b, tau):
    crit = InfoNCELoss(LossConfig(type="infonce", infonce_tau=tau))
    losses = {p: crit(section_b[a], section_b[b])[0] for p, (a, b) in PAIRS.items()}
    for p in PAIRS:
        close(losses[p], g(f"B.infonce[tau={tau}].{p}"))
    total = combine_pair_losses(losses["ia"], losses["it"], losses["at"], 0.5)
    close(total, g(f"B.infonce[tau={tau}].TOTAL"))


# --------------------------------------------------------------------------- D. GSDPE
def test_d_gsdpe_through_image_encoder_resolution():
    settings = raw("D.settings")
    res = []
    for sat_type, zoom in settings:
        gsd, tile = SAT_TYPES[sat_type]
        enc = ImageEncoder(
            ImageEncoderConfig(
                img_size=32,
                patch_size=16,
                embed_dim=8,
                depth=1,
                num_heads=2,
                native_gsd=gsd,
                tile_size=tile,
            ),
            out_dim=4,
        )
        res.append(enc.resolution(zoom, 1))
    res_t = torch.cat(res)
    close(res_t, g("D.res"))
    pe = gsd_positional_embedding(8, 2, res_t)
    assert pe.dtype == torch.float32 and pe.shape == (2, 4, 8)
    close(pe, g("D.gsdpe float32"), rtol=1e-6, atol=1e-7)
    close(pe, g("D.gsdpe[n=2"), rtol=1e-6, atol=float(raw("D.max|f32-f64|")) * 2)


def test_d_omega():
    # sin at unit position is sin(omega), so the frequencies are recoverable from sincos_1d.
    emb = sincos_1d(torch.tensor([1.0]), 4)[0]
    close(torch.asin(emb[:2]), g("D.omega"), rtol=1e-6)


# --------------------------------------------------------------------------- E. metrics
def test_e_ranks_recall_median():
    sim = g("E.sim")
    assert float(raw("E.k")) == 0.1 * sim.shape[0]
    close(ground_truth_ranks(sim), g("E.I2S ranks"))
    close(ground_truth_ranks(sim.T), g("E.S2I (transpose) ranks"))
    i2s, s2i = retrieval_scores(sim, 10), retrieval_scores(sim.T, 10)
    assert i2s.recall == pytest.approx(float(raw("E.I2S R@10%")))
    assert i2s.median_rank == pytest.approx(float(raw("E.I2S median rank")))
    assert s2i.recall == pytest.approx(float(raw("E.S2I R@10%")))
    assert s2i.median_rank == pytest.approx(float(raw("E.S2I median rank")))
    assert i2s.recall != pytest.approx(float(raw("E.(contrast")))


# --------------------------------------------------------------------------- F. metadata
@pytest.mark.parametrize(
    "lat,lon",
    [
        (38.627, -90.1994),
        (-33.8688, 151.2093),
        (90.0, 0.0),
        (-90.0, 0.0),
        (0.0, 180.0),
        (0.0, -180.0),
    ],
)
def test_f_latlong(lat, lon):
    close(encode_latlong(lat, lon)[0], g(f"F.latlong({lat},{lon})"))


def test_f_month_and_hour():
    close(encode_month(np.arange(1, 13)), g("F.month"))
    close(encode_hour(np.arange(24)), g("F.hour"))


def test_f_source_vocabularies():
    for name, idx in raw("F.audio_source").items():
        assert source_index(name, AUDIO_SOURCES) == idx
    for name, idx in raw("F.caption_source").items():
        assert source_index(name, CAPTION_SOURCES) == idx


def test_f_token_order():
    emb = MetadataEmbedding(
        FusionConfig(components=("time", "latlong", "month", "tsource", "asource")), 8
    )
    names = {v: k for k, v in MetadataEmbedding.MODULES.items()}
    order = ["CLS", "sat(h_i)"] + [names[n] for n, _ in emb.named_children()]
    assert order == raw("F.token")


def test_f_drop_counts():
    rng = np.random.default_rng(0)
    for spec, expected in raw("F.create_mask").items():
        b, rate, n_invalid = spec.split(",")
        valid = np.ones(int(b), dtype=bool)
        valid[: int(n_invalid)] = False
        present = drop_mask(valid, float(rate), rng)
        assert int((~present).sum()) == expected
        assert not present[: int(n_invalid)].any()


# --------------------------------------------------------------------------- I. zoom geometry
@pytest.mark.parametrize("sat_type", ["sentinel", "bingmap"])
@pytest.mark.parametrize("zoom", [1, 3, 5])
def test_i_zoom_geometry(sat_type, zoom):
    expected = raw(f"I.{sat_type}.z{zoom}")
    gsd, tile = SAT_TYPES[sat_type]
    got = zoom_geometry(gsd, tile, zoom, 224)
    for key in (
        "center_crop_px",
        "resize_to",
        "then_resize_to",
        "ground_extent_m",
        "res_passed_to_GSDPE",
        "true_m_per_px_at_224",
    ):
        assert got[key] == pytest.approx(expected[key], rel=1e-9), key
    assert expected["raw_px"] == 5 * tile  # z=5 is the whole raw tile


def test_l2normalize_matches_golden_rows():
    close(l2normalize(t32("A.mu_q_raw")).norm(dim=-1), np.ones(3))
