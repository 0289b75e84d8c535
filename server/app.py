"""The FastAPI application: `create_app(settings)`, and `make_app()` for uvicorn's --factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from model.errors import BusyError, RateLimitedError, SoundscapeError
from server.errors import add_error_handlers
from server.logs import configure_logging
from server.middleware import ServiceMiddleware, content_security_policy
from server.service import Service, build_service
from server.settings import Settings
from server.web import default_web_dir, mount_web

log = logging.getLogger("soundscape.app")


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    """Build the app for a loaded service (loads one from `settings` when not given)."""
    from server.factory import SoundscapeFactory

    settings = settings or Settings()
    configure_logging(settings.log_json)
    svc = service or build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        svc.close()

    app = FastAPI(
        title="Soundscape map service",
        version="0.1.0",
        description="Heatmap, uncertainty and similarity over a PSM embedding store "
        "(probabilistic soundscape mapping). Tiles are XYZ, 256 x 256 palette PNG.",
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN with an inline
        # script, both refused by our CSP: server/web.py serves them from web/ and npm instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.svc = svc
    app.include_router(SoundscapeFactory(svc).router)

    def count_rejection(exc: SoundscapeError) -> None:
        if isinstance(exc, BusyError | RateLimitedError):
            svc.metrics.rejected.labels("busy" if isinstance(exc, BusyError) else "rate").inc()

    add_error_handlers(app, count_rejection)
    mount_web(app, Path(settings.web_dir) if settings.web_dir else default_web_dir())
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "If-None-Match"],
            expose_headers=["ETag", "Server-Timing"],
        )
    app.add_middleware(
        ServiceMiddleware,
        max_body_bytes=int(settings.max_body_mb * (1 << 20)),
        csp=content_security_policy(settings.csp_image_origin()),
        on_request=svc.metrics.count_request,
    )
    return app


def make_app() -> FastAPI:
    """uvicorn --factory entry point: settings from SOUNDSCAPE_* environment variables."""
    return create_app(Settings())
