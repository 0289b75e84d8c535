"""Does uncertainty behave as PSM reports? Measured on the demo world, on the scoring path.

PSM's paper finds uncertainty (||sigma||_1 of the image embedding) lower at zoom level 1 than at
zoom level 5 (a larger footprint holds more kinds of soundscape) and higher where a footprint
shows more concepts. Two measures, at the same land points at every level (`score_region` over
`Points`, as POST /similarity answers):

* the paired share of points whose uncertainty at PSM zoom 5 exceeds that at zoom 1;
* Spearman's correlation, per level, between a cell's uncertainty and the entropy of the world's
  true class distribution averaged over the cell's footprint (a 7 x 7 grid of the world's
  distribution at that footprint's size).

Both without metadata (the paper's maps) and with full metadata. docs/demo-model.md, "Uncertainty",
has the figures and the diagnosis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from embeddings_store.demo.geo import GeoLayers
from embeddings_store.demo.soundscape import class_distribution
from embeddings_store.scoring import Points, score_region
from embeddings_store.store import EmbeddingStore
from model.metadata import Metadata
from model.psm import PSM

# The full metadata of the "with metadata" figures: a June midday recording, its sources named.
FULL_METADATA = Metadata(month=6, hour=12, asource="aporee", tsource="qwen")
FOOTPRINT_GRID = 7
NO_METADATA = Metadata()


@dataclass
class UncertaintyReport:
    """Uncertainty against footprint size and diversity, with and without metadata."""

    points: int
    mean: dict[str, dict[int, float]]  # metadata -> PSM zoom -> mean ||sigma||_1
    share_5_over_1: dict[str, float]  # metadata -> paired share
    spearman_entropy: dict[str, dict[int, float]]  # metadata -> PSM zoom -> rho
    mean_entropy: dict[int, float]  # PSM zoom -> mean footprint entropy (nats, no metadata)

    def to_json(self) -> dict[str, object]:
        """Plain data."""
        return asdict(self)


def land_points(
    layers: GeoLayers, bbox: tuple[float, float, float, float], n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """n random land points (the world's land mask) inside (west, south, east, north)."""
    rng = np.random.default_rng(seed)
    w, s, e, north = bbox
    lat, lon = rng.uniform(s, north, 20 * n), rng.uniform(w, e, 20 * n)
    land = np.asarray(layers.sample(lat, lon)["land"], bool)
    if land.sum() < n:
        raise ValueError(f"only {int(land.sum())} of {20 * n} random points are on land")
    return lat[land][:n], lon[land][:n]


def footprint_entropy(
    layers: GeoLayers,
    lat: np.ndarray,
    lon: np.ndarray,
    footprint_m: float,
    metadata: Metadata = NO_METADATA,
) -> np.ndarray:
    """Entropy (nats) of the world's class distribution averaged over each point's footprint."""
    k = FOOTPRINT_GRID
    offsets = (np.arange(k) + 0.5) / k - 0.5  # cell centres of a k x k grid on the square
    dy, dx = (a.reshape(1, -1) * footprint_m for a in np.meshgrid(offsets, offsets, indexing="ij"))
    la = lat[:, None] + dy / 111_320.0
    lo = lon[:, None] + dx / (111_320.0 * np.cos(np.deg2rad(lat[:, None])))
    month = None if metadata.month is None else np.array(metadata.month)
    hour = None if metadata.hour is None else np.array(metadata.hour)
    p = class_distribution(layers.sample(la.reshape(-1), lo.reshape(-1)), la.reshape(-1),
                           month, hour)  # fmt: skip
    p = p.reshape(lat.size, k * k, -1).mean(axis=1)
    return -(p * np.log(p)).sum(axis=1)


def uncertainty_report(
    model: PSM,
    store: EmbeddingStore,
    layers: GeoLayers,
    bbox: tuple[float, float, float, float],
    n: int = 400,
) -> UncertaintyReport:
    """The module's measures at n random land points of the store's levels."""
    lat, lon = land_points(layers, bbox, n)
    base = model.config.image.tile_size * model.config.image.native_gsd
    zooms = sorted(lv.psm_zoom for lv in store.levels)
    mean, share, rho = {}, {}, {}
    entropy: dict[int, float] = {}
    for name, meta in (("none", Metadata()), ("full", FULL_METADATA)):
        unc = {
            lv.psm_zoom: score_region(model, store, None, meta, lv, Points.of(lat, lon),
                                      variables=("uncertainty",))["uncertainty"].values
            for lv in store.levels
        }  # fmt: skip
        mean[name] = {z: float(np.nanmean(unc[z])) for z in zooms}
        lo, hi = zooms[0], zooms[-1]
        both = np.isfinite(unc[lo]) & np.isfinite(unc[hi])
        share[name] = float(np.mean(unc[hi][both] > unc[lo][both]))
        rho[name] = {}
        for z in zooms:
            ent = footprint_entropy(layers, lat, lon, z * base, meta)
            ok = np.isfinite(unc[z])
            rho[name][z] = float(spearmanr(unc[z][ok], ent[ok]).correlation)
            if name == "none":
                entropy[z] = float(ent.mean())
    return UncertaintyReport(int(lat.size), mean, share, rho, entropy)
