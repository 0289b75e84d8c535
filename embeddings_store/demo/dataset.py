"""The demo world as a `SoundscapeDataset`: GeoSound-like samples with known ground truth.

Images are read through the same imagery reader and footprint framing as the precompute job
(the demo imagery GeoTIFF, `footprint_around`), so the demo model sees at training time exactly what
it sees in the store. That is why this dataset lives here and not in `model/`: the imagery
reader belongs to this layer.

Footprints for every sample and PSM zoom are rendered once and cached as a .npy file keyed by
everything that affects them; audio and captions are synthesised on demand from seeded RNGs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import cached_property, partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from embeddings_store.demo.audio import synthesize, synthesize_mixture
from embeddings_store.demo.captions import caption
from embeddings_store.demo.geo import GeoLayers
from embeddings_store.demo.soundscape import class_distribution, sample_world, split_of
from embeddings_store.demo.spec import DemoWorldSpec
from embeddings_store.grid import footprint_around, lonlat_to_mercator
from model.data import SPLITS, Sample
from model.transforms import PSM_ZOOM_LEVELS

RENDER_CHUNK = 250  # points per task: big enough to amortise opening the imagery
# A "sampled" mixture's other sounds sit this many dB (uniform) below the main one, on top of
# their probability ratio: loud enough to move a clip's embedding toward its place's mix.
SAMPLED_SECONDARY_DB = (-10.0, -2.0)
SAMPLED_MAX_WEIGHT = 0.999  # the main class stays first in synthesize_mixture's order
RENDER_VERSION = 2  # bump when the rendering below changes, so old caches are not reused


class DemoWorldDataset:
    """One split of the demo world; `sample(i, zoom)` is deterministic in (spec, split, i)."""

    def __init__(
        self,
        split: str,
        spec: DemoWorldSpec,
        layers: GeoLayers,
        imagery: str | Path,
        read_px: int,
        base_footprint_m: float,
        cache_dir: str | Path | None = None,
        progress: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split, self.spec, self.layers = split, spec, layers
        self.imagery_path = Path(imagery)
        self.read_px, self.base_footprint_m = read_px, float(base_footprint_m)
        world = sample_world(
            layers, spec.n_samples, spec.seed, spec.bbox, (spec.land_floor, spec.town_weight)
        )
        keep = np.flatnonzero(split_of(world["lat"], world["lon"], spec.seed) == split)
        self.world = {k: v[keep] for k, v in world.items()}
        self.world_index = keep  # position in the full draw: seeds each sample's audio/caption
        self.image_offsets = image_offsets(spec)[keep]
        self.place_features = layers.sample(self.world["lat"], self.world["lon"])
        feats = self.place_features
        # The true class distribution at each sample's place and time (for mixtures and the
        # oracle); unknown hours are averaged over, as the sample's metadata lacks them.
        self.probs = class_distribution(
            feats, self.world["lat"], self.world["month"], self.world["hour"]
        )
        self.images = self._rendered(cache_dir, progress)

    def __len__(self) -> int:
        return int(self.world_index.size)

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the geo layers (samples do not need them) and without copying a
        cached footprint file (it is memory-mapped again): what worker processes receive."""
        state = dict(self.__dict__)
        state.pop("layers")
        images = state["images"]
        if isinstance(images, np.memmap) and images.filename:
            state["images"] = Path(images.filename)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Inverse of `__getstate__`; `layers` is then unavailable."""
        images = state["images"]
        if isinstance(images, Path):
            state["images"] = np.load(images, mmap_mode="r")
        self.__dict__.update(state)
        self.layers = None

    @cached_property
    def place_probs(self) -> np.ndarray:
        """(N, 14) class distribution at each sample's place, averaged over months and hours."""
        return class_distribution(self.place_features, self.world["lat"], None, None)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every sample."""
        return self.world["class_index"]

    def _cache_file(self, cache_dir: Path) -> Path:
        stat = self.imagery_path.stat()
        key = {
            "spec": self.spec.key(),
            "split": self.split,
            "px": self.read_px,
            "footprint": self.base_footprint_m,
            # Size and modification time identify the imagery file (it is rewritten, not edited).
            "imagery": [stat.st_size, stat.st_mtime_ns],
            "version": RENDER_VERSION,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return cache_dir / f"footprints-{self.split}-{digest}.npy"

    def _rendered(self, cache_dir: str | Path | None, progress: bool) -> np.ndarray:
        """(N, zooms, px, px, 3) uint8 footprints, from the cache file or rendered now."""
        path = self._cache_file(Path(cache_dir)) if cache_dir is not None else None
        if path is not None and path.exists():
            arr = np.load(path, mmap_mode="r")
            if arr.shape[:2] == (len(self), len(PSM_ZOOM_LEVELS)):
                return arr
        arr = render_footprints(
            self.imagery_path,
            self.world["lat"],
            self.world["lon"],
            self.read_px,
            self.base_footprint_m,
            offsets=self.image_offsets,
            progress=progress,
            label=f"render {self.split} footprints",
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, path)
            return np.load(path, mmap_mode="r")  # like a cache hit: not held in memory
        return arr

    def image(self, index: int, zoom: int) -> np.ndarray:
        """Footprint of sample `index` at PSM zoom `zoom` (HWC uint8)."""
        if zoom not in PSM_ZOOM_LEVELS:
            raise ValueError(f"PSM zoom level must be one of {PSM_ZOOM_LEVELS}, got {zoom}")
        return np.asarray(self.images[index, PSM_ZOOM_LEVELS.index(zoom)])

    def audio(self, index: int) -> np.ndarray:
        """The clip of sample `index`: its class, sometimes mixed with other sounds of the place."""
        w = self.world
        rng = np.random.default_rng([self.spec.seed, int(self.world_index[index]), 1])
        cls = int(w["class_index"][index])
        sec, sr = self.spec.clip_seconds, self.spec.sample_rate
        if rng.random() >= self.spec.mixture_rate:
            return synthesize(cls, rng, sec, sr)
        if self.spec.mixture_secondaries == "sampled":
            weights = sampled_mixture_weights(self.probs[index], cls, rng)
            return synthesize_mixture(
                weights, rng, sec, sr, max_sources=3, secondary_db=SAMPLED_SECONDARY_DB
            )
        weights = 0.3 * self.probs[index] / self.probs[index].max()
        weights[cls] = 1.0
        return synthesize_mixture(weights, rng, sec, sr, max_sources=3)

    def caption(self, index: int) -> str:
        """Caption of sample `index` in the style of its caption source."""
        w = self.world
        rng = np.random.default_rng([self.spec.seed, int(self.world_index[index]), 2])
        month = int(w["month"][index])
        hour = int(w["hour"][index])
        return caption(
            int(w["class_index"][index]),
            rng,
            int(w["caption_source"][index]),
            month if month >= 1 else None,
            hour if hour >= 0 else None,
        )

    def sample(self, index: int, zoom: int) -> Sample:
        """Sample `index` with its footprint at PSM zoom `zoom`."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        w = self.world
        hour = int(w["hour"][index])
        return Sample(
            image=self.image(index, zoom),
            audio=self.audio(index),
            sample_rate=self.spec.sample_rate,
            caption=self.caption(index),
            lat=float(w["lat"][index]),
            lon=float(w["lon"][index]),
            month=int(w["month"][index]),
            hour=hour if hour >= 0 else None,
            asource=int(w["audio_source"][index]),
            tsource=int(w["caption_source"][index]),
        )


