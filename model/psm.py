"""The PSM model: image tower + metadata fuser + heads, audio/text towers + heads, criterion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from model.config import ModelConfig
from model.fusion import MetadataFuser
from model.gaussian import GaussianEmbedding
from model.heads import make_head
from model.losses import make_criterion
from model.metadata import MetadataBatch, no_metadata
from model.towers.clap import ClapAudioTower, ClapTextTower
from model.towers.sentence import SentenceTextTower
from model.vit import ImageEncoder


def build_text_tower(config: ModelConfig, load_weights: bool) -> nn.Module:
    """CLAP text tower or frozen sentence encoder + projection, per config."""
    if config.text.kind == "sentence_transformers":
        return SentenceTextTower(config.text)
    return ClapTextTower(config.text, load_weights)


class PSM(nn.Module):
    """Probabilistic soundscape mapping model (docs/ARCHITECTURE.md, "The model")."""

    def __init__(self, config: ModelConfig, load_pretrained: bool = False) -> None:
        super().__init__()
        # The embedding width (the reference's fc_dim) and the towers' own projection widths
        # (512 for CLAP) are independent: the audio and text heads map one to the other.
        dim = config.embed_dim
        self.config = config
        prob = config.probabilistic
        self.image_encoder = ImageEncoder(config.image, dim)
        self.fuser = MetadataFuser(config.fusion, dim) if config.fusion is not None else None
        self.image_head = make_head(dim, dim, prob, project=False)
        self.audio_tower = ClapAudioTower(config.audio, load_pretrained)
        self.audio_head = make_head(config.audio.projection_dim, dim, prob)
        self.text_tower = build_text_tower(config, load_pretrained)
        self.text_head = make_head(config.text.projection_dim, dim, prob)
        self.criterion = make_criterion(config.loss)
        # Query kind ("text", "audio") -> (a, b) refitted on held-out pairs (model/calibration.py);
        # saved in the checkpoint's header. Empty: the learned (a, b) serve.
        self.calibration: dict[str, tuple[float, float]] = {}

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.image_encoder.parameters()).device

    # -- image side ---------------------------------------------------------------------------
    def encode_image(self, images: Tensor, zoom: Tensor | float) -> Tensor:
        """h_i (B, D): the pre-fusion image embedding that the store precomputes."""
        return self.image_encoder(images, zoom)

    def fuse(self, h: Tensor, meta: MetadataBatch | None = None) -> GaussianEmbedding:
        """Fuse metadata into h_i and apply the image heads; None = every component masked.

        Models with a fuser always run it, also without metadata (never skipped: skipping is
        out of distribution for metadata-trained checkpoints, docs/ARCHITECTURE.md, "Metadata").
        """
        if self.fuser is not None:
            if meta is None:
                meta = no_metadata(h.shape[0])
            h = self.fuser(h, meta.to(h.device))
        return self.image_head(h)

    def embed_images(
        self, images: Tensor, zoom: Tensor | float, meta: MetadataBatch | None = None
    ) -> GaussianEmbedding:
        """Images -> fused Gaussian embeddings."""
        return self.fuse(self.encode_image(images, zoom), meta)

    # -- audio / text side --------------------------------------------------------------------
    def embed_audio_features(self, features: dict[str, Tensor]) -> GaussianEmbedding:
        """Audio features (see `ClapAudioTower.features`) -> Gaussian embeddings."""
        feats = {k: v.to(self.device) for k, v in features.items()}
        return self.audio_head(self.audio_tower(**feats))

    def embed_text_tokens(self, tokens: dict[str, Tensor]) -> GaussianEmbedding:
        """Tokenised text (see `text_tower.tokenize`) -> Gaussian embeddings."""
        toks = {k: v.to(self.device) for k, v in tokens.items()}
        return self.text_head(self.text_tower(**toks))

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> GaussianEmbedding:
        """Query helper: strings -> Gaussian embeddings (eval mode expected)."""
        return self.embed_text_tokens(self.text_tower.tokenize(texts))

    @torch.no_grad()
    def embed_audio(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> GaussianEmbedding:
        """Query helper: waveforms -> Gaussian embeddings, deterministic (eval mode expected)."""
        return self.embed_audio_features(self.audio_tower.features(waveforms, sample_rate))

    def match_parameters(self, kind: str | None = None) -> tuple[float, float]:
        """(a, b) of the match probability sigmoid(-a*CSD + b) for queries of `kind`: the
        calibrated pair when the model carries one for it, else the learned one ((1, 0) for
        InfoNCE models)."""
        if kind in self.calibration:
            return self.calibration[kind]
        crit = self.criterion
        if hasattr(crit, "negative_scale"):
            return float(crit.negative_scale.detach().cpu()), float(crit.shift.detach().cpu())
        return 1.0, 0.0
