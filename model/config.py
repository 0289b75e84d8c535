"""Model configurations: typed schema plus named configs stored as JSON data files."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.errors import ConfigError

# Reference vocabularies; indices are baked into released checkpoints (docs/ARCHITECTURE.md,
# "Metadata").
AUDIO_SOURCES: dict[str, int] = {"yfcc": 0, "inat": 1, "aporee": 2, "freesound": 3}
CAPTION_SOURCES: dict[str, int] = {"meta": 0, "qwen": 1, "pengi": 2}
METADATA_COMPONENTS: tuple[str, ...] = ("asource", "tsource", "latlong", "month", "time")
# Inference precision: auto = bf16 autocast on CUDA, fp32 on CPU (model.inference).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageEncoderConfig(_Strict):
    """ViT + GSDPE image tower and the imagery geometry it was trained on."""

    img_size: int = Field(224, gt=0)
    patch_size: int = Field(16, gt=0)
    in_chans: int = 3
    embed_dim: int = Field(768, gt=0)
    depth: int = Field(12, ge=1)
    num_heads: int = Field(12, ge=1)
    mlp_ratio: float = 4.0
    sat_type: str = "sentinel"
    native_gsd: float = Field(
        10.0, gt=0, description="metres per original pixel of the source tiles"
    )
    tile_size: int = Field(256, gt=0, description="pixels of one native tile (zoom transform)")

    @field_validator("num_heads")
    @classmethod
    def _heads_divide(cls, v: int, info: Any) -> int:
        dim = info.data.get("embed_dim")
        if dim is not None and dim % v:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {v}")
        return v

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.img_size // self.patch_size


class FusionConfig(_Strict):
    """Metadata fusion transformer (post-norm nn.TransformerEncoder)."""

    components: tuple[str, ...] = METADATA_COMPONENTS
    num_layers: int = 3
    num_heads: int = 8
    ff_dim: int = 2048
    dropout: float = 0.1
    meta_hidden: int = 64

    @field_validator("components")
    @classmethod
    def _known_components(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in v if c not in METADATA_COMPONENTS]
        if unknown:
            raise ValueError(f"unknown metadata components {unknown}; known: {METADATA_COMPONENTS}")
        # Token order is fixed by the reference, whatever order the config lists them in.
        return tuple(c for c in METADATA_COMPONENTS if c in v)


class AudioTowerConfig(_Strict):
    """CLAP audio tower: either pretrained from the local HF cache or built from `clap_audio`."""

    kind: Literal["clap"] = "clap"
    pretrained: str | None = None
    clap_audio: dict[str, Any] = Field(default_factory=dict)
    projection_dim: int = 512
    sample_rate: int = 48000
    max_seconds: int = Field(10, gt=0)
    feature: dict[str, Any] = Field(default_factory=dict)
    fusion_seed: int = 56


class TextTowerConfig(_Strict):
    """Text tower: CLAP text model, or a frozen sentence-transformers model plus a projection."""

    kind: Literal["clap", "sentence_transformers"] = "clap"
    pretrained: str | None = None
    clap_text: dict[str, Any] = Field(default_factory=dict)
    projection_dim: int = 512
    max_length: int = 128
    tokenizer: str | None = None
    frozen: bool = False


class LossConfig(_Strict):
    """Training objective and its initial values (docs/ARCHITECTURE.md, "Loss")."""

    type: Literal["pcmepp", "infonce"] = "pcmepp"
    init_shift: float = 5.0
    init_negative_scale: float = 5.0
    vib_beta: float = 1e-4
    pseudo_match_alpha: float = 0.1
    text_weight: float = 0.5
    infonce_tau: float = 1.0


class ModelConfig(_Strict):
    """A complete PSM architecture; stored inside every checkpoint and every store."""

    name: str
    embed_dim: int = Field(512, gt=0)
    image: ImageEncoderConfig = ImageEncoderConfig()
    fusion: FusionConfig | None = FusionConfig()
    audio: AudioTowerConfig = AudioTowerConfig()
    text: TextTowerConfig = TextTowerConfig()
    loss: LossConfig = LossConfig()
    audio_sources: dict[str, int] = Field(default_factory=lambda: dict(AUDIO_SOURCES))
    caption_sources: dict[str, int] = Field(default_factory=lambda: dict(CAPTION_SOURCES))

    @property
    def probabilistic(self) -> bool:
        """True for PCME++ models (Gaussian embeddings), False for the InfoNCE baseline."""
        return self.loss.type == "pcmepp"

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) so that equal configs hash equally."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def with_updates(self, **changes: Any) -> ModelConfig:
        """Return a validated copy with top-level fields replaced."""
        data = self.model_dump(mode="python")
        data.update(changes)
        return ModelConfig.model_validate(data)


def available_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    folder = resources.files("model") / "configs"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def load_config(name_or_path: str | Path) -> ModelConfig:
    """Load a named config (`paper`, `paper-offline`, `demo`, `test`) or a JSON file path."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        text = path.read_text()
    else:
        entry = resources.files("model") / "configs" / f"{name_or_path}.json"
        if not entry.is_file():
            raise ConfigError(
                f"unknown model config {str(name_or_path)!r}; choose one of "
                f"{', '.join(available_configs())} or pass a path to a .json config"
            )
        text = entry.read_text()
    try:
        return ModelConfig.model_validate_json(text)
    except ValueError as exc:
        raise ConfigError(f"invalid model config {str(name_or_path)!r}: {exc}") from exc
