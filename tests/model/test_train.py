import threading
from dataclasses import asdict

import numpy as np
import pytest
import torch

from model.data import SyntheticDataset
from model.psm import PSM
from model.train import TrainConfig, Trainer, batch_indices


def make_trainer(config, workdir, steps, **kw):
    torch.manual_seed(0)
    ds = SyntheticDataset("train", size=96, n_classes=4)
    cfg = TrainConfig(
        steps=steps, batch_size=16, lr=1e-3, weight_decay=0.01, checkpoint_every=5, **kw
    )
    return Trainer(PSM(config), ds, cfg, workdir)


def test_training_lowers_the_loss(test_config, tmp_path):
    losses = make_trainer(test_config, tmp_path, 30).train(progress=False)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:3])


def test_resume_continues_with_identical_losses(test_config, tmp_path):
    straight = make_trainer(test_config, tmp_path / "a", 10).train(progress=False)
    first = make_trainer(test_config, tmp_path / "b", 5)
    first.train(progress=False)
    resumed = make_trainer(test_config, tmp_path / "b", 10)
    assert resumed.try_resume() and resumed.step == 5
    losses = resumed.train(progress=False)
    assert losses[:5] == straight[:5]
    np.testing.assert_array_equal(losses[5:], straight[5:])


def test_resume_refuses_another_config(test_config, tmp_path):
    make_trainer(test_config, tmp_path, 5).train(progress=False)
    other = test_config.with_updates(
        embed_dim=8,
        audio={**test_config.audio.model_dump(), "projection_dim": 8},
        text={**test_config.text.model_dump(), "projection_dim": 8},
    )
    with pytest.raises(ValueError, match="different model config"):
        make_trainer(other, tmp_path, 10).try_resume()


def test_export_writes_a_loadable_checkpoint(test_config, tmp_path):
    from model.checkpoint import load_checkpoint

    tr = make_trainer(test_config, tmp_path, 2)
    tr.train(progress=False)
    path, mid = tr.export()
    assert load_checkpoint(path).model_id == mid


def test_batches_cover_an_epoch_without_repeats():
    n, b = 64, 16
    seen = np.concatenate([batch_indices(n, b, seed=1, step=s) for s in range(4)])
    assert sorted(seen.tolist()) == list(range(n))
    assert not np.array_equal(batch_indices(n, b, 1, 0), batch_indices(n, b, 1, 4))


def test_bad_training_settings_are_rejected(test_config, tmp_path):
    ds = SyntheticDataset("train", size=8)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        Trainer(PSM(test_config), ds, TrainConfig(batch_size=16), tmp_path)
    with pytest.raises(ValueError, match="zoom levels"):
        Trainer(PSM(test_config), ds, TrainConfig(batch_size=4, zooms=(2,)), tmp_path)


def test_batches_are_built_in_the_background_only_while_features_are_computed(
    test_config, tmp_path, monkeypatch
):
    trainer = make_trainer(test_config, tmp_path / "a", 10, cache_features=True)
    assert all(trainer._prefetch_pays(s) for s in range(8))  # nothing computed yet
    uncached = make_trainer(test_config, tmp_path / "b", 10)
    assert all(uncached._prefetch_pays(s) for s in range(20))  # synthesis on every step
    threads = {}

    def note_threads(step, loss):
        threads[step] = [t.name for t in threading.enumerate() if t.name.startswith("batches")]

    # Where the batch is built changes nothing in the results.
    losses = trainer.train(progress=False, on_step=note_threads)
    assert not any(trainer._prefetch_pays(s) for s in range(20))  # every sample's parts kept
    # The background thread runs during the first epoch (6 steps) and is gone afterwards: a live
    # thread that has run torch ops slows every training step.
    assert threads[1] and not threads[7] and not threads[10]
    monkeypatch.setattr(Trainer, "_prefetch_pays", lambda self, step: True)
    always = make_trainer(test_config, tmp_path / "c", 10, cache_features=True)
    np.testing.assert_array_equal(always.train(progress=False), losses)


