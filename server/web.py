"""The web page: `web/` static files when built, else a placeholder page."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from server.middleware import redoc_content_security_policy

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Soundscape map</title></head>
<body><h1>Soundscape map service</h1>
<p>The map page is not built yet (no <code>web/index.html</code>).
The API is running: see <a href="/docs">/docs</a> and <a href="/api/info">/api/info</a>.</p>
</body></html>
"""


DOCS_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Soundscape map service: API</title></head>
<body><h1>Soundscape map service: API</h1>
<p>The API documentation pages are not installed (run <code>npm ci</code> in <code>web/</code>;
<code>scripts/install.sh</code> does). The OpenAPI schema is at
<a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""

# Vendored npm files change only with web/package-lock.json: a day in caches, then revalidated
# (StaticFiles answers If-None-Match / If-Modified-Since with 304).
VENDOR_CACHE_CONTROL = "public, max-age=86400"


class VendorFiles(StaticFiles):
    """StaticFiles with a Cache-Control for pinned npm assets."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file (or 304/404), with Cache-Control when it is one."""
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = VENDOR_CACHE_CONTROL
        return response


def default_web_dir() -> Path:
    """`web/` beside the installed packages (the repository checkout)."""
    return Path(__file__).resolve().parents[1] / "web"


def mount_web(app: FastAPI, web_dir: Path) -> None:
    """Serve `/` (index.html), `/static/...` (web/), `/vendor/leaflet/...` (npm Leaflet), and the
    API docs `/docs` (Swagger UI) and `/redoc` (ReDoc) with their npm bundles under
    `/vendor/swagger-ui/...` and `/vendor/redoc/...`: all from this origin, none from a CDN."""
    index = web_dir / "index.html"
    modules = web_dir / "node_modules"
    leaflet = modules / "leaflet" / "dist"
    if leaflet.is_dir():
        app.mount("/vendor/leaflet", StaticFiles(directory=leaflet), name="leaflet")
    # (page route, its HTML in web/, where its npm assets are served, the npm folder, its own CSP:
    # ReDoc's needs inline styles and a blob: worker, server/middleware.py says why)
    docs = [
        ("/docs", web_dir / "docs.html", "/vendor/swagger-ui", modules / "swagger-ui-dist", None),
        (
            "/redoc",
            web_dir / "redoc.html",
            "/vendor/redoc",
            modules / "redoc" / "bundles",
            redoc_content_security_policy(),
        ),
    ]
    for _, _, mount, assets, _ in docs:
        if assets.is_dir():
            app.mount(mount, VendorFiles(directory=assets), name=mount.rsplit("/", 1)[-1])
    if web_dir.is_dir():
        app.mount("/static", StaticFiles(directory=web_dir), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False, response_model=None)
    async def page() -> HTMLResponse | FileResponse:
        if index.is_file():
            return FileResponse(index, media_type="text/html; charset=utf-8")
        return HTMLResponse(PLACEHOLDER)

    def docs_page(html: Path, assets: Path, own_csp: str | None):
        async def page() -> HTMLResponse | FileResponse:
            # None: the middleware's CSP, as for the map page.
            headers = {"Content-Security-Policy": own_csp} if own_csp else None
            if html.is_file() and assets.is_dir():
                return FileResponse(html, media_type="text/html; charset=utf-8", headers=headers)
            return HTMLResponse(DOCS_PLACEHOLDER, headers=headers)

        return page

    for path, html, _, assets, own_csp in docs:
        app.add_api_route(
            path,
            docs_page(html, assets, own_csp),
            methods=["GET", "HEAD"],
            include_in_schema=False,
            response_model=None,
        )
