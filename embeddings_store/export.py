"""A scored region (what `score_region` returns) as files GIS tools read.

Cloud-Optimized GeoTIFF (float32 bands score, probability, uncertainty; NaN nodata; overviews;
EPSG:3857 or reprojected), NetCDF and Zarr (the xarray Dataset itself), and GeoJSON points (a
list of scored cells, e.g. `top_cells`). `soundscape map` and `GET /maps/{query}.tif` both write
through here (docs/ARCHITECTURE.md, "Exports").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import xarray as xr

from embeddings_store.scoring import VARIABLES
from model.errors import InputError

# A COG's internal tiles; small enough that a map of a region has overviews too.
COG_BLOCK = 128
EXPORT_SUFFIXES = (".tif", ".tiff", ".nc", ".zarr", ".geojson", ".png")


def check_crs(crs: str) -> Any:
    """The rasterio CRS of a user's `--crs` / `crs=` value; InputError if it is not one."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(crs)
    except (CRSError, ValueError, TypeError) as exc:
        raise InputError(f"unknown CRS {crs!r}: give e.g. EPSG:4326 or EPSG:3857 ({exc})") from exc


def grid_transform(ds: xr.Dataset) -> Any:
    """The affine transform of a (y, x) Dataset's cells in EPSG:3857 (north up)."""
    from affine import Affine

    size = float(ds.attrs["cell_size_m"])
    x0 = float(ds["x"].values[0]) - size / 2
    y0 = float(ds["y"].values[0]) + size / 2
    return Affine(size, 0.0, x0, 0.0, -size, y0)


def geotiff_tags(ds: xr.Dataset, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What a map is, as GeoTIFF metadata tags (strings)."""
    tags = {k: str(v) for k, v in ds.attrs.items()}
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return tags


def write_cog(
    ds: xr.Dataset,
    out: str | Path | BinaryIO,
    crs: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> None:
    """Write the score, probability and uncertainty of a (y, x) Dataset as a Cloud-Optimized
    GeoTIFF: float32 bands with their names as descriptions, NaN nodata, overviews, EPSG:3857
    unless `crs` reprojects (nearest neighbour: a cell keeps its values)."""
    from rasterio.crs import CRS
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as gdal_copy
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    if ds["score"].dims != ("y", "x") or not ds.sizes["x"] or not ds.sizes["y"]:
        raise InputError("the region holds no cells")
    data = np.stack([np.asarray(ds[v].values, np.float32) for v in VARIABLES])
    height, width = data.shape[1:]
    src_crs = CRS.from_epsg(3857)
    transform = grid_transform(ds)
    dst_crs = check_crs(crs) if crs else src_crs
    if dst_crs != src_crs:
        left, top = transform.c, transform.f
        right, bottom = left + width * transform.a, top + height * transform.e
        transform, width, height = calculate_default_transform(
            src_crs, dst_crs, width, height, left, bottom, right, top
        )
        warped = np.full((len(VARIABLES), height, width), np.nan, np.float32)
        reproject(
            data, warped, src_transform=grid_transform(ds), src_crs=src_crs, src_nodata=np.nan,
            dst_transform=transform, dst_crs=dst_crs, dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )  # fmt: skip
        data = warped
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": len(VARIABLES),
        "dtype": "float32", "crs": dst_crs, "transform": transform, "nodata": float("nan"),
    }  # fmt: skip
    levels = _overview_factors(width, height)
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data)
            for band, name in enumerate(VARIABLES, start=1):
                tmp.set_band_description(band, name)
                tmp.update_tags(band, long_name=str(ds[name].attrs.get("long_name", name)))
            tmp.update_tags(**geotiff_tags(ds, tags))
            if levels:
                tmp.build_overviews(levels, Resampling.nearest)
        with mem.open() as src:
            gdal_copy(
                src, out, driver="COG", COMPRESS="DEFLATE", PREDICTOR="3",
                BLOCKSIZE=str(COG_BLOCK), OVERVIEWS="FORCE_USE_EXISTING" if levels else "NONE",
            )  # fmt: skip


def cog_bytes(
    ds: xr.Dataset, crs: str | None = None, tags: Mapping[str, Any] | None = None
) -> bytes:
    """`write_cog` into memory: the file's bytes."""
    from rasterio.io import MemoryFile

    with MemoryFile() as mem:
        write_cog(ds, mem.name, crs, tags)
        return bytes(mem.getbuffer())


def _overview_factors(width: int, height: int) -> list[int]:
    """Decimation factors 2, 4, ... until the map fits one internal tile."""
    count = max(0, math.ceil(math.log2(max(width, height) / COG_BLOCK)))
    return [2**i for i in range(1, count + 1)] or ([2] if max(width, height) > 16 else [])


def write_geojson(cells: xr.Dataset, out: str | Path) -> None:
    """A list of scored cells (dim `cell`) as a GeoJSON FeatureCollection of points."""
    Path(out).write_text(json.dumps(feature_collection(cells)))


def feature_collection(cells: xr.Dataset) -> dict[str, Any]:
    """GeoJSON FeatureCollection of scored cells (lon/lat points, values as properties; null
    where a value is not finite)."""

    def num(v: float) -> float | None:
        return float(v) if math.isfinite(float(v)) else None

    dim = next(iter(cells["lat"].dims))
    names = [v for v in VARIABLES if v in cells]
    features = []
    for i in range(cells.sizes[dim]):
        props: dict[str, Any] = {"rank": i + 1}
        props |= {name: num(cells[name].values[i]) for name in names}
        lon, lat = float(cells["lon"].values[i]), float(cells["lat"].values[i])
        features.append({"type": "Feature", "geometry": {"type": "Point",
                         "coordinates": [lon, lat]}, "properties": props})  # fmt: skip
    meta = {k: v for k, v in cells.attrs.items() if isinstance(v, str | int | float)}
    return {"type": "FeatureCollection", "features": features, "properties": meta}


def write_dataset(ds: xr.Dataset, out: str | Path, kind: str | None = None) -> None:
    """The Dataset as NetCDF (.nc) or Zarr (.zarr; `kind` names it when the path's suffix does
    not), CRS attributes included."""
    path = Path(out)
    kind = kind or path.suffix
    if kind == ".nc":
        ds.to_netcdf(path, engine="scipy")
    elif kind == ".zarr":
        ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    else:
        raise InputError(f"{kind!r} is not a dataset format: use .nc or .zarr")
