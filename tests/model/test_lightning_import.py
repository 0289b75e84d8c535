"""Importing official PSM Lightning checkpoints, on tiny files written in the reference layout.

Reference key names are spelled out here as docs/ARCHITECTURE.md, "Checkpoints" lists them
(never derived from the importer's mapping table), so a wrong entry in that table fails these tests.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    ClapAudioConfig,
    ClapAudioModelWithProjection,
    ClapTextConfig,
    ClapTextModelWithProjection,
)

from model.checkpoint import CheckpointError, load_checkpoint
from model.cli import add_import_parser
from model.cli import run_import as cli_run_import
from model.config import METADATA_COMPONENTS, ModelConfig, load_config
from model.lightning_import import (
    import_lightning_checkpoint,
    run_import,
)
from model.metadata import make_metadata
from model.psm import PSM

SAT = "sat_encoder.encoder."
BACKBONE = "sat_encoder.encoder.backbone."
FUSER = "sat_encoder.encoder.meta_fuser."
AUDIO_HF = "audio_encoder.model.model."
TEXT_HF = "text_encoder.model.model."


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return load_config("test")


def hyper_parameters(**changes: object) -> dict[str, object]:
    """A `vars(args)` of the reference train.py, at the test config's sizes."""
    hp: dict[str, object] = {
        "num_workers": 8,
        "train_epoch_length": 10000,
        "limit_val_batches": 30,
        "val_check_interval": 500,
        "train_batch_size": 128,
        "val_batch_size": 128,
        "max_epochs": 30,
        "mode": "train",
        "dataset_type": "GeoSound",
        "modality_type": "sat_audio_text",
        "caption_strategy": "original",
        "sat_input_size": 32,
        "sat_type": "sentinel",
        "metadata_type": "latlong_month_time_asource_tsource",
        "meta_droprate": 0.5,
        "learning_rate": 5e-5,
        "weight_decay": 0.2,
        "warm_up_iterations": 5000,
        "strategy": "ddp_find_unused_parameters_false",
        "accelerator": "gpu",
        "devices": 1,
        "project_name": "PSM",
        "run_name": "tiny",
        "wandb_mode": "offline",
        "sat_encoder_type": "probSatMAE",
        "audio_encoder_type": "probCLAP",
        "text_encoder_type": "probCLAP",
        "freeze": False,
        "fc_dim": 16,
        "probabilistic": True,
        "label_smoothing": 1e-4,
        "pseudo_match_alpha": 0.1,
        "vib_beta": 1e-4,
        "loss_type": "pcmepp",
        "loss_text_weight": 0.5,
        "recall_at": 10,
        "ckpt_path": "none",
        "ckpt_mode": "hard",
        "dist_train": False,
        "pretrained_model_path": "none",
        "train_path": "/data/train",
        "vali_path": "/data/val",
    }
    hp.update(changes)
    return hp


def projector_shapes(prefix: str, d_in: int, d_out: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}linear1.weight": (d_out, d_in),
        f"{prefix}linear1.bias": (d_out,),
        f"{prefix}linear2.weight": (d_out, d_out),
        f"{prefix}linear2.bias": (d_out,),
    }


