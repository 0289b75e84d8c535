"""`soundscape demo`: build whatever of the demo is missing, then serve the map.

World files, the demo model (the packaged one, or trained here with --retrain), and the store
over the contiguous USA are each built once into the demo cache folder and reused afterwards.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """Register `demo`."""
    p = sub.add_parser(
        "demo",
        help="build the demo (world, model, store over the USA) if missing, then serve the map",
        description="Build what is missing of the demo into its cache folder (first run: about "
        "2 minutes with the packaged model; add --retrain to train the demo model here, about "
        "20 minutes on 2 CPU cores), then serve the soundscape map.",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="demo cache folder (default: $SOUNDSCAPE_DEMO_CACHE or ~/.cache/soundscape-map)",
    )
    p.add_argument(
        "--retrain", action="store_true", help="train the demo model here (resumes if interrupted)"
    )
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="measure retrieval and map correctness; writes evaluation.md in the cache folder",
    )
    p.add_argument(
        "--bbox",
        default=None,
        help="store region west,south,east,north (default: the contiguous USA); write "
        "--bbox=-125,24,-66,50 when west is negative",
    )
    p.add_argument("--no-serve", action="store_true", help="build only, do not start the server")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Build the missing parts (the demo's own build), then serve, or say what was built."""
    from embeddings_store.demo.build import DEMO_STORE_BBOX, build_demo
    from embeddings_store.demo.paths import demo_paths
    from embeddings_store.demo.recipe import DemoRecipe
    from embeddings_store.region import parse_bbox

    paths = demo_paths(args.cache_dir)
    bbox = parse_bbox(args.bbox).bbox if args.bbox else DEMO_STORE_BBOX
    built = build_demo(
        paths, DemoRecipe.load(), bbox, retrain=args.retrain, evaluate=args.evaluate,
        progress=not args.no_progress,
    )  # fmt: skip
    if args.evaluate:
        print((paths.root / "evaluation.md").read_text())
    levels = ", ".join(f"PSM zoom {psm} (tiles z{tz})" for psm, tz in built.levels)
    print(
        f"demo ready in {built.seconds:.1f} s: model {built.model_id} ({paths.checkpoint}), "
        f"store {paths.store} with {levels}"
    )
    if args.no_serve:
        return 0
    from server.serve import serve

    return serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        store=str(paths.store),
        checkpoint=str(paths.checkpoint),
        gallery=str(paths.gallery),
    )