def sampled_mixture_weights(
    probs: np.ndarray, main: int, rng: np.random.Generator, max_others: int = 2
) -> np.ndarray:
    """Mixture weights of a "sampled" clip: the main class at 1 and one to `max_others` other
    classes drawn without replacement in proportion to `probs`, each weighted
    sqrt(p_other / p_main) (below 1, so the main class stays the loudest)."""
    p = np.asarray(probs, dtype=np.float64)
    others = p.copy()
    others[main] = 0.0
    n = min(int(rng.integers(1, max_others + 1)), int(np.count_nonzero(others)))
    weights = np.zeros_like(p)
    weights[main] = 1.0
    if n == 0:
        return weights
    picks = rng.choice(p.size, size=n, replace=False, p=others / others.sum())
    weights[picks] = np.minimum(np.sqrt(p[picks] / max(p[main], 1e-12)), SAMPLED_MAX_WEIGHT)
    return weights


def image_offsets(spec: DemoWorldSpec, zooms: tuple[int, ...] = PSM_ZOOM_LEVELS) -> np.ndarray:
    """(n_samples, len(zooms), 2) offset of each recording's image centre from the recording,
    as (east, north) shares of the footprint's side at that zoom, uniform within
    +-footprint_jitter / 2 and drawn independently per zoom (seeded by the world's seed)."""
    rng = np.random.default_rng([spec.seed, 3])
    u = rng.random((spec.n_samples, len(zooms), 2)) - 0.5
    return u * spec.footprint_jitter