def reference_shapes(
    cfg: ModelConfig,
    components: tuple[str, ...] = METADATA_COMPONENTS,
    probabilistic: bool = True,
    depth: int | None = None,
) -> dict[str, tuple[int, ...]]:
    """Non-CLAP reference keys and shapes at the config's sizes (docs/ARCHITECTURE.md,
    "Checkpoints")."""
    e, p, d = cfg.image.embed_dim, cfg.image.patch_size, cfg.embed_dim
    hidden = int(e * cfg.image.mlp_ratio)
    s: dict[str, tuple[int, ...]] = {
        BACKBONE + "patch_embed.proj.weight": (e, 3, p, p),
        BACKBONE + "patch_embed.proj.bias": (e,),
    }
    for i in range(cfg.image.depth if depth is None else depth):
        b = f"{BACKBONE}blocks.{i}."
        for norm in ("norm1", "norm2"):
            s[f"{b}{norm}.weight"] = (e,)
            s[f"{b}{norm}.bias"] = (e,)
        s[f"{b}attn.qkv.weight"] = (3 * e, e)
        s[f"{b}attn.qkv.bias"] = (3 * e,)
        s[f"{b}attn.proj.weight"] = (e, e)
        s[f"{b}attn.proj.bias"] = (e,)
        s[f"{b}mlp.fc1.weight"] = (hidden, e)
        s[f"{b}mlp.fc1.bias"] = (hidden,)
        s[f"{b}mlp.fc2.weight"] = (e, hidden)
        s[f"{b}mlp.fc2.bias"] = (e,)
    s[BACKBONE + "fc_norm.weight"] = (e,)
    s[BACKBONE + "fc_norm.bias"] = (e,)
    s.update(projector_shapes(SAT + "projector.", e, d))

    if components:
        fus = cfg.fusion
        assert fus is not None
        s[FUSER + "cls_token"] = (1, 1, d)
        for i in range(fus.num_layers):
            layer = f"{FUSER}transformer_encoder.layers.{i}."
            s[layer + "self_attn.in_proj_weight"] = (3 * d, d)
            s[layer + "self_attn.in_proj_bias"] = (3 * d,)
            s[layer + "self_attn.out_proj.weight"] = (d, d)
            s[layer + "self_attn.out_proj.bias"] = (d,)
            s[layer + "linear1.weight"] = (fus.ff_dim, d)
            s[layer + "linear1.bias"] = (fus.ff_dim,)
            s[layer + "linear2.weight"] = (d, fus.ff_dim)
            s[layer + "linear2.bias"] = (d,)
            for norm in ("norm1", "norm2"):
                s[f"{layer}{norm}.weight"] = (d,)
                s[f"{layer}{norm}.bias"] = (d,)
        embed = FUSER + "meta_embed."
        if "asource" in components:
            s[embed + "audio_source_fc.source_embed.weight"] = (4, d)
        if "tsource" in components:
            s[embed + "caption_source_fc.source_embed.weight"] = (3, d)
        for comp, module, n_in in (
            ("latlong", "location_fc", 4),
            ("month", "month_fc", 2),
            ("time", "time_fc", 2),
        ):
            if comp in components:
                h = fus.meta_hidden
                s[f"{embed}{module}.fc1.weight"] = (h, n_in)
                s[f"{embed}{module}.fc1.bias"] = (h,)
                s[f"{embed}{module}.fc2.weight"] = (d, h)
                s[f"{embed}{module}.fc2.bias"] = (d,)

    # The CLAP towers keep their own projection width; their heads map it to fc_dim (d).
    widths = {SAT: d, "audio_encoder.": cfg.audio.projection_dim,
              "text_encoder.": cfg.text.projection_dim}  # fmt: skip
    if probabilistic:
        for tower, width in widths.items():
            for head in ("mean_head.", "std_head."):
                s.update(projector_shapes(tower + head, width, d))
        s["criterion.shift"] = (1,)
        s["criterion.negative_scale"] = (1,)
    else:
        # SatMAE_baseline has no image head; CLAP towers get one deterministic Projector.
        s.update(projector_shapes("audio_encoder.head.", widths["audio_encoder."], d))
        s.update(projector_shapes("text_encoder.head.", widths["text_encoder."], d))
        s["criterion.tau"] = (1,)
    return s


def clap_reference_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF CLAP sub-model tensors under the reference's wrapper prefixes (as transformers 4.28)."""
    audio = ClapAudioModelWithProjection(
        ClapAudioConfig(projection_dim=cfg.audio.projection_dim, **cfg.audio.clap_audio)
    )
    text = ClapTextModelWithProjection(
        ClapTextConfig(projection_dim=cfg.text.projection_dim, **cfg.text.clap_text)
    )
    state = {AUDIO_HF + k: v for k, v in audio.state_dict().items()}
    for k, v in text.state_dict().items():
        # transformers 4.28 did not persist token_type_ids (it did persist position_ids).
        if not k.endswith("embeddings.token_type_ids"):
            state[TEXT_HF + k] = v
    return state


