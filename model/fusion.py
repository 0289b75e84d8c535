"""Metadata fusion transformer: [CLS, h_i, asource, tsource, latlong, month, time] -> CLS output."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from model.config import AUDIO_SOURCES, CAPTION_SOURCES, FusionConfig
from model.fusion_inference import check_supported, encode_cls
from model.metadata import MetadataBatch


class SourceEmbedding(nn.Module):
    """A learned vector per source (reference key `source_embed`)."""

    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.source_embed = nn.Embedding(n, dim)

    def forward(self, idx: Tensor) -> Tensor:
        """(B,) -> (B, dim)."""
        return self.source_embed(idx)


class MetaNet(nn.Module):
    """Linear(in, hidden) -> GELU -> Linear(hidden, dim) for continuous encodings."""

    def __init__(self, in_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in) -> (B, dim)."""
        return self.fc2(self.act(self.fc1(x)))


class MetadataEmbedding(nn.Module):
    """One token embedding per configured metadata component (reference `meta_embed`)."""

    # component (also the MetadataBatch attribute) -> submodule name in the reference layout
    MODULES: ClassVar[dict[str, str]] = {
        "asource": "audio_source_fc",
        "tsource": "caption_source_fc",
        "latlong": "location_fc",
        "month": "month_fc",
        "time": "time_fc",
    }

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__()
        self.components = cfg.components
        builders = {
            "asource": lambda: SourceEmbedding(len(AUDIO_SOURCES), dim),
            "tsource": lambda: SourceEmbedding(len(CAPTION_SOURCES), dim),
            "latlong": lambda: MetaNet(4, cfg.meta_hidden, dim),
            "month": lambda: MetaNet(2, cfg.meta_hidden, dim),
            "time": lambda: MetaNet(2, cfg.meta_hidden, dim),
        }
        for comp in self.components:
            self.add_module(self.MODULES[comp], builders[comp]())

    def forward(self, meta: MetadataBatch) -> tuple[list[Tensor], list[Tensor]]:
        """Token per component, zeroed where masked, and the presence masks in token order."""
        tokens, present = [], []
        for comp in self.components:
            emb = getattr(self, self.MODULES[comp])(getattr(meta, comp))
            mask = meta.present[comp].to(emb.device)
            tokens.append(emb * mask.unsqueeze(-1).to(emb.dtype))
            present.append(mask)
        return tokens, present


class MetadataFuser(nn.Module):
    """Post-norm transformer over CLS, h_i and metadata tokens (masked: zeroed and key-masked)."""

    def __init__(self, cfg: FusionConfig, dim: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=cfg.num_heads,
            dim_feedforward=cfg.ff_dim,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
        )
        self.transformer_encoder = nn.TransformerEncoder(
            layer, num_layers=cfg.num_layers, enable_nested_tensor=False
        )
        self.meta_embed = MetadataEmbedding(cfg, dim)
        check_supported(self.transformer_encoder)
        # Tokens that do not vary by cell (all but h_i and the location), in token order.
        self.shareable = [True, False, *(c != "latlong" for c in self.meta_embed.components)]

    def forward(self, h: Tensor, meta: MetadataBatch) -> Tensor:
        """Fused embedding (B, D) = CLS output."""
        b = h.shape[0]
        meta_tokens, present = self.meta_embed(meta)
        if not self.training:
            # Inference skips the work whose result is never read (model/fusion_inference.py).
            cls = self.cls_token[0].expand(b, -1).to(h.dtype)
            tokens = [cls, h, *(t.to(h.dtype) for t in meta_tokens)]
            keep = [None, None, *present]
            return encode_cls(self.transformer_encoder, tokens, keep, self.shareable)
        tokens = [self.cls_token.expand(b, -1, -1).to(h.dtype), h.unsqueeze(1)]
        tokens += [t.unsqueeze(1).to(h.dtype) for t in meta_tokens]
        always = torch.ones(b, 2, dtype=torch.bool, device=h.device)
        keep = torch.cat([always, *(p.view(b, 1) for p in present)], dim=1)
        out = self.transformer_encoder(torch.cat(tokens, dim=1), src_key_padding_mask=~keep)
        return out[:, 0]