def test_features_computed_up_front_in_worker_processes_train_identically(test_config, tmp_path):
    lazy = make_trainer(test_config, tmp_path / "lazy", 8, cache_features=True)
    lazy_losses = lazy.train(progress=False)
    warm = make_trainer(test_config, tmp_path / "warm", 8, cache_features=True, feature_workers=2)
    warm.collator.warm(range(len(warm.dataset)), 1, workers=2, chunk=32)
    assert len(warm.collator) == len(warm.dataset)
    assert not any(warm._prefetch_pays(s) for s in range(8))
    for i in (0, 50, 95):
        for key, value in lazy.collator._audio[i].items():
            torch.testing.assert_close(warm.collator._audio[i][key], value, rtol=0, atol=0)
        assert warm.collator._meta[i] == lazy.collator._meta[i] or np.allclose(
            warm.collator._meta[i], lazy.collator._meta[i], equal_nan=True
        )
    np.testing.assert_array_equal(warm.train(progress=False), lazy_losses)


def _lrs(cfg: TrainConfig, steps: int) -> list[float]:
    from model.train import make_scheduler

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_without_warmup_the_schedule_is_the_reference_cosine_with_restarts():
    lrs = _lrs(TrainConfig(lr=1e-3, restart_period=8), 20)
    expected = [1e-3 * 0.5 * (1 + np.cos(np.pi * (s % 8) / 8)) for s in range(20)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9, atol=1e-15)


def test_warmup_ramps_linearly_and_then_follows_the_cosine():
    lrs = _lrs(TrainConfig(lr=1e-3, restart_period=100, warmup_steps=10), 100)
    cosine = [1e-3 * 0.5 * (1 + np.cos(np.pi * s / 100)) for s in range(100)]
    np.testing.assert_allclose(lrs[:10], [c * (s + 1) / 10 for s, c in enumerate(cosine[:10])])
    np.testing.assert_allclose(lrs[10:], cosine[10:])
    assert lrs[0] == pytest.approx(1e-4)


def test_resume_with_warmup_continues_with_identical_losses(test_config, tmp_path):
    straight = make_trainer(test_config, tmp_path / "a", 10, warmup_steps=6).train(progress=False)
    make_trainer(test_config, tmp_path / "b", 4, warmup_steps=6).train(progress=False)
    resumed = make_trainer(test_config, tmp_path / "b", 10, warmup_steps=6)
    assert resumed.try_resume() and resumed.step == 4
    losses = resumed.train(progress=False)
    np.testing.assert_array_equal(losses[4:], straight[4:])
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(
        1e-3 * 0.5 * (1 + np.cos(np.pi * 10 / 5000))
    )


def test_negative_warmup_is_rejected(test_config, tmp_path):
    with pytest.raises(ValueError, match="warmup_steps"):
        make_trainer(test_config, tmp_path, 4, warmup_steps=-1)


def test_augmentation_is_chosen_by_name_and_unknown_names_are_rejected(test_config, tmp_path):
    ref = make_trainer(test_config, tmp_path / "ref", 1).make_batch(0)
    dih = make_trainer(test_config, tmp_path / "dih", 1, augment="dihedral").make_batch(0)
    cached = make_trainer(
        test_config, tmp_path / "cached", 1, augment="dihedral", cache_features=True
    ).make_batch(0)
    assert not torch.equal(ref.images, dih.images)
    torch.testing.assert_close(cached.images, dih.images, rtol=0, atol=0)
    with pytest.raises(ValueError, match="augment must be one of"):
        make_trainer(test_config, tmp_path / "bad", 1, augment="mixup")


def _audio_state(trainer: Trainer) -> list[torch.Tensor]:
    m = trainer.model
    return [p.detach().clone() for p in (*m.audio_tower.parameters(), *m.audio_head.parameters())]


def test_freezing_audio_keeps_its_weights_and_still_trains_the_rest(test_config, tmp_path):
    trainer = make_trainer(test_config, tmp_path, 10, cache_features=True, freeze_audio_at=5)
    trainer.cfg.steps = 5
    trainer.train(progress=False)
    audio_at_5 = _audio_state(trainer)
    image_at_5 = [p.detach().clone() for p in trainer.model.image_encoder.parameters()]
    trainer.cfg.steps = 10
    losses = trainer.train(progress=False)
    assert trainer.audio_frozen() and len(losses) == 10 and all(np.isfinite(losses))
    for before, after in zip(audio_at_5, _audio_state(trainer), strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=0)
    moved = [
        not torch.equal(b, a)
        for b, a in zip(image_at_5, trainer.model.image_encoder.parameters(), strict=True)
    ]
    assert all(moved)
    # Before the switch the audio tower trained like in an unfrozen run.
    unfrozen = make_trainer(test_config, tmp_path / "u", 10, cache_features=True)
    np.testing.assert_array_equal(unfrozen.train(progress=False)[:5], losses[:5])
    assert not np.array_equal(unfrozen.losses[5:], losses[5:])


