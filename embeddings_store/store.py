"""The embedding store: Zarr v3 (readable with xarray), one group per level.

Per level group `psm{z}` (docs/ARCHITECTURE.md, "The store"):
  h      (y, x, d) float16  pre-fusion image embedding h_i of each cell
  valid  (y, x)    bool     imagery present
  mu0    (y, x, d) float16  optional: fused unit mean with every metadata component masked
  c0     (y, x)    float32  optional: sum exp(logvar) of that fused embedding
  u0     (y, x)    float32  optional: ||sigma||_1 of that fused embedding (its uncertainty)
  done   (ty, tx)  uint8    1 once a chunk is completely written (the resume marker)
  x, y, lon, lat            cell-centre coordinates (Web Mercator metres and degrees)
Chunks are one XYZ tile at the level's tile zoom, so a web tile reads one chunk or a handful.
A store is a local folder or any fsspec URL (s3://bucket/store.zarr; see `storage`), opened with
the same calls either way.
Each chunk object is written atomically by the Zarr store and `done` is written last, so a
killed job leaves no half-written chunk marked complete and a re-run rewrites the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from embeddings_store.cells import Cells
from embeddings_store.chunk_cache import ChunkCache, Observer
from embeddings_store.grid import CellExtent, Level, crs_attrs, tiles_for_bbox
from embeddings_store.storage import is_url, local_path, store_exists
from model.errors import StoreError, StoreMismatchError

# 2: u0 (the no-metadata uncertainty) joined mu0/c0.
SCHEMA_VERSION = 2
CODE_VERSION = "0.2.0"
# Per-cell arrays that `with_fused` stores add: name -> (dtype, one vector per cell?).
PRECOMPUTED = {"mu0": ("float16", True), "c0": ("float32", False), "u0": ("float32", False)}

__all__ = ["EmbeddingStore", "LevelExtent", "StoreError", "StoreMismatchError"]


@dataclass(frozen=True)
class LevelExtent:
    """A level and the inclusive XYZ tile range (at its tile zoom) that the store covers."""

    level: Level
    tx0: int
    tx1: int
    ty0: int
    ty1: int

    @property
    def cx0(self) -> int:
        """Global cell column of array column 0."""
        return self.tx0 * self.level.n

    @property
    def cy0(self) -> int:
        """Global cell row of array row 0."""
        return self.ty0 * self.level.n

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of cells."""
        n = self.level.n
        return (self.ty1 - self.ty0 + 1) * n, (self.tx1 - self.tx0 + 1) * n

    @property
    def cells(self) -> CellExtent:
        """Every cell the level's arrays hold."""
        rows, cols = self.shape
        return CellExtent(self.level, self.cx0, self.cx0 + cols, self.cy0, self.cy0 + rows)

    def holds_chunk(self, tx: int, ty: int) -> bool:
        """Whether chunk (tx, ty) is one of the store's."""
        return self.tx0 <= tx <= self.tx1 and self.ty0 <= ty <= self.ty1

    def tiles(self) -> Iterator[tuple[int, int]]:
        """Every (tx, ty) chunk tile, row by row."""
        for ty in range(self.ty0, self.ty1 + 1):
            for tx in range(self.tx0, self.tx1 + 1):
                yield tx, ty

    def n_chunks(self) -> int:
        """Number of chunks."""
        return (self.tx1 - self.tx0 + 1) * (self.ty1 - self.ty0 + 1)

    def to_json(self) -> dict[str, int]:
        """Attribute form."""
        lv = self.level
        return dict(
            psm_zoom=lv.psm_zoom,
            tile_zoom=lv.tile_zoom,
            n=lv.n,
            tx0=self.tx0,
            tx1=self.tx1,
            ty0=self.ty0,
            ty1=self.ty1,
        )

    @classmethod
    def from_json(cls, d: Mapping[str, int]) -> LevelExtent:
        """Inverse of `to_json`."""
        return cls(
            Level(d["psm_zoom"], d["tile_zoom"], d["n"]), d["tx0"], d["tx1"], d["ty0"], d["ty1"]
        )

    @classmethod
    def for_bbox(cls, level: Level, bbox: tuple[float, float, float, float]) -> LevelExtent:
        """The tiles at the level's tile zoom that cover a lon/lat bbox."""
        tx0, tx1, ty0, ty1 = tiles_for_bbox(bbox, level.tile_zoom)
        return cls(level, tx0, tx1, ty0, ty1)


