"""The scoring core's answers are those recorded before it was rewritten as one path (issue 20).

Every heatmap and uncertainty tile to its fingerprint (block means within one step of 255),
every /similarity value and legend range to 1e-5 (the float16 store values of masked
metadata a little wider, see TOLERANCE): what float rounding on another CPU leaves alone and
any change of output does not; see `scoring_golden.py` for the set, the
fingerprints and the one intended change (the masked-metadata uncertainty now comes from the
store's u0).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.server.scoring_golden import (
    FINGERPRINT_TOLERANCE,
    GOLDEN,
    collect,
    fingerprint,
    fingerprint_distance,
)

# Values from fused cells agree to about 1e-6 of themselves between CPUs. Those of masked
# metadata come from the store's float16 mu0/c0/u0, where a float32 difference in the job that
# wrote them can round one coordinate to its neighbouring float16 (a step of 1/2048 of it):
# about 1e-4 of a score and, through the sigmoid's slope at p ~ 0.01, 3e-4 of a probability.
TOLERANCE = {
    "score": {"rel": 1e-5, "abs": 2e-4},
    "uncertainty": {"rel": 1e-5, "abs": 2e-4},
    "probability": {"rel": 1e-3, "abs": 1e-9},
}


@pytest.fixture(scope="module")
def answers(client):
    return collect(client)


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("section", ["tiles", "uncertainty"])
def test_tiles_look_as_recorded(answers, golden, section):
    assert len(answers[section]) == len(golden[section]) > 50
    differ = {}
    for key, want in golden[section].items():
        got = answers[section][key]
        (status, want_print), (got_status, got_print) = want.split(":"), got.split(":")
        if got_status != status or (
            status == "200" and fingerprint_distance(want_print, got_print) > FINGERPRINT_TOLERANCE
        ):
            differ[key] = (want, got)
    assert differ == {}


def test_legend_ranges_are_unchanged(answers, golden):
    for key, want in golden["legend"].items():
        assert answers["legend"][key] == pytest.approx(want, rel=1e-5, abs=1e-9), key


def test_similarity_values_are_unchanged(answers, golden):
    assert answers["similarity"].keys() == golden["similarity"].keys()
    for key, want in golden["similarity"].items():
        got = answers["similarity"][key]
        assert len(got) == len(want), key
        for g, w in zip(got, want, strict=True):
            assert (g["lat"], g["lon"]) == pytest.approx((w["lat"], w["lon"]), abs=1e-9), key
            for field in ("score", "probability", "uncertainty"):
                if w[field] is None:
                    assert g[field] is None, (key, field)
                else:
                    assert g[field] == pytest.approx(w[field], **TOLERANCE[field]), (key, field)


def test_a_fingerprint_ignores_a_few_recoloured_pixels_but_not_a_changed_map():
    def png(img: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(img, "RGBA").save(out, format="PNG")
        return out.getvalue()

    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (256, 256, 4), dtype=np.uint8)
    base = fingerprint(png(tile))
    nudged = tile.copy()
    rows, cols = rng.integers(0, 256, 40), rng.integers(0, 256, 40)
    nudged[rows, cols, :3] = np.clip(nudged[rows, cols, :3].astype(int) + 4, 0, 255)
    assert fingerprint_distance(base, fingerprint(png(nudged))) <= FINGERPRINT_TOLERANCE
    shifted = np.roll(tile, 3, axis=1)  # the same colours, drawn 3 pixels off
    assert fingerprint_distance(base, fingerprint(png(shifted))) > FINGERPRINT_TOLERANCE
    corner = tile.copy()
    corner[:16, :16] = 0  # one block of 16 x 16 pixels gone transparent
    assert fingerprint_distance(base, fingerprint(png(corner))) > FINGERPRINT_TOLERANCE
