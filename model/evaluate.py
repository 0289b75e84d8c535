"""Zero-shot retrieval evaluation in the paper's table layout (I2A / A2I, R@10% and median rank)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.data import SoundscapeDataset, collate
from model.gaussian import GaussianEmbedding
from model.metrics import retrieval_scores
from model.psm import PSM
from model.scoring import neg_csd_matrix


@dataclass(frozen=True)
class EvalRow:
    """One row of the results table."""

    zoom: int
    metadata: bool
    text: bool
    i2a_recall: float
    i2a_median_rank: float
    a2i_recall: float
    a2i_median_rank: float


def _cat(parts: list[GaussianEmbedding]) -> GaussianEmbedding:
    return GaussianEmbedding(
        *(torch.cat([getattr(p, f) for p in parts]) for f in GaussianEmbedding._fields)
    )


@torch.no_grad()
def embed_split(
    model: PSM, dataset: SoundscapeDataset, zoom: int, n: int, batch_size: int, with_metadata: bool
) -> tuple[GaussianEmbedding, GaussianEmbedding, GaussianEmbedding]:
    """Image, audio and text embeddings of the first n samples at one zoom level."""
    model.eval()
    sats, auds, txts = [], [], []
    for start in range(0, n, batch_size):
        samples = [dataset.sample(i, zoom) for i in range(start, min(start + batch_size, n))]
        batch = collate(
            samples,
            [zoom] * len(samples),
            model.audio_tower.features,
            model.text_tower.tokenize,
            model.config.image.img_size,
        )
        meta = batch.metadata if with_metadata else None
        sats.append(
            model.embed_images(
                batch.images.to(model.device), batch.zoom.to(model.device), meta
            ).detach()
        )
        auds.append(model.embed_audio_features(batch.audio).detach())
        txts.append(model.embed_text_tokens(batch.text).detach())
    return _cat(sats), _cat(auds), _cat(txts)


def retrieval_rows(
    sat: GaussianEmbedding,
    aud: GaussianEmbedding,
    txt: GaussianEmbedding,
    zoom: int,
    with_metadata: bool,
    recall_at: float = 10.0,
) -> list[EvalRow]:
    """Rows without and with the pair's caption added to the query (reference add_text)."""
    rows = []
    for with_text in (False, True):
        q_img = sat.combine(txt) if with_text else sat
        q_aud = aud.combine(txt) if with_text else aud
        i2a = neg_csd_matrix(q_img.mu, q_img.logvar, aud.mu, aud.logvar).cpu().numpy()
        a2i = neg_csd_matrix(q_aud.mu, q_aud.logvar, sat.mu, sat.logvar).cpu().numpy()
        s1, s2 = retrieval_scores(i2a, recall_at), retrieval_scores(a2i, recall_at)
        rows.append(
            EvalRow(
                zoom, with_metadata, with_text, s1.recall, s1.median_rank, s2.recall, s2.median_rank
            )
        )
    return rows


def evaluate(
    model: PSM,
    dataset: SoundscapeDataset,
    zooms: Sequence[int] = (1, 3, 5),
    max_samples: int | None = None,
    batch_size: int = 64,
    metadata_modes: Sequence[bool] = (False, True),
) -> list[EvalRow]:
    """The paper's table for every zoom level and metadata mode."""
    n = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    if n < 2:
        raise ValueError("evaluation needs at least 2 samples")
    rows: list[EvalRow] = []
    for zoom in zooms:
        for with_meta in metadata_modes:
            sat, aud, txt = embed_split(model, dataset, zoom, n, batch_size, with_meta)
            rows += retrieval_rows(sat, aud, txt, zoom, with_meta)
    return rows


def format_table(rows: Sequence[EvalRow], n: int | None = None) -> str:
    """Markdown table with the paper's columns."""
    lines = [
        "| zoom | metadata | text | I2A R@10% | I2A MR | A2I R@10% | A2I MR |",
        "|---:|:---:|:---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.zoom} | {'yes' if r.metadata else 'no'} | {'yes' if r.text else 'no'} | "
            f"{r.i2a_recall:.3f} | {r.i2a_median_rank:g} | "
            f"{r.a2i_recall:.3f} | {r.a2i_median_rank:g} |"
        )
    if n is not None:
        lines.append(
            f"\n{n} test pairs; random R@10% = 0.100, random median rank = {(n + 1) / 2:g}"
        )
    return "\n".join(lines)


def random_baseline(n: int, seed: int = 0) -> float:
    """Empirical R@10% of a random similarity matrix (about 0.10)."""
    sim = np.random.default_rng(seed).normal(size=(n, n))
    return retrieval_scores(sim).recall
