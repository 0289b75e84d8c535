"""What defines the demo world's samples (plain data, cheap to import)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

# North America around the contiguous USA (the paper's map figures), with coasts and sea.
DEMO_TRAIN_BBOX: tuple[float, float, float, float] = (-130.0, 20.0, -60.0, 55.0)


MIXTURE_SECONDARIES: tuple[str, ...] = ("heaviest", "sampled")


@dataclass(frozen=True)
class DemoWorldSpec:
    """What defines a demo world's samples (everything that changes them is in here)."""

    seed: int = 0
    n_samples: int = 24000  # drawn in the region, then split 80/10/10 by 1 deg cells
    bbox: tuple[float, float, float, float] = DEMO_TRAIN_BBOX
    clip_seconds: float = 3.0
    sample_rate: int = 16000
    mixture_rate: float = 0.5  # share of clips that mix in quieter sounds of the same place
    # Which sounds a mixed clip adds to its class: "heaviest" (the place's most probable other
    # classes, far below the main one) or "sampled" (one or two others drawn in proportion to
    # their probability there, as loud as that probability says: mixed places make mixed clips,
    # as real recordings are). Issue 26, docs/demo-model.md "Uncertainty".
    mixture_secondaries: str = "heaviest"
    # Land recording places are weighted by land_floor + town_weight x urban density (people
    # record where they live: the top tenth of land by urban density gets half the recordings).
    land_floor: float = 0.1
    town_weight: float = 10.0
    # How far a recording may lie from its image's centre, as a share of the footprint's side
    # at each zoom (0: every image is centred on its recording; 1: anywhere in the footprint,
    # drawn per zoom). Issue 26's second experiment (docs/demo-model.md) tried 1.0 with a
    # land_floor of 0.5; the shipped world keeps both off.
    footprint_jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.mixture_secondaries not in MIXTURE_SECONDARIES:
            raise ValueError(
                f"mixture_secondaries must be one of {MIXTURE_SECONDARIES},"
                f" got {self.mixture_secondaries!r}"
            )
        if not 0.0 <= self.mixture_rate <= 1.0:
            raise ValueError(f"mixture_rate must be in [0, 1], got {self.mixture_rate}")

    def key(self) -> str:
        """Short content hash used in cache file names."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
