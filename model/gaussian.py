"""Gaussian embeddings N(mu, sigma^2) as used by PSM: L2-normalised mean plus log-variance."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def l2normalize(x: Tensor) -> Tensor:
    """Divide each row by its L2 norm (no epsilon, as the reference; a zero row is a model bug)."""
    return x / x.norm(dim=-1, keepdim=True)


class GaussianEmbedding(NamedTuple):
    """A batch of Gaussian embeddings.

    `mu` is L2-normalised, `logvar` is log sigma^2 (the reference's 'std' head output) and
    `raw_mu` the unnormalised mean-head output, which text-conditioned queries sum before
    normalising (docs/ARCHITECTURE.md, "Scores").
    """

    mu: Tensor
    logvar: Tensor
    raw_mu: Tensor

    @classmethod
    def from_head(cls, raw_mu: Tensor, logvar: Tensor) -> GaussianEmbedding:
        """Build from mean-head and std-head outputs."""
        return cls(l2normalize(raw_mu), logvar, raw_mu)

    @classmethod
    def point(cls, raw_mu: Tensor) -> GaussianEmbedding:
        """A deterministic (InfoNCE) embedding: zero variance, i.e. log-variance -inf."""
        return cls(l2normalize(raw_mu), torch.full_like(raw_mu, float("-inf")), raw_mu)

    def combine(self, other: GaussianEmbedding) -> GaussianEmbedding:
        """Condition on another embedding: sum raw means, add log-variances (reference add_text)."""
        return GaussianEmbedding.from_head(self.raw_mu + other.raw_mu, self.logvar + other.logvar)

    def detach(self) -> GaussianEmbedding:
        """Detached copy (for evaluation and caching)."""
        return GaussianEmbedding(self.mu.detach(), self.logvar.detach(), self.raw_mu.detach())

    def select(self, idx: Tensor | slice) -> GaussianEmbedding:
        """Rows `idx` of every field."""
        return GaussianEmbedding(self.mu[idx], self.logvar[idx], self.raw_mu[idx])
