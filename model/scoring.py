"""Closed-form sampled distance (CSD) and the serving-side scores derived from it.

With unit means, -CSD(p, q) = 2<mu_p, mu_q> - 2 - c_p - c_q where c = sum_k exp(logvar_k), so
scoring many cells against one query is one matrix-vector product plus per-cell scalars.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.calibration import sigmoid

_QUERY_HEADER = struct.Struct("<4sBIdd")  # magic, kind, D, c, uncertainty
_QUERY_MAGIC = b"SQE1"
_QUERY_KINDS = {"text": 0, "audio": 1}


def variance_sum(logvar: Tensor) -> Tensor:
    """c = sum_k sigma_k^2 = sum_k exp(logvar_k), per row."""
    return logvar.exp().sum(dim=-1)


def uncertainty(logvar: Tensor) -> Tensor:
    """||sigma||_1 = sum_k exp(logvar_k / 2), per row (the reference's map uncertainty)."""
    return (0.5 * logvar).exp().sum(dim=-1)


def csd_matrix(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """Training-form CSD between every row of set 1 and set 2: ||mu1-mu2||^2 + c1 + c2."""
    # |a|^2 + |b|^2 - 2ab: one matmul instead of a (B, B, D) difference tensor, which was a
    # third of a CPU training step at B=128, D=128. Clamped: rounding can dip below zero.
    mu_pdist = (
        mu1.pow(2).sum(-1, keepdim=True) + mu2.pow(2).sum(-1).unsqueeze(0) - 2.0 * (mu1 @ mu2.T)
    ).clamp_min(0.0)
    sigma_pdist = variance_sum(logvar1).unsqueeze(1) + variance_sum(logvar2).unsqueeze(0)
    return mu_pdist + sigma_pdist


def neg_csd_matrix(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """Evaluation-form score -CSD = -(2 - 2 mu1.mu2 + c1 + c2), in float64 as the reference."""
    mu1, mu2 = mu1.double(), mu2.double()
    csd = 2.0 - 2.0 * (mu1 @ mu2.T)
    csd = csd + variance_sum(logvar1.double())[:, None] + variance_sum(logvar2.double())[None, :]
    return -csd


def score_cells(
    mu_cells: np.ndarray, c_cells: np.ndarray, mu_query: np.ndarray, c_query: float
) -> np.ndarray:
    """-CSD of N cells against one query: one float32 matvec plus per-cell scalars.

    `mu_cells` (N, D) unit means, `c_cells` (N,) variance sums, `mu_query` (D,), `c_query` scalar.
    """
    mu_cells = np.asarray(mu_cells, dtype=np.float32)
    dots = mu_cells @ np.asarray(mu_query, dtype=np.float32)
    return 2.0 * dots - np.float32(2.0 + c_query) - np.asarray(c_cells, dtype=np.float32)


def augment_cells(mu_cells: np.ndarray, c_cells: np.ndarray) -> np.ndarray:
    """Gallery vectors [mu, -c/2] whose inner product with [mu_q, 1] ranks cells exactly by -CSD."""
    mu_cells = np.asarray(mu_cells, dtype=np.float32)
    c = np.asarray(c_cells, dtype=np.float32).reshape(-1, 1)
    return np.ascontiguousarray(np.concatenate([mu_cells, -0.5 * c], axis=1))


def augment_query(mu_query: np.ndarray) -> np.ndarray:
    """Query vector [mu_q, 1] matching `augment_cells`."""
    mu_query = np.asarray(mu_query, dtype=np.float32).reshape(-1)
    return np.concatenate([mu_query, np.ones(1, dtype=np.float32)])


def score_from_inner_product(inner: np.ndarray, c_query: float) -> np.ndarray:
    """Turn <[mu, -c/2], [mu_q, 1]> back into -CSD."""
    return 2.0 * np.asarray(inner, dtype=np.float32) - np.float32(2.0 + c_query)


def match_probability(score: Tensor | np.ndarray, negative_scale: float, shift: float):
    """sigmoid(-a * CSD + b) with score = -CSD: the learned PCME++ match probability."""
    if isinstance(score, Tensor):
        return torch.sigmoid(negative_scale * score + shift)
    return sigmoid(negative_scale * np.asarray(score, dtype=np.float64) + shift).astype(np.float32)


def match_share(query_logit: np.ndarray, other_logits: np.ndarray) -> np.ndarray:
    """Per row, the query's share of the match among itself and other queries: the softmax of
    the match logits -a*CSD + b over [query, others], read at the query (N,) and (N, M) -> (N,).

    A cell's own variance adds to every one of its distances, so it cancels here: the share
    says how much of what the cell matches is this query, which the raw score cannot (a cell
    that matches everything less at night would make every query peak by day)."""
    logits = np.concatenate(
        [np.asarray(query_logit, np.float64).reshape(-1, 1), np.asarray(other_logits, np.float64)],
        axis=1,
    )
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (weights[:, 0] / weights.sum(axis=1)).astype(np.float32)


@dataclass(frozen=True)
class QueryEmbedding:
    """A query's Gaussian embedding reduced to what scoring needs: unit mean, c, ||sigma||_1."""

    kind: str
    mu: np.ndarray  # (D,) float32, unit norm
    c: float  # sum exp(logvar)
    uncertainty: float  # ||sigma||_1

    @classmethod
    def from_gaussian(cls, kind: str, mu: Tensor, logvar: Tensor, row: int = 0) -> QueryEmbedding:
        """One row of a model output (a GaussianEmbedding's mu and logvar)."""
        return cls(
            kind,
            mu[row].float().cpu().numpy().astype(np.float32),
            float(variance_sum(logvar.float())[row]),
            float(uncertainty(logvar.float())[row]),
        )

    @classmethod
    def from_text(cls, model: torch.nn.Module, text: str) -> QueryEmbedding:
        """A text query embedded by a PSM model (in eval mode)."""
        with torch.inference_mode():
            g = model.embed_texts([text])
        return cls.from_gaussian("text", g.mu, g.logvar)

    @classmethod
    def from_audio(
        cls, model: torch.nn.Module, wave: np.ndarray, sample_rate: int
    ) -> QueryEmbedding:
        """An audio query, (samples,) or (channels, samples), embedded by a PSM model."""
        with torch.inference_mode():
            g = model.embed_audio([wave], sample_rate)
        return cls.from_gaussian("audio", g.mu, g.logvar)

    def to_bytes(self) -> bytes:
        """Raw header + float32 mean (cache values are bytes, never pickles)."""
        mu = np.ascontiguousarray(self.mu, dtype=np.float32)
        kind = _QUERY_KINDS[self.kind]
        return _QUERY_HEADER.pack(_QUERY_MAGIC, kind, mu.shape[0], self.c, self.uncertainty) + (
            mu.tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> QueryEmbedding:
        """Inverse of `to_bytes`; ValueError on foreign bytes."""
        if len(data) < _QUERY_HEADER.size:
            raise ValueError("not a query embedding")
        magic, kind, dim, c, unc = _QUERY_HEADER.unpack_from(data)
        names = {v: k for k, v in _QUERY_KINDS.items()}
        if magic != _QUERY_MAGIC or kind not in names or len(data) != _QUERY_HEADER.size + 4 * dim:
            raise ValueError("not a query embedding")
        mu = np.frombuffer(data, dtype=np.float32, offset=_QUERY_HEADER.size, count=dim)
        return cls(names[kind], mu, float(c), float(unc))
