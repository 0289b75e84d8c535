"""The inference forward of the fusion transformer equals the module's and does less work."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model.fusion_inference import check_supported
from model.metadata import apply_metadata_drop, make_metadata


def module_forward(fuser, h, meta):
    """The fuser's CLS output computed by nn.TransformerEncoder over every token."""
    b = h.shape[0]
    meta_tokens, present = fuser.meta_embed(meta)
    tokens = [fuser.cls_token.expand(b, -1, -1), h.unsqueeze(1)]
    tokens += [t.unsqueeze(1) for t in meta_tokens]
    keep = torch.cat([torch.ones(b, 2, dtype=torch.bool), *(p.view(b, 1) for p in present)], 1)
    return fuser.transformer_encoder(torch.cat(tokens, dim=1), src_key_padding_mask=~keep)[:, 0]


def batch(n, **kw):
    rng = np.random.default_rng(1)
    base = dict(month=5, hour=14, asource=0, tsource=1)
    base.update(kw)
    return make_metadata(rng.uniform(-60, 60, n), rng.uniform(-170, 170, n), **base)


CASES = {
    "a map (all metadata shared)": lambda n: batch(n),
    "month and hour masked": lambda n: batch(n, month=None, hour=None),
    "no metadata at all": lambda n: batch(
        n, month=None, hour=None, asource=None, tsource=None, use_location=False
    ),
    "an hour per row (a time sweep)": lambda n: batch(n, hour=np.arange(n) % 24),
    "rows masked at random (training drop)": lambda n: apply_metadata_drop(
        batch(n), 0.5, np.random.default_rng(3)
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("rows", [1, 3, 40])
def test_inference_forward_equals_the_module(tiny_model, case, rows):
    fuser = tiny_model.fuser.eval()
    h = torch.randn(rows, tiny_model.config.embed_dim, generator=torch.Generator().manual_seed(0))
    meta = CASES[case](rows)
    with torch.inference_mode():
        fast = fuser(h, meta)
        ref = module_forward(fuser, h, meta)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_training_still_runs_the_module_with_dropout(tiny_model):
    fuser = tiny_model.fuser.train()
    h = torch.randn(16, tiny_model.config.embed_dim)
    torch.manual_seed(0)
    a = fuser(h, batch(16))
    torch.manual_seed(1)
    b = fuser(h, batch(16))
    assert not torch.allclose(a, b)  # dropout is on: the module ran, not the inference path
    assert a.requires_grad


def test_a_map_batch_costs_at_most_two_thirds_of_the_module(tiny_model):
    """Shared metadata projected once and a CLS-only last layer: the saving is real work."""
    fuser = tiny_model.fuser.eval()
    h = torch.randn(256, tiny_model.config.embed_dim)
    meta = batch(256)

    def flops(fn):
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            fn()
        return counter.get_total_flops()

    fast = flops(lambda: fuser(h, meta))
    fuser.transformer_encoder.train()  # its eval fast path is one op the counter cannot see into
    full = flops(lambda: module_forward(fuser, h, meta))
    fuser.eval()
    print(f"inference forward: {fast / full:.2f} of the module's flops")
    assert fast <= 2 / 3 * full, (fast, full)


def test_unsupported_layers_are_refused():
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", norm_first=True)
    with pytest.raises(ValueError, match="post-norm"):
        check_supported(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation="relu")
    with pytest.raises(ValueError, match="GELU"):
        check_supported(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))
