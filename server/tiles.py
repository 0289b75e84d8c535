"""Tile production: heatmap, uncertainty and imagery tiles, and the value ranges behind them.

Each product is a pure function of its parameters and is cached as PNG bytes under a key that
names every parameter; a map's summary (the percentiles its range, percentile scale and ranks come
from) is cached per (query, metadata) so all tiles of a map share one.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Literal

import mercantile
import numpy as np

from embeddings_store.grid import Level, check_tile, tile_window
from model.errors import OutOfRangeError
from model.metadata import Metadata
from model.scoring import QueryEmbedding, match_probability
from server.cache import TieredCache
from server.engine import Engine
from server.render import (
    encode_png,
    encode_rgb_png,
    quantize,
    summary_range,
    to_unit,
    transparent_png,
    upsample,
)

# relative: this map's 2..98th percentile (on land); absolute: the query's over every month and
# hour; probability: the (calibrated) match probability, over the range this map's land holds;
# percentile: the share of this map's land places scoring lower (0..100).
Scale = Literal["relative", "absolute", "probability", "percentile"]
SCALES: tuple[str, ...] = ("relative", "absolute", "probability", "percentile")
_SUMMARY = struct.Struct("<101d")
DEFAULT_COLORMAP = {"heatmap": "viridis", "uncertainty": "cividis", "compare": "RdBu_r"}
_RANGE = struct.Struct("<dd")


@dataclass(frozen=True)
class TileRequest:
    """Everything that determines a heatmap or uncertainty tile (`level`: the user's choice)."""

    z: int
    x: int
    y: int
    meta: Metadata
    level: int | None = None
    scale: Scale = "relative"
    colormap: str = DEFAULT_COLORMAP["heatmap"]
    rescale: tuple[float, float] | None = None  # the ramp's ends, in the scale's unit

    def key(self) -> str:
        """Cache-key fragment naming every parameter."""
        ramp = "-" if self.rescale is None else "{!r},{!r}".format(*self.rescale)
        return (
            f"{self.z}/{self.x}/{self.y}:{self.meta.key()}:L{self.level or '-'}:"
            f"{self.scale}:{self.colormap}:R{ramp}"
        )


class TileService:
    """Renders and caches tiles; every method but `address` is blocking (use the executor)."""

    def __init__(self, engine: Engine, cache: TieredCache, imagery_spec: str | None) -> None:
        self.engine = engine
        self.cache = cache
        self.imagery_spec = imagery_spec
        self._imagery = None
        self._imagery_lock = threading.Lock()

    def address(self, z: int, x: int, y: int, psm_zoom: int | None = None) -> Level:
        """The level that serves tile z/x/y (the user's PSM zoom if given): OutOfRangeError for
        a tile outside the pyramid, the store's zoom range or that level's zooms."""
        try:
            check_tile(x, y, z)
        except ValueError as exc:
            raise OutOfRangeError(str(exc)) from exc
        return self.engine.level_for_tile(z, psm_zoom)

    # -- keys ---------------------------------------------------------------------------------
    def heatmap_key(self, query_id: str, req: TileRequest) -> str:
        """PNG cache key of a heatmap tile."""
        return f"h:{self.engine.store_token}:{query_id}:{req.key()}"

    def uncertainty_key(self, req: TileRequest) -> str:
        """PNG cache key of an uncertainty tile."""
        return f"u:{self.engine.store_token}:{req.key()}"

    def compare_key(self, a: str, b: str, meta_b: Metadata, req: TileRequest) -> str:
        """PNG cache key of a difference tile (A under `req.meta`, B under `meta_b`)."""
        return f"c:{self.engine.store_token}:{a}:{b}:{meta_b.key()}:{req.key()}"

    def imagery_key(self, z: int, x: int, y: int) -> str:
        """PNG cache key of a base-map tile."""
        return f"i:{self.engine.store_token}:{z}/{x}/{y}"

    # -- ranges -------------------------------------------------------------------------------
    def value_range(
        self, query_id: str | None, query: QueryEmbedding | None, meta: Metadata, scale: Scale
    ) -> tuple[float, float]:
        """(lo, hi) of the colour ramp in the scale's unit, shared by every tile of the map
        (with `absolute`, by every month and hour of it too)."""
        if scale == "absolute":
            base = meta.replace(month=None, hour=None)
            key = f"ra:{self.engine.store_token}:{query_id or 'uncertainty'}:{base.key()}"
            data, _ = self.cache.get_or_compute(
                key, lambda: _RANGE.pack(*self.engine.absolute_range(base, query))
            )
            lo, hi = _RANGE.unpack(data)
            return lo, hi
        if scale == "percentile" and query is not None:
            return 0.0, 100.0
        lo, hi = summary_range(self.summary(query_id, query, meta))
        if scale == "probability" and query is not None:
            a, b = self.engine.model.match_parameters(query.kind)
            return float(match_probability(lo, a, b)), float(match_probability(hi, a, b))
        return lo, hi

    def summary(
        self, query_id: str | None, query: QueryEmbedding | None, meta: Metadata
    ) -> np.ndarray:
        """The 101 percentiles of the map's land scores (uncertainty if no query), cached per
        (query, metadata): its range, percentile scale, "top 5 %" and ranks come from them."""
        key = f"s:{self.engine.store_token}:{query_id or 'uncertainty'}:{meta.key()}"
        data, _ = self.cache.get_or_compute(
            key, lambda: _SUMMARY.pack(*self.engine.summary(meta, query))
        )
        return np.asarray(_SUMMARY.unpack(data))

    def legend_marks(
        self, query_id: str, query: QueryEmbedding, meta: Metadata, scale: Scale
    ) -> list[dict[str, object]]:
        """Where "top 5 % of this map" starts, in the scale's unit (none for `absolute`)."""
        if scale == "absolute":
            return []
        top = float(self.summary(query_id, query, meta)[95])
        if scale == "probability":
            top = float(match_probability(top, *self.engine.model.match_parameters(query.kind)))
        elif scale == "percentile":
            top = 95.0
        return [{"at": top, "label": "top 5 % of this map"}]

    def percentile_of(
        self, query_id: str, query: QueryEmbedding, meta: Metadata, scores: np.ndarray
    ) -> np.ndarray:
        """Share (0..100) of the map's land places scoring lower than each score."""
        return percentile_in(self.summary(query_id, query, meta), scores)

    def difference_range(
        self, a: tuple[str, QueryEmbedding], meta_a: Metadata, b: tuple[str, QueryEmbedding],
        meta_b: Metadata,
    ) -> tuple[float, float]:  # fmt: skip
        """(-m, m) of a comparison, shared by all its tiles."""
        key = f"rc:{self.engine.store_token}:{a[0]}:{meta_a.key()}:{b[0]}:{meta_b.key()}"

        def compute() -> bytes:
            return _RANGE.pack(*self.engine.difference_range(a[1], meta_a, b[1], meta_b))

        data, _ = self.cache.get_or_compute(key, compute)
        lo, hi = _RANGE.unpack(data)
        return lo, hi

    # -- tiles --------------------------------------------------------------------------------
    def render(
        self, req: TileRequest, level: Level, query_id: str | None, query: QueryEmbedding | None
    ) -> bytes:
        """PNG of a heatmap tile (an uncertainty tile when `query` is None), uncached."""
        window = tile_window(level, req.x, req.y, req.z, margin=1)
        if not self.engine.holds_any(window):
            return transparent_png()
        name = "uncertainty" if query is None else "score"
        values = self.engine.scores(query, req.meta, level, window, (name,))[name].values
        valid = np.isfinite(values)
        if not valid.any():
            return transparent_png()
        pixels, mask = upsample(window, values, valid)
        if req.scale == "probability" and query is not None:
            pixels = match_probability(pixels, *self.engine.model.match_parameters(query.kind))
        elif req.scale == "percentile" and query is not None:
            pixels = self.percentile_of(query_id or "", query, req.meta, pixels)
        if req.rescale is not None:
            t = to_unit(pixels, *req.rescale)
        else:
            lo, hi = self.value_range(query_id, query, req.meta, req.scale)
            t = (pixels - lo) / (hi - lo)
        return encode_png(quantize(t, mask), req.colormap)

    def heatmap(
        self, query_id: str, query: QueryEmbedding, req: TileRequest, level: Level
    ) -> tuple[bytes, str]:
        """(PNG, cache outcome) of a heatmap tile."""
        return self.cache.get_or_compute(
            self.heatmap_key(query_id, req), lambda: self.render(req, level, query_id, query)
        )

    def uncertainty(self, req: TileRequest, level: Level) -> tuple[bytes, str]:
        """(PNG, cache outcome) of an uncertainty tile."""
        return self.cache.get_or_compute(
            self.uncertainty_key(req), lambda: self.render(req, level, None, None)
        )

    def compare(
        self, a: tuple[str, QueryEmbedding], b: tuple[str, QueryEmbedding], meta_b: Metadata,
        req: TileRequest, level: Level,
    ) -> tuple[bytes, str]:  # fmt: skip
        """(PNG, cache outcome) of a difference tile: score(A) - score(B), 0 in the middle."""
        return self.cache.get_or_compute(
            self.compare_key(a[0], b[0], meta_b, req),
            lambda: self.render_difference(a, b, meta_b, req, level),
        )

    def render_difference(
        self, a: tuple[str, QueryEmbedding], b: tuple[str, QueryEmbedding], meta_b: Metadata,
        req: TileRequest, level: Level,
    ) -> bytes:  # fmt: skip
        """PNG of a difference tile, uncached."""
        window = tile_window(level, req.x, req.y, req.z, margin=1)
        if not self.engine.holds_any(window):
            return transparent_png()
        values = self.engine.difference(a[1], req.meta, b[1], meta_b, level, window)
        valid = np.isfinite(values)
        if not valid.any():
            return transparent_png()
        pixels, mask = upsample(window, values, valid)
        lo, hi = req.rescale or self.difference_range(a, req.meta, b, meta_b)
        return encode_png(quantize(to_unit(pixels, lo, hi), mask), req.colormap)

    def imagery(self, z: int, x: int, y: int) -> tuple[bytes, str]:
        """(PNG, cache outcome) of a base-map tile rendered from the store's imagery."""
        return self.cache.get_or_compute(
            self.imagery_key(z, x, y), lambda: self._render_imagery(z, x, y)
        )

    def _render_imagery(self, z: int, x: int, y: int) -> bytes:
        if self.imagery_spec is None:
            raise OutOfRangeError("this store records no imagery source")
        with self._imagery_lock:
            if self._imagery is None:
                from embeddings_store.imagery import open_imagery

                try:
                    self._imagery = open_imagery(self.imagery_spec)
                except ValueError as exc:
                    raise OutOfRangeError(f"the store's imagery cannot be opened: {exc}") from exc
        b = mercantile.xy_bounds(x, y, z)
        rgb, coverage = self._imagery.read((b.left, b.bottom, b.right, b.top), 256)
        if coverage == 0:
            return transparent_png()
        alpha = np.where(rgb.any(axis=2), 255, 0).astype(np.uint8) if coverage < 1 else None
        return encode_rgb_png(rgb, alpha)


def percentile_in(summary: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where values fall among a summary's 101 percentiles, as 0..100 (clipped at the ends)."""
    # Ties in the summary (flat stretches) would stall np.interp: nudge it to increasing.
    xp = summary + np.arange(summary.size) * 1e-9 * max(1.0, float(np.abs(summary).max()))
    return np.interp(values, xp, np.arange(101.0)).astype(np.float32)


def imagery_spec(attrs: dict) -> str | None:
    """The open_imagery spec of the store's imagery source (from its attributes)."""
    info = attrs.get("imagery") or {}
    source = info.get("source")
    if not source:
        return None
    if info.get("kind") == "xyz":
        return f"xyz:{source}"
    options = []
    if info.get("bands"):
        options.append("bands=" + ",".join(str(b) for b in info["bands"]))
    if info.get("scale"):
        options.append("scale=" + ",".join(str(v) for v in info["scale"]))
    return str(source) + ("#" + "&".join(options) if options else "")
