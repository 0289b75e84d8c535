"""A checkpoint's probability calibration reaches every probability the service answers."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.calibration import sigmoid
from model.checkpoint import load_checkpoint, save_checkpoint
from server.app import create_app
from server.settings import Settings
from tests.server.conftest import BBOX

CALIBRATION = {"text": (2.0, -1.0), "audio": (3.0, 0.5)}


@pytest.fixture(scope="module")
def calibrated_checkpoint(tiny_checkpoint, tmp_path_factory):
    model = load_checkpoint(tiny_checkpoint)
    model.calibration = dict(CALIBRATION)
    path = tmp_path_factory.mktemp("calibrated") / "cal.safetensors"
    save_checkpoint(model, path)
    return path


def client_for(store, checkpoint) -> TestClient:
    return TestClient(create_app(Settings(store=str(store), checkpoint=str(checkpoint),
                                          log_json=False)))  # fmt: skip


def test_probabilities_follow_the_calibration_of_the_query_kind(
    tiny_store, tiny_checkpoint, calibrated_checkpoint
):
    w, s, e, n = BBOX
    points = [[s + 1.0, w + 1.0], [s + 2.0, w + 2.5], [n - 0.5, e - 0.5]]
    body = {"query": {"text": "Birds singing at dawn"}, "metadata": {"month": 5}, "level": 1,
            "points": points}  # fmt: skip
    legend_q = "month=5&scale=probability&level=1"
    with client_for(tiny_store, calibrated_checkpoint) as c:
        res = c.post("/similarity", json=body).json()["results"]
        qid = c.post("/queries", json={"text": "Birds singing at dawn"}).json()["id"]
        plain_legend = c.get(f"/legend?query={qid}&month=5&level=1").json()
        prob_legend = c.get(f"/legend?query={qid}&{legend_q}").json()
        token = c.app.state.svc.engine.store_token
    score = np.array([p["score"] for p in res])
    a, b = CALIBRATION["text"]
    np.testing.assert_allclose([p["probability"] for p in res], sigmoid(a * score + b), atol=1e-6)
    lo, hi = plain_legend["min"], plain_legend["max"]
    assert (prob_legend["min"], prob_legend["max"]) == pytest.approx(
        (float(sigmoid(a * lo + b)), float(sigmoid(a * hi + b))), rel=1e-5
    )
    # The same store serves the uncalibrated model (the model id is the same) with other
    # probabilities, under another cache token, so shared caches never mix the two.
    with client_for(tiny_store, tiny_checkpoint) as c:
        res0 = c.post("/similarity", json=body).json()["results"]
        token0 = c.app.state.svc.engine.store_token
    a0, b0 = load_checkpoint(tiny_checkpoint).match_parameters()
    np.testing.assert_allclose([p["score"] for p in res0], score, atol=1e-6)
    np.testing.assert_allclose([p["probability"] for p in res0], sigmoid(a0 * score + b0),
                               atol=1e-6)  # fmt: skip
    assert token != token0 and token.startswith(token0)
