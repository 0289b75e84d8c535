"""Vision transformer with the GSD positional embedding (SatMAE/Scale-MAE, global-pool variant).

Module names follow timm's so that the released weights map one-to-one (docs/ARCHITECTURE.md,
"Checkpoints").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import ImageEncoderConfig
from model.gsdpe import gsd_positional_embedding
from model.heads import Projector


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, row-major (t = row * W + col)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, T, D)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a packed qkv projection (timm layout)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Attend over tokens."""
        b, t, d = x.shape
        qkv = (
            self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        )
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GSDViT(nn.Module):
    """ViT backbone: patches + GSDPE(res) -> blocks -> mean over tokens -> fc_norm."""

    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)
        )
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.apply(_init_weights)

    def forward(self, x: Tensor, res: Tensor) -> Tensor:
        """Pooled features (B, embed_dim) for images x at resolutions res (B,) m/px."""
        tokens = self.patch_embed(x)
        pos = gsd_positional_embedding(self.cfg.embed_dim, self.cfg.grid_size, res.to(x.device))
        tokens = tokens + pos.to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.fc_norm(tokens.mean(dim=1))


def _init_weights(m: nn.Module) -> None:
    # timm's ViT init (trunc normal 0.02, zero biases); matters only when training from scratch.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class ImageEncoder(nn.Module):
    """Satellite tower up to h_i: GSDViT then Projector(embed_dim -> D)."""

    def __init__(self, cfg: ImageEncoderConfig, out_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = GSDViT(cfg)
        self.projector = Projector(cfg.embed_dim, out_dim)

    def resolution(self, zoom: Tensor | float, batch: int) -> Tensor:
        """res passed to GSDPE: zoom x native GSD (float32, as the reference)."""
        zoom_t = torch.as_tensor(zoom, dtype=torch.float32).reshape(-1)
        if zoom_t.numel() == 1:
            zoom_t = zoom_t.expand(batch)
        return zoom_t * torch.tensor(self.cfg.native_gsd, dtype=torch.float32)

    def forward(self, images: Tensor, zoom: Tensor | float) -> Tensor:
        """h_i (B, D) for normalised images (B, 3, S, S) at PSM zoom level(s)."""
        return self.projector(self.backbone(images, self.resolution(zoom, images.shape[0])))
