"""The per-worker service: model, store, caches, engine, registry, tiles, executor, metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from embeddings_store.audio import AudioLimits
from embeddings_store.search import SearchBudget
from embeddings_store.sounds.gallery import SoundGallery
from embeddings_store.store import EmbeddingStore
from model.errors import MissingResourceError
from model.metadata import Metadata
from server.cache import LRUCache, RedisCache, TieredCache
from server.engine import Engine
from server.executor import BoundedExecutor
from server.level_cache import LevelCache
from server.metrics import Metrics
from server.queries import QueryRegistry
from server.ratelimit import RateLimiter
from server.settings import Settings
from server.tiles import TileService, imagery_spec

log = logging.getLogger("soundscape.service")


def resolve_paths(settings: Settings) -> tuple[str, str]:
    """(store, checkpoint): the settings', else the demo's (MissingResourceError if not built)."""
    if settings.store and settings.checkpoint:
        return settings.store, settings.checkpoint
    from embeddings_store.demo.paths import demo_paths

    demo = demo_paths()
    store = settings.store or str(demo.store)
    checkpoint = settings.checkpoint or str(demo.checkpoint)
    missing = [p for p in (store, checkpoint) if "://" not in p and not Path(p).exists()]
    if missing:
        raise MissingResourceError(
            f"the demo model/store is not built ({', '.join(missing)} missing): run "
            f"`soundscape demo` first, or pass --store and --checkpoint"
        )
    return store, checkpoint


def engine_backend(settings: Settings) -> str:
    """The exact-search backend for the settings: faiss on GPU hosts (auto), else numpy."""
    from server.gallery import pick_backend

    return pick_backend(settings.similarity_backend)


def resolve_gallery(settings: Settings, store: str) -> str | None:
    """The sound gallery to serve: the settings', else a `gallery` folder beside a local store
    (the demo's layout), else none (/listen then answers 404)."""
    if settings.gallery:
        return settings.gallery
    if "://" in store:
        return None
    beside = Path(store).resolve().parent / "gallery"
    return str(beside) if (beside / "gallery.json").is_file() else None


@dataclass
class Service:
    """Everything a request handler needs (one per worker process)."""

    settings: Settings
    model: torch.nn.Module
    store: EmbeddingStore
    cache: TieredCache
    engine: Engine
    registry: QueryRegistry
    tiles: TileService
    executor: BoundedExecutor
    metrics: Metrics
    limiter: RateLimiter
    audio_limits: AudioLimits
    ready_s: float
    sounds: SoundGallery | None = None

    @property
    def model_id(self) -> str:
        """Id of the loaded checkpoint."""
        return str(self.model.model_id)

    def close(self) -> None:
        """Release threads."""
        self.executor.shutdown()
        if self.cache.redis is not None:
            self.cache.redis.close()


def level_cache(settings: Settings) -> LevelCache | None:
    """The level cache the settings ask for (None: off)."""
    root = settings.resolved_level_cache()
    if root is None:
        return None
    return LevelCache(root, settings.level_cache_keep, settings.level_cache_min_cells)


def build_service(settings: Settings) -> Service:
    """Load the model, open the store (refusing another model's), set up caches and pools."""
    from model.checkpoint import load_checkpoint

    started = time.monotonic()
    store_path, ckpt_path = resolve_paths(settings)
    torch.set_num_threads(settings.torch_threads)
    device = settings.resolved_device()
    model = load_checkpoint(ckpt_path, device=device)
    store = EmbeddingStore.open(store_path, expect_model_id=model.model_id)
    gallery_path = resolve_gallery(settings, store_path)
    sounds = None
    if gallery_path is not None:
        sounds = SoundGallery.open(
            gallery_path, expect_model_id=model.model_id, backend=engine_backend(settings)
        )
    metrics = Metrics()
    redis = None
    if settings.redis_url:
        redis = RedisCache(
            settings.redis_url, settings.redis_timeout_s, settings.redis_retry_s,
            settings.redis_ttl_s,
        )  # fmt: skip
        redis.watch(settings.redis_health_s)
    cache = TieredCache(LRUCache(settings.lru_mb << 20), redis, metrics.observe_cache)
    # A served store does not change under the server (the fused-chunk keys assume it too), so
    # the chunks a view, a time-lapse frame or a margin read again need not be decoded again.
    store.keep_chunks(settings.chunk_cache_mb << 20, metrics.observe_cache)
    engine = Engine(
        model, store, cache, settings.range_max_cells, settings.gallery_mb,
        settings.similarity_backend, precision=settings.fusion_precision,
        sweep_cells=settings.sweep_cells,
        search_budget=SearchBudget(max_fused=settings.top_k_max_fused,
                                   margin_factor=settings.top_k_margin),
        search_threads=settings.top_k_threads, level_cache=level_cache(settings),
    )  # fmt: skip
    # Land, region and edge masks (and the GeoNames index behind them, about 1 s) are made now,
    # not by the first tile's colour range.
    for level in engine.levels:
        engine.coverage(level)
    if store.with_fused:
        # The finest level's no-metadata matrix and image embeddings (what top places search
        # from) are read now, band by band, not by the first top-k request.
        level = engine.default_level()
        engine.level_h(level, engine.gallery(level, Metadata.none()))
    executor = BoundedExecutor(
        settings.workers_threads,
        settings.queue_limit,
        init=lambda: torch.set_num_threads(settings.torch_threads),
        on_depth=metrics.set_depth,
    )
    svc = Service(
        settings=settings,
        model=model,
        store=store,
        cache=cache,
        engine=engine,
        registry=QueryRegistry(model, model.model_id, cache),
        tiles=TileService(engine, cache, imagery_spec(store.attrs)),
        executor=executor,
        metrics=metrics,
        limiter=RateLimiter(settings.rate_limit_per_min, settings.rate_burst, shared=redis),
        audio_limits=AudioLimits(
            settings.max_audio_s, settings.max_channels, settings.max_sample_rate
        ),
        ready_s=time.monotonic() - started,
        sounds=sounds,
    )
    log.info(
        "ready",
        extra={
            "fields": {
                "store": store_path,
                "model_id": model.model_id,
                "redis": bool(redis),
                "device": device,
                "similarity_backend": engine.backend,
                "gallery": gallery_path,
                "seconds": round(svc.ready_s, 2),
            }
        },
    )
    return svc