def reference_state(
    cfg: ModelConfig,
    seed: int = 0,
    components: tuple[str, ...] = METADATA_COMPONENTS,
    probabilistic: bool = True,
    depth: int | None = None,
) -> dict[str, torch.Tensor]:
    """A complete reference-layout state dict filled with seeded random values."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in reference_shapes(cfg, components, probabilistic, depth).items():
        state[key] = 0.3 * torch.randn(shape, generator=gen)
    for key, value in clap_reference_state(cfg).items():
        if not value.is_floating_point():
            state[key] = value.clone()  # index buffers and batch counters stay as built
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=gen)
        else:
            state[key] = 0.3 * torch.randn(value.shape, generator=gen)
    return state


def write_ckpt(path: Path, state: dict[str, torch.Tensor], hp: object) -> Path:
    """Save a dict shaped like a PyTorch-Lightning 2.0.2 checkpoint."""
    ckpt = {
        "epoch": 0,
        "global_step": 4321,
        "pytorch-lightning_version": "2.0.2",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 0}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'I2S_Recall', 'mode': 'max'}": {
                "best_model_score": torch.tensor(0.666),
                "dirpath": "/ckpts/run",
            }
        },
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []}],
        "lr_schedulers": [{"T_0": 5000, "last_epoch": 4321}],
        "native_amp_scaling_state": {"scale": 65536.0, "growth_tracker": 12},
        "hparams_name": "kwargs",
        "hyper_parameters": hp,
    }
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ref_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    return reference_state(cfg)


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory: pytest.TempPathFactory, ref_state) -> Path:
    path = tmp_path_factory.mktemp("lightning") / "epoch=0-I2S_Recall=0.666.ckpt"
    return write_ckpt(path, ref_state, hyper_parameters())


@pytest.fixture(scope="module")
def imported(ckpt_path: Path, cfg: ModelConfig) -> PSM:
    return import_lightning_checkpoint(ckpt_path, cfg)


# ------------------------------------------------------------------------------- weights land
@pytest.mark.parametrize(
    ("ref_key", "our_key"),
    [
        (BACKBONE + "patch_embed.proj.weight", "image_encoder.backbone.patch_embed.proj.weight"),
        (BACKBONE + "blocks.1.attn.qkv.weight", "image_encoder.backbone.blocks.1.attn.qkv.weight"),
        (BACKBONE + "blocks.0.mlp.fc2.bias", "image_encoder.backbone.blocks.0.mlp.fc2.bias"),
        (BACKBONE + "fc_norm.weight", "image_encoder.backbone.fc_norm.weight"),
        (SAT + "projector.linear1.weight", "image_encoder.projector.linear1.weight"),
        (SAT + "projector.linear2.bias", "image_encoder.projector.linear2.bias"),
        (FUSER + "cls_token", "fuser.cls_token"),
        (
            FUSER + "transformer_encoder.layers.2.self_attn.in_proj_weight",
            "fuser.transformer_encoder.layers.2.self_attn.in_proj_weight",
        ),
        (
            FUSER + "transformer_encoder.layers.0.linear1.weight",
            "fuser.transformer_encoder.layers.0.linear1.weight",
        ),
        (
            FUSER + "meta_embed.audio_source_fc.source_embed.weight",
            "fuser.meta_embed.audio_source_fc.source_embed.weight",
        ),
        (
            FUSER + "meta_embed.location_fc.fc1.weight",
            "fuser.meta_embed.location_fc.fc1.weight",
        ),
        (FUSER + "meta_embed.time_fc.fc2.bias", "fuser.meta_embed.time_fc.fc2.bias"),
        (SAT + "mean_head.linear1.weight", "image_head.mean_head.linear1.weight"),
        (SAT + "std_head.linear2.bias", "image_head.std_head.linear2.bias"),
        ("audio_encoder.mean_head.linear2.weight", "audio_head.mean_head.linear2.weight"),
        ("audio_encoder.std_head.linear1.bias", "audio_head.std_head.linear1.bias"),
        ("text_encoder.mean_head.linear1.bias", "text_head.mean_head.linear1.bias"),
        ("text_encoder.std_head.linear2.weight", "text_head.std_head.linear2.weight"),
        (
            AUDIO_HF + "audio_model.audio_encoder.patch_embed.proj.weight",
            "audio_tower.model.audio_model.audio_encoder.patch_embed.proj.weight",
        ),
        (
            AUDIO_HF + "audio_model.audio_encoder.batch_norm.running_var",
            "audio_tower.model.audio_model.audio_encoder.batch_norm.running_var",
        ),
        (
            AUDIO_HF + "audio_model.audio_encoder.layers.1.blocks.0.attention.self.query.weight",
            "audio_tower.model.audio_model.audio_encoder.layers.1.blocks.0.attention.self.query.weight",
        ),
        (
            AUDIO_HF + "audio_projection.linear1.weight",
            "audio_tower.model.audio_projection.linear1.weight",
        ),
        (
            TEXT_HF + "text_model.embeddings.word_embeddings.weight",
            "text_tower.model.text_model.embeddings.word_embeddings.weight",
        ),
        (
            TEXT_HF + "text_model.encoder.layer.0.attention.self.query.weight",
            "text_tower.model.text_model.encoder.layer.0.attention.self.query.weight",
        ),
        (
            TEXT_HF + "text_model.pooler.dense.weight",
            "text_tower.model.text_model.pooler.dense.weight",
        ),
        (
            TEXT_HF + "text_projection.linear2.bias",
            "text_tower.model.text_projection.linear2.bias",
        ),
        ("criterion.shift", "criterion.shift"),
        ("criterion.negative_scale", "criterion.negative_scale"),
    ],
)
def test_weights_land_where_they_belong(imported: PSM, ref_state, ref_key: str, our_key: str):
    ours = imported.state_dict()[our_key]
    assert torch.equal(ours, ref_state[ref_key]), f"{ref_key} -> {our_key}"


def test_import_applies_hyper_parameters_and_is_eval(imported: PSM, cfg: ModelConfig):
    assert not imported.training
    assert imported.config.loss.type == "pcmepp"
    assert imported.config.fusion is not None
    assert imported.config.fusion.components == METADATA_COMPONENTS
    # sat_type fixes the imagery geometry whatever the base config said (test config: 64 px tiles).
    assert imported.config.image == cfg.image.model_copy(update={"tile_size": 256})
    assert imported.config.embed_dim == 16
    a, b = imported.match_parameters()
    assert (a, b) != (cfg.loss.init_negative_scale, cfg.loss.init_shift)


def copy_by_hand(model: PSM, ref: dict[str, torch.Tensor]) -> None:
    """Load reference tensors into `model`, naming each of our modules' reference name by hand."""
    renames = {
        "image_encoder.": SAT,
        "fuser.": FUSER,
        "image_head.": SAT,
        "audio_tower.model.": AUDIO_HF,
        "audio_head.": "audio_encoder.",
        "text_tower.model.": TEXT_HF,
        "text_head.": "text_encoder.",
        "criterion.": "criterion.",
    }
    copied = 0
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            ours_prefix = next(p for p in renames if name.startswith(p))
            ref_name = renames[ours_prefix] + name[len(ours_prefix) :]
            if ref_name in ref:
                tensor.copy_(ref[ref_name])
                copied += 1
    assert copied == len(ref)


