"""PCME++ (closed-form sampled distance) loss with pseudo-positives and VIB, and InfoNCE.

Follows the reference criterion (docs/ARCHITECTURE.md, "Loss"): BCE over all B^2 pairs with
one learnable (a, b) shared by every modality pair,
loss = 2*BCE + alpha*(pseudo i2t + pseudo t2i) + beta*VIB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import LossConfig
from model.gaussian import GaussianEmbedding
from model.scoring import csd_matrix

KL_CUTOFF = 10000.0  # the reference drops an exploding KL term instead of back-propagating it


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """-0.5 * mean(1 + logvar - mu^2 - exp(logvar)) over all B*D elements (0 if it explodes)."""
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    if kl.item() > KL_CUTOFF:
        return torch.zeros((), device=mu.device, dtype=mu.dtype)
    return kl


def pseudo_positive_mask(logits: Tensor) -> Tensor:
    """P[i, j] = logits[i, j] >= logits[i, i]: pairs at least as close as the true match."""
    return (logits >= logits.diagonal().unsqueeze(1)).to(logits.dtype)


class PCMEppLoss(nn.Module):
    """One criterion (one a = negative_scale, one b = shift) shared by all modality pairs."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.shift = nn.Parameter(torch.tensor([cfg.init_shift]))
        self.negative_scale = nn.Parameter(torch.tensor([cfg.init_negative_scale]))

    def logits(self, emb1: GaussianEmbedding, emb2: GaussianEmbedding) -> Tensor:
        """-a * CSD + b for every pair."""
        return (
            -self.negative_scale * csd_matrix(emb1.mu, emb1.logvar, emb2.mu, emb2.logvar)
            + self.shift
        )

    def forward(
        self, emb1: GaussianEmbedding, emb2: GaussianEmbedding
    ) -> tuple[Tensor, dict[str, float]]:
        """Loss for a batch of matched pairs (row i of emb1 matches row i of emb2)."""
        logits = self.logits(emb1, emb2)
        matched = torch.eye(logits.shape[0], device=logits.device, dtype=logits.dtype)
        bce_match = F.binary_cross_entropy_with_logits(logits, matched)
        vib = kl_to_standard_normal(emb1.mu, emb1.logvar) + kl_to_standard_normal(
            emb2.mu, emb2.logvar
        )
        loss = 2 * bce_match + self.cfg.vib_beta * vib
        logs = {"bce_match": bce_match.item(), "vib": vib.item()}
        if self.cfg.pseudo_match_alpha:
            with torch.no_grad():
                p_i2t = pseudo_positive_mask(logits)
                p_t2i = pseudo_positive_mask(logits.T)
            bce_i2t = F.binary_cross_entropy_with_logits(logits, p_i2t)
            bce_t2i = F.binary_cross_entropy_with_logits(logits.T, p_t2i)
            loss = loss + self.cfg.pseudo_match_alpha * (bce_i2t + bce_t2i)
            logs.update(
                bce_pseudo_i2t=bce_i2t.item(),
                bce_pseudo_t2i=bce_t2i.item(),
                n_pseudo=float(p_i2t.sum() + p_t2i.sum() - 2 * logits.shape[0]),
            )
        return loss, logs


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE with a learnable multiplier tau (init 1, no exp, as the reference)."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tau = nn.Parameter(torch.tensor([cfg.infonce_tau]))

    def forward(
        self, emb1: GaussianEmbedding, emb2: GaussianEmbedding
    ) -> tuple[Tensor, dict[str, float]]:
        """Loss for a batch of matched pairs."""
        logits = (emb1.mu @ emb2.mu.T) * self.tau
        target = torch.arange(logits.shape[0], device=logits.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return loss, {}


def make_criterion(cfg: LossConfig) -> nn.Module:
    """The criterion named by the config."""
    return PCMEppLoss(cfg) if cfg.type == "pcmepp" else InfoNCELoss(cfg)


def combine_pair_losses(
    loss_ia: Tensor, loss_it: Tensor, loss_at: Tensor, text_weight: float
) -> Tensor:
    """(1 - w) * L_image_audio + w * (L_image_text + L_audio_text)  (reference engine.py)."""
    return (1 - text_weight) * loss_ia + text_weight * (loss_it + loss_at)