def render_footprints(
    imagery_path: str | Path,
    lat: np.ndarray,
    lon: np.ndarray,
    read_px: int,
    base_footprint_m: float,
    zooms: tuple[int, ...] = PSM_ZOOM_LEVELS,
    workers: int | None = None,
    progress: bool = False,
    label: str = "render footprints",
    offsets: np.ndarray | None = None,
) -> np.ndarray:
    """(N, len(zooms), px, px, 3) footprints around each point, read like precompute does:
    centred on it, or shifted by `offsets` (N, len(zooms), 2: east, north shares of the side).

    Chunks are rendered in `workers` processes (default: one per CPU): each read is a short
    reprojection whose Python bookkeeping holds the GIL, so threads do not scale.
    """
    x, y = lonlat_to_mercator(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    if offsets is None:
        offsets = np.zeros((x.size, len(zooms), 2))
    if offsets.shape != (x.size, len(zooms), 2):
        raise ValueError(f"offsets must have shape {(x.size, len(zooms), 2)}, got {offsets.shape}")
    out = np.zeros((x.size, len(zooms), read_px, read_px, 3), np.uint8)
    n_workers = max(1, min(workers or os.cpu_count() or 1, x.size // RENDER_CHUNK + 1))
    chunks = [slice(i, min(i + RENDER_CHUNK, x.size)) for i in range(0, x.size, RENDER_CHUNK)]
    job = partial(
        _render_chunk, str(imagery_path), read_px=read_px, base_m=base_footprint_m, zooms=zooms
    )
    bar = tqdm(total=x.size, disable=None if progress else True, desc=label)
    if n_workers == 1:
        for sl in chunks:
            out[sl] = job(x[sl], y[sl], offsets[sl])
            bar.update(sl.stop - sl.start)
    else:
        # spawn, not fork: the caller may already run torch/OpenMP threads, which fork breaks.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
            futures = {pool.submit(job, x[sl], y[sl], offsets[sl]): sl for sl in chunks}
            for fut in as_completed(futures):
                sl = futures[fut]
                out[sl] = fut.result()
                bar.update(sl.stop - sl.start)
    bar.close()
    return out


def _render_chunk(
    imagery_path: str,
    x: np.ndarray,
    y: np.ndarray,
    offsets: np.ndarray,
    read_px: int,
    base_m: float,
    zooms: tuple[int, ...],
) -> np.ndarray:
    """Footprints of one chunk of points (runs in a worker process)."""
    from embeddings_store.imagery import open_imagery

    out = np.zeros((x.size, len(zooms), read_px, read_px, 3), np.uint8)
    with open_imagery(imagery_path) as imagery:
        for i in range(x.size):
            for k, z in enumerate(zooms):
                x0, y0, x1, y1 = footprint_around(float(x[i]), float(y[i]), z, base_m)
                dx, dy = offsets[i, k] * (x1 - x0)  # a square: one side for both axes
                bounds = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
                out[i, k] = imagery.read(bounds, read_px)[0]
    return out
