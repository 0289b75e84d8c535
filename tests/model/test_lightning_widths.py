"""Official checkpoints of any embedding width (the reference's `--fc_dim`) import and compute
what the reference computes.

In the reference, the CLAP towers keep their own 512-wide projection and PSM's mean/std heads map
512 -> fc_dim; the image projector, the metadata fuser and the image heads work at fc_dim. Each
fixture is a tiny Lightning-layout file (the test config's small towers, CLAP projections of
512) imported through `soundscape import-checkpoint --config X.json`; the expected embeddings
are computed here from the file's tensors with plain torch (Hugging Face's CLAP models for the
towers, as the reference), not with the project's modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    ClapAudioConfig,
    ClapAudioModelWithProjection,
    ClapTextConfig,
    ClapTextModelWithProjection,
)

from model.checkpoint import load_checkpoint
from model.config import ModelConfig, load_config
from model.metadata import make_metadata
from server.cli import main
from tests.model.test_lightning_import import (
    AUDIO_HF,
    FUSER,
    SAT,
    TEXT_HF,
    hyper_parameters,
    reference_state,
    write_ckpt,
)

CLAP_WIDTH = 512  # laion/clap-htsat-fused's projection, kept by the reference at every fc_dim


def width_config(fc_dim: int) -> ModelConfig:
    """The test config at embedding width fc_dim, with 512-wide CLAP projections."""
    base = load_config("test")
    data = base.model_dump(mode="python")
    data.update(name=f"test-fc{fc_dim}", embed_dim=fc_dim)
    data["audio"]["projection_dim"] = CLAP_WIDTH
    data["text"]["projection_dim"] = CLAP_WIDTH
    data["fusion"]["num_heads"] = 8  # the reference's fuser: 8 heads at any fc_dim
    return ModelConfig.model_validate(data)


def projector(state: dict[str, torch.Tensor], prefix: str, x: torch.Tensor) -> torch.Tensor:
    """The reference `Projector`: Linear -> GELU -> Linear."""
    x = F.linear(x, state[prefix + "linear1.weight"], state[prefix + "linear1.bias"])
    return F.linear(F.gelu(x), state[prefix + "linear2.weight"], state[prefix + "linear2.bias"])


def heads(state, prefix: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit mean, log-variance) of the reference's probabilistic heads."""
    mean = projector(state, prefix + "mean_head.", x)
    return mean / mean.norm(dim=-1, keepdim=True), projector(state, prefix + "std_head.", x)


def fuse_by_hand(state, cfg: ModelConfig, h: torch.Tensor, meta) -> torch.Tensor:
    """The reference MetaTransformerEncoder: [CLS, h, asource, tsource, latlong, month, time]
    tokens, masked ones zeroed and key-masked, a post-norm nn.TransformerEncoder, CLS out."""
    d, fus = cfg.embed_dim, cfg.fusion
    assert fus is not None
    embed = FUSER + "meta_embed."

    def mlp(name: str, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, state[f"{embed}{name}.fc1.weight"], state[f"{embed}{name}.fc1.bias"])
        return F.linear(
            F.gelu(x), state[f"{embed}{name}.fc2.weight"], state[f"{embed}{name}.fc2.bias"]
        )

    tokens = {
        "asource": F.embedding(meta.asource, state[embed + "audio_source_fc.source_embed.weight"]),
        "tsource": F.embedding(
            meta.tsource, state[embed + "caption_source_fc.source_embed.weight"]
        ),
        "latlong": mlp("location_fc", meta.latlong),
        "month": mlp("month_fc", meta.month),
        "time": mlp("time_fc", meta.time),
    }
    b = h.shape[0]
    seq = [state[FUSER + "cls_token"].expand(b, 1, d), h[:, None]]
    keep = [torch.ones(b, 2, dtype=torch.bool)]
    for name in ("asource", "tsource", "latlong", "month", "time"):
        present = meta.present[name]
        seq.append((tokens[name] * present[:, None])[:, None])
        keep.append(present[:, None])
    layer = torch.nn.TransformerEncoderLayer(d, 8, fus.ff_dim, 0.0, "gelu", batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, fus.num_layers, enable_nested_tensor=False)
    prefix = FUSER + "transformer_encoder."
    encoder.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    encoder.eval()
    out = encoder(torch.cat(seq, 1), src_key_padding_mask=~torch.cat(keep, 1))
    return out[:, 0]


