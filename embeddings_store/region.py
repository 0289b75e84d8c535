"""Regions to precompute: a lon/lat bbox, or a GeoJSON (Multi)Polygon whose bbox is covered and
whose outline masks cells (cells centred outside it are left invalid and never computed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.path import Path as PolygonPath


@dataclass(frozen=True)
class Region:
    """A bbox (west, south, east, north) and optional polygon rings (lon, lat)."""

    bbox: tuple[float, float, float, float]
    rings: tuple[np.ndarray, ...] = field(default=(), compare=False)

    def contains(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Boolean mask of points inside the region (even-odd rule over all rings)."""
        lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
        w, s, e, n = self.bbox
        inside = (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)
        if not self.rings:
            return inside
        pts = np.column_stack([lon.ravel(), lat.ravel()])
        hits = np.zeros(len(pts), dtype=np.int64)
        for ring in self.rings:
            hits += PolygonPath(ring).contains_points(pts)
        return inside & (hits % 2 == 1).reshape(lon.shape)


def parse_bbox(text: str) -> Region:
    """'west,south,east,north' in degrees."""
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise ValueError(
            f"--bbox must be four numbers west,south,east,north; got {text!r}"
        ) from exc
    if len(parts) != 4:
        raise ValueError(f"--bbox must be four numbers west,south,east,north; got {text!r}")
    w, s, e, n = parts
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise ValueError(
            f"--bbox {text!r} is not west < east in -180..180 and south < north in -90..90"
        )
    return Region((w, s, e, n))


def load_geojson(path: str | Path) -> Region:
    """Region from a GeoJSON file holding Polygon/MultiPolygon geometries (lon/lat, EPSG:4326)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"GeoJSON file {str(path)!r} does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    rings: list[np.ndarray] = []
    for geom in _geometries(data):
        kind = geom.get("type")
        polys = [geom["coordinates"]] if kind == "Polygon" else geom.get("coordinates", [])
        if kind not in ("Polygon", "MultiPolygon"):
            raise ValueError(
                f"GeoJSON geometry {kind!r} is not supported: use Polygon or MultiPolygon"
            )
        for poly in polys:
            rings += [np.asarray(r, dtype=float)[:, :2] for r in poly]
    if not rings:
        raise ValueError(f"{str(path)!r} contains no Polygon or MultiPolygon")
    pts = np.concatenate(rings)
    w, s = pts.min(axis=0)
    e, n = pts.max(axis=0)
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise ValueError(f"{str(path)!r}: coordinates must be lon/lat degrees (EPSG:4326)")
    return Region((float(w), float(s), float(e), float(n)), tuple(rings))


def _geometries(data: dict) -> list[dict]:
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        return [g for f in data.get("features", []) for g in _geometries(f)]
    if kind == "Feature":
        return _geometries(data.get("geometry") or {})
    if kind == "GeometryCollection":
        return [g for sub in data.get("geometries", []) for g in _geometries(sub)]
    if kind in ("Polygon", "MultiPolygon", "Point", "LineString", "MultiPoint", "MultiLineString"):
        return [data]
    raise ValueError("not a GeoJSON object (expected FeatureCollection, Feature or a geometry)")
