import pytest
import torch

from model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_id,
    read_header,
    save_checkpoint,
)
from model.psm import PSM


def test_roundtrip_keeps_weights_config_and_id(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    mid = save_checkpoint(tiny_model, path)
    assert mid.startswith("psm-") and mid == model_id(tiny_model)
    header = read_header(path)
    assert header["model_id"] == mid and '"name":"test"' in header["config"]
    assert "freesound" in header["vocabulary"]
    loaded = load_checkpoint(path)
    assert loaded.model_id == mid and not loaded.training
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.embed_images(x, 3.0).mu, tiny_model.embed_images(x, 3.0).mu)
    torch.testing.assert_close(loaded.embed_texts(["rain"]).mu, tiny_model.embed_texts(["rain"]).mu)


def test_model_id_changes_with_any_weight(tiny_model):
    before = model_id(tiny_model)
    with torch.no_grad():
        tiny_model.criterion.shift += 1e-3
    assert model_id(tiny_model) != before


def test_corrupted_weights_are_detected(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # flip bits inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


def test_truncated_and_foreign_files_give_clear_errors(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"not a readable PSM checkpoint|corrupted"):
        load_checkpoint(path)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="import-checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_weights_that_do_not_fit_the_config(tiny_model, tmp_path, test_config):
    from safetensors.torch import save_file

    from model.checkpoint import FORMAT, model_id_for

    small = test_config.with_updates(
        embed_dim=8,
        audio={**test_config.audio.model_dump(), "projection_dim": 8},
        text={**test_config.text.model_dump(), "projection_dim": 8},
    )
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    path = tmp_path / "mismatch.safetensors"
    save_file(
        state,
        str(path),
        metadata={
            "format": FORMAT,
            "config": small.to_json(),
            "model_id": model_id_for(small, state),
        },
    )
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path)


def test_save_is_atomic_and_leaves_no_temp_files(tiny_model, tmp_path):
    save_checkpoint(tiny_model, tmp_path / "a.safetensors")
    save_checkpoint(PSM(tiny_model.config), tmp_path / "a.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_random_checkpoints_are_seeded(tmp_path):
    """The benchmarks' stand-in models: the same seed writes the same model (id and weights),
    another seed another one."""
    from model.checkpoint import load_checkpoint, save_random_checkpoint
    from model.config import load_config

    cfg = load_config("test")
    a = save_random_checkpoint(cfg, tmp_path / "a.safetensors", seed=4)
    b = save_random_checkpoint(cfg, tmp_path / "b.safetensors", seed=4)
    c = save_random_checkpoint(cfg, tmp_path / "c.safetensors", seed=5)
    assert a == b != c
    assert load_checkpoint(tmp_path / "a.safetensors").model_id == a