def hf_tower(model_cls, config, state, prefix: str) -> torch.nn.Module:
    tower = model_cls(config)
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = tower.load_state_dict(own, strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing)
    return tower.eval()


@pytest.fixture(scope="module", params=[32, 512])
def imported(request, tmp_path_factory):
    fc_dim = request.param
    cfg = width_config(fc_dim)
    folder = tmp_path_factory.mktemp(f"fc{fc_dim}")
    config_file = folder / "X.json"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    state = reference_state(cfg, seed=fc_dim)
    assert state["audio_encoder.mean_head.linear1.weight"].shape == (fc_dim, CLAP_WIDTH)
    assert state[SAT + "projector.linear2.weight"].shape == (fc_dim, fc_dim)
    ckpt = write_ckpt(folder / "psm.ckpt", state, hyper_parameters(fc_dim=fc_dim))
    out = folder / "psm.safetensors"
    assert (
        main(["import-checkpoint", str(ckpt), "--config", str(config_file), "--out", str(out)]) == 0
    )
    return cfg, state, load_checkpoint(out)


def test_widths_are_independent(imported):
    cfg, _, model = imported
    assert model.config.embed_dim == cfg.embed_dim
    assert model.config.audio.projection_dim == model.config.text.projection_dim == CLAP_WIDTH


def test_text_embeddings_match_the_reference(imported):
    cfg, state, model = imported
    texts = ["birds singing in a park", "traffic noise at night"]
    tokens = model.text_tower.tokenize(texts)
    text_cfg = ClapTextConfig(projection_dim=CLAP_WIDTH, **cfg.text.clap_text)
    tower = hf_tower(ClapTextModelWithProjection, text_cfg, state, TEXT_HF)
    with torch.no_grad():
        x = tower(**tokens).text_embeds
        mu, lv = heads(state, "text_encoder.", x)
        got = model.embed_texts(texts)
    assert got.mu.shape == (2, cfg.embed_dim)
    torch.testing.assert_close(got.mu, mu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.logvar, lv, rtol=1e-5, atol=1e-5)


def test_audio_embeddings_match_the_reference(imported):
    cfg, state, model = imported
    rate = cfg.audio.sample_rate
    t = np.arange(rate, dtype=np.float32) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    features = model.audio_tower.features([wave], rate)
    audio_cfg = ClapAudioConfig(projection_dim=CLAP_WIDTH, **cfg.audio.clap_audio)
    tower = hf_tower(ClapAudioModelWithProjection, audio_cfg, state, AUDIO_HF)
    with torch.no_grad():
        x = tower(**features).audio_embeds
        mu, lv = heads(state, "audio_encoder.", x)
        got = model.embed_audio([wave], rate)
    torch.testing.assert_close(got.mu, mu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.logvar, lv, rtol=1e-5, atol=1e-5)


def test_image_embeddings_with_metadata_match_the_reference(imported):
    cfg, state, model = imported
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, cfg.image.img_size, cfg.image.img_size, generator=gen)
    meta = make_metadata([40.7, -33.9], [-74.0, 151.2], month=[5, 11], hour=[14, -1], asource=2)
    with torch.no_grad():
        pooled = model.image_encoder.backbone(images, model.image_encoder.resolution(1.0, 2))
        h = projector(state, SAT + "projector.", pooled)
        mu, lv = heads(state, SAT, fuse_by_hand(state, cfg, h, meta))
        got = model.embed_images(images, 1.0, meta)
    assert got.mu.shape == (2, cfg.embed_dim)
    torch.testing.assert_close(got.mu, mu, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.logvar, lv, rtol=1e-4, atol=1e-4)


def test_the_clap_projection_width_is_read_from_the_weights(tmp_path: Path):
    from model.lightning_import import import_lightning_checkpoint

    cfg = width_config(32)
    ckpt = write_ckpt(
        tmp_path / "psm.ckpt", reference_state(cfg, seed=1), hyper_parameters(fc_dim=32)
    )
    # The plain test config says 16-wide CLAP projections; the file's are 512 wide.
    model = import_lightning_checkpoint(ckpt, "test")
    assert model.config.embed_dim == 32
    assert model.config.audio.projection_dim == model.config.text.projection_dim == CLAP_WIDTH
