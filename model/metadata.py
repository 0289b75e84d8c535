"""Metadata: the query-time value object, its encodings (location, month, hour, sources) and
metadata dropping.

Encodings follow the reference code exactly, oddities included: hour uses 2*pi*h/23 (so hours 0
and 23 coincide) and latitude pi*lat/90 (so both poles coincide) — docs/ARCHITECTURE.md,
"Numerics that follow the reference".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from model.config import AUDIO_SOURCES, CAPTION_SOURCES, METADATA_COMPONENTS

ArrayLike = float | int | Sequence[float] | np.ndarray | Tensor


def encode_latlong(lat: ArrayLike, lon: ArrayLike) -> Tensor:
    """[sin(pi lat/90), cos(pi lat/90), sin(pi lon/180), cos(pi lon/180)] -> (B, 4) float32."""
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    enc = np.stack(
        [
            np.sin(np.pi * lat / 90),
            np.cos(np.pi * lat / 90),
            np.sin(np.pi * lon / 180),
            np.cos(np.pi * lon / 180),
        ],
        axis=-1,
    )
    return torch.from_numpy(enc).float()


def encode_month(month: ArrayLike) -> Tensor:
    """[sin(2 pi m/12), cos(2 pi m/12)] for m in 1..12 -> (B, 2) float32."""
    m = np.atleast_1d(np.asarray(month, dtype=np.float64))
    return torch.from_numpy(
        np.stack([np.sin(2 * np.pi * m / 12), np.cos(2 * np.pi * m / 12)], -1)
    ).float()


def encode_hour(hour: ArrayLike) -> Tensor:
    """[sin(2 pi h/23), cos(2 pi h/23)] for h in 0..23 -> (B, 2) float32 (the reference's /23)."""
    h = np.atleast_1d(np.asarray(hour, dtype=np.float64))
    return torch.from_numpy(
        np.stack([np.sin(2 * np.pi * h / 23), np.cos(2 * np.pi * h / 23)], -1)
    ).float()


def source_index(name: str, vocabulary: Mapping[str, int]) -> int:
    """Index of a source name (case-insensitive), with a clear error for unknown names."""
    key = name.strip().lower()
    lowered = {k.lower(): v for k, v in vocabulary.items()}
    if key not in lowered:
        raise ValueError(f"unknown source {name!r}; expected one of {sorted(vocabulary)}")
    return lowered[key]


@dataclass(frozen=True)
class Metadata:
    """What a user asks a map to be conditioned on; None (or location=False) masks a component.

    Sources are vocabulary names (`ModelConfig.audio_sources` / `caption_sources`); the location
    is not a value but a switch, because each cell fuses its own centre.
    """

    month: int | None = None
    hour: int | None = None
    asource: str | None = None
    tsource: str | None = None
    location: bool = True

    def __post_init__(self) -> None:
        if self.month is not None and not 1 <= self.month <= 12:
            raise ValueError(f"month must be in 1..12, got {self.month}")
        if self.hour is not None and not 0 <= self.hour <= 23:
            raise ValueError(f"hour must be in 0..23, got {self.hour}")

    @classmethod
    def none(cls) -> Metadata:
        """Every component masked: the fuser sees only CLS and h_i."""
        return cls(location=False)

    @property
    def masked(self) -> bool:
        """Every component masked (what a store's precomputed mu0/c0/u0 were fused under)."""
        return self == Metadata.none()

    def key(self) -> str:
        """Canonical text of every field, for cache keys and file names."""

        def part(v: object) -> str:
            return "-" if v is None else str(v)

        return (
            f"m{part(self.month)}h{part(self.hour)}a{part(self.asource)}"
            f"t{part(self.tsource)}l{int(self.location)}"
        )

    def replace(self, **changes: object) -> Metadata:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def encode(
        self,
        lat: ArrayLike,
        lon: ArrayLike,
        audio_sources: Mapping[str, int] = AUDIO_SOURCES,
        caption_sources: Mapping[str, int] = CAPTION_SOURCES,
    ) -> MetadataBatch:
        """The metadata of B cells at (lat, lon), encoded with the model's source vocabularies."""
        return make_metadata(
            lat,
            lon,
            month=self.month,
            hour=self.hour,
            asource=None if self.asource is None else source_index(self.asource, audio_sources),
            tsource=None if self.tsource is None else source_index(self.tsource, caption_sources),
            use_location=self.location,
        )


@dataclass
class MetadataBatch:
    """Encoded metadata for B samples plus a presence mask per component (False = masked)."""

    latlong: Tensor
    month: Tensor
    time: Tensor
    asource: Tensor
    tsource: Tensor
    present: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.latlong.shape[0])

    def to(self, device: torch.device | str) -> MetadataBatch:
        """Move every tensor to `device`."""
        return MetadataBatch(
            self.latlong.to(device),
            self.month.to(device),
            self.time.to(device),
            self.asource.to(device),
            self.tsource.to(device),
            {k: v.to(device) for k, v in self.present.items()},
        )

    def select(self, idx: Tensor | slice) -> MetadataBatch:
        """Rows `idx`."""
        return MetadataBatch(
            self.latlong[idx],
            self.month[idx],
            self.time[idx],
            self.asource[idx],
            self.tsource[idx],
            {k: v[idx] for k, v in self.present.items()},
        )

    def with_present(self, present: Mapping[str, Tensor]) -> MetadataBatch:
        """Copy with the presence masks replaced for the given components."""
        merged = dict(self.present)
        merged.update(present)
        return MetadataBatch(
            self.latlong, self.month, self.time, self.asource, self.tsource, merged
        )


