"""Service settings: environment variables with the SOUNDSCAPE_ prefix (pydantic-settings)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import torch
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from embeddings_store.storage import user_cache_dir


class Settings(BaseSettings):
    """Everything the service reads from its environment; `soundscape serve` fills it from flags."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_", extra="ignore")

    store: str | None = Field(None, description="embedding store path/URL (default: demo store)")
    checkpoint: str | None = Field(None, description="model checkpoint (default: demo model)")
    gallery: str | None = Field(
        None,
        description="sound gallery folder for /listen (default: a `gallery` folder beside a "
        "local store, as `soundscape demo` lays them out)",
    )
    max_listen_k: int = Field(50, ge=1, le=1000, description="sounds one /listen may return")
    # REDIS_URL is the conventional name on hosting platforms; SOUNDSCAPE_REDIS_URL wins.
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("SOUNDSCAPE_REDIS_URL", "REDIS_URL")
    )
    redis_timeout_s: float = Field(0.05, gt=0, description="socket timeout per Redis call")
    redis_retry_s: float = Field(2.0, ge=0, description="pause after a Redis failure")
    redis_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="expiry of Redis entries")
    redis_health_s: float = Field(
        0.5, gt=0, le=10, description="how often Redis is pinged, so /readyz tells the truth"
    )
    lru_mb: int = Field(512, ge=1, description="in-process cache budget per worker (MiB)")
    chunk_cache_mb: int = Field(
        128, ge=0, description="decoded store chunks kept per worker (MiB; 0: read every time)"
    )
    workers_threads: int = Field(2, ge=1, le=64, description="model/scoring threads per worker")
    queue_limit: int = Field(64, ge=1, description="jobs waiting for a thread before 503")
    torch_threads: int = Field(1, ge=1, le=64, description="torch intra-op threads per job")
    max_body_mb: float = Field(20.0, gt=0, description="request body cap (MiB)")
    max_audio_s: float = Field(60.0, gt=0, description="longest accepted audio upload")
    max_channels: int = Field(2, ge=1)
    max_sample_rate: int = Field(192_000, ge=8000)
    max_points: int = Field(10_000, ge=1, description="points per POST /similarity")
    max_top_k: int = Field(1000, ge=1)
    max_bbox_cells: int = Field(
        16_000_000, ge=1, description="cells one top-k bbox may span (else 413)"
    )
    max_map_cells: int = Field(
        2_000_000, ge=1, description="cells one GET /maps/{query}.tif may export (else 413)"
    )
    max_view_tiles: int = Field(
        1536, ge=1, description="tiles (all frames) one POST /views/... may prepare (else 413)"
    )
    gallery_mb: int = Field(1024, ge=1, description="memory for whole-level similarity matrices")
    top_k_max_fused: int = Field(
        4096, ge=0,
        description="cells one top-k request may fuse under new metadata before it answers "
        "with \"exact\": false (docs/ARCHITECTURE.md, \"Top places\")",
    )  # fmt: skip
    top_k_threads: int = Field(
        2, ge=1, le=64,
        description="threads one top-k search under new metadata fuses its cells on (searches "
        "run one at a time)",
    )  # fmt: skip
    level_cache_dir: str = Field(
        "auto",
        description='folder that keeps a large level\'s search matrices between starts ("auto": '
        "$XDG_CACHE_HOME/soundscape-map/levels; empty: off)",
    )
    level_cache_min_cells: int = Field(
        500_000, ge=0, description="levels with fewer valid cells are rebuilt at each start"
    )
    level_cache_keep: int = Field(4, ge=1, le=1000, description="level cache entries kept")
    top_k_margin: float = Field(
        2.0, ge=1.0, le=100.0,
        description="the top-k stopping margin, in multiples of the largest prediction error seen",
    )  # fmt: skip
    similarity_backend: Literal["auto", "numpy", "faiss"] = Field(
        "auto", description="exact top-k search: auto = faiss on GPU hosts, numpy on CPU"
    )
    range_max_cells: int = Field(
        4096,
        ge=1000,
        description="cells (whole chunks, evenly spread) a colour range is "
        "fitted on: a new metadata fuses them once",
    )
    sweep_cells: int = Field(
        32, ge=1, le=4096,
        description="cells fused under all 12 x 24 months and hours for scale=absolute",
    )  # fmt: skip
    rate_limit_per_min: int = Field(120, ge=1, description="POSTs per client per minute")
    rate_burst: int = Field(30, ge=1, description="POST burst per client")
    cache_max_age_s: int = Field(86400, ge=0, description="Cache-Control max-age of tiles")
    cors_origins: list[str] = Field(default_factory=list, description="allowed origins (CORS)")
    basemap_url: str | None = Field(
        None,
        description="external XYZ base map offered on the page besides the store's imagery, "
        "an http(s) template with {z}/{x}/{y} (its origin joins the page's CSP)",
    )
    basemap_name: str = Field("External base map", min_length=1, max_length=80)
    basemap_attribution: str = Field(
        "", max_length=300, description="credit shown with the external base map"
    )
    basemap_max_zoom: int = Field(19, ge=0, le=24, description="the base map's deepest zoom")
    web_dir: str | None = Field(None, description="folder of the web page (default: ./web)")
    log_json: bool = Field(True, description="one JSON object per log line")
    device: str = Field(
        "auto", description="torch device for queries and fusion: auto (cuda if present), cpu, cuda"
    )
    fusion_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="fusion arithmetic: auto = bf16 on CUDA, fp32 on CPU; bf16 on a CPU with "
        "AVX512-BF16 or AMX fuses up to 1.8x faster, scores moving by up to 0.01 (README, "
        '"Benchmarks")',
    )

    @field_validator("basemap_url")
    @classmethod
    def _check_basemap_url(cls, url: str | None) -> str | None:
        if url is not None:
            basemap_origin(url)
        return url

    def csp_image_origin(self) -> str | None:
        """The origin the page may load base-map images from, besides its own."""
        return None if self.basemap_url is None else basemap_origin(self.basemap_url)

    def resolved_level_cache(self) -> str | None:
        """The level cache folder, or None when it is off."""
        if self.level_cache_dir != "auto":
            return self.level_cache_dir or None
        return str(user_cache_dir() / "levels")

    def resolved_device(self) -> str:
        """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


def basemap_origin(url: str) -> str:
    """The CSP source of an XYZ URL template; ValueError unless it is an http(s) XYZ template.

    A `{s}` subdomain placeholder is allowed as the host's first label (`https://*.host`).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"basemap_url must be an http(s) URL template, got {url!r}")
    missing = [p for p in ("{z}", "{x}", "{y}") if p not in url]
    if missing:
        raise ValueError(f"basemap_url needs the placeholders {missing}: {url!r}")
    host = parts.netloc
    if host.startswith("{s}."):
        host = "*." + host[len("{s}.") :]
    bare = host.removeprefix("*.")
    if not bare or any(ch in bare for ch in "{}*'\";,@ "):
        raise ValueError(
            f"basemap_url host {parts.netloc!r} is not a plain host name "
            "(a {s} placeholder may only be its first label)"
        )
    return f"{parts.scheme}://{host}"
