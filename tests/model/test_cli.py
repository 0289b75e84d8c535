"""`soundscape train` / `evaluate` end to end in real subprocesses, and their bad-input handling."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

SMALL_DATA = json.dumps({"size": 48, "n_classes": 4})


def soundscape(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )


def train_in(workdir, steps: int) -> subprocess.CompletedProcess:
    """A tiny `soundscape train` run (same settings every time, so a second call resumes)."""
    return soundscape("train", "--config", "test", "--dataset-args", SMALL_DATA, "--workdir",
                      str(workdir), "--steps", str(steps), "--batch-size", "8", "--lr", "1e-3",
                      "--warmup-steps", "2", "--augment", "dihedral", "--freeze-audio-at", "3",
                      "--no-freeze-audio-head", "--no-progress")  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    out = train_in(workdir, steps=4)
    assert out.returncode == 0, out.stderr
    return workdir, out


def test_train_writes_a_checkpoint_and_reports_the_loss(trained):
    workdir, out = trained
    assert (workdir / "model.safetensors").exists()
    assert "model id: psm-" in out.stdout and "trained 4 steps" in out.stdout
    state = torch.load(workdir / "trainer_state.pt", weights_only=False)
    assert state["train_config"]["augment"] == "dihedral"
    assert state["train_config"]["warmup_steps"] == 2
    assert state["train_config"]["freeze_audio_at"] == 3
    assert state["train_config"]["freeze_audio_head"] is False


def test_train_resumes_from_the_workdir(trained):
    workdir, _ = trained
    out = train_in(workdir, steps=6)
    assert out.returncode == 0, out.stderr
    assert "resumed from step 4" in out.stdout and "trained 6 steps" in out.stdout


def test_evaluate_prints_the_paper_table(trained, tmp_path):
    workdir, _ = trained
    out = soundscape(
        "evaluate",
        "--checkpoint",
        str(workdir / "model.safetensors"),
        "--dataset-args",
        SMALL_DATA,
        "--samples",
        "24",
        "--zooms",
        "1,5",
        "--json",
        str(tmp_path / "rows.json"),
    )
    assert out.returncode == 0, out.stderr
    assert "| zoom | metadata | text | I2A R@10% | I2A MR | A2I R@10% | A2I MR |" in out.stdout
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 2 * 2 * 2  # zooms x metadata x text
    assert {(r["zoom"], r["metadata"], r["text"]) for r in rows} == {
        (z, m, t) for z in (1, 5) for m in (False, True) for t in (False, True)
    }
    assert all(0 <= r["i2a_recall"] <= 1 and 1 <= r["a2i_median_rank"] <= 24 for r in rows)


@pytest.mark.parametrize(
    "args,message",
    [
        (["evaluate", "--checkpoint", "/nonexistent/model.safetensors"], "does not exist"),
        (["train", "--config", "nope", "--workdir", "{tmp}"], "unknown model config 'nope'"),
        (["train", "--zooms", "2", "--workdir", "{tmp}"], "zoom levels must be among"),
        (["train", "--dataset", "imagenet", "--workdir", "{tmp}"], "unknown dataset 'imagenet'"),
        (["train", "--dataset-args", "[1]", "--workdir", "{tmp}"], "JSON object"),
        (
            ["train", "--dataset-args", SMALL_DATA, "--batch-size", "100", "--workdir", "{tmp}"],
            "fewer than batch_size",
        ),
        (["train", "--steps", "-3", "--workdir", "{tmp}"], "positive integer"),
        (["train", "--warmup-steps", "-5", "--workdir", "{tmp}"], "integer >= 0"),
        (["train", "--augment", "mixup", "--workdir", "{tmp}"], "invalid choice: 'mixup'"),
        (
            ["train", "--steps", "5", "--freeze-audio-at", "9", "--workdir", "{tmp}"],
            "freeze_audio_at must be in [0, steps=5]",
        ),
        (["evaluate", "--checkpoint", "{junk}"], "not a readable PSM checkpoint"),
    ],
)
def test_bad_input_gives_a_clear_message_and_nonzero_exit(args, message, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    args = [a.replace("{tmp}", str(tmp_path / "w")).replace("{junk}", str(junk)) for a in args]
    out = soundscape(*args, timeout=120)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_shapes_that_do_not_fit_are_reported(trained, tmp_path):
    """A checkpoint whose weights do not fit its config: clear message, exit 2."""
    from safetensors.torch import load_file, save_file

    from model.checkpoint import FORMAT, model_id_for, read_header
    from model.config import ModelConfig

    workdir, _ = trained
    src = workdir / "model.safetensors"
    cfg = ModelConfig.model_validate_json(read_header(src)["config"])
    bigger = cfg.with_updates(image={**cfg.image.model_dump(), "embed_dim": 32})
    state = load_file(str(src))
    bad = tmp_path / "bad.safetensors"
    save_file(
        state,
        str(bad),
        metadata={
            "format": FORMAT,
            "config": bigger.to_json(),
            "model_id": model_id_for(bigger, state),
        },
    )
    out = soundscape("evaluate", "--checkpoint", str(bad))
    assert (
        out.returncode == 2
        and "does not fit config" in out.stderr
        and "Traceback" not in out.stderr
    )