def _broadcast(value: ArrayLike | None, n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast a scalar or per-sample array to n values; None or NaN/-1 entries are missing."""
    if value is None:
        return np.zeros(n, dtype=dtype), np.zeros(n, dtype=bool)
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()
    present = np.isfinite(arr) & (arr >= 0)
    arr[~present] = 0
    return arr.astype(dtype), present


def make_metadata(
    lat: ArrayLike,
    lon: ArrayLike,
    month: ArrayLike | None = None,
    hour: ArrayLike | None = None,
    asource: ArrayLike | None = None,
    tsource: ArrayLike | None = None,
    use_location: bool = True,
) -> MetadataBatch:
    """Encode metadata for B locations; a component given as None (or NaN/-1 per sample) is masked.

    `asource`/`tsource` are vocabulary indices (see `source_index`).
    """
    lat_arr = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    n = lat_arr.shape[0]
    lon_arr = np.broadcast_to(np.asarray(lon, dtype=np.float64), (n,))
    month_v, month_p = _broadcast(month, n, np.float64)
    hour_v, hour_p = _broadcast(hour, n, np.float64)
    if np.any((month_v < 1) & month_p) or np.any((month_v > 12) & month_p):
        raise ValueError("month must be in 1..12")
    if np.any((hour_v > 23) & hour_p):
        raise ValueError("hour must be in 0..23")
    as_v, as_p = _broadcast(asource, n, np.int64)
    ts_v, ts_p = _broadcast(tsource, n, np.int64)
    if np.any(as_v >= len(AUDIO_SOURCES)) or np.any(ts_v >= len(CAPTION_SOURCES)):
        raise ValueError("source index out of range")
    month_enc = encode_month(month_v)
    hour_enc = encode_hour(hour_v)
    present = {
        "latlong": torch.full((n,), bool(use_location)),
        "month": torch.from_numpy(month_p),
        "time": torch.from_numpy(hour_p),
        "asource": torch.from_numpy(as_p),
        "tsource": torch.from_numpy(ts_p),
    }
    return MetadataBatch(
        latlong=encode_latlong(lat_arr, lon_arr),
        month=month_enc,
        time=hour_enc,
        asource=torch.from_numpy(as_v),
        tsource=torch.from_numpy(ts_v),
        present=present,
    )


def no_metadata(batch_size: int) -> MetadataBatch:
    """Every component masked: the fuser sees only CLS and h_i (the 'no metadata' semantics)."""
    batch = make_metadata(np.zeros(batch_size), np.zeros(batch_size), use_location=False)
    return batch


def drop_mask(valid: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Presence mask after dropping exactly int(rate*B) items, counting already-invalid ones.

    Reference `create_mask`: if at least int(rate*B) items are invalid nothing more is dropped,
    otherwise extra valid items are chosen at random until int(rate*B) are masked.
    """
    valid = np.asarray(valid, dtype=bool)
    n_drop = int(rate * valid.shape[0])
    n_invalid = int((~valid).sum())
    present = valid.copy()
    if n_invalid < n_drop:
        candidates = np.flatnonzero(valid)
        chosen = rng.choice(candidates, size=n_drop - n_invalid, replace=False)
        present[chosen] = False
    return present


def apply_metadata_drop(
    meta: MetadataBatch, rate: float, rng: np.random.Generator
) -> MetadataBatch:
    """Training-time metadata dropping, independently per component."""
    if rate <= 0:
        return meta
    dropped = {
        name: torch.from_numpy(drop_mask(meta.present[name].cpu().numpy(), rate, rng)).to(
            meta.present[name].device
        )
        for name in METADATA_COMPONENTS
    }
    return meta.with_present(dropped)
