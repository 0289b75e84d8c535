"""Parser for the reference golden vectors (tests/data/golden-public.txt, a copy of shared/)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

GOLDEN_PATH = Path(__file__).parent / "data" / "golden-public.txt"


@cache
def golden() -> dict[str, object]:
    """Every `DESCRIPTION = VALUE` line, keyed by its description (text before the last ' = ')."""
    values: dict[str, object] = {}
    for line in GOLDEN_PATH.read_text().splitlines():
        if not line or line.startswith("#") or " = " not in line:
            continue
        key, value = line.rsplit(" = ", 1)
        values[key.strip()] = json.loads(value)
    return values


def raw(prefix: str) -> object:
    """The golden value described exactly by `prefix`, else the one description starting with it."""
    if prefix in golden():
        return golden()[prefix]
    hits = [k for k in golden() if k.startswith(prefix)]
    if len(hits) != 1:
        raise KeyError(f"golden prefix {prefix!r} matches {len(hits)} entries: {hits[:5]}")
    return golden()[hits[0]]


def g(prefix: str) -> np.ndarray:
    """A golden value as a float64 array."""
    return np.asarray(raw(prefix), dtype=np.float64)
