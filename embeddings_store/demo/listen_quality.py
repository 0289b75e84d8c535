"""Are the listening answers right? /listen's labels, /profile's peak hours and compare maps,
measured against the demo world's truth on the code paths the server answers with.

* Labels: at each land cell and (month, hour) of a grid of times, is the world's most probable
  class among the top 3 labels that `SoundGallery.rank_labels` would list? Reported beside the
  same question asked of a metadata-blind model (cells fused with no month or hour) and of
  ideal cells (the world's true class mixture of the model's class audio means, see
  `quality.ideal_cells`): what the label queries allow at best.
* Profiles: for each time-dependent class, at cells where it is likely, does the peak /profile
  names (`sounds.profile.profile_values` over `timesweep.time_profile`'s 24 hours, read from
  the class query's share among the gallery's labels) fall within the class's right hours
  (`TIME_DEPENDENT`)?
  Reported beside the same question asked of the world's own hour profile (the truth): the
  right hours are hours when a class is likely, not always its peak (crowds peak at 21 h).
* Compare: songbirds at dawn minus at midnight (the /compare difference, two `score_region`
  maps), positive at cells where songbirds are likely?
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from embeddings_store.demo import CLASS_NAMES
from embeddings_store.demo.geo import GeoLayers
from embeddings_store.demo.quality import (
    CONTRAST_MONTH,
    LevelGrid,
    class_query_embeddings,
    ideal_cells,
    level_grid,
)
from embeddings_store.demo.sounds import LABELS
from embeddings_store.demo.soundscape import TIME_DEPENDENT, class_distribution, class_likely_here
from embeddings_store.fusion import MemoFusion
from embeddings_store.grid import CellExtent
from embeddings_store.scoring import score_region
from embeddings_store.sounds.gallery import SoundGallery
from embeddings_store.sounds.profile import profile_values
from embeddings_store.store import EmbeddingStore
from embeddings_store.timesweep import HOURS, TimeProfile, time_profile
from model.metadata import Metadata
from model.psm import PSM
from model.scoring import augment_cells

# The times /listen's labels are checked at: every season, night, morning, midday, evening.
LISTEN_MONTHS = (1, 4, 7, 10)
LISTEN_HOURS = (0, 6, 12, 18)
TOP_LABELS = 3
# Dawn and midnight of the compare check: songbirds' first right hour and a wrong one.
DAWN, MIDNIGHT = TIME_DEPENDENT[CLASS_NAMES.index("songbirds")][0][0], 0


@dataclass
class ListenReport:
    """Listening correctness over one store level."""

    psm_zoom: int
    land_cells: int
    label_top3: float  # share of (land cell, time) pairs with the true top class in the top 3
    label_top3_blind: float  # the same, cells fused without month and hour
    label_top3_ideal: float | None  # the same, ideal cells (when class audio means are given)
    label_top1: float
    profile_peak: dict[str, float]  # per time-dependent class: share of its likely cells
    profile_peak_truth: dict[str, float]  # the same for the world's own June hour profile
    profile_cells: dict[str, int]
    compare_songbirds: float  # share of songbird cells where dawn - midnight > 0
    compare_cells: int

    def to_json(self) -> dict[str, object]:
        """Plain-data form for evaluation.json."""
        return asdict(self)


def label_hits(gallery: SoundGallery, cells_aug: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, labels) ranks -> whether each cell's true class index is in its top 3 labels."""
    scores = gallery.label_scores(cells_aug)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_LABELS]
    return (top == truth[:, None]).any(axis=1)


