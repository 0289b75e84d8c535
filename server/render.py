"""Cells -> 256 x 256 palette PNG: bilinear upsampling, one global value range, a colour ramp.

Palette index 0 is transparent (no coverage); indices 1..255 are the colour ramp, so a tile
carries its value to 1/254 of the range and decodes back exactly (tests rely on that).
"""

from __future__ import annotations

import io
import math
import re
from functools import lru_cache

import numpy as np
from PIL import Image

from embeddings_store.grid import TileWindow
from model.errors import InputError

TILE_PX = 256
# Percentiles of the "relative" and "absolute" scales: one colour range per map, never per tile.
RANGE_PERCENTILES = (2.0, 98.0)
LEVELS = 255  # palette entries 1..255
HEATMAP_COLORMAPS = ("viridis", "cividis", "magma", "inferno", "plasma")
UNCERTAINTY_COLORMAPS = ("cividis", "viridis", "magma", "inferno", "plasma")
# Difference maps (A - B): a neutral middle at 0, two hues for the two sides.
DIVERGING_COLORMAPS = ("RdBu_r", "PuOr_r", "coolwarm", "BrBG")


def _axis_weights(offset: float, span: float, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation matrix (256, cells) from cell centres to pixel centres, plus the
    nearest cell of each pixel (the cell containing its centre)."""
    # Pixel centres in cell units from the window's first cell edge; cell k's centre is k + 0.5.
    u = offset + (np.arange(TILE_PX) + 0.5) * (span / TILE_PX)
    f = np.clip(u - 0.5, 0.0, cells - 1.0)
    i0 = np.minimum(np.floor(f).astype(np.int64), max(cells - 2, 0))
    w1 = f - i0
    m = np.zeros((TILE_PX, cells), np.float64)
    rows = np.arange(TILE_PX)
    m[rows, i0] += 1.0 - w1
    if cells > 1:
        m[rows, np.minimum(i0 + 1, cells - 1)] += w1
    nearest = np.clip(np.floor(u).astype(np.int64), 0, cells - 1)
    return m, nearest


def upsample(
    window: TileWindow, values: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Window cells -> (256 x 256 values, 256 x 256 mask), interpolating only among valid cells.

    A pixel is covered when the cell containing it is valid; its value is the bilinear blend of
    the valid cells among the four around it (weights renormalised), so coverage edges do not
    pull values towards zero and adjacent tiles compute the same surface (no seams).
    """
    rows, cols = values.shape
    wy, ny = _axis_weights(window.offset_y, window.tile_span, rows)
    wx, nx = _axis_weights(window.offset_x, window.tile_span, cols)
    v = np.where(valid, values, 0.0).astype(np.float64)
    w = valid.astype(np.float64)
    num = wy @ v @ wx.T
    den = wy @ w @ wx.T
    mask = valid[np.ix_(ny, nx)] & (den > 1e-12)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)
    return out.astype(np.float32), mask


@lru_cache(maxsize=32)
def palette(name: str) -> bytes:
    """768-byte RGB palette: entry 0 unused (transparent), 1..255 the matplotlib ramp."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    rgb = (cmap(np.linspace(0.0, 1.0, LEVELS))[:, :3] * 255).round().astype(np.uint8)
    return bytes(3) + rgb.tobytes()


# titiler's `rescale=min,max`: two decimal numbers (exponents kept to two digits, so finite).
_NUMBER = r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,2})?\s*"
RESCALE_PATTERN = rf"^{_NUMBER},{_NUMBER}$"
RESCALE_MAX_CHARS = 64


def parse_rescale(text: str) -> tuple[float, float]:
    """'min,max' -> (min, max); InputError unless two finite numbers. min > max reverses the
    ramp, min == max draws a step (below: first colour, at or above: last)."""
    if len(text) > RESCALE_MAX_CHARS or not re.fullmatch(RESCALE_PATTERN, text):
        raise InputError(f"rescale must be two numbers 'min,max'; got {text[:RESCALE_MAX_CHARS]!r}")
    lo, hi = (float(v) for v in text.split(","))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"rescale must be finite; got {text!r}")
    return lo, hi


def percentile_range(values: np.ndarray) -> tuple[float, float]:
    """(2nd, 98th) percentile of the finite values, widened to a non-empty range; (0, 1) when
    there are none: the colour range of a map."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, RANGE_PERCENTILES))
    if not hi > lo:
        hi = lo + max(abs(lo) * 1e-6, 1e-6)
    return lo, hi


def summary_range(summary: np.ndarray) -> tuple[float, float]:
    """The colour range of a map from its 101 percentiles: (2nd, 98th), widened to a non-empty
    range as `percentile_range` does."""
    lo, hi = (float(summary[int(p)]) for p in RANGE_PERCENTILES)
    if not hi > lo:
        hi = lo + max(abs(lo) * 1e-6, 1e-6)
    return lo, hi


def to_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values -> ramp positions: lo at 0, hi at 1 (either order); a step at lo when lo == hi."""
    if hi == lo:
        return (values >= lo).astype(np.float32)
    return (values - lo) / (hi - lo)


def quantize(t: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) -> palette indices 1..255; 0 where not covered."""
    idx = 1 + np.rint(np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0) * (LEVELS - 1))
    return np.where(mask, idx, 0).astype(np.uint8)


def encode_png(indices: np.ndarray, colormap: str) -> bytes:
    """Palette PNG with index 0 transparent (fast: about 1 ms for 256 x 256)."""
    img = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.tobytes())
    img.putpalette(palette(colormap))
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=0, compress_level=1)
    return buf.getvalue()


@lru_cache(maxsize=1)
def transparent_png() -> bytes:
    """A fully transparent tile (no coverage)."""
    return encode_png(np.zeros((TILE_PX, TILE_PX), np.uint8), "viridis")


def encode_rgb_png(rgb: np.ndarray, alpha: np.ndarray | None = None) -> bytes:
    """RGB(A) uint8 array -> PNG (imagery base tiles)."""
    arr = rgb if alpha is None else np.dstack([rgb, alpha])
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