def test_forward_matches_hand_loaded_model(imported: PSM, ref_state, cfg: ModelConfig):
    torch.manual_seed(123)  # a different random init, overwritten by the copy
    by_hand = PSM(cfg).eval()
    copy_by_hand(by_hand, ref_state)

    gen = torch.Generator().manual_seed(7)
    images = torch.randn(2, 3, cfg.image.img_size, cfg.image.img_size, generator=gen)
    zoom = torch.tensor([1.0, 3.0])
    meta = make_metadata([40.7, -33.9], [-74.0, 151.2], month=[5, 11], hour=[14, -1], asource=0)
    texts = ["birds singing in a park", "traffic noise"]
    t = np.arange(cfg.audio.sample_rate, dtype=np.float32) / cfg.audio.sample_rate
    wave = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)

    with torch.no_grad():
        pairs = [
            (imported.embed_images(images, zoom, meta), by_hand.embed_images(images, zoom, meta)),
            (imported.embed_images(images, zoom), by_hand.embed_images(images, zoom)),
            (imported.embed_texts(texts), by_hand.embed_texts(texts)),
            (
                imported.embed_audio([wave], cfg.audio.sample_rate),
                by_hand.embed_audio([wave], cfg.audio.sample_rate),
            ),
        ]
    for ours, theirs in pairs:
        assert torch.isfinite(ours.mu).all()
        torch.testing.assert_close(ours.mu, theirs.mu, rtol=0, atol=0)
        torch.testing.assert_close(ours.logvar, theirs.logvar, rtol=0, atol=0)


