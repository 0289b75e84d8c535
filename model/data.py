"""The dataset protocol the trainer and evaluator read, batching, and a synthetic dataset.

A dataset yields `Sample`s: the satellite footprint image at a requested PSM zoom level, an
audio clip, a caption and metadata — the fields of a GeoSound pair. The demo world (and any real
dataset) implements the same two methods and registers itself in `DATASETS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from model.metadata import MetadataBatch, make_metadata
from model.transforms import TRAIN_AUGMENTATIONS, eval_transform, to_tensor

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One (image, audio, caption, metadata) tuple."""

    image: np.ndarray  # HWC uint8: the imagery footprint at the requested zoom
    audio: np.ndarray  # mono or (channels, samples) float waveform
    sample_rate: int
    caption: str
    lat: float
    lon: float
    month: int | None  # 1..12, None = unknown
    hour: int | None  # 0..23, None = unknown (e.g. freesound)
    asource: int  # audio source index (config.audio_sources)
    tsource: int  # caption source index (config.caption_sources)


@runtime_checkable
class SoundscapeDataset(Protocol):
    """What the trainer and evaluator need from a dataset."""

    def __len__(self) -> int:
        """Number of samples."""
        ...

    def sample(self, index: int, zoom: int) -> Sample:
        """Sample `index` with its image at PSM zoom level `zoom` (deterministic)."""
        ...


@dataclass
class Batch:
    """Model-ready tensors for a list of samples."""

    images: Tensor
    zoom: Tensor
    audio: dict[str, Tensor]
    text: dict[str, Tensor]
    metadata: MetadataBatch
    # Dataset index of each sample (training batches; lets the trainer reuse per-sample work).
    indices: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device) -> Batch:
        """The image-side tensors on `device`; audio and text stay where they are (the towers'
        `embed_*_features` move them)."""
        return Batch(
            self.images.to(device),
            self.zoom.to(device),
            self.audio,
            self.text,
            self.metadata.to(device),
            self.indices,
        )


def collate(
    samples: Sequence[Sample],
    zooms: Sequence[int],
    audio_features: Callable[[Sequence[np.ndarray], int], dict[str, Tensor]],
    tokenize: Callable[[Sequence[str]], dict[str, Tensor]],
    image_size: int,
    generator: torch.Generator | None = None,
    augment: str = "reference",
) -> Batch:
    """Stack samples into a Batch; a generator turns on the random training augmentation
    `augment` (a key of `TRAIN_AUGMENTATIONS`)."""
    train_transform = TRAIN_AUGMENTATIONS[augment]
    images = []
    for s in samples:
        img = to_tensor(s.image)
        images.append(
            train_transform(img, image_size, generator)
            if generator
            else eval_transform(img, image_size)
        )
    rates = {s.sample_rate for s in samples}
    if len(rates) == 1:
        audio = audio_features([s.audio for s in samples], rates.pop())
    else:
        parts = [audio_features([s.audio], s.sample_rate) for s in samples]
        audio = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def col(name: str) -> np.ndarray:
        return np.array(
            [np.nan if getattr(s, name) is None else getattr(s, name) for s in samples],
            dtype=np.float64,
        )

    meta = make_metadata(
        col("lat"), col("lon"), col("month"), col("hour"), col("asource"), col("tsource")
    )
    return Batch(
        images=torch.stack(images),
        zoom=torch.as_tensor(list(zooms), dtype=torch.float32),
        audio=audio,
        text=tokenize([s.caption for s in samples]),
        metadata=meta,
    )


