"""The web page: `web/` static files when built, else a placeholder page."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Soundscape map</title></head>
<body><h1>Soundscape map service</h1>
<p>The map page is not built yet (no <code>web/index.html</code>).
The API is running: see <a href="/docs">/docs</a> and <a href="/api/info">/api/info</a>.</p>
</body></html>
"""


def default_web_dir() -> Path:
    """`web/` beside the installed packages (the repository checkout)."""
    return Path(__file__).resolve().parents[1] / "web"


def mount_web(app: FastAPI, web_dir: Path) -> None:
    """Serve `/` (index.html), `/static/...` (web/) and `/vendor/leaflet/...` (npm Leaflet)."""
    index = web_dir / "index.html"
    leaflet = web_dir / "node_modules" / "leaflet" / "dist"
    if leaflet.is_dir():
        app.mount("/vendor/leaflet", StaticFiles(directory=leaflet), name="leaflet")
    if web_dir.is_dir():
        app.mount("/static", StaticFiles(directory=web_dir), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False, response_model=None)
    async def page() -> HTMLResponse | FileResponse:
        if index.is_file():
            return FileResponse(index, media_type="text/html; charset=utf-8")
        return HTMLResponse(PLACEHOLDER)
