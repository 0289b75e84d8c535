"""Is the demo model's match probability calibrated? Held-out pairs of the demo world.

A pair is a recording's image (its footprint at PSM zoom 1, fused with the recording's own
metadata, as a map request carries it) and a query:

* text: each of the 14 class queries (the map's use); it matches when the recording's class is
  the query's class, so a calibrated model says "0.3" where 30 % of such recordings are of it;
* audio: another held-out recording's clip; it matches when both recordings are of one class.

`fit_calibration` refits (a, b) of sigmoid(a * score + b) per query kind on the validation
split (model/calibration.py); `calibration_report` measures the expected calibration error
(15 bins) on the test split before and after. The two splits share no 1 deg cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from embeddings_store.demo.captions import CLASS_QUERIES
from embeddings_store.demo.dataset import DemoWorldDataset
from model.calibration import Reliability, fit_platt, reliability, sigmoid
from model.evaluate import embed_split
from model.psm import PSM
from model.scoring import neg_csd_matrix

KINDS = ("text", "audio")
CALIBRATION_ZOOM = 1


@dataclass(frozen=True)
class Pairs:
    """Scores (-CSD) and 0/1 labels of one split's pairs of one query kind."""

    score: np.ndarray
    label: np.ndarray


@torch.no_grad()
def calibration_pairs(model: PSM, dataset: DemoWorldDataset, n: int) -> dict[str, Pairs]:
    """Text and audio pairs of the first n recordings of `dataset` (module docstring)."""
    model.eval()
    n = min(n, len(dataset))
    sat, aud, _ = embed_split(model, dataset, CALIBRATION_ZOOM, n, 128, with_metadata=True)
    classes = np.asarray(dataset.labels[:n])
    txt = model.embed_texts(list(CLASS_QUERIES))
    text = neg_csd_matrix(sat.mu, sat.logvar, txt.mu, txt.logvar).cpu().numpy()
    audio = neg_csd_matrix(sat.mu, sat.logvar, aud.mu, aud.logvar).cpu().numpy()
    return {
        "text": Pairs(text.reshape(-1), (classes[:, None] == np.arange(text.shape[1])).ravel()),
        "audio": Pairs(audio.reshape(-1), (classes[:, None] == classes[None, :]).ravel()),
    }


def fit_calibration(model: PSM, val: DemoWorldDataset, n: int = 2000) -> dict[str, tuple]:
    """(a, b) per query kind, fitted on the validation split's pairs."""
    if val.split != "val":
        raise ValueError(f"calibration is fitted on the validation split, not {val.split!r}")
    pairs = calibration_pairs(model, val, n)
    return {k: fit_platt(p.score, p.label, init=model.match_parameters()) for k, p in pairs.items()}


@dataclass(frozen=True)
class CalibrationReport:
    """Per query kind: pairs, base rate, reliability of the learned and calibrated (a, b)."""

    split: str
    pairs: dict[str, int]
    base_rate: dict[str, float]
    learned: dict[str, Reliability]
    calibrated: dict[str, Reliability]

    def to_json(self) -> dict[str, object]:
        """Plain data."""
        return {
            "split": self.split,
            "pairs": self.pairs,
            "base_rate": self.base_rate,
            "learned": {k: v.to_json() for k, v in self.learned.items()},
            "calibrated": {k: v.to_json() for k, v in self.calibrated.items()},
        }


def calibration_report(
    model: PSM,
    test: DemoWorldDataset,
    calibration: dict[str, tuple[float, float]],
    n: int = 2000,
) -> CalibrationReport:
    """ECE and reliability on `test` with the learned (a, b) and with `calibration`."""
    if test.split == "val":
        raise ValueError("report calibration on held-out data, not the split it was fitted on")
    pairs = calibration_pairs(model, test, n)
    a0, b0 = model.match_parameters()
    learned, calibrated = {}, {}
    for kind, p in pairs.items():
        learned[kind] = reliability(sigmoid(a0 * p.score + b0), p.label)
        a, b = calibration.get(kind, (a0, b0))
        calibrated[kind] = reliability(sigmoid(a * p.score + b), p.label)
    return CalibrationReport(
        test.split,
        {k: int(p.label.size) for k, p in pairs.items()},
        {k: float(p.label.mean()) for k, p in pairs.items()},
        learned,
        calibrated,
    )
