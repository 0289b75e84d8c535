"""Helpers shared by the service tests: tile decoding, audio files, tile arithmetic."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from PIL import Image

from embeddings_store.grid import Level


def decode_tile(png: bytes) -> np.ndarray:
    """Palette indices of a 256 x 256 tile (asserting its shape and mode)."""
    img = Image.open(io.BytesIO(png))
    img.load()
    assert img.format == "PNG"
    assert img.size == (256, 256)
    assert img.mode == "P"
    return np.asarray(img)


def tile_value(index: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Decode palette indices 1..255 back to values in [lo, hi] (NaN for transparent)."""
    t = (index.astype(np.float64) - 1) / 254
    return np.where(index > 0, lo + t * (hi - lo), np.nan)


def audio_bytes(fmt: str, subtype: str, seconds: float = 1.0, sr: int = 16000,
                channels: int = 1, freq: float = 440.0) -> bytes:  # fmt: skip
    """A synthetic tone encoded by libsndfile."""
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))
    data = np.stack([tone * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def cell_tile(level: Level, cx: int, cy: int, z: int) -> tuple[int, int]:
    """XYZ tile at zoom z containing the north-west quarter point of a cell... its centre."""
    scale = 2.0 ** (z - level.cell_zoom)
    return int((cx + 0.5) * scale), int((cy + 0.5) * scale)
