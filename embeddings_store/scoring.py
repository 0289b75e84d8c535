"""The region scorer: a query scored against a store's fused cells under metadata, as xarray.

`score_region` is the one way the project turns (store, query, metadata, level, region) into
numbers: tiles, /similarity, the demo's quality evaluation and exports call it, so a figure
measured on a map is measured on the numbers that drew it (docs/ARCHITECTURE.md, "The scoring
core"). A region is a block of cells (`CellExtent`, e.g. a tile's window), a lon/lat `BBox` (the
cells whose centres lie inside it) or `Points`; fused blocks come from a `CellFusion` (the
server passes its cached one). The README's "Python API" section has a runnable example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from torch import nn

from embeddings_store.fusion import CellFusion, FusedCells
from embeddings_store.grid import MAX_LATITUDE, CellExtent, Level, crs_attrs
from embeddings_store.store import EmbeddingStore
from model.metadata import Metadata
from model.scoring import (
    QueryEmbedding,
    augment_query,
    match_probability,
    score_from_inner_product,
)

# What a Dataset holds by default; "variance" (the cells' sum exp(logvar), the CSD's variance
# term) is there for diagnostics such as the quality evaluation's mean-distance-only test.
VARIABLES: tuple[str, ...] = ("score", "probability", "uncertainty")
KNOWN_VARIABLES: tuple[str, ...] = (*VARIABLES, "variance")
ATTRIBUTES = {
    "score": ("-CSD between the cell and the query (higher: a better match)", "1"),
    "probability": ("learned match probability sigmoid(-a * CSD + b)", "1"),
    "uncertainty": ("||sigma||_1 of the fused cell embedding", "1"),
    "variance": ("sum of the fused cell embedding's variances", "1"),
}


@dataclass(frozen=True)
class BBox:
    """A lon/lat box in degrees; as a region, the cells whose centres lie inside it."""

    west: float
    south: float
    east: float
    north: float

    def __post_init__(self) -> None:
        ok = -180 <= self.west < self.east <= 180 and -90 <= self.south < self.north <= 90
        if not ok:
            raise ValueError(
                f"invalid bbox {self.as_tuple()}: need west < east in -180..180 and "
                "south < north in -90..90"
            )

    def as_tuple(self) -> tuple[float, float, float, float]:
        """(west, south, east, north)."""
        return self.west, self.south, self.east, self.north


@dataclass(frozen=True)
class Points:
    """Points in degrees; as a region, the cell under each point (NaN where there is none)."""

    lat: np.ndarray
    lon: np.ndarray

    @classmethod
    def of(cls, lat: Sequence[float] | np.ndarray, lon: Sequence[float] | np.ndarray) -> Points:
        """Points from two equally long sequences."""
        lat_a, lon_a = np.asarray(lat, np.float64).reshape(-1), np.asarray(lon, np.float64)
        return cls(lat_a, lon_a.reshape(-1))


Region = CellExtent | BBox | Points


def score_region(
    model: nn.Module,
    store: EmbeddingStore,
    query: QueryEmbedding | None,
    metadata: Metadata,
    level: Level,
    region: Region,
    *,
    fusion: CellFusion | None = None,
    variables: Sequence[str] = VARIABLES,
    on_chunk: Callable[[], None] | None = None,
) -> xr.Dataset:
    """Score `region` of `level` against `query` under `metadata`.

    Returns a Dataset with the requested `variables` (float32, NaN where the store has no cell):
    `score` (-CSD), `probability` (learned match probability) and `uncertainty` (||sigma||_1 of
    the fused cell), on EPSG:3857 cell-centre coordinates `x`/`y` plus `lat`/`lon` (dims y, x;
    for `Points`, dim `point` with the points' lat/lon and their cells' x/y), with the CRS as CF
    `spatial_ref` attributes. Without a query only `uncertainty` and `variance` can be asked.
    `on_chunk` is called after each chunk of a block region (a progress bar's hook).
    """
    names = _check_variables(variables, query)
    fusion = fusion or CellFusion(model, store)
    ab = model.match_parameters(query.kind) if query and "probability" in names else (1.0, 0.0)
    if isinstance(region, Points):
        return _points_dataset(fusion, query, metadata, level, region, names, ab)
    extent = CellExtent.for_bbox(level, region.as_tuple()) if isinstance(region, BBox) else region
    if extent.level != level:
        raise ValueError(f"the region's level {extent.level} is not {level}")
    values = grid_values(fusion, query, metadata, extent, names, ab, on_chunk)
    data = {name: (("y", "x"), values[name], _attrs(name)) for name in names}
    coords = {
        "x": ("x", extent.x, {"standard_name": "projection_x_coordinate", "units": "m"}),
        "y": ("y", extent.y, {"standard_name": "projection_y_coordinate", "units": "m"}),
        "lat": ("y", extent.lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("x", extent.lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    return _dataset(data, coords, fusion.store, query, metadata, level)


def grid_values(
    fusion: CellFusion,
    query: QueryEmbedding | None,
    metadata: Metadata,
    extent: CellExtent,
    names: Sequence[str],
    ab: tuple[float, float] = (1.0, 0.0),
    on_chunk: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays behind `score_region` for a block of cells: (rows, cols) float32 per name,
    NaN where no cell. Chunk by chunk, so each fused block is one cache entry."""
    out = {name: np.full(extent.shape, np.nan, np.float32) for name in names}
    held = fusion.store.extent(extent.level.psm_zoom)
    for tx, ty in extent.chunks():
        if not held.holds_chunk(tx, ty):
            continue
        block = extent.intersection(CellExtent.chunk(extent.level, tx, ty))
        assert block is not None
        fused = fusion.block(block, metadata)
        dst = block.slices_in(extent)
        for name, values in cell_values(fused, query, names, ab).items():
            out[name][dst] = values.reshape(block.shape)
        if on_chunk is not None:
            on_chunk()
    return out


def cell_values(
    fused: FusedCells,
    query: QueryEmbedding | None,
    names: Sequence[str],
    ab: tuple[float, float] = (1.0, 0.0),
) -> dict[str, np.ndarray]:
    """Per-cell values of fused cells (NaN where not valid): -CSD is one matvec."""
    out: dict[str, np.ndarray] = {}
    invalid = ~fused.valid
    score = None
    if query is not None and ("score" in names or "probability" in names):
        score = score_from_inner_product(fused.aug @ augment_query(query.mu), query.c)
        score[invalid] = np.nan
    for name in names:
        if name == "score":
            out[name] = score
        elif name == "probability":
            out[name] = match_probability(score, *ab)
        elif name == "uncertainty":
            out[name] = np.where(invalid, np.float32(np.nan), fused.unc)
        else:  # variance
            out[name] = np.where(invalid, np.float32(np.nan), fused.variance).astype(np.float32)
    return out


def top_cells(ds: xr.Dataset, k: int) -> xr.Dataset:
    """The k cells of a scored (y, x) Dataset with the best score, best first (dim `cell`)."""
    score = ds["score"].values.reshape(-1)
    valid = np.flatnonzero(np.isfinite(score))
    k = min(k, valid.size)
    best = valid[:0]
    if k > 0:
        part = valid[np.argpartition(-score[valid], k - 1)[:k]]
        best = part[np.argsort(-score[part], kind="stable")]
    rows, cols = np.divmod(best, ds.sizes["x"])
    names = [v for v in ds.data_vars]
    values = {name: ds[name].values[rows, cols] for name in names}
    lonlat = (ds["lat"].values[rows], ds["lon"].values[cols])
    return cells_dataset(values, ds["x"].values[cols], ds["y"].values[rows], *lonlat, ds.attrs)


def cells_dataset(
    values: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    attrs: dict,
) -> xr.Dataset:
    """A list of scored cells as a Dataset along dim `cell` (cell-centre coordinates)."""
    data = {
        name: (("cell",), np.asarray(v, np.float32), _attrs(name)) for name, v in values.items()
    }
    coords = {
        "x": ("cell", x, {"standard_name": "projection_x_coordinate", "units": "m"}),
        "y": ("cell", y, {"standard_name": "projection_y_coordinate", "units": "m"}),
        "lat": ("cell", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("cell", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        "spatial_ref": ((), np.int32(0), dict(crs_attrs())),
    }
    return xr.Dataset(data, coords=coords, attrs=dict(attrs))


def _check_variables(variables: Sequence[str], query: QueryEmbedding | None) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(variables))
    unknown = [v for v in names if v not in KNOWN_VARIABLES]
    if unknown or not names:
        raise ValueError(f"unknown variables {unknown}; choose among {KNOWN_VARIABLES}")
    if query is None and ({"score", "probability"} & set(names)):
        raise ValueError("score and probability need a query")
    return names


def fused_at_points(
    fusion: CellFusion, metadata: Metadata, level: Level, points: Points
) -> FusedCells:
    """The fused cell under each point (one row per point; not valid where the store has none),
    fusing each chunk the points touch once."""
    lat, lon = points.lat, points.lon
    out = FusedCells.empty(lat.shape[0], fusion.store.embed_dim)
    inside = np.abs(lat) <= MAX_LATITUDE
    cx, cy = level.cell_of_lonlat(lon, lat)
    n = level.n
    tx, ty = cx // n, cy // n
    held = fusion.store.extent(level.psm_zoom)
    for key in sorted(set(zip(tx[inside].tolist(), ty[inside].tolist(), strict=True))):
        if not held.holds_chunk(*key):
            continue
        sel = np.flatnonzero(inside & (tx == key[0]) & (ty == key[1]))
        fused = fusion.block(CellExtent.chunk(level, *key), metadata)
        idx = (cy[sel] % n) * n + (cx[sel] % n)
        out.aug[sel], out.unc[sel] = fused.aug[idx], fused.unc[idx]
        out.valid[sel] = fused.valid[idx]
    return out


def _points_dataset(
    fusion: CellFusion,
    query: QueryEmbedding | None,
    metadata: Metadata,
    level: Level,
    points: Points,
    names: tuple[str, ...],
    ab: tuple[float, float],
) -> xr.Dataset:
    lat, lon = points.lat, points.lon
    values = cell_values(fused_at_points(fusion, metadata, level, points), query, names, ab)
    inside = np.abs(lat) <= MAX_LATITUDE
    cx, cy = level.cell_of_lonlat(lon, lat)
    x = np.where(inside, level.cell_centers_x(cx), np.nan)
    y = np.where(inside, level.cell_centers_y(cy), np.nan)
    cell_lon = np.where(inside, level.cell_centers_lon(cx), np.nan)
    cell_lat = np.where(inside, level.cell_centers_lat(cy), np.nan)
    data = {name: (("point",), values[name], _attrs(name)) for name in names}
    coords = {
        "lat": ("point", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("point", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        "x": ("point", x, {"long_name": "EPSG:3857 x of the point's cell centre", "units": "m"}),
        "y": ("point", y, {"long_name": "EPSG:3857 y of the point's cell centre", "units": "m"}),
        "cell_lon": ("point", cell_lon, {"long_name": "longitude of the point's cell centre"}),
        "cell_lat": ("point", cell_lat, {"long_name": "latitude of the point's cell centre"}),
    }
    return _dataset(data, coords, fusion.store, query, metadata, level)


def _attrs(name: str) -> dict[str, str]:
    long_name, units = ATTRIBUTES[name]
    return {"long_name": long_name, "units": units, "grid_mapping": "spatial_ref"}


def _dataset(
    data: dict,
    coords: dict,
    store: EmbeddingStore,
    query: QueryEmbedding | None,
    metadata: Metadata,
    level: Level,
) -> xr.Dataset:
    coords = {**coords, "spatial_ref": ((), np.int32(0), dict(crs_attrs()))}
    return xr.Dataset(data, coords=coords, attrs=region_attrs(store, query, metadata, level))


def region_attrs(
    store: EmbeddingStore, query: QueryEmbedding | None, metadata: Metadata, level: Level
) -> dict[str, object]:
    """The global attributes of a scored Dataset: what was scored, and how."""
    return {
        "model_id": store.model_id,
        "psm_zoom": level.psm_zoom,
        "cell_size_m": level.cell_size,
        "metadata": metadata.key(),
        "query_kind": "none" if query is None else query.kind,
        "crs": "EPSG:3857",
    }
