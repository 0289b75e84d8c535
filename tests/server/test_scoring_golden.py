"""The scoring core's answers are those recorded before it was rewritten as one path (issue 20).

Every heatmap PNG byte for byte, every /similarity value and legend range to 1e-6; see
`scoring_golden.py` for the set and for the one intended change (the masked-metadata
uncertainty now comes from the store's u0).
"""

from __future__ import annotations

import json

import pytest

from tests.server.scoring_golden import GOLDEN, collect


@pytest.fixture(scope="module")
def answers(client):
    return collect(client)


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("section", ["tiles", "uncertainty"])
def test_tiles_are_byte_identical(answers, golden, section):
    assert len(answers[section]) == len(golden[section]) > 50
    differ = {k: (v, answers[section][k]) for k, v in golden[section].items()
              if answers[section][k] != v}  # fmt: skip
    assert differ == {}


def test_legend_ranges_are_unchanged(answers, golden):
    for key, want in golden["legend"].items():
        assert answers["legend"][key] == pytest.approx(want, rel=1e-6, abs=1e-9), key


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
                    assert g[field] == pytest.approx(w[field], rel=1e-6), (key, field)
