"""`soundscape serve`: run the service with uvicorn (several workers share Redis)."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """Register `serve`."""
    p = sub.add_parser(
        "serve",
        help="run the map tile service (the demo store by default)",
        description="Serve heatmap/uncertainty tiles, queries and similarity over HTTP. With no "
        "--store/--checkpoint it serves the demo world built by `soundscape demo`. Every "
        "setting can also come from a SOUNDSCAPE_* environment variable (e.g. "
        "SOUNDSCAPE_REDIS_URL).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--workers", type=int, default=1, help="worker processes (each loads the model)")
    p.add_argument("--store", default=None, help="embedding store (default: the demo store)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the demo model)")
    p.add_argument(
        "--gallery", default=None,
        help="sound gallery for /listen, from `soundscape gallery build` (default: a `gallery` "
        "folder beside the store, as the demo has)",
    )  # fmt: skip
    p.add_argument(
        "--redis-url",
        default=None,
        help="shared cache, e.g. redis://127.0.0.1:6379/0 (default: none, each worker "
        "caches alone)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="model/scoring threads per worker (default: 2)"
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        help="allowed CORS origin, repeatable (default: none)",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="comma-separated addresses of trusted reverse proxies whose X-Forwarded-For names "
        "the client (rate limits are per client); default: none, X-Forwarded-For is ignored",
    )
    p.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="least severe log level written",
    )  # fmt: skip
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """The `serve` subcommand."""
    return serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        store=args.store,
        checkpoint=args.checkpoint,
        gallery=args.gallery,
        redis_url=args.redis_url,
        threads=args.threads,
        cors_origins=args.cors_origin,
        log_level=args.log_level,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    store: str | None = None,
    checkpoint: str | None = None,
    gallery: str | None = None,
    redis_url: str | None = None,
    threads: int | None = None,
    cors_origins: list[str] | None = None,
    log_level: str = "info",
    forwarded_allow_ips: str | None = None,
) -> int:
    """Check the inputs, export them as settings and hand over to uvicorn (blocks)."""
    import json

    import uvicorn

    from model.errors import InputError
    from server.service import resolve_gallery, resolve_paths
    from server.settings import Settings

    if workers < 1:
        raise InputError("--workers must be at least 1")
    env = {
        "SOUNDSCAPE_STORE": store,
        "SOUNDSCAPE_CHECKPOINT": checkpoint,
        "SOUNDSCAPE_GALLERY": gallery,
        "SOUNDSCAPE_REDIS_URL": redis_url,
        "SOUNDSCAPE_WORKERS_THREADS": None if threads is None else str(threads),
        "SOUNDSCAPE_CORS_ORIGINS": json.dumps(cors_origins) if cors_origins else None,
    }
    # Settings travel to every worker process through the environment.
    os.environ.update({k: v for k, v in env.items() if v is not None})
    store, checkpoint = resolve_paths(Settings())
    # Check both here, so a missing file or a store of another model is one clear line, not a
    # traceback from every worker.
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import read_header

    model_id = read_header(checkpoint)["model_id"]
    EmbeddingStore.open(store, expect_model_id=model_id)
    os.environ["SOUNDSCAPE_STORE"], os.environ["SOUNDSCAPE_CHECKPOINT"] = store, checkpoint
    sounds = resolve_gallery(Settings(), store)
    if sounds is not None:
        from embeddings_store.sounds.gallery import SoundGallery

        SoundGallery.open(sounds, expect_model_id=model_id)
        os.environ["SOUNDSCAPE_GALLERY"] = sounds
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers write their metrics here so that /metrics reports all of them.
        metrics_dir = tempfile.mkdtemp(prefix="soundscape-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "server.app:make_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,  # the service logs each request itself, as JSON
            timeout_graceful_shutdown=5,
            # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: any local client could
            # then choose its rate-limit bucket. Only the proxies named here are trusted.
            proxy_headers=bool(forwarded_allow_ips),
            forwarded_allow_ips=forwarded_allow_ips or "",
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