class CachedCollator:
    """Collates training batches, computing each index's audio features, text tokens and
    metadata once and keeping them (audio features as float16) for later epochs.

    A sample's audio and caption do not depend on the zoom level, so only its image is read per
    step. A dataset may offer `image(index, zoom)` to skip building the audio of cached indices.
    """

    def __init__(
        self,
        dataset: SoundscapeDataset,
        audio_features: Callable[[Sequence[np.ndarray], int], dict[str, Tensor]],
        tokenize: Callable[[Sequence[str]], dict[str, Tensor]],
        image_size: int,
        augment: str = "reference",
    ) -> None:
        self.dataset = dataset
        self.audio_features = audio_features
        self.tokenize = tokenize
        self.image_size = image_size
        self.train_transform = TRAIN_AUGMENTATIONS[augment]
        self._audio: dict[int, dict[str, Tensor]] = {}
        self._text: dict[int, dict[str, Tensor]] = {}
        self._meta: dict[int, tuple[float, ...]] = {}
        self._by_caption: dict[str, dict[str, Tensor]] = {}

    def __len__(self) -> int:
        return len(self._meta)

    def cached(self, indices: Sequence[int]) -> bool:
        """Whether every index's zoom-independent parts are already kept."""
        return all(int(i) in self._meta for i in indices)

    def warm(self, indices: Sequence[int], zoom: int, workers: int, chunk: int = 256) -> None:
        """Compute the parts of `indices` up front, in `workers` processes (1: in this one).

        Audio synthesis, feature extraction and caption embedding are mostly single-threaded
        work that holds the GIL, so only processes run them in parallel. Each worker gets the
        dataset and the feature and tokenise functions once (all must pickle). Audio features
        and metadata are those of filling lazily; caption embeddings may differ in the last bits
        (the text model sees other batches).
        """
        todo = [int(i) for i in indices if int(i) not in self._meta]
        chunks = [todo[k : k + chunk] for k in range(0, len(todo), chunk)]
        if workers <= 1 or len(chunks) < 2:
            for part in chunks:
                self._fill({i: self.dataset.sample(i, zoom) for i in part})
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: torch's OpenMP threads are already running in this process.
        with ProcessPoolExecutor(
            min(workers, len(chunks)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_parts_worker,
            initargs=(self.dataset, self.audio_features, self.tokenize),
        ) as pool:
            for parts in pool.map(_parts_in_worker, chunks, [zoom] * len(chunks)):
                self._store([_with_tensors(p) for p in parts])

    def _fill(self, samples: dict[int, Sample]) -> None:
        """Compute and keep the zoom-independent parts of newly seen samples."""
        if samples:
            self._store(sample_parts(samples, self.audio_features))

    def _store(self, parts: list[SampleParts]) -> None:
        """Keep computed parts; captions repeat (templates), so each distinct string is
        tokenised once per run."""
        for p in parts:
            if p.text is not None:
                self._by_caption.setdefault(p.caption, p.text)
        new = sorted({p.caption for p in parts} - self._by_caption.keys())
        if new:
            self._by_caption.update(_tokens_by_caption(new, self.tokenize))
        for p in parts:
            self._audio[p.index] = p.audio
            self._text[p.index] = self._by_caption[p.caption]
            self._meta[p.index] = p.meta

    def __call__(
        self, indices: Sequence[int], zooms: Sequence[int], generator: torch.Generator | None
    ) -> Batch:
        """The batch of `indices` at `zooms`, augmented when a generator is given."""
        fresh: dict[int, Sample] = {}
        images = []
        for i, z in zip(indices, zooms, strict=True):
            i, z = int(i), int(z)
            if i in self._meta and hasattr(self.dataset, "image"):
                img = self.dataset.image(i, z)  # type: ignore[attr-defined]
            else:
                s = self.dataset.sample(i, z)
                if i not in self._meta:
                    fresh[i] = s
                img = s.image
            t = to_tensor(img)
            images.append(
                self.train_transform(t, self.image_size, generator)
                if generator
                else eval_transform(t, self.image_size)
            )
        self._fill(fresh)
        keys = [int(i) for i in indices]
        audio = self.audio_features_of(keys)
        text = {k: torch.cat([self._text[i][k] for i in keys]) for k in self._text[keys[0]]}
        cols = np.array([self._meta[i] for i in keys], dtype=np.float64)
        meta = make_metadata(*(cols[:, j] for j in range(6)))
        return Batch(
            images=torch.stack(images),
            zoom=torch.as_tensor([int(z) for z in zooms], dtype=torch.float32),
            audio=audio,
            text=text,
            metadata=meta,
        )

    def audio_features_of(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The kept audio features of `indices`, stacked (every index must be cached)."""
        keys = [int(i) for i in indices]
        first = self._audio[keys[0]]
        return {
            k: torch.cat([self._audio[i][k] for i in keys]).float()
            if first[k].is_floating_point()
            else torch.cat([self._audio[i][k] for i in keys])
            for k in first
        }


@dataclass(frozen=True)
class SampleParts:
    """What the cached collator keeps of one sample: everything but its image."""

    index: int
    audio: dict[str, Tensor]  # audio features of the clip, floats as float16
    caption: str
    meta: tuple[float, ...]  # lat, lon, month, hour, asource, tsource (NaN = unknown)
    text: dict[str, Tensor] | None = None  # the caption tokenised, when computed with the rest


def sample_parts(
    samples: dict[int, Sample],
    audio_features: Callable[[Sequence[np.ndarray], int], dict[str, Tensor]],
    tokenize: Callable[[Sequence[str]], dict[str, Tensor]] | None = None,
) -> list[SampleParts]:
    """The zoom-independent parts of `samples` (index -> sample); captions tokenised too when
    `tokenize` is given."""
    idx = list(samples)
    proto = [samples[i] for i in idx]
    audio: dict[int, dict[str, Tensor]] = {}
    for rate in sorted({s.sample_rate for s in proto}):
        rows = [r for r, s in enumerate(proto) if s.sample_rate == rate]
        feats = audio_features([proto[r].audio for r in rows], rate)
        for j, r in enumerate(rows):
            audio[idx[r]] = _compact({k: v[j : j + 1] for k, v in feats.items()})
    text: dict[str, dict[str, Tensor]] = {}
    if tokenize is not None:
        text = _tokens_by_caption(sorted({s.caption for s in proto}), tokenize)
    return [
        SampleParts(
            i,
            audio[i],
            s.caption,
            tuple(
                np.nan if v is None else float(v)
                for v in (s.lat, s.lon, s.month, s.hour, s.asource, s.tsource)
            ),
            text.get(s.caption),
        )
        for i, s in zip(idx, proto, strict=True)
    ]


def _tokens_by_caption(
    captions: list[str], tokenize: Callable[[Sequence[str]], dict[str, Tensor]]
) -> dict[str, dict[str, Tensor]]:
    """Tokenise `captions` in one batch; each caption's own row, copied out of the batch."""
    toks = tokenize(captions)
    return {c: {k: v[r : r + 1].clone() for k, v in toks.items()} for r, c in enumerate(captions)}


_WORKER: tuple[
    SoundscapeDataset, Callable[..., dict[str, Tensor]], Callable[..., dict[str, Tensor]]
]


def _init_parts_worker(
    dataset: SoundscapeDataset,
    audio_features: Callable[[Sequence[np.ndarray], int], dict[str, Tensor]],
    tokenize: Callable[[Sequence[str]], dict[str, Tensor]],
) -> None:
    """Keep what this worker process computes with; one torch thread each."""
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = (dataset, audio_features, tokenize)


def _parts_in_worker(indices: list[int], zoom: int) -> list[SampleParts]:
    """Parts of one chunk of indices (runs in a worker process)."""
    dataset, audio_features, tokenize = _WORKER
    samples = {i: dataset.sample(i, zoom) for i in indices}
    # As numpy: torch sends tensors between processes as shared-memory file descriptors, one per
    # tensor, and thousands of them exhaust the descriptor limit.
    return [
        _convert(p, lambda v: v.numpy()) for p in sample_parts(samples, audio_features, tokenize)
    ]


def _with_tensors(parts: SampleParts) -> SampleParts:
    """Parts received from a worker, with their tensors restored."""
    return _convert(parts, torch.from_numpy)


def _convert(parts: SampleParts, fn: Callable[[Any], Any]) -> SampleParts:
    """`parts` with `fn` applied to every audio and text array."""
    text = None if parts.text is None else {k: fn(v) for k, v in parts.text.items()}
    return replace(parts, audio={k: fn(v) for k, v in parts.audio.items()}, text=text)


def _compact(feats: dict[str, Tensor]) -> dict[str, Tensor]:
    """Float features stored as float16 (halves the cache); other tensors kept as they are."""
    return {k: v.half() if v.is_floating_point() else v.clone() for k, v in feats.items()}


class SyntheticDataset:
    """Random-but-learnable pairs: each of `n_classes` classes has its own image texture, tone,
    caption words and home region, so a model can learn the cross-modal matching quickly.

    Used for tests and smoke runs of the trainer; deterministic in (seed, split, index).
    """

    CLASS_WORDS = (
        "birds", "traffic", "waves", "insects", "rain", "crowd", "wind", "bells",
        "frogs", "machines", "dogs", "sirens",
    )  # fmt: skip

    def __init__(
        self,
        split: str = "train",
        size: int = 512,
        n_classes: int = 8,
        image_px: int = 32,
        sample_rate: int = 16000,
        seconds: float = 1.0,
        seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 2 <= n_classes <= len(self.CLASS_WORDS):
            raise ValueError(f"n_classes must be in 2..{len(self.CLASS_WORDS)}")
        self.split, self.size, self.n_classes = split, size, n_classes
        self.image_px, self.sample_rate, self.seconds, self.seed = (
            image_px,
            sample_rate,
            seconds,
            seed,
        )
        base = np.random.default_rng(seed)
        self.colors = base.uniform(0.1, 0.9, size=(n_classes, 3))
        self.freqs = base.uniform(200.0, 3000.0, size=n_classes)
        self.centres = np.stack(
            [base.uniform(-60, 60, n_classes), base.uniform(-170, 170, n_classes)], 1
        )

    def __len__(self) -> int:
        return self.size

    def label(self, index: int) -> int:
        """Class of sample `index`."""
        return int(self._rng(index).integers(self.n_classes))

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLITS.index(self.split), index])

    def sample(self, index: int, zoom: int) -> Sample:
        """Deterministic sample; the zoom changes the texture scale of the image."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = self._rng(index)
        k = int(rng.integers(self.n_classes))
        px = self.image_px
        yy, xx = np.mgrid[0:px, 0:px] / px
        stripes = 0.5 + 0.5 * np.sin(
            2 * np.pi * (k + 1) * (xx * np.cos(k) + yy * np.sin(k)) * (6 / zoom)
        )
        img = self.colors[k][None, None, :] * (0.6 + 0.4 * stripes[..., None])
        img = img + rng.normal(0, 0.05, size=img.shape)
        n = int(self.sample_rate * self.seconds)
        t = np.arange(n) / self.sample_rate
        f = self.freqs[k] * rng.uniform(0.95, 1.05)
        audio = 0.5 * np.sin(2 * np.pi * f * t) + rng.normal(0, 0.05, n)
        lat, lon = self.centres[k] + rng.normal(0, 5, 2)
        month = int(rng.integers(1, 13))
        hour = None if rng.random() < 0.1 else int(rng.integers(0, 24))
        return Sample(
            image=(np.clip(img, 0, 1) * 255).astype(np.uint8),
            audio=audio.astype(np.float32),
            sample_rate=self.sample_rate,
            caption=f"the sound of {self.CLASS_WORDS[k]}",
            lat=float(np.clip(lat, -89, 89)),
            lon=float(np.clip(lon, -179, 179)),
            month=month,
            hour=hour,
            asource=int(k % 4),
            tsource=int(rng.integers(3)),
        )


DatasetFactory = Callable[..., SoundscapeDataset]
DATASETS: dict[str, DatasetFactory] = {"synthetic": SyntheticDataset}


def make_dataset(name: str, split: str, **kwargs: object) -> SoundscapeDataset:
    """Instantiate a registered dataset by name."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](split=split, **kwargs)
