"""The fusion transformer's inference forward, doing only the work whose result is read.

Same maths as `nn.TransformerEncoder` in eval mode (post-norm layers, GELU, no dropout), with
three savings that leave the CLS output equal up to float rounding (about 1e-6):
- a token masked in every row is left out: a masked key gets zero attention and a masked token's
  own output is never read (psm-reference.md §3.4), so the rest is unchanged without it;
- in the first layer, a token that is the same in every row (CLS, and the metadata a whole map
  shares: its month, hour and sources) is projected to query/key/value once, not once per row;
- in the last layer only the CLS output is read, so only its query, attention and feed-forward
  are computed (every token's key and value still are).
A map's cells share all but two of seven tokens, so a cell costs about 63 % of the module's
flops (scripts/bench_model.py times "fusion, a map's cells"; docs/ARCHITECTURE.md, "Metadata",
has the speed-ups). Tests: tests/model/test_fusion_inference.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_supported(encoder: nn.TransformerEncoder) -> None:
    """ValueError unless every layer is the post-norm GELU layer this forward computes."""
    for layer in encoder.layers:
        if layer.norm_first or layer.activation is not F.gelu:
            raise ValueError("fast fusion needs post-norm GELU encoder layers")
    if encoder.norm is not None:
        raise ValueError("fast fusion needs an encoder without a final norm")


def is_shared(token: Tensor) -> bool:
    """Whether every row of a (B, D) token equals the first."""
    return token.shape[0] == 1 or torch.equal(token, token[:1].expand_as(token))


def encode_cls(
    encoder: nn.TransformerEncoder,
    tokens: Sequence[Tensor],
    keep: Sequence[Tensor | None],
    shareable: Sequence[bool],
) -> Tensor:
    """The CLS output (B, D) of `encoder` over tokens (each (B, D); tokens[0] is CLS, never
    masked) where keep[i] (B,) bool says which rows attend to token i (None: every row).

    Only a `shareable` token (one that does not vary from cell to cell by nature) is projected
    once when all rows hold the same value: a cell's bits then never depend on its batch-mates
    (a padded batch of one cell repeated is not taken for shared image tokens).
    """
    batch = tokens[0].shape[0]
    shared, varying = [], []
    for i, (token, k, may_share) in enumerate(zip(tokens, keep, shareable, strict=True)):
        if k is not None:
            k = k.to(torch.bool)
        if k is not None and bool(k.all()):
            k = None
        if k is not None and not bool(k.any()):
            continue  # masked in every row: left out
        # CLS (shared by construction) stays first, so the output is row 0 of the sequence
        share = i == 0 or (may_share and k is None and is_shared(token))
        (shared if share else varying).append((token, k))
    order = shared + varying
    masks = [k for _, k in order]
    key_mask = None
    if any(k is not None for k in masks):
        ones = torch.ones(batch, dtype=torch.bool, device=tokens[0].device)
        key_mask = torch.stack([ones if k is None else k for k in masks], dim=1)
    first = [t[:1] for t, _ in shared]
    x_shared = torch.stack(first, dim=1)  # (1, S, D)
    x_varying = torch.stack([t for t, _ in varying], dim=1) if varying else None
    layers = list(encoder.layers)
    x = torch.cat(
        [x_shared.expand(batch, -1, -1)] + ([x_varying] if x_varying is not None else []), dim=1
    )
    for depth, layer in enumerate(layers):
        attn = layer.self_attn
        w, b = attn.in_proj_weight, attn.in_proj_bias
        dim = x.shape[-1]
        if depth == len(layers) - 1:
            q = F.linear(x[:, :1], w[:dim], b[:dim])
            kv = F.linear(x, w[dim:], b[dim:])
            k, v = kv[..., :dim], kv[..., dim:]
            x = x[:, :1]
        else:
            if depth == 0:
                parts = [F.linear(x_shared, w, b).expand(batch, -1, -1)]
                if x_varying is not None:
                    parts.append(F.linear(x_varying, w, b))
                qkv = torch.cat(parts, dim=1)
            else:
                qkv = F.linear(x, w, b)
            q, k, v = qkv[..., :dim], qkv[..., dim : 2 * dim], qkv[..., 2 * dim :]
        out = attend(q, k, v, key_mask, attn.num_heads)
        x = layer.norm1(x + attn.out_proj(out))
        x = layer.norm2(x + layer.linear2(F.gelu(layer.linear1(x))))
    return x[:, 0]


def attend(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, heads: int) -> Tensor:
    """Multi-head attention of queries (B, Tq, D) over keys/values (B, T, D), keys masked
    where keep (B, T) is False."""
    batch, tq, dim = q.shape
    t, dh = k.shape[1], dim // heads
    q = q.reshape(batch, tq, heads, dh).transpose(1, 2)
    k = k.reshape(batch, t, heads, dh).transpose(1, 2)
    v = v.reshape(batch, t, heads, dh).transpose(1, 2)
    mask = None if keep is None else keep[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(batch, tq, dim)
