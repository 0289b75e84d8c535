"""Optimisation settings of the trainer (plain data: importing it costs nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from model.transforms import PSM_ZOOM_LEVELS


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are the reference's (docs/ARCHITECTURE.md, "Loss")."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    restart_period: int = 5000  # CosineAnnealingWarmRestarts T_0 (a restart period, not a warm-up)
    # Linear warm-up over the first steps (0 = none, as in the reference); multiplies the cosine.
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    meta_droprate: float = 0.5
    # Image augmentation (model.transforms.TRAIN_AUGMENTATIONS): "reference" = random resized
    # crop + horizontal flip; "dihedral" = the whole footprint turned and mirrored.
    augment: str = "reference"
    # From this step on the audio tower is frozen and each training sample's audio is run through
    # it once and reused, so a step trains the image and text sides only (None = never; needs
    # cache_features). With freeze_audio_head the audio head is frozen too; without, it keeps
    # training on the kept tower outputs.
    freeze_audio_at: int | None = None
    freeze_audio_head: bool = True
    zooms: tuple[int, ...] = PSM_ZOOM_LEVELS
    seed: int = 56
    checkpoint_every: int = 100
    device: str = "auto"
    amp: bool = True  # bf16 autocast, used on CUDA only
    # Keep each sample's audio features and text tokens after their first use (they do not
    # depend on the zoom level); costs memory, saves recomputing them every epoch.
    cache_features: bool = False
    # With cache_features: processes that compute every sample's features before the first step
    # (1 = fill the cache lazily during the first epoch instead).
    feature_workers: int = 1
    extra: dict[str, object] = field(default_factory=dict)

    def resolved_device(self) -> torch.device:
        """'auto' -> cuda when available, else cpu."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)
