"""A query's day at a place: the share among the labels and where the peaks are read from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings_store.fusion import FusedCells
from embeddings_store.grid import CellExtent, Level
from embeddings_store.sounds.gallery import SoundGallery
from embeddings_store.sounds.profile import profile_values
from embeddings_store.timesweep import HOURS, MONTHS, TimeProfile
from model.scoring import QueryEmbedding, augment_cells

DIM = 4
QUERY = QueryEmbedding("text", np.eye(DIM, dtype=np.float32)[0], 0.5, 1.0)


def gallery(labels: list[np.ndarray]) -> SoundGallery:
    """An in-memory gallery with no clips and these label means (c = 0.5 each)."""
    entries = [{"label": f"l{i}", "query": f"q{i}"} for i in range(len(labels))]
    manifest = {"model_id": "psm-test", "clips": [], "labels": entries}
    rows = np.zeros((len(labels), DIM + 2), np.float32)
    for i, mu in enumerate(labels):
        rows[i, :DIM], rows[i, DIM], rows[i, DIM + 1] = mu, 0.5, 1.0
    return SoundGallery(Path("."), manifest, np.zeros((0, DIM + 2), np.float32), rows)


def day(theta: np.ndarray, variance: np.ndarray) -> FusedCells:
    """Cells turning from the query's direction (theta 0) to the first label's (pi / 2), with
    a variance of their own at each row."""
    mu = np.zeros((theta.size, DIM), np.float32)
    mu[:, 0], mu[:, 1] = np.cos(theta), np.sin(theta)
    return FusedCells(augment_cells(mu, variance), np.ones(theta.size, np.float32),
                      np.ones(theta.size, bool))  # fmt: skip


def profile() -> TimeProfile:
    """A day where the cell is nearest the query at 10 h but has a large variance then, so the
    raw score peaks at 20 h; the months follow the same pattern at months 3 and 9."""
    theta = np.full(HOURS.size, 1.2)
    theta[10], theta[20] = 0.1, 0.6
    variance = np.full(HOURS.size, 0.4, np.float32)
    variance[10] = 2.0
    m_theta = np.full(MONTHS.size, 1.2)
    m_theta[2], m_theta[8] = 0.1, 0.6
    m_var = np.full(MONTHS.size, 0.4, np.float32)
    m_var[2] = 2.0
    cell = CellExtent(Level(psm_zoom=1, tile_zoom=4, n=16), 0, 1, 0, 1)
    return TimeProfile(cell, 0.0, 0.0, day(theta, variance), day(m_theta, m_var))


def test_the_peak_is_the_shares_where_there_are_labels_else_the_scores():
    prof = profile()
    ab = (2.0, 1.0)
    plain = profile_values(prof, QUERY, ab)
    assert plain.peak_by == "score" and "share" not in plain.hours
    assert (plain.peak_hour, plain.peak_month) == (20, 9)
    label = np.eye(DIM, dtype=np.float32)[1]
    shared = profile_values(prof, QUERY, ab, gallery([label]), ab)
    assert shared.peak_by == "share"
    assert (shared.peak_hour, shared.peak_month) == (10, 3)
    np.testing.assert_array_equal(shared.hours["score"], plain.hours["score"])
    assert np.all((shared.hours["share"] > 0) & (shared.hours["share"] < 1))
    # Without labels a gallery gives no share either.
    assert profile_values(prof, QUERY, ab, gallery([]), ab).peak_by == "score"


def test_a_label_that_is_the_query_itself_counts_once():
    prof = profile()
    ab = (2.0, 1.0)
    other = np.eye(DIM, dtype=np.float32)[1]
    once = profile_values(prof, QUERY, ab, gallery([other]), ab).hours["share"]
    twice = profile_values(prof, QUERY, ab, gallery([other, QUERY.mu.copy()]), ab).hours["share"]
    np.testing.assert_allclose(twice, once, rtol=1e-6)


def test_a_vocabulary_of_only_the_query_itself_names_no_share():
    prof = profile()
    ab = (2.0, 1.0)
    alone = profile_values(prof, QUERY, ab, gallery([QUERY.mu.copy()]), ab)
    assert alone.peak_by == "score" and "share" not in alone.hours
    assert (alone.peak_hour, alone.peak_month) == (20, 9)
