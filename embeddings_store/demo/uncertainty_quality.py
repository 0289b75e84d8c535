"""Does uncertainty behave as PSM reports? Measured on the demo world, on the scoring path.

PSM's paper finds uncertainty (||sigma||_1 of the image embedding) lower at zoom level 1 than at
zoom level 5 (a larger footprint holds more kinds of soundscape) and higher where a footprint
shows more concepts. Two measures, at the same land points at every level (`score_region` over
`Points`, as POST /similarity answers):

* the paired share of points whose uncertainty at PSM zoom 5 exceeds that at zoom 1;
* Spearman's correlation, per level, between a cell's uncertainty and the entropy of the world's
  true class distribution averaged over the cell's footprint (a 7 x 7 grid of the world's
  distribution at that footprint's size).

Both without metadata (the paper's maps) and with full metadata. With recordings' audio
embeddings given, a third measure tests what ||sigma||_1 does track under PCME++'s loss: Spearman's
correlation with the distance from the cell's mean to its `NEAREST_CLIPS` nearest recordings.
docs/demo-model.md, "Uncertainty", has the figures and the diagnosis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr
from scipy.special import expit
from scipy.stats import spearmanr

from embeddings_store.demo.geo import GeoLayers
from embeddings_store.demo.soundscape import class_distribution
from embeddings_store.fusion import CellFusion
from embeddings_store.grid import Level
from embeddings_store.scoring import BBox, Points, fused_at_points, score_region
from embeddings_store.store import EmbeddingStore
from model.data import SoundscapeDataset
from model.metadata import Metadata
from model.psm import PSM
from model.scoring import variance_sum

# The full metadata of the "with metadata" figures: a June midday recording, its sources named.
FULL_METADATA = Metadata(month=6, hour=12, asource="aporee", tsource="qwen")
FOOTPRINT_GRID = 7
NEAREST_CLIPS = 50
CLOSENESS_CLIPS = 1500  # recordings of the test split the closeness measure compares with
NO_METADATA = Metadata()


@dataclass
class UncertaintyReport:
    """Uncertainty against footprint size and diversity, with and without metadata."""

    points: int
    mean: dict[str, dict[int, float]]  # metadata -> PSM zoom -> mean ||sigma||_1
    share_5_over_1: dict[str, float]  # metadata -> paired share
    spearman_entropy: dict[str, dict[int, float]]  # metadata -> PSM zoom -> rho
    mean_entropy: dict[int, float]  # PSM zoom -> mean footprint entropy (nats, no metadata)
    # metadata -> PSM zoom -> Spearman(||sigma||_1, mean distance to the nearest clips); and the
    # mean of that distance (empty without clips)
    spearman_closeness: dict[str, dict[int, float]]
    mean_clip_distance: dict[str, dict[int, float]]

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


def clip_distance(
    model: PSM,
    store: EmbeddingStore,
    level: Level,
    lat: np.ndarray,
    lon: np.ndarray,
    metadata: Metadata,
    clips: np.ndarray,
    k: int = NEAREST_CLIPS,
) -> np.ndarray:
    """Mean squared distance ||mu - mu_clip||^2 from the fused mean of the cell under each
    point to its k nearest clip means (rows of `clips`, unit length); NaN where no cell."""
    fused = fused_at_points(CellFusion(model, store), metadata, level, Points.of(lat, lon))
    out = np.full(lat.size, np.nan)
    mu = fused.aug[fused.valid, :-1].astype(np.float64)
    dist = 2.0 - 2.0 * mu @ clips.T.astype(np.float64)
    out[fused.valid] = np.sort(dist, axis=1)[:, :k].mean(axis=1)
    return out


def loss_optimal_variance(
    image_mu: np.ndarray,
    audio_mu: np.ndarray,
    audio_var: np.ndarray,
    a: float,
    b: float,
    batch: int = 128,
    upper: float = 20.0,
) -> np.ndarray:
    """The image variance c = ||sigma^2||_1 that minimises each image's row of PCME++'s matching
    loss, given the means: image i's positive is recording i, the others its negatives (their
    loss scaled to a batch of `batch`), logits b - a (||mu_i - mu_j||^2 + c + audio_var_j).

    The row loss is convex in c, so its derivative (1 - p_ii) - w * sum_j p_ij, w = (batch - 1)
    / (N - 1), is increasing and its root is found by bisection in [0, upper] (0 where the
    derivative is already positive there: the loss would want a negative variance).
    """
    mu_i = np.asarray(image_mu, np.float64)
    mu_a = np.asarray(audio_mu, np.float64)
    n = mu_i.shape[0]
    if mu_a.shape[0] != n or np.shape(audio_var) != (n,) or n < 2:
        raise ValueError("need N >= 2 images paired one to one with N recordings")
    dist = (mu_i**2).sum(1)[:, None] + (mu_a**2).sum(1)[None, :] - 2.0 * mu_i @ mu_a.T
    base = dist + np.asarray(audio_var, np.float64)[None, :]
    w = (batch - 1) / (n - 1)
    negative = ~np.eye(n, dtype=bool)

    def slope(c: np.ndarray) -> np.ndarray:
        p = expit(b - a * (base + c[:, None]))
        return (1.0 - np.diagonal(p)) - w * np.where(negative, p, 0.0).sum(axis=1)

    lo, hi = np.zeros(n), np.full(n, float(upper))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        up = slope(mid) > 0.0  # the loss already rises: the optimum lies below
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    return 0.5 * (lo + hi)


@dataclass
class OptimalVarianceReport:
    """Learned image variance against the loss-optimal one, on held-out pairs, no metadata."""

    pairs: int
    mean_optimal: dict[int, float]  # PSM zoom -> mean loss-optimal c
    mean_learned: dict[int, float]  # PSM zoom -> mean learned c = ||sigma^2||_1
    spearman: dict[int, float]  # PSM zoom -> Spearman(learned c, optimal c)
    share_5_over_1_optimal: float  # paired share where the optimum is larger at zoom 5
    share_5_over_1_learned: float

    def to_json(self) -> dict[str, object]:
        """Plain data."""
        return asdict(self)


def optimal_variance_report(
    model: PSM, split: SoundscapeDataset, n: int = 1200, zooms: tuple[int, ...] = (1, 5)
) -> OptimalVarianceReport:
    """Does the image variance do what the matching loss asks, given the learned means?
    The first n pairs of `split` at each zoom, without metadata (the learned a, b)."""
    from model.evaluate import embed_split

    n = min(n, len(split))
    a, b = model.match_parameters()
    optimal, learned = {}, {}
    for z in zooms:
        image, audio, _ = embed_split(model, split, z, n, 100, with_metadata=False)
        audio_var = variance_sum(audio.logvar.double()).cpu().numpy()
        optimal[z] = loss_optimal_variance(
            image.mu.cpu().numpy(), audio.mu.cpu().numpy(), audio_var, a, b
        )
        learned[z] = variance_sum(image.logvar.double()).cpu().numpy()
    lo, hi = zooms[0], zooms[-1]
    return OptimalVarianceReport(
        n,
        {z: float(optimal[z].mean()) for z in zooms},
        {z: float(learned[z].mean()) for z in zooms},
        {z: float(spearmanr(learned[z], optimal[z]).correlation) for z in zooms},
        float(np.mean(optimal[hi] > optimal[lo])),
        float(np.mean(learned[hi] > learned[lo])),
    )


def uncertainty_report(
    model: PSM,
    store: EmbeddingStore,
    layers: GeoLayers,
    bbox: tuple[float, float, float, float],
    n: int = 400,
    clips: np.ndarray | None = None,
) -> UncertaintyReport:
    """The module's measures at n random land points of the store's levels; `clips`: (N, D)
    recordings' audio means for the closeness measure (skipped without)."""
    lat, lon = land_points(layers, bbox, n)
    base = model.config.image.tile_size * model.config.image.native_gsd
    zooms = sorted(lv.psm_zoom for lv in store.levels)
    mean, share, rho = {}, {}, {}
    closeness: dict[str, dict[int, float]] = {}
    distance: dict[str, dict[int, float]] = {}
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
        if clips is not None:
            closeness[name], distance[name] = {}, {}
            for lv in store.levels:
                dist = clip_distance(model, store, lv, lat, lon, meta, clips)
                ok = np.isfinite(dist) & np.isfinite(unc[lv.psm_zoom])
                corr = spearmanr(unc[lv.psm_zoom][ok], dist[ok]).correlation
                closeness[name][lv.psm_zoom] = float(corr)
                distance[name][lv.psm_zoom] = float(dist[ok].mean())
    return UncertaintyReport(int(lat.size), mean, share, rho, entropy, closeness, distance)


def uncertainty_maps(
    model: PSM,
    store: EmbeddingStore,
    layers: GeoLayers,
    bbox: tuple[float, float, float, float],
    metadata: Metadata = NO_METADATA,
) -> dict[int, xr.DataArray]:
    """||sigma||_1 over `bbox` at every level of the store (PSM zoom -> map), NaN off land:
    `score_region` over the box, as the uncertainty tiles and GeoTIFF exports draw it."""
    maps = {}
    for lv in store.levels:
        ds = score_region(model, store, None, metadata, lv, BBox(*bbox), variables=("uncertainty",))
        lat2, lon2 = np.meshgrid(ds["lat"].values, ds["lon"].values, indexing="ij")
        land = np.asarray(layers.sample(lat2.reshape(-1), lon2.reshape(-1))["land"], bool)
        maps[lv.psm_zoom] = ds["uncertainty"].where(land.reshape(lat2.shape))
    return maps
