"""How far bf16 fusion moves served scores from fp32 ones (SOUNDSCAPE_FUSION_PRECISION).

Both sides fuse through `CellFusion.block`, the path a tile's uncached chunk takes, and score
with the same -CSD; scripts/eval_precision.py prints the figures the README quotes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr
from torch import nn

from embeddings_store.fusion import CellFusion
from embeddings_store.grid import CellExtent
from embeddings_store.store import EmbeddingStore
from model.metadata import Metadata
from model.scoring import QueryEmbedding, augment_query, score_from_inner_product

TOP = 10  # the top places' default k


@dataclass(frozen=True)
class PrecisionAgreement:
    """One (metadata, query): how the `other` precision's scores differ from the `base`'s."""

    metadata: str
    query: str
    cells: int
    span: float  # the base scores' max - min over the cells (what the differences compare to)
    max_abs: float  # largest |score difference| (-CSD units)
    median_abs: float
    spearman: float  # rank agreement over the cells
    top_overlap: float  # share of the base's top-10 cells the other also ranks top-10

    def to_json(self) -> dict:
        """Plain fields."""
        return asdict(self)


def sample_chunks(store: EmbeddingStore, psm_zoom: int, count: int, seed: int = 0) -> list:
    """Up to `count` of a level's written chunks, drawn without replacement (seeded)."""
    tiles = list(store.extent(psm_zoom).tiles())
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(tiles), min(count, len(tiles)), replace=False)
    return [tiles[i] for i in sorted(picks)]


def fused_rows(fusion: CellFusion, psm_zoom: int, chunks: list, metadata: Metadata) -> np.ndarray:
    """The valid cells' augmented vectors [mu, -c/2] of `chunks`, in chunk order."""
    level = next(lv for lv in fusion.store.levels if lv.psm_zoom == psm_zoom)
    out = []
    for tx, ty in chunks:
        fused = fusion.block(CellExtent.chunk(level, tx, ty), metadata)
        out.append(fused.aug[fused.valid])
    return np.concatenate(out) if out else np.zeros((0, fusion.store.embed_dim + 1), np.float32)


def precision_agreement(
    model: nn.Module,
    store: EmbeddingStore,
    queries: dict[str, QueryEmbedding],
    metadatas: list[Metadata],
    psm_zoom: int,
    chunks: int = 24,
    base: str = "fp32",
    other: str = "bf16",
    seed: int = 0,
) -> list[PrecisionAgreement]:
    """Scores of the same cells fused at `base` and at `other`, compared per (metadata, query)."""
    picked = sample_chunks(store, psm_zoom, chunks, seed)
    fa, fb = CellFusion(model, store, base), CellFusion(model, store, other)
    rows = []
    for meta in metadatas:
        a, b = fused_rows(fa, psm_zoom, picked, meta), fused_rows(fb, psm_zoom, picked, meta)
        for name, query in queries.items():
            qa = augment_query(query.mu)
            sa = score_from_inner_product(a @ qa, query.c)
            sb = score_from_inner_product(b @ qa, query.c)
            diff = np.abs(sa - sb)
            k = min(TOP, sa.size)
            top_a = set(np.argsort(-sa, kind="stable")[:k].tolist())
            top_b = set(np.argsort(-sb, kind="stable")[:k].tolist())
            rho = float(spearmanr(sa, sb)[0]) if sa.size > 1 else 1.0
            some = sa.size > 0
            rows.append(PrecisionAgreement(
                metadata=meta.key(), query=name, cells=int(sa.size),
                span=float(np.ptp(sa)) if some else 0.0,
                max_abs=float(diff.max()) if some else 0.0,
                median_abs=float(np.median(diff)) if some else 0.0,
                spearman=rho, top_overlap=len(top_a & top_b) / max(k, 1),
            ))  # fmt: skip
    return rows