# ------------------------------------------------------------------------------ error cases
def test_unexpected_key_is_reported(tmp_path: Path, ref_state):
    state = dict(ref_state)
    state[BACKBONE + "pos_embed"] = torch.zeros(1, 17, 24)
    state["audio_encoder.mean_head.linear3.weight"] = torch.zeros(16, 16)
    path = write_ckpt(tmp_path / "extra.ckpt", state, hyper_parameters())
    with pytest.raises(CheckpointError, match="unexpected") as err:
        import_lightning_checkpoint(path, "test")
    assert BACKBONE + "pos_embed" in str(err.value)
    assert "audio_encoder.mean_head.linear3.weight" in str(err.value)


def test_missing_key_is_reported(tmp_path: Path, ref_state):
    state = dict(ref_state)
    del state["text_encoder.std_head.linear2.bias"]
    del state[AUDIO_HF + "audio_model.audio_encoder.norm.weight"]
    path = write_ckpt(tmp_path / "missing.ckpt", state, hyper_parameters())
    with pytest.raises(CheckpointError, match="missing") as err:
        import_lightning_checkpoint(path, "test")
    assert "text_encoder.std_head.linear2.bias" in str(err.value)
    assert AUDIO_HF + "audio_model.audio_encoder.norm.weight" in str(err.value)


def test_wrong_shape_is_reported(tmp_path: Path, ref_state):
    state = dict(ref_state)
    state[SAT + "projector.linear2.weight"] = torch.zeros(16, 15)
    path = write_ckpt(tmp_path / "shape.ckpt", state, hyper_parameters())
    with pytest.raises(CheckpointError) as err:
        import_lightning_checkpoint(path, "test")
    msg = str(err.value)
    assert SAT + "projector.linear2.weight" in msg
    assert "(16, 15)" in msg and "(16, 16)" in msg


def test_deeper_backbone_than_config_is_reported(tmp_path: Path, cfg: ModelConfig):
    state = reference_state(cfg, depth=cfg.image.depth + 1)
    path = write_ckpt(tmp_path / "deep.ckpt", state, hyper_parameters())
    with pytest.raises(CheckpointError, match=r"image\.depth: checkpoint 3, config 2"):
        import_lightning_checkpoint(path, "test")


def test_hyper_parameters_contradicting_weights_are_reported(tmp_path: Path, ref_state):
    path = write_ckpt(tmp_path / "hp.ckpt", ref_state, hyper_parameters(metadata_type="month"))
    with pytest.raises(CheckpointError, match=r"fusion\.components"):
        import_lightning_checkpoint(path, "test")


def test_random_bytes_are_not_a_checkpoint(tmp_path: Path):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        import_lightning_checkpoint(path, "test")


def test_torch_file_without_state_dict_is_rejected(tmp_path: Path):
    path = tmp_path / "plain.pth"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not a PyTorch-Lightning checkpoint"):
        import_lightning_checkpoint(path, "test")