def listen_report(
    model: PSM,
    store: EmbeddingStore,
    layers: GeoLayers,
    gallery: SoundGallery,
    psm_zoom: int = 1,
    class_means: np.ndarray | None = None,
    max_profile_cells: int = 200,
) -> ListenReport:
    """The three listening measures on a store level of the demo world (see the module doc)."""
    if gallery.labels != list(LABELS):
        raise ValueError("the gallery's labels are not the demo's 14 class labels")
    grid = level_grid(store, psm_zoom)
    feats = layers.sample(grid.lat, grid.lon)
    land = np.asarray(feats["land"], bool)
    fusion = MemoFusion(model, store)
    level = grid.extent.level

    def fused_aug(metadata: Metadata) -> np.ndarray:
        block = fusion.block(grid.extent, metadata)
        return block.aug[grid.valid.reshape(-1)][land]

    hits, blind, ideal, top1 = [], [], [], []
    blind_aug = fused_aug(Metadata())
    land_feats = {k: v[land] for k, v in feats.items()}
    for month in LISTEN_MONTHS:
        for hour in LISTEN_HOURS:
            probs = class_distribution(land_feats, grid.lat[land], np.array(month),
                                       np.array(hour))  # fmt: skip
            truth = probs.argmax(axis=1)
            aug = fused_aug(Metadata(month=month, hour=hour))
            hits.append(label_hits(gallery, aug, truth))
            top1.append(gallery.label_scores(aug).argmax(axis=1) == truth)
            blind.append(label_hits(gallery, blind_aug, truth))
            if class_means is not None:
                mu = ideal_cells(land_feats, grid.lat[land], class_means, month, hour)
                ideal.append(label_hits(gallery, augment_cells(mu, np.zeros(len(mu))), truth))
    peaks, truth_peaks, counts = _profile_peaks(model, store, feats, layers, grid, gallery,
                                                max_profile_cells)  # fmt: skip
    songbirds = CLASS_NAMES.index("songbirds")
    likely = class_likely_here(layers, grid.lat, grid.lon, songbirds)
    query = class_query_embeddings(model)[songbirds]
    maps = [
        score_region(model, store, query, Metadata(month=CONTRAST_MONTH, hour=h), level,
                     grid.extent, fusion=fusion, variables=("score",))["score"].values
        for h in (DAWN, MIDNIGHT)
    ]  # fmt: skip
    diff = (maps[0] - maps[1])[grid.valid][likely]
    return ListenReport(
        psm_zoom=psm_zoom,
        land_cells=int(land.sum()),
        label_top3=float(np.mean(np.concatenate(hits))),
        label_top3_blind=float(np.mean(np.concatenate(blind))),
        label_top3_ideal=float(np.mean(np.concatenate(ideal))) if ideal else None,
        label_top1=float(np.mean(np.concatenate(top1))),
        profile_peak=peaks,
        profile_peak_truth=truth_peaks,
        profile_cells=counts,
        compare_songbirds=float(np.mean(diff > 0)) if diff.size else float("nan"),
        compare_cells=int(diff.size),
    )


def _profile_peaks(
    model: PSM,
    store: EmbeddingStore,
    feats: dict[str, np.ndarray],
    layers: GeoLayers,
    grid: LevelGrid,
    gallery: SoundGallery,
    max_cells: int,
) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Per time-dependent class: share of (up to `max_cells`, evenly spread) likely cells whose
    June profile peaks at one of the class's right hours, for the model (the peak /profile
    names, `profile_values` with the gallery's labels) and for the truth."""
    queries = class_query_embeddings(model)
    ab = model.match_parameters("text")
    level = grid.extent.level
    metadata = Metadata(month=CONTRAST_MONTH)
    profiles: dict[int, TimeProfile | None] = {}
    peaks, truth_peaks, counts = {}, {}, {}
    for k, (right, _) in TIME_DEPENDENT.items():
        where = np.flatnonzero(class_likely_here(layers, grid.lat, grid.lon, k))
        if where.size == 0:
            continue
        picks = where[np.unique(np.linspace(0, where.size - 1, min(max_cells, where.size))
                                .round().astype(int))]  # fmt: skip
        wins, truth_wins = [], []
        for i in picks.tolist():
            at = {name: np.repeat(v[i : i + 1], HOURS.size) for name, v in feats.items()}
            june = np.full(HOURS.size, CONTRAST_MONTH)
            truth = class_distribution(at, np.repeat(grid.lat[i], HOURS.size), june, HOURS)[:, k]
            truth_wins.append(int(HOURS[int(np.argmax(truth))]) in right)
            if i not in profiles:
                cell = CellExtent.cell_at(level, float(grid.lat[i]), float(grid.lon[i]))
                assert cell is not None
                profiles[i] = time_profile(model, store, cell, metadata)
            prof = profiles[i]
            assert prof is not None, "a valid cell of the grid has no profile"
            wins.append(profile_values(prof, queries[k], ab, gallery, ab).peak_hour in right)
        peaks[CLASS_NAMES[k]] = float(np.mean(wins))
        truth_peaks[CLASS_NAMES[k]] = float(np.mean(truth_wins))
        counts[CLASS_NAMES[k]] = len(wins)
    return peaks, truth_peaks, counts
