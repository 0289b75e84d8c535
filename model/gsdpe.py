"""Ground-sample-distance positional embedding (GSDPE), as coded in Scale-MAE and PSM.

Positions are patch indices multiplied by `res = zoom * native GSD` (no reference GSD and no
correction for resizing: the released weights were trained that way, docs/ARCHITECTURE.md, "GSDPE").
"""

from __future__ import annotations

import torch
from torch import Tensor


def sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """[sin(p w_k), cos(p w_k)], w_k = 10000^(-k / (dim/2)); positions (..., P) -> (..., P, dim)."""
    if dim % 2:
        raise ValueError(f"1-D sin/cos embedding needs an even dim, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000.0**omega
    angles = positions.to(torch.float32).unsqueeze(-1) * omega
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def gsd_positional_embedding(embed_dim: int, grid_size: int, res: Tensor) -> Tensor:
    """GSDPE for a `grid_size` x `grid_size` patch grid, one embedding per resolution.

    res: (N,) metres per pixel as passed by the reference (zoom x native GSD).
    Returns (N, grid_size**2, embed_dim); token t = row*W + col; the first half encodes the
    column (x) and the second half the row (y).
    """
    if embed_dim % 4:
        raise ValueError(f"GSDPE needs embed_dim divisible by 4, got {embed_dim}")
    res = torch.as_tensor(res, dtype=torch.float32).reshape(-1)
    token = torch.arange(grid_size * grid_size, device=res.device)
    col = (token % grid_size).to(torch.float32)
    row = (token // grid_size).to(torch.float32)
    pos_x = col.unsqueeze(0) * res.unsqueeze(1)
    pos_y = row.unsqueeze(0) * res.unsqueeze(1)
    half = embed_dim // 2
    return torch.cat([sincos_1d(pos_x, half), sincos_1d(pos_y, half)], dim=-1)