def test_missing_file_is_reported(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        import_lightning_checkpoint(tmp_path / "nope.ckpt", "test")


# ------------------------------------------------------------------------- other variants
def test_infonce_checkpoint(tmp_path: Path, cfg: ModelConfig):
    state = reference_state(cfg, seed=1, probabilistic=False)
    hp = hyper_parameters(
        probabilistic=False,
        loss_type="infonce",
        sat_encoder_type="SatMAE_baseline",
        audio_encoder_type="CLAP",
        text_encoder_type="CLAP",
    )
    path = write_ckpt(tmp_path / "infonce.ckpt", state, hp)
    model = import_lightning_checkpoint(path, "test")
    assert model.config.loss.type == "infonce"
    ours = model.state_dict()
    assert torch.equal(ours["criterion.tau"], state["criterion.tau"])
    assert torch.equal(
        ours["audio_head.head.linear1.weight"], state["audio_encoder.head.linear1.weight"]
    )
    assert torch.equal(ours["text_head.head.linear2.bias"], state["text_encoder.head.linear2.bias"])
    assert not any(k.startswith("image_head.") for k in ours)
    assert model.match_parameters() == (1.0, 0.0)
    with torch.no_grad():
        emb = model.embed_texts(["rain"])
    torch.testing.assert_close(emb.mu.norm(dim=-1), torch.ones(1))


def test_infonce_detected_from_weights_without_hyper_parameters(tmp_path: Path, cfg):
    state = reference_state(cfg, seed=2, probabilistic=False)
    hp = hyper_parameters()
    for key in ("probabilistic", "loss_type", "metadata_type"):
        del hp[key]
    path = write_ckpt(tmp_path / "old.ckpt", state, hp)
    model = import_lightning_checkpoint(path, "test")
    assert model.config.loss.type == "infonce"
    assert model.config.fusion is not None
    assert model.config.fusion.components == METADATA_COMPONENTS


def test_metadata_subset_builds_only_those_components(tmp_path: Path, cfg: ModelConfig):
    state = reference_state(cfg, seed=3, components=("month", "time"))
    path = write_ckpt(tmp_path / "mt.ckpt", state, hyper_parameters(metadata_type="month_time"))
    model = import_lightning_checkpoint(path, "test")
    assert model.config.fusion is not None
    assert model.config.fusion.components == ("month", "time")
    assert model.fuser is not None
    embed = model.fuser.meta_embed
    assert hasattr(embed, "month_fc") and hasattr(embed, "time_fc")
    assert not any(
        hasattr(embed, m) for m in ("location_fc", "audio_source_fc", "caption_source_fc")
    )
    assert torch.equal(
        model.state_dict()["fuser.meta_embed.month_fc.fc1.weight"],
        state[FUSER + "meta_embed.month_fc.fc1.weight"],
    )
    meta = make_metadata([10.0], [20.0], month=[3], hour=[9])
    with torch.no_grad():
        emb = model.embed_images(torch.zeros(1, 3, 32, 32), 1.0, meta)
    assert torch.isfinite(emb.mu).all()


def test_metadata_none_builds_no_fuser(tmp_path: Path, cfg: ModelConfig):
    state = reference_state(cfg, seed=4, components=())
    path = write_ckpt(tmp_path / "none.ckpt", state, hyper_parameters(metadata_type="none"))
    model = import_lightning_checkpoint(path, "test")
    assert model.config.fusion is None
    assert model.fuser is None


def test_sat_type_sets_imagery_geometry(tmp_path: Path, ref_state):
    path = write_ckpt(tmp_path / "bing.ckpt", ref_state, hyper_parameters(sat_type="bingmap"))
    model = import_lightning_checkpoint(path, "test")
    image = model.config.image
    assert (image.sat_type, image.native_gsd, image.tile_size) == ("bingmap", 0.6, 300)


def test_unknown_sat_type_is_reported(tmp_path: Path, ref_state):
    path = write_ckpt(tmp_path / "x.ckpt", ref_state, hyper_parameters(sat_type="landsat"))
    with pytest.raises(CheckpointError, match="landsat"):
        import_lightning_checkpoint(path, "test")


def fake_class(monkeypatch, module: str, name: str = "AttributeDict", base: type = dict) -> type:
    """A class pickled under `module.name`, importable only while the test writes the file."""
    cls = type(name, (base,), {"__module__": module, "__qualname__": name})
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        mod = sys.modules.get(".".join(parts[:i])) or types.ModuleType(".".join(parts[:i]))
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), mod)
    setattr(sys.modules[module], name, cls)
    return cls


