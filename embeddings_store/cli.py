"""`soundscape precompute`: thin argument parsing over embeddings_store.precompute."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.config import PRECISIONS


def add_precompute_parser(sub: argparse._SubParsersAction) -> None:
    """Register `precompute`."""
    p = sub.add_parser(
        "precompute",
        help="precompute image embeddings h_i for a region into a Zarr store",
        description="Embed every cell of a region at PSM zoom levels 1/3/5 into a Zarr v3 store. "
        "Resumable: re-running the same command finishes an interrupted store.",
    )
    p.add_argument(
        "--imagery",
        required=True,
        help="GeoTIFF/COG path or URL, or xyz:<template with {z}/{x}/{y}>",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="model .safetensors checkpoint")
    p.add_argument(
        "--store",
        required=True,
        help="output store: a folder, or an fsspec URL such as s3://bucket/store.zarr",
    )
    region = p.add_mutually_exclusive_group(required=True)
    region.add_argument(
        "--bbox", help="west,south,east,north in degrees (write --bbox=-125,24,-66,50 for west < 0)"
    )
    region.add_argument("--geojson", type=Path, help="GeoJSON (Multi)Polygon region")
    p.add_argument(
        "--levels",
        default="1,3,5",
        help="PSM zooms (automatic grids) or psm:tile_zoom:n triples, e.g. 1:9:16,5:7:16",
    )
    p.add_argument(
        "--cells-per-tile", type=int, default=16, help="n for automatic grids (power of 2)"
    )
    p.add_argument(
        "--base-footprint",
        type=float,
        default=None,
        help="ground metres of a zoom-1 footprint (default: tile_size x native GSD)",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="cells through the image tower at once"
    )
    p.add_argument(
        "--with-fused",
        action="store_true",
        help="also store mu0/c0/u0, the fused embedding with every metadata masked (instant "
        "default maps)",
    )
    p.add_argument("--min-coverage", type=float, default=0.5, help="imagery share for a valid cell")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: bf16 autocast on CUDA, fp32 on CPU",
    )
    p.add_argument("--cache-dir", default=None, help="disk cache for XYZ tile sources")
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option for a store on object storage, repeatable; VALUE is read as JSON "
        "when it parses (anon=true, client_kwargs={...}), else as text. For s3://: key, secret, "
        "endpoint_url, e.g. --storage-option endpoint_url=http://minio:9000. The standard "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL variables work too, and "
        "keep secrets off the command line (which other users of the machine can see)",
    )
    p.add_argument(
        "--storage-options",
        default=None,
        metavar="JSON",
        help="the same options as one JSON object (--storage-option entries override it)",
    )
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: in-process)")
    p.add_argument("--overwrite", action="store_true", help="replace a store built differently")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when not a terminal)"
    )
    p.set_defaults(func=run_precompute)


def run_precompute(args: argparse.Namespace) -> int:
    """Build the spec from arguments and run the job."""
    from embeddings_store.grid import Level
    from embeddings_store.precompute import PrecomputeSpec, default_levels, parse_levels, precompute
    from embeddings_store.region import load_geojson, parse_bbox
    from embeddings_store.storage import parse_storage_options
    from model.checkpoint import read_header
    from model.config import ModelConfig

    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    if not 0.0 < args.min_coverage <= 1.0:
        raise ValueError("--min-coverage must be in (0, 1]")
    region = parse_bbox(args.bbox) if args.bbox else load_geojson(args.geojson)
    config = ModelConfig.model_validate_json(read_header(args.checkpoint)["config"])
    base = args.base_footprint or config.image.tile_size * config.image.native_gsd
    if base <= 0:
        raise ValueError("--base-footprint must be positive")
    wanted = parse_levels(args.levels)
    auto = default_levels(base, region, [z for z, t, _ in wanted if t is None], args.cells_per_tile)
    explicit = [Level(z, t, n) for z, t, n in wanted if t is not None and n is not None]
    levels = tuple(sorted([*auto, *explicit]))
    options = parse_storage_options(args.storage_option, args.storage_options)
    spec = PrecomputeSpec(
        imagery=args.imagery,
        checkpoint=str(args.checkpoint),
        store=args.store,
        levels=levels,
        region=region,
        base_footprint_m=base,
        batch_size=args.batch_size,
        with_fused=args.with_fused,
        device=args.device,
        precision=args.precision,
        min_coverage=args.min_coverage,
        cache_dir=args.cache_dir,
        storage_options=options,
    )
    for lv in levels:
        print(
            f"level psm{lv.psm_zoom}: tile zoom {lv.tile_zoom}, {lv.n}x{lv.n} cells per tile, "
            f"cell {lv.cell_size / 1000:.2f} km (projected)"
        )
    try:
        report = precompute(
            spec, overwrite=args.overwrite, scheduler=args.scheduler, progress=not args.no_progress
        )
    except OSError as exc:
        # A full disk or a lost mount: finished chunks stay valid, the rest is redone on re-run.
        raise OSError(
            f"writing the store failed ({exc}); fix the cause and re-run to resume"
        ) from exc
    print(
        f"store {report.store}: {report.chunks_computed} of {report.chunks_total} chunks computed "
        f"now, {report.valid_cells} valid cells; model {report.model_id}"
    )
    return 0


def add_gallery_parser(sub: argparse._SubParsersAction) -> None:
    """Register `gallery build`."""
    p = sub.add_parser(
        "gallery",
        help="build a sound gallery (clips and labels embedded by a model) for /listen",
        description="Sound galleries answer 'what would I hear here?' (GET /listen).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", help="build: make a gallery")
    actions.required = True
    b = actions.add_parser(
        "build",
        help="embed a folder of WAV/FLAC/OGG/MP3 clips (and a label list) into a gallery",
        description="Embed every clip of a folder with the model's audio tower, and each label "
        "with its text tower. Resumable: re-running the same command finishes an interrupted "
        "build. Unusable files are listed with the reason and skipped; the gallery appears "
        "only when complete.",
    )
    b.add_argument("--audio-dir", required=True, type=Path, help="folder of clips (recursive)")
    b.add_argument("--out", required=True, type=Path, help="gallery folder to write")
    b.add_argument(
        "--captions", type=Path, default=None,
        help="CSV with columns file,caption (file relative to --audio-dir); default: the name",
    )  # fmt: skip
    b.add_argument(
        "--labels", type=Path, default=None,
        help="text file, one label per line, or label<TAB>query text to embed for it",
    )  # fmt: skip
    b.add_argument(
        "--checkpoint", type=Path, default=None,
        help="model .safetensors checkpoint (default: the packaged demo model)",
    )  # fmt: skip
    b.add_argument("--batch-size", type=int, default=32, help="clips per resumable part")
    b.add_argument("--max-seconds", type=float, default=60.0, help="longest clip accepted")
    b.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    b.add_argument("--overwrite", action="store_true", help="replace an existing gallery")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=run_gallery_build)


def run_gallery_build(args: argparse.Namespace) -> int:
    """Load the model and build the gallery."""
    import torch

    from embeddings_store.audio import AudioLimits
    from embeddings_store.sounds.build import build_sound_gallery
    from model.checkpoint import load_checkpoint

    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    if not 0 < args.max_seconds <= 600:
        raise ValueError("--max-seconds must be in (0, 600]")
    checkpoint = args.checkpoint
    if checkpoint is None:
        from embeddings_store.demo.build import packaged_checkpoint

        checkpoint = packaged_checkpoint()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_checkpoint(checkpoint, device=device)
    report = build_sound_gallery(
        model, args.audio_dir, args.out, captions=args.captions, labels=args.labels,
        limits=AudioLimits(max_seconds=args.max_seconds), batch=args.batch_size,
        overwrite=args.overwrite, progress=not args.no_progress,
    )  # fmt: skip
    print(
        f"gallery {report.out}: {report.clips} clips, {report.labels} labels, "
        f"{len(report.skipped)} skipped, model {model.model_id}, {report.seconds:.1f} s"
        + (f" ({report.parts_reused} parts reused)" if report.parts_reused else "")
    )
    return 0
