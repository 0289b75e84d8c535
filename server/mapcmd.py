"""`soundscape map`: a soundscape map without a server, as a file for GIS tools.

The map is `score_region` over the region (the same numbers the tiles draw); the output kind
follows the suffix: `.tif` Cloud-Optimized GeoTIFF, `.png` the rendered map, `.geojson` the
top-k cells, `.nc`/`.zarr` the xarray Dataset. Written to a temporary name and renamed, so a
failed run leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from model.config import AUDIO_SOURCES, CAPTION_SOURCES


def add_map_parser(sub: argparse._SubParsersAction) -> None:
    """Register `map`."""
    p = sub.add_parser(
        "map",
        help="write a soundscape map of a region to a file (COG, PNG, GeoJSON, NetCDF, Zarr)",
        description="Score a region of the store against a text or audio query under metadata "
        "and write it for GIS tools; the output kind follows the suffix of --out.",
    )
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="what to listen for, e.g. 'frogs calling from a marsh'")
    query.add_argument("--audio", type=Path, help="an audio file (WAV, FLAC, OGG, MP3)")
    region = p.add_mutually_exclusive_group(required=True)
    region.add_argument(
        "--bbox", help="west,south,east,north in degrees (write --bbox=-125,24,-66,50 for west < 0)"
    )
    region.add_argument("--geojson", type=Path, help="GeoJSON (Multi)Polygon region")
    p.add_argument("--level", type=int, choices=(1, 3, 5), default=None,
                   help="PSM zoom (default: the store's finest level)")  # fmt: skip
    p.add_argument("--month", type=int, default=None, help="month 1..12 (default: masked)")
    p.add_argument("--hour", type=int, default=None, help="hour 0..23 (default: masked)")
    p.add_argument("--asource", choices=sorted(AUDIO_SOURCES), default=None,
                   help="audio source (default: masked)")  # fmt: skip
    p.add_argument("--tsource", choices=sorted(CAPTION_SOURCES), default=None,
                   help="caption source (default: masked)")  # fmt: skip
    p.add_argument("--no-location", action="store_true", help="do not fuse each cell's lat/lon")
    p.add_argument("--out", type=Path, required=True,
                   help="output: .tif (COG), .png, .geojson, .nc or .zarr")  # fmt: skip
    p.add_argument("--crs", default=None, help="reproject a .tif to this CRS (default: EPSG:3857)")
    p.add_argument("--top-k", type=int, default=100, help="cells in a .geojson")
    p.add_argument("--colormap", default="viridis", help="colour ramp of a .png")
    p.add_argument(
        "--rescale",
        default=None,
        help="min,max score of the .png's first and last colour (default: 2nd..98th "
        "percentile; max < min reverses, min = max draws a step)",
    )
    p.add_argument("--store", default=None, help="embedding store (default: the demo store)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the demo model)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (also off when not a terminal)")  # fmt: skip
    p.set_defaults(func=run_map)


def run_map(args: argparse.Namespace) -> int:
    """Build the map and write it."""
    from embeddings_store.export import EXPORT_SUFFIXES, check_crs
    from model.errors import InputError
    from server.render import parse_rescale

    out: Path = args.out
    suffix = out.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise InputError(f"--out {out}: the suffix must be one of {', '.join(EXPORT_SUFFIXES)}")
    if args.crs and suffix not in (".tif", ".tiff"):
        raise InputError("--crs reprojects a .tif; other outputs stay in EPSG:3857")
    if args.crs:
        check_crs(args.crs)
    if args.top_k < 1:
        raise InputError("--top-k must be at least 1")
    if args.rescale and suffix != ".png":
        raise InputError("--rescale sets the colours of a .png; the other outputs keep values")
    rescale = parse_rescale(args.rescale) if args.rescale else None  # one-line InputError
    if suffix == ".png":
        from server.render import HEATMAP_COLORMAPS

        if args.colormap not in HEATMAP_COLORMAPS:
            raise InputError(
                f"unknown colormap {args.colormap!r}; choose one of {', '.join(HEATMAP_COLORMAPS)}"
            )
    made = make_map(args)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        write(made, suffix, tmp, args, rescale)
        if out.is_dir():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    valid = int(made["score"].notnull().sum())
    print(
        f"{out}: {valid} cells at PSM zoom {made.attrs['psm_zoom']}, model {made.attrs['model_id']}"
    )
    return 0


def make_map(args: argparse.Namespace):  # -> xarray.Dataset
    """The scored region the arguments ask for."""
    import numpy as np
    import xarray as xr
    from tqdm import tqdm

    from embeddings_store.fusion import CellFusion
    from embeddings_store.grid import CellExtent
    from embeddings_store.region import load_geojson, parse_bbox
    from embeddings_store.scoring import score_region
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint
    from model.errors import InputError
    from model.metadata import Metadata
    from server.service import resolve_paths
    from server.settings import Settings

    region = parse_bbox(args.bbox) if args.bbox else load_geojson(args.geojson)
    metadata = Metadata(args.month, args.hour, args.asource, args.tsource, not args.no_location)
    store_path, ckpt_path = resolve_paths(Settings(store=args.store, checkpoint=args.checkpoint))
    model = load_checkpoint(ckpt_path)
    store = EmbeddingStore.open(store_path, expect_model_id=model.model_id)
    levels = {lv.psm_zoom: lv for lv in store.levels}
    if args.level is not None and args.level not in levels:
        raise InputError(f"the store has no PSM zoom {args.level} level; it has {sorted(levels)}")
    level = levels[args.level] if args.level else max(store.levels, key=lambda lv: lv.cell_zoom)
    extent = CellExtent.for_bbox(level, region.bbox)
    held = store.extent(level.psm_zoom).cells
    if extent.size == 0:
        raise InputError(
            f"the region {region.bbox} holds no cell centre at PSM zoom {level.psm_zoom}"
        )
    if extent.intersection(held) is None:
        w, s, e, n = store.attrs["bounds"]
        raise InputError(
            f"the region {region.bbox} lies outside the store, which covers "
            f"({w}, {s}, {e}, {n}) (west, south, east, north)"
        )
    query = embed_query(model, args)
    bar = tqdm(total=len(extent.chunks()), unit="chunk", desc="map",
               disable=True if args.no_progress else None)  # fmt: skip
    fusion = CellFusion(model, store)
    with bar:
        ds = score_region(model, store, query, metadata, level, extent, fusion=fusion,
                          on_chunk=lambda: bar.update(1))  # fmt: skip
    if region.rings:  # a polygon: cells centred outside it have no value
        lon, lat = np.meshgrid(ds["lon"].values, ds["lat"].values)
        inside = xr.DataArray(region.contains(lon, lat), dims=("y", "x"))
        ds = ds.where(inside)
    if not bool(ds["score"].notnull().any()):
        raise InputError(f"the store has no imagery for any cell of {region.bbox}")
    ds.attrs.update(query=args.text or str(args.audio), store=str(store_path))
    return ds


def embed_query(model, args: argparse.Namespace):  # -> QueryEmbedding
    """The query of `--text` or `--audio`, validated as the service validates uploads."""
    import numpy as np

    from embeddings_store.audio import AudioLimits, decode_audio
    from model.errors import InputError
    from model.scoring import QueryEmbedding
    from server.queries import normalize_text

    if args.text is not None:
        return QueryEmbedding.from_text(model, normalize_text(args.text))
    try:
        data = args.audio.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read --audio {args.audio}: {exc.strerror or exc}") from exc
    audio = decode_audio(data, AudioLimits())
    wave = np.ascontiguousarray(audio.samples.T)
    return QueryEmbedding.from_audio(model, wave if wave.shape[0] > 1 else wave[0],
                                     audio.sample_rate)  # fmt: skip


def write(ds, suffix: str, path: Path, args: argparse.Namespace, rescale) -> None:
    """Write the map in the format of `suffix` to `path`."""
    from embeddings_store.export import write_cog, write_dataset, write_geojson
    from embeddings_store.scoring import top_cells

    if suffix in (".tif", ".tiff"):
        write_cog(ds, path, crs=args.crs)
    elif suffix == ".geojson":
        write_geojson(top_cells(ds, args.top_k), path)
    elif suffix == ".png":
        path.write_bytes(render_png(ds, args.colormap, rescale))
    else:
        write_dataset(ds, path, suffix)


def render_png(ds, colormap: str, rescale: tuple[float, float] | None) -> bytes:
    """The score map at one pixel per cell, in a palette PNG (transparent where no cell)."""
    import numpy as np

    from server.render import encode_png, percentile_range, quantize, to_unit

    score = ds["score"].values
    lo, hi = rescale or percentile_range(score)
    return encode_png(quantize(to_unit(score, lo, hi), np.isfinite(score)), colormap)
