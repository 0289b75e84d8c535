"""Is the demo map right? Retrieval against an oracle, and map correctness against ground truth.

Retrieval follows the paper's tables (I2A / A2I R@10% and median rank) with two reference rows:
the oracle, which ranks by the world's true class posterior, and random (0.10). Map correctness
scores every cell of a store level against each class's text query and compares with the
world's "class likely here" label (ROC-AUC), and checks that time-dependent classes score higher
at their hours than at other hours.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from embeddings_store.demo import CLASS_NAMES
from embeddings_store.demo.captions import CLASS_QUERIES
from embeddings_store.demo.dataset import DemoWorldDataset
from embeddings_store.demo.geo import GeoLayers
from embeddings_store.demo.soundscape import (
    TIME_DEPENDENT,
    class_distribution,
    class_likely_here,
    class_posterior,
)
from embeddings_store.fusion import MemoFusion
from embeddings_store.grid import CellExtent
from embeddings_store.scoring import score_region
from embeddings_store.store import EmbeddingStore
from model.evaluate import EvalRow, evaluate
from model.metadata import Metadata
from model.metrics import retrieval_scores
from model.psm import PSM
from model.scoring import QueryEmbedding, score_cells

# The month at which hour contrasts are checked: northern summer, when the warm-season classes
# (insects, frogs, thunderstorms) of the contiguous USA are active.
CONTRAST_MONTH = 6


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN if one class."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # Average ranks over runs of equal scores.
    bounds = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [scores.size]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = 0.5 * (s + e - 1) + 1.0
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def oracle_rows(dataset: DemoWorldDataset, n: int, seed: int = 0) -> dict[str, float]:
    """R@10% and median rank when ranking by the true class posterior (ties broken at random).

    With metadata the oracle knows place, month, hour and audio source; without, only the place.
    "bayes" is the best ranking there is with metadata: for A2I it is the oracle's, but for I2A
    the chance that gallery audio j is image i's pair is p(class_j | i) / p(class_j), so common
    classes rank lower than the oracle ranks them and the Bayes I2A recall is the higher one.
    """
    labels = dataset.labels[:n]
    out: dict[str, float] = {}
    jitter = np.random.default_rng(seed).normal(0.0, 1e-9, (n, n))
    posterior = class_posterior(dataset.probs[:n], dataset.world["audio_source"][:n])
    for name, probs in (
        ("metadata", posterior),
        ("place_only", dataset.place_probs[:n]),
        ("bayes", posterior / posterior.mean(axis=0)),
    ):
        sim = probs[:, labels] + jitter  # image i scores audio j by p_i(class of j)
        i2a, a2i = retrieval_scores(sim), retrieval_scores(sim.T)
        out[f"{name}_i2a_recall"] = i2a.recall
        out[f"{name}_a2i_recall"] = a2i.recall
        out[f"{name}_i2a_median_rank"] = i2a.median_rank
        out[f"{name}_a2i_median_rank"] = a2i.median_rank
    return out


@dataclass
class RetrievalReport:
    """The model's table plus the oracle's figures on the same test pairs."""

    n: int
    rows: list[EvalRow]
    oracle: dict[str, float]

    def row(self, zoom: int, metadata: bool, text: bool = False) -> EvalRow:
        """The row for one setting."""
        for r in self.rows:
            if (r.zoom, r.metadata, r.text) == (zoom, metadata, text):
                return r
        raise KeyError((zoom, metadata, text))

    def to_json(self) -> dict[str, object]:
        """Plain-data form for evaluation.json."""
        return {"n": self.n, "rows": [asdict(r) for r in self.rows], "oracle": self.oracle}


def retrieval_report(
    model: PSM, test: DemoWorldDataset, n: int = 2000, zooms: Sequence[int] = (1, 3, 5)
) -> RetrievalReport:
    """Evaluate on the first n test pairs (the paper's table) and the oracle on the same pairs."""
    n = min(n, len(test))
    rows = evaluate(model, test, zooms=zooms, max_samples=n)
    return RetrievalReport(n, rows, oracle_rows(test, n))


def heldout_retrieval(model: PSM, splits: dict[str, DemoWorldDataset]) -> dict[str, dict]:
    """Zoom 1 with metadata on every pair of each held-out split, with the oracle on the same.

    R@10% on 2,000 pairs moves by about 0.03 x oracle between samples of pairs, so the targets
    are also read on all pairs of the validation and test splits (a second, larger sample).
    """
    out: dict[str, dict] = {}
    for name, split in splits.items():
        n = len(split)
        rows = evaluate(model, split, zooms=(1,), max_samples=n, metadata_modes=(True,))
        row = next(r for r in rows if not r.text)
        oracle = oracle_rows(split, n)
        out[name] = {
            "n": n,
            "i2a_recall": row.i2a_recall,
            "a2i_recall": row.a2i_recall,
            "oracle_i2a_recall": oracle["metadata_i2a_recall"],
            "oracle_a2i_recall": oracle["metadata_a2i_recall"],
        }
    return out


@dataclass(frozen=True)
class LevelGrid:
    """Every cell of a store level, and which are valid (row-major over the level's extent)."""

    extent: CellExtent
    valid: np.ndarray  # (rows, cols) bool
    lat: np.ndarray  # (N,) of the valid cells
    lon: np.ndarray  # (N,)

    @property
    def n_cells(self) -> int:
        """Valid cells."""
        return int(self.lat.shape[0])


def level_grid(store: EmbeddingStore, psm_zoom: int) -> LevelGrid:
    """The valid cells of one level and their centres."""
    ext = store.extent(psm_zoom)
    valid = np.asarray(store.array(psm_zoom, "valid")[:], bool)
    if not valid.any():
        raise ValueError(f"level {psm_zoom} of the store has no valid cells")
    cells = ext.cells
    lon, lat = np.meshgrid(cells.lon, cells.lat)
    return LevelGrid(cells, valid, lat[valid], lon[valid])


@torch.no_grad()
def class_query_embeddings(model: PSM) -> list[QueryEmbedding]:
    """Each class's free-form text query, embedded."""
    model.eval()
    g = model.embed_texts(list(CLASS_QUERIES))
    return [
        QueryEmbedding.from_gaussian("text", g.mu, g.logvar, k) for k in range(len(CLASS_NAMES))
    ]


@torch.no_grad()
def clip_means(model: PSM, dataset: DemoWorldDataset, n: int) -> np.ndarray:
    """(n, D) audio means of the first n recordings of a split (embedded 64 at a time)."""
    model.eval()
    n = min(n, len(dataset))
    rate = dataset.spec.sample_rate
    mus = [
        model.embed_audio([dataset.audio(i) for i in range(s, min(s + 64, n))], rate).mu
        for s in range(0, n, 64)
    ]
    return torch.cat(mus).float().cpu().numpy()


def class_audio_means(model: PSM, dataset: DemoWorldDataset, n: int = 1000) -> np.ndarray:
    """(14, D) unit-length mean audio embedding of each class over the first n clips."""
    n = min(n, len(dataset))
    mu = clip_means(model, dataset, n)
    labels = dataset.labels[:n]
    missing = [CLASS_NAMES[k] for k in range(len(CLASS_NAMES)) if not (labels == k).any()]
    if missing:
        raise ValueError(f"no clip of {missing} among the first {n} samples: use more")
    means = np.stack([mu[labels == k].mean(axis=0) for k in range(len(CLASS_NAMES))])
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def ideal_cells(
    place_features: dict[str, np.ndarray],
    lat: np.ndarray,
    class_means: np.ndarray,
    month: int | None = None,
    hour: int | None = None,
) -> np.ndarray:
    """Unit means of ideal cells: the mixture of the classes' mean audio embeddings, weighted by
    the world's true class probabilities at the cell (and month/hour); their variance is 0.

    `place_features` are the geo layers sampled at the cells (`GeoLayers.sample`).
    """
    probs = class_distribution(
        place_features,
        lat,
        None if month is None else np.array(month),
        None if hour is None else np.array(hour),
    )
    mu = probs @ class_means
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    return mu.astype(np.float32)


# (class, month, hour) -> (-CSD, the cells' variance sum) of every valid cell for that class's
# query; called once per class and hour.
CellScorer = Callable[[int, int | None, int | None], tuple[np.ndarray, np.ndarray]]


def model_scorer(
    model: PSM, store: EmbeddingStore, grid: LevelGrid, queries: list[QueryEmbedding]
) -> CellScorer:
    """Scores of the model's fused cells: `score_region` over the whole level, the same path
    the tiles are drawn by (fused blocks are kept per metadata, so each fuses once)."""
    fusion = MemoFusion(model, store)
    level = grid.extent.level

    def score(k: int, month: int | None, hour: int | None) -> tuple[np.ndarray, np.ndarray]:
        ds = score_region(
            model, store, queries[k], Metadata(month=month, hour=hour), level, grid.extent,
            fusion=fusion, variables=("score", "variance"),
        )  # fmt: skip
        return ds["score"].values[grid.valid], ds["variance"].values[grid.valid]

    return score


def ideal_scorer(
    features: dict[str, np.ndarray],
    grid: LevelGrid,
    class_means: np.ndarray,
    queries: list[QueryEmbedding],
) -> CellScorer:
    """Scores of ideal cells (`ideal_cells`) against the same queries."""

    @functools.cache
    def cells(month: int | None, hour: int | None) -> np.ndarray:
        return ideal_cells(features, grid.lat, class_means, month, hour)

    def score(k: int, month: int | None, hour: int | None) -> tuple[np.ndarray, np.ndarray]:
        mu = cells(month, hour)
        zero = np.zeros(mu.shape[0], np.float32)
        return score_cells(mu, zero, queries[k].mu, queries[k].c), zero

    return score


@dataclass
class MapReport:
    """Map correctness over one store level."""

    psm_zoom: int
    n_cells: int
    auc: dict[str, float]  # per class, NaN where the label is constant over the region
    mean_auc: float
    hour_wins: dict[str, float]  # per time-dependent class: share of cells right hour > wrong
    mean_hour_wins: float
    # The same test on the distance between means alone (the CSD without the cells' variance):
    # where it differs from hour_wins, the variance term decided.
    hour_wins_mean_only: dict[str, float]
    # The same tests on ideal cells (`ideal_cells`), when class audio means were given: what
    # unit-length means can reach at best with these queries.
    ideal_auc: dict[str, float] | None = None
    ideal_mean_auc: float | None = None
    ideal_hour_wins: dict[str, float] | None = None

    def to_json(self) -> dict[str, object]:
        """Plain-data form for evaluation.json."""
        return asdict(self)


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _scores(
    scorer: CellScorer,
    k: int,
    month: int | None,
    hour: int | None,
    where: np.ndarray | None = None,
    variance: bool = True,
) -> np.ndarray:
    """Class k's query scores of the cells (those in `where`) under one month/hour; without
    `variance`, the distance between means alone (the cells' variance term taken back out)."""
    score, var = scorer(k, month, hour)
    if not variance:
        score = score + var
    return score if where is None else score[where]


def _aucs(scorer: CellScorer, likely: dict[int, np.ndarray]) -> dict[str, float]:
    """ROC-AUC of each class query's year- and day-average scores against "class likely here"."""
    return {
        name: roc_auc(_scores(scorer, k, None, None), likely[k])
        for k, name in enumerate(CLASS_NAMES)
    }


def _hour_wins(
    scorer: CellScorer, likely: dict[int, np.ndarray], variance: bool = True
) -> dict[str, float]:
    """Per time-dependent class: share of its likely cells where its right hours score higher."""
    wins: dict[str, float] = {}
    for k, (right, wrong) in TIME_DEPENDENT.items():
        where = likely[k]
        if not where.any():
            continue
        at = [
            np.mean([_scores(scorer, k, CONTRAST_MONTH, h, where, variance) for h in hours], axis=0)
            for hours in (right, wrong)
        ]
        wins[CLASS_NAMES[k]] = float(np.mean(at[0] > at[1]))
    return wins


def map_report(
    model: PSM,
    store: EmbeddingStore,
    layers: GeoLayers,
    psm_zoom: int = 1,
    class_means: np.ndarray | None = None,
) -> MapReport:
    """ROC-AUC of each class query's cell scores against "class likely here", and hour contrasts.

    AUC uses the cells fused with their location and no month or hour (the year- and day-average
    question the label answers). Hour contrasts compare, per cell where the class is likely, the
    mean score over the class's likely hours with the mean over its unlikely hours in June.
    With `class_means` (see `class_audio_means`) the same tests run on ideal cells too.
    """
    grid = level_grid(store, psm_zoom)
    queries = class_query_embeddings(model)
    likely = {k: class_likely_here(layers, grid.lat, grid.lon, k) for k in range(len(CLASS_NAMES))}
    scorer = model_scorer(model, store, grid, queries)
    auc = _aucs(scorer, likely)
    wins = _hour_wins(scorer, likely)
    report = MapReport(
        psm_zoom,
        grid.n_cells,
        auc,
        _mean(auc.values()),
        wins,
        _mean(wins.values()),
        _hour_wins(scorer, likely, variance=False),
    )
    if class_means is not None:
        ideal = ideal_scorer(layers.sample(grid.lat, grid.lon), grid, class_means, queries)
        report.ideal_auc = _aucs(ideal, likely)
        report.ideal_hour_wins = _hour_wins(ideal, likely)
        report.ideal_mean_auc = _mean(report.ideal_auc.values())
    return report
