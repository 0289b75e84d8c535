"""Reliability, ECE and the Platt fit (model/calibration.py), and calibration in checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model.calibration import fit_platt, reliability, sigmoid
from model.checkpoint import (
    calibration_digest,
    load_checkpoint,
    model_id,
    read_header,
    save_checkpoint,
)
from model.config import load_config
from model.errors import CheckpointError
from model.psm import PSM


def test_ece_is_the_count_weighted_gap_per_bin():
    # Two bins used: [0, 1/15) holds 0.0 and 0.05 (mean 0.025, one positive of two: gap 0.475);
    # the last bin holds 0.95 and 1.0 (mean 0.975, both positive: gap 0.025).
    rel = reliability(np.array([0.0, 0.05, 0.95, 1.0]), np.array([0, 1, 1, 1]))
    assert rel.count[0] == 2 and rel.count[-1] == 2 and sum(rel.count) == 4
    assert rel.confidence[0] == pytest.approx(0.025) and rel.accuracy[0] == 0.5
    assert rel.ece == pytest.approx((2 * 0.475 + 2 * 0.025) / 4)
    assert np.isnan(rel.confidence[5]) and rel.to_json()["confidence"][5] is None


def test_ece_is_small_when_calibrated_and_large_when_not():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = rng.random(p.size) < p
    assert reliability(p, y).ece < 0.01
    assert reliability(p, rng.random(p.size) < p**3).ece > 0.15


@pytest.mark.parametrize(
    ("prob", "label"),
    [(np.array([0.5]), np.array([1, 0])), (np.array([1.5]), np.array([1])),
     (np.array([0.5]), np.array([2])), (np.array([]), np.array([]))],
)  # fmt: skip
def test_reliability_refuses_bad_input(prob, label):
    with pytest.raises(ValueError):
        reliability(prob, label)


@pytest.mark.parametrize("init", [(1.0, 0.0), (20.0, 10.0), (-3.0, 2.0)])
def test_platt_recovers_the_generating_parameters_from_any_start(init):
    rng = np.random.default_rng(1)
    score = rng.normal(-2.0, 1.0, 100_000)
    label = rng.random(score.size) < sigmoid(1.7 * score + 1.2)
    a, b = fit_platt(score, label, init=init)
    assert a == pytest.approx(1.7, abs=0.05) and b == pytest.approx(1.2, abs=0.1)
    # The fitted sigmoid is calibrated on its own data.
    assert reliability(sigmoid(a * score + b), label).ece < 0.01


def test_platt_refuses_labels_it_cannot_fit():
    with pytest.raises(ValueError, match="all the same"):
        fit_platt(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="finite"):
        fit_platt(np.array([0.1, np.nan]), np.array([0, 1]))


@pytest.fixture()
def model() -> PSM:
    torch.manual_seed(0)
    return PSM(load_config("test")).eval()


def test_match_parameters_use_the_calibration_of_the_query_kind(model):
    learned = model.match_parameters()
    model.calibration = {"text": (2.0, -1.0)}
    assert model.match_parameters("text") == (2.0, -1.0)
    assert model.match_parameters("audio") == learned == model.match_parameters()


def test_calibration_round_trips_without_changing_the_model_id(model, tmp_path):
    plain = save_checkpoint(model, tmp_path / "plain.safetensors")
    model.calibration = {"text": (2.0, -1.0), "audio": (3.5, 0.25)}
    calibrated = save_checkpoint(model, tmp_path / "cal.safetensors")
    # The id names the embeddings: a store built with the plain model serves the calibrated one.
    assert calibrated == plain == model_id(model)
    loaded = load_checkpoint(tmp_path / "cal.safetensors")
    assert loaded.calibration == model.calibration
    assert load_checkpoint(tmp_path / "plain.safetensors").calibration == {}
    assert json.loads(read_header(tmp_path / "cal.safetensors")["calibration"]) == {
        "audio": [3.5, 0.25], "text": [2.0, -1.0]
    }  # fmt: skip
    assert calibration_digest({}) == ""
    assert calibration_digest(model.calibration) != calibration_digest({"text": (2.0, -1.5)})


@pytest.mark.parametrize(
    "bad",
    ['{"text": [1, "x"]}', '{"video": [1, 2]}', '{"text": [1, 2, 3]}', "[1, 2]", "{not json",
     '{"text": [NaN, 1]}'],
)  # fmt: skip
def test_a_bad_calibration_header_is_refused(model, tmp_path, bad):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    meta = read_header(path)
    save_file(load_file(str(path)), str(path), metadata={**meta, "calibration": bad})
    with pytest.raises(CheckpointError, match="calibration"):
        load_checkpoint(path)