def _zarr_location(location: str | Path) -> str:
    """What zarr/xarray are given: a URL as it is, a local path (or file:// URL) as a path."""
    return str(location) if is_url(location) else str(local_path(location))


def _open_group(
    location: str | Path, mode: str, storage_options: dict[str, Any] | None
) -> zarr.Group:
    kwargs: dict[str, Any] = {"mode": mode, "zarr_format": 3}
    if storage_options and is_url(location):
        kwargs["storage_options"] = storage_options
    return zarr.open_group(_zarr_location(location), **kwargs)


class EmbeddingStore:
    """Read and write access to one store. Open with `create` or `open`."""

    def __init__(
        self, root: zarr.Group, location: str, storage_options: dict[str, Any] | None = None
    ) -> None:
        self.root = root
        self.location = location
        # Kept for readers that open the store again by URL (xarray); never printed (secrets).
        self.storage_options = storage_options
        self.attrs: dict[str, Any] = dict(root.attrs)
        self.extents: dict[int, LevelExtent] = {
            d["psm_zoom"]: LevelExtent.from_json(d) for d in self.attrs["levels"]
        }
        self._arrays: dict[tuple[int, str], zarr.Array] = {}
        self._lock = threading.Lock()
        self._chunks: ChunkCache | None = None

    # -- creation / opening -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        location: str | Path,
        *,
        model_id: str,
        config_name: str,
        embed_dim: int,
        levels: list[Level],
        bbox: tuple[float, float, float, float],
        imagery: Mapping[str, Any],
        with_fused: bool = False,
        overwrite: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> EmbeddingStore:
        """Create a store, or reopen an identical one to resume it.

        An existing store built for another model, region, level set or dimension is refused
        (unless `overwrite`), so a resumed job can never mix embeddings of two models.
        """
        if not levels:
            raise StoreError("at least one level is needed")
        if len({lv.psm_zoom for lv in levels}) != len(levels):
            raise StoreError("one level per PSM zoom")
        extents = [LevelExtent.for_bbox(lv, bbox) for lv in sorted(levels)]
        wanted = {
            "schema_version": SCHEMA_VERSION,
            "model_id": model_id,
            "config_name": config_name,
            "embed_dim": int(embed_dim),
            "levels": [e.to_json() for e in extents],
            "bounds": [float(v) for v in bbox],
            "imagery": json.loads(json.dumps(dict(imagery))),
            "with_fused": bool(with_fused),
        }
        if not overwrite and store_exists(location, storage_options):
            store = cls.open(location, storage_options=storage_options, mode="r+")
            diffs = [k for k, v in wanted.items() if store.attrs.get(k) != v]
            if diffs:
                detail = "; ".join(
                    f"{k}: store has {store.attrs.get(k)!r}, job wants {wanted[k]!r}" for k in diffs
                )
                raise StoreMismatchError(
                    f"{location} already holds a different store ({detail}). Use another path, or "
                    f"--overwrite to replace it."
                )
            return store
        root = _open_group(location, "w", storage_options)
        for ext in extents:
            _create_level(root, ext, embed_dim, with_fused)
        # The attributes go last: a creation killed half-way leaves a store without them,
        # which `open` refuses instead of resuming into missing levels.
        root.attrs.update(
            {**wanted, "created": dt.datetime.now(dt.UTC).isoformat(), "code_version": CODE_VERSION}
        )
        return cls(root, str(location), storage_options)

    @classmethod
    def open(
        cls,
        location: str | Path,
        *,
        expect_model_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
        mode: str = "r",
    ) -> EmbeddingStore:
        """Open an existing store; refuse another schema version or another model."""
        if not store_exists(location, storage_options):
            raise StoreError(
                f"no embedding store at {location} (build one with `soundscape precompute`)"
            )
        try:
            root = _open_group(location, mode, storage_options)
        except Exception as exc:  # zarr raises several types for foreign or damaged stores
            raise StoreError(f"{location} is not a readable Zarr v3 store: {exc}") from exc
        attrs = dict(root.attrs)
        version = attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            source = (attrs.get("imagery") or {}).get("source") or "<imagery>"
            raise StoreMismatchError(
                f"{location} has store schema {version!r}; this code reads schema "
                f"{SCHEMA_VERSION}: rebuild it with `soundscape precompute --imagery {source} "
                f"--checkpoint <checkpoint> --store {location} --overwrite` (the demo store "
                f"rebuilds itself: `soundscape demo`)"
            )
        if expect_model_id is not None and attrs.get("model_id") != expect_model_id:
            raise StoreMismatchError(
                f"{location} was computed with model {attrs.get('model_id')} "
                f"({attrs.get('config_name')}), but the loaded checkpoint is {expect_model_id}. "
                f"Serve it with the checkpoint it was built with, or rebuild it: "
                f"soundscape precompute "
                f"--checkpoint <ckpt> --store {location} --overwrite"
            )
        return cls(root, str(location), storage_options)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """Model id the embeddings were computed with."""
        return str(self.attrs["model_id"])

    @property
    def embed_dim(self) -> int:
        """Embedding dimension D."""
        return int(self.attrs["embed_dim"])

    @property
    def with_fused(self) -> bool:
        """Whether mu0/c0/u0 (the no-metadata fused embeddings) are stored."""
        return bool(self.attrs.get("with_fused"))

    @property
    def levels(self) -> list[Level]:
        """Levels, coarse PSM zoom last."""
        return [e.level for e in sorted(self.extents.values(), key=lambda e: e.level.psm_zoom)]

    def extent(self, psm_zoom: int) -> LevelExtent:
        """Extent of the level with this PSM zoom."""
        if psm_zoom not in self.extents:
            raise StoreError(
                f"store has no level for PSM zoom {psm_zoom}; it has {sorted(self.extents)}"
            )
        return self.extents[psm_zoom]

    def array(self, psm_zoom: int, name: str) -> zarr.Array:
        """A level's array (cached handle)."""
        key = (psm_zoom, name)
        arr = self._arrays.get(key)
        if arr is None:
            with self._lock:
                arr = self._arrays.get(key)
                if arr is None:
                    arr = self.root[f"{self.extent(psm_zoom).level.name}/{name}"]
                    self._arrays[key] = arr
        return arr  # type: ignore[return-value]

    # -- writing ----------------------------------------------------------------------------
    def _slices(self, extent: CellExtent) -> tuple[CellExtent, tuple[slice, slice]] | None:
        """The part of `extent` the level's arrays hold and its array slices (None if none).

        The only place where cells become array indices, for reading and writing alike.
        """
        held = self.extent(extent.level.psm_zoom)
        if held.level != extent.level:
            raise StoreError(f"level {extent.level} is not the store's level {held.level}")
        inside = extent.intersection(held.cells)
        return None if inside is None else (inside, inside.slices_in(held.cells))

    def write_chunk(
        self,
        psm_zoom: int,
        tx: int,
        ty: int,
        h: np.ndarray,
        valid: np.ndarray,
        mu0: np.ndarray | None = None,
        c0: np.ndarray | None = None,
        u0: np.ndarray | None = None,
    ) -> None:
        """Write one chunk's cells, then mark it done (the marker is the last write)."""
        ext = self.extent(psm_zoom)
        if not ext.holds_chunk(tx, ty):
            raise StoreError(f"tile {tx},{ty} is outside level psm{psm_zoom}'s extent")
        _, (rows, cols) = self._slices(CellExtent.chunk(ext.level, tx, ty))  # type: ignore[misc]
        n, d = ext.level.n, self.embed_dim
        if h.shape != (n, n, d) or valid.shape != (n, n):
            raise StoreError(f"chunk shapes {h.shape}/{valid.shape} do not fit ({n}, {n}, {d})")
        fused = {"mu0": mu0, "c0": c0, "u0": u0}
        if self.with_fused and any(v is None for v in fused.values()):
            raise StoreError("this store keeps fused no-metadata embeddings: pass mu0, c0 and u0")
        valid = valid.astype(bool)
        # Invalid cells are stored as zeros so the bytes do not depend on what the imagery
        # reader left in uncovered pixels.
        self.array(psm_zoom, "h")[rows, cols, :] = np.where(valid[..., None], h, 0).astype(
            np.float16
        )
        self.array(psm_zoom, "valid")[rows, cols] = valid
        if self.with_fused:
            for name, (dtype, vector) in PRECOMPUTED.items():
                mask = valid[..., None] if vector else valid
                values = np.where(mask, fused[name], 0).astype(dtype)
                index = (rows, cols, slice(None)) if vector else (rows, cols)
                self.array(psm_zoom, name)[index] = values
        self.array(psm_zoom, "done")[ty - ext.ty0, tx - ext.tx0] = 1

    def done_mask(self, psm_zoom: int) -> np.ndarray:
        """(tiles_y, tiles_x) bool: chunks completely written."""
        return np.asarray(self.array(psm_zoom, "done")[:]) == 1

    def written_chunks(self, psm_zoom: int) -> list[str]:
        """Sorted keys of the level's written `done` chunks: a listing, no reads (one file per
        chunk makes reading the mask itself slow on a large level), and it grows when a
        precompute adds chunks."""
        arr = self.array(psm_zoom, "done")

        async def keys() -> list[str]:
            return [k async for k in arr.store.list_prefix(f"{arr.path}/")]

        return sorted(k for k in sync(keys()) if not k.endswith("zarr.json"))

    def pending_tiles(self, psm_zoom: int) -> list[tuple[int, int]]:
        """Chunk tiles not yet written."""
        ext = self.extent(psm_zoom)
        done = self.done_mask(psm_zoom)
        return [(tx, ty) for tx, ty in ext.tiles() if not done[ty - ext.ty0, tx - ext.tx0]]

    def is_complete(self) -> bool:
        """Every chunk of every level is written."""
        return all(self.done_mask(z).all() for z in self.extents)

    # -- reading ----------------------------------------------------------------------------
    def keep_chunks(self, max_bytes: int, observer: Observer | None = None) -> None:
        """Keep up to `max_bytes` of decoded chunks in memory for `read_cells` (0: none). Only
        for a reader of a store that does not change under it (a server's), as the fused-chunk
        cache already assumes; `observer(tier, outcome)` counts hits and misses."""
        self._chunks = ChunkCache(max_bytes, observer) if max_bytes > 0 else None

    def read_cells(self, extent: CellExtent, precomputed: bool = False) -> Cells:
        """The cells of `extent` (h as stored: float16); cells the store lacks are invalid zeros.

        With `precomputed`, a store that keeps them also returns mu0/c0/u0. With `keep_chunks`,
        an extent inside one stored chunk is cut from that chunk's kept arrays (read read-only).
        """
        names = ("h", "valid", *(PRECOMPUTED if precomputed and self.with_fused else ()))
        if self._chunks is not None:
            cells = self._read_kept(extent, names, self._chunks)
            if cells is not None:
                return cells
        return self._read_direct(extent, names)

    def _read_kept(
        self, extent: CellExtent, names: tuple[str, ...], kept: ChunkCache
    ) -> Cells | None:
        """`read_cells` through the chunk cache; None when the extent is not inside one of the
        store's chunks (read directly then)."""
        lv = extent.level
        where = extent.chunks()
        if len(where) != 1 or not self.extent(lv.psm_zoom).holds_chunk(*where[0]):
            return None
        whole = CellExtent.chunk(lv, *where[0])
        if extent.intersection(whole) != extent:
            return None  # reaches past the world's edge
        key = (lv.psm_zoom, *where[0])
        arrays = kept.get(key, names)
        if arrays is None:
            read = self._read_direct(whole, names)
            arrays = kept.put(key, {n: getattr(read, n) for n in names})
        cut = extent.slices_in(whole)
        return Cells(extent, **{n: arrays[n][cut] for n in names})

    def _read_direct(self, extent: CellExtent, names: tuple[str, ...]) -> Cells:
        """The arrays `names` of `extent` from zarr, zero-filled where the store has no cells."""
        lv = extent.level
        part = self._slices(extent)
        if part is not None and part[0].shape == extent.shape:  # wholly inside: no padding copy
            rows, cols = part[1]
            arrays = {name: np.asarray(self.array(lv.psm_zoom, name)[rows, cols]) for name in names}
            return Cells(extent, **arrays)
        shape = extent.shape
        vector = {"h": True, "valid": False} | {k: v[1] for k, v in PRECOMPUTED.items()}
        dtypes = {"h": np.float16, "valid": bool} | {k: v[0] for k, v in PRECOMPUTED.items()}
        arrays = {
            name: np.zeros((*shape, self.embed_dim) if vector[name] else shape, dtypes[name])
            for name in names
        }
        if part is not None:
            inside, (rows, cols) = part
            dst = inside.slices_in(extent)
            for name in names:
                arrays[name][dst] = self.array(lv.psm_zoom, name)[rows, cols]
        return Cells(extent, **arrays)

    def read_band(self, psm_zoom: int, ty: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Arrays of one row of chunks (the level's full width): a whole level read band by band
        costs a few large reads instead of one small read per chunk and array."""
        ext = self.extent(psm_zoom)
        if not ext.ty0 <= ty <= ext.ty1:
            raise StoreError(f"chunk row {ty} is outside level psm{psm_zoom}'s extent")
        r0 = (ty - ext.ty0) * ext.level.n
        rows = slice(r0, r0 + ext.level.n)
        return {name: np.asarray(self.array(psm_zoom, name)[rows]) for name in names}

    def to_xarray(self, psm_zoom: int):  # -> xarray.Dataset
        """The level as an xarray Dataset (lazy, dask-backed), local or on object storage."""
        import xarray as xr

        remote = is_url(self.location) and self.storage_options
        return xr.open_zarr(
            _zarr_location(self.location),
            group=self.extent(psm_zoom).level.name,
            consolidated=False,
            zarr_format=3,
            storage_options=self.storage_options if remote else None,
        )


# CF coordinate attributes of the level arrays' axes.
COORD_ATTRS = {
    "x": {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"},
    "y": {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"},
    "lat": {"standard_name": "latitude", "units": "degrees_north"},
    "lon": {"standard_name": "longitude", "units": "degrees_east"},
}


def _create_level(root: zarr.Group, ext: LevelExtent, dim: int, with_fused: bool) -> None:
    lv = ext.level
    g = root.create_group(lv.name)
    g.attrs.update(ext.to_json())
    rows, cols = ext.shape
    n = lv.n
    # name -> (dtype, fill, per-cell vector?): the store's schema as data
    variables = {"h": ("float16", 0, True), "valid": ("bool", False, False)}
    if with_fused:
        variables |= {name: (dtype, 0, vector) for name, (dtype, vector) in PRECOMPUTED.items()}
    for name, (dtype, fill, vector) in variables.items():
        g.create_array(
            name,
            shape=(rows, cols, dim) if vector else (rows, cols),
            chunks=(n, n, dim) if vector else (n, n),
            dtype=dtype,
            fill_value=fill,
            dimension_names=["y", "x", "d"] if vector else ["y", "x"],
            # CF: xarray + rioxarray (and GDAL's Zarr driver) see EPSG:3857 without being told.
            attributes={"coordinates": "lat lon spatial_ref", "grid_mapping": "spatial_ref"},
        )
    ref = g.create_array("spatial_ref", shape=(), dtype="int32", fill_value=0,
                         dimension_names=[], attributes=dict(crs_attrs()))  # fmt: skip
    ref[()] = 0
    g.create_array(
        "done",
        shape=(ext.ty1 - ext.ty0 + 1, ext.tx1 - ext.tx0 + 1),
        chunks=(1, 1),
        dtype="uint8",
        fill_value=0,
        dimension_names=["ty", "tx"],
    )
    cy = np.arange(ext.cy0, ext.cy0 + rows)
    cx = np.arange(ext.cx0, ext.cx0 + cols)
    for name, dim_name, values in (
        ("y", "y", lv.cell_centers_y(cy)),
        ("x", "x", lv.cell_centers_x(cx)),
        ("lat", "y", lv.cell_centers_lat(cy)),
        ("lon", "x", lv.cell_centers_lon(cx)),
    ):
        arr = g.create_array(
            name,
            shape=values.shape,
            chunks=values.shape,
            dtype="float64",
            dimension_names=[dim_name],
            attributes=COORD_ATTRS[name],
        )
        arr[:] = values
