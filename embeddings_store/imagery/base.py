"""What every imagery reader shares: the `Imagery` protocol, its error, read-argument checks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from rasterio.crs import CRS

from embeddings_store.grid import HALF_WORLD, WORLD
from model.errors import ImageryError

__all__ = ["COVERED_ALPHA", "MAX_OUT_PX", "Imagery", "ImageryError", "check_read_args"]

WEB_MERCATOR = CRS.from_epsg(3857)
WGS84 = CRS.from_epsg(4326)
MAX_OUT_PX = 8192
# An output pixel counts as real data when at least half of its resampling weight is valid.
COVERED_ALPHA = 128
USER_AGENT = "soundscape-map/0.1 (imagery reader; urllib)"


@runtime_checkable
class Imagery(Protocol):
    """A source of RGB imagery that can render any EPSG:3857 footprint."""

    native_gsd: float

    def read(
        self, bounds: tuple[float, float, float, float], out_px: int
    ) -> tuple[np.ndarray, float]:
        """Footprint (minx, miny, maxx, maxy) in EPSG:3857 metres -> (RGB uint8 image, coverage)."""
        ...

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the data in degrees."""
        ...

    def describe(self) -> dict[str, object]:
        """JSON-able description of the source, recorded in the store attributes."""
        ...


def rebuild(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    """A reader rebuilt from its constructor arguments (how readers pickle for Dask)."""
    return cls(**kwargs)


def check_read_args(bounds: Sequence[float], out_px: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of a valid read request; ImageryError otherwise."""
    if isinstance(out_px, bool) or not isinstance(out_px, int | np.integer):
        raise ImageryError(f"out_px must be an integer, got {out_px!r}")
    if not 1 <= out_px <= MAX_OUT_PX:
        raise ImageryError(f"out_px must be in 1..{MAX_OUT_PX}, got {out_px}")
    try:
        minx, miny, maxx, maxy = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ImageryError(
            f"bounds must be 4 numbers (minx, miny, maxx, maxy), got {bounds!r}"
        ) from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)) or minx >= maxx or miny >= maxy:
        raise ImageryError(
            f"invalid footprint {bounds!r}: need finite EPSG:3857 metres with minx < maxx and "
            "miny < maxy"
        )
    return minx, miny, maxx, maxy


def world_parts(
    bounds: tuple[float, float, float, float], out_px: int
) -> Iterator[tuple[int, int, tuple[float, float, float, float]]]:
    """Split output columns at the antimeridian: (col0, col1, bounds shifted into the world)."""
    minx, miny, maxx, maxy = bounds
    px = (maxx - minx) / out_px
    # Column i's centre is minx + (i + 0.5) px; columns left of -180° / right of 180° wrap.
    k1 = min(max(math.ceil((-HALF_WORLD - minx) / px - 0.5), 0), out_px)
    k2 = min(max(math.floor((HALF_WORLD - minx) / px - 0.5) + 1, k1), out_px)
    for c0, c1, shift in ((0, k1, WORLD), (k1, k2, 0.0), (k2, out_px, -WORLD)):
        if c1 > c0:
            yield c0, c1, (minx + c0 * px + shift, miny, minx + c1 * px + shift, maxy)