def test_resume_after_freezing_audio_continues_with_identical_losses(test_config, tmp_path):
    kw = {"cache_features": True, "freeze_audio_at": 3}
    straight = make_trainer(test_config, tmp_path / "a", 10, **kw).train(progress=False)
    make_trainer(test_config, tmp_path / "b", 5, **kw).train(progress=False)
    resumed = make_trainer(test_config, tmp_path / "b", 10, **kw)
    assert resumed.try_resume() and resumed.step == 5
    np.testing.assert_array_equal(resumed.train(progress=False)[5:], straight[5:])


def test_freezing_only_the_audio_tower_keeps_training_its_head(test_config, tmp_path):
    kw = {"cache_features": True, "freeze_audio_at": 5, "freeze_audio_head": False}
    trainer = make_trainer(test_config, tmp_path / "a", 5, **kw)
    trainer.train(progress=False)
    m = trainer.model
    tower_at_5 = [p.detach().clone() for p in m.audio_tower.parameters()]
    head_at_5 = [p.detach().clone() for p in m.audio_head.parameters()]
    trainer.cfg.steps = 10
    losses = trainer.train(progress=False)
    for before, after in zip(tower_at_5, m.audio_tower.parameters(), strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert all(
        not torch.equal(b, a) for b, a in zip(head_at_5, m.audio_head.parameters(), strict=True)
    )
    # Not the same run as freezing the head too; resuming after the switch continues it exactly.
    both = make_trainer(test_config, tmp_path / "b", 10, **{**kw, "freeze_audio_head": True})
    assert not np.array_equal(both.train(progress=False)[5:], losses[5:])
    make_trainer(test_config, tmp_path / "c", 7, **kw).train(progress=False)
    resumed = make_trainer(test_config, tmp_path / "c", 10, **kw)
    assert resumed.try_resume() and resumed.step == 7
    np.testing.assert_array_equal(resumed.train(progress=False)[7:], losses[7:])
    # A run cannot switch between the two on resume.
    other = make_trainer(test_config, tmp_path / "c", 12, **{**kw, "freeze_audio_head": True})
    with pytest.raises(ValueError, match="freeze_audio_head: False -> True"):
        other.try_resume()


def test_bad_audio_freezing_settings_are_rejected(test_config, tmp_path):
    with pytest.raises(ValueError, match="freeze_audio_at must be in"):
        make_trainer(test_config, tmp_path, 4, cache_features=True, freeze_audio_at=5)
    with pytest.raises(ValueError, match="needs cache_features"):
        make_trainer(test_config, tmp_path, 4, freeze_audio_at=2)


def test_resume_refuses_other_training_settings_but_allows_more_steps(test_config, tmp_path):
    make_trainer(test_config, tmp_path, 4, warmup_steps=2).train(progress=False)
    # Longer, and with settings that change where or how fast it runs, not what a step does.
    longer = make_trainer(test_config, tmp_path, 8, warmup_steps=2, feature_workers=2)
    assert longer.try_resume() and longer.step == 4
    for changed, message in (
        ({"warmup_steps": 3}, "warmup_steps: 2 -> 3"),
        ({"warmup_steps": 2, "augment": "dihedral"}, "augment: 'reference' -> 'dihedral'"),
        ({"warmup_steps": 2, "seed": 7}, "seed: 56 -> 7"),
        ({"warmup_steps": 2, "grad_clip": None}, "grad_clip: 1.0 -> None"),
    ):
        other = make_trainer(test_config, tmp_path, 8, **changed)
        with pytest.raises(ValueError, match="other training settings") as err:
            other.try_resume()
        assert message in str(err.value)
        assert other.step == 0  # nothing loaded


def test_states_written_before_a_setting_existed_resume_with_its_default(test_config, tmp_path):
    from model.train import changed_settings

    saved = {k: v for k, v in asdict(TrainConfig()).items() if k not in ("augment", "warmup_steps")}
    assert changed_settings(saved, TrainConfig()) == []
    assert changed_settings(saved, TrainConfig(augment="dihedral")) == [
        "augment: 'reference' -> 'dihedral'"
    ]
