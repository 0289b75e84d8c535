"""`soundscape demo`: build whatever of the demo is missing, then serve the map.

World files, the demo model (the packaged one, or trained here with --retrain), and the store
over the contiguous USA are each built once into the demo cache folder and reused afterwards.
"""

from __future__ import annotations

import argparse
import time
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
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Build the missing parts, optionally evaluate, then serve (or print what was built)."""
    from embeddings_store.demo_build import (
        DEMO_STORE_BBOX,
        DemoRecipe,
        build_demo_store,
        ensure_checkpoint,
        ensure_world_files,
        evaluate_demo,
    )
    from embeddings_store.region import parse_bbox
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import read_header
    from model.demo_world.paths import demo_paths

    t0 = time.perf_counter()
    paths = demo_paths(args.cache_dir)
    progress = not args.no_progress
    recipe = DemoRecipe()
    bbox = parse_bbox(args.bbox).bbox if args.bbox else DEMO_STORE_BBOX
    ensure_world_files(paths)
    ensure_checkpoint(paths, recipe, retrain=args.retrain, progress=progress)
    model_id = read_header(paths.checkpoint)["model_id"]
    if not _store_ready(paths.store, model_id, bbox):
        build_demo_store(paths, bbox, progress=progress)
    store = EmbeddingStore.open(paths.store, expect_model_id=model_id)
    if args.evaluate:
        evaluate_demo(paths, recipe, progress=progress)
        print((paths.root / "evaluation.md").read_text())
    levels = ", ".join(f"PSM zoom {lv.psm_zoom} (tiles z{lv.tile_zoom})" for lv in store.levels)
    print(
        f"demo ready in {time.perf_counter() - t0:.1f} s: model {model_id} "
        f"({paths.checkpoint}), store {paths.store} with {levels}"
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
    )


def _store_ready(store_path: Path, model_id: str, bbox: tuple[float, ...]) -> bool:
    """The demo store exists, is complete, covers `bbox` and belongs to the demo model."""
    from embeddings_store.store import EmbeddingStore, StoreError

    if not store_path.exists():
        return False
    try:
        store = EmbeddingStore.open(store_path)
    except StoreError:
        return False
    same_region = tuple(store.attrs.get("bounds", ())) == tuple(float(v) for v in bbox)
    return store.model_id == model_id and same_region and store.is_complete()
