"""A query through one place's day and year (the /profile answer): its score, match probability
and share of the place's sounds at each hour and month, and when it peaks.

The peak is read from the share when the service has a label vocabulary (a gallery's labels):
the query's match against the labels', as the demo world's truth is a class's share of what is
heard. A cell's own variance is added to its distance from every query, and it varies with the
hour, so the raw score can peak at the hour the place matches everything best rather than the
hour this sound stands out (docs/ARCHITECTURE.md, "Listening"). Without labels the peak is the
score's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embeddings_store.fusion import FusedCells
from embeddings_store.scoring import cell_values
from embeddings_store.sounds.gallery import SoundGallery
from embeddings_store.timesweep import HOURS, MONTHS, TimeProfile
from model.scoring import QueryEmbedding, match_share


@dataclass(frozen=True)
class ProfileValues:
    """A query's values at each hour and month of a `TimeProfile`, and its peaks."""

    hours: dict[str, np.ndarray]  # "score", "probability" and, with labels, "share"; 24 each
    months: dict[str, np.ndarray]  # the same, 12 each
    peak_by: str  # "share" or "score": which of them the peaks are read from
    peak_hour: int
    peak_month: int


def _values(
    fused: FusedCells,
    query: QueryEmbedding,
    ab: tuple[float, float],
    labels: SoundGallery | None,
    label_ab: tuple[float, float],
) -> dict[str, np.ndarray]:
    values = cell_values(fused, query, ("score", "probability"), ab)
    others = None if labels is None else labels.label_logits(fused.aug, label_ab, query)
    if others is not None:
        values["share"] = match_share(ab[0] * values["score"] + ab[1], others)
    return values


def profile_values(
    profile: TimeProfile,
    query: QueryEmbedding,
    ab: tuple[float, float],
    labels: SoundGallery | None = None,
    label_ab: tuple[float, float] = (1.0, 0.0),
) -> ProfileValues:
    """The query's score, probability (sigmoid(a * score + b) with `ab`) and, where `labels`
    has a vocabulary (matched with `label_ab`, the text pair), its share at each hour and
    month of the profile, with the peaks read from the share (else the score)."""
    hours = _values(profile.hours, query, ab, labels, label_ab)
    months = _values(profile.months, query, ab, labels, label_ab)
    by = "share" if "share" in hours else "score"
    return ProfileValues(
        hours=hours,
        months=months,
        peak_by=by,
        peak_hour=int(HOURS[int(np.argmax(hours[by]))]),
        peak_month=int(MONTHS[int(np.argmax(months[by]))]),
    )