@pytest.mark.parametrize(
    "module",
    [
        "lightning.fabric.utilities.data",
        "lightning_fabric.utilities.data",
        "pytorch_lightning.utilities.parsing",
    ],
)
def test_lightning_attribute_dicts_need_no_lightning(
    tmp_path: Path, ref_state, monkeypatch, module
):
    # Hyper-parameters pickled as Lightning's AttributeDict, read where Lightning is absent.
    cls = fake_class(monkeypatch, module)
    path = write_ckpt(
        tmp_path / "pl.ckpt", ref_state, cls(hyper_parameters(sat_type="googleEarth"))
    )
    for name in list(sys.modules):
        if name.split(".")[0] in ("lightning", "lightning_fabric", "pytorch_lightning"):
            monkeypatch.delitem(sys.modules, name)
    model = import_lightning_checkpoint(path, "test")
    assert model.config.image.sat_type == "googleEarth"


def test_hyper_parameters_as_a_namespace(tmp_path: Path, ref_state):
    path = write_ckpt(
        tmp_path / "ns.ckpt", ref_state, argparse.Namespace(**hyper_parameters(sat_type="bingmap"))
    )
    assert import_lightning_checkpoint(path, "test").config.image.sat_type == "bingmap"


class _RunsCode:
    """Pickles as a call of os.system: what a malicious checkpoint would hold."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(
    tmp_path: Path, ref_state, capsys
):
    from server.cli import main

    marker = tmp_path / "pwned"
    hp = hyper_parameters()
    hp["payload"] = _RunsCode(f"touch {marker}")
    path = write_ckpt(tmp_path / "evil.ckpt", ref_state, hp)
    with pytest.raises(CheckpointError, match="refused without running it") as info:
        import_lightning_checkpoint(path, "test")
    assert "posix.system" in str(info.value) or "os.system" in str(info.value)
    assert not marker.exists()
    # The command line says so in one line and exits 2; still nothing ran.
    assert main(["import-checkpoint", str(path), "--config", "test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused without running it" in err[0]
    assert not marker.exists() and not path.with_suffix(".safetensors").exists()


def test_an_unknown_class_is_refused_too(tmp_path: Path, ref_state, monkeypatch):
    cls = fake_class(monkeypatch, "some_plugin.state", "Thing", object)
    hp = hyper_parameters()
    hp["thing"] = cls()
    path = write_ckpt(tmp_path / "plugin.ckpt", ref_state, hp)
    with pytest.raises(CheckpointError, match=r"GLOBAL some_plugin\.state\.Thing"):
        import_lightning_checkpoint(path, "test")


# ------------------------------------------------------------------------------------- CLI
def test_cli_handler_writes_loadable_checkpoint(tmp_path: Path, ckpt_path: Path, ref_state, capsys):
    out = tmp_path / "models" / "psm.safetensors"
    args = argparse.Namespace(ckpt=ckpt_path, config="test", out=out)
    assert run_import(args) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    model = load_checkpoint(out)
    assert printed[-1] == model.model_id
    assert torch.equal(
        model.state_dict()["image_encoder.backbone.blocks.1.attn.qkv.weight"],
        ref_state[BACKBONE + "blocks.1.attn.qkv.weight"],
    )


def test_cli_missing_input_exits_2_in_one_line(tmp_path: Path, capsys):
    from server.cli import main

    assert main(["import-checkpoint", str(tmp_path / "absent.ckpt"), "--config", "test"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("soundscape import-checkpoint: error: ")
    assert "absent.ckpt" in err[0] and "does not exist" in err[0]
    assert captured.out == ""


def test_cli_parser_registration():
    parser = argparse.ArgumentParser()
    add_import_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["import-checkpoint", "a.ckpt", "--out", "b.safetensors"])
    assert args.func is cli_run_import
    assert args.config == "paper"
    assert args.ckpt == Path("a.ckpt") and args.out == Path("b.safetensors")
