"""The HTTP routes, as a factory (as titiler's TilerFactory): one class, one method per route
family, thin handlers over the tile service, the engine and the query registry.

Parameters come from `server.params` (declared once), bodies from `server.models`, and errors
are raised as `model.errors` classes that `server.errors` turns into statuses. No `from
__future__ import annotations`: FastAPI must see the locally built parameter types.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from embeddings_store.export import check_crs, feature_collection
from embeddings_store.scoring import BBox
from embeddings_store.sounds.gallery import CLIP_ID_PATTERN, MEDIA_TYPES, SoundGallery
from model.errors import (
    InputError,
    NotFoundError,
    OutOfRangeError,
    RateLimitedError,
    TooLargeError,
    UnknownQueryError,
    UnsupportedMediaError,
)
from model.scoring import QueryEmbedding
from server.describe import describe_results, largest_places, search_places_named
from server.errors import responses, validation_message
from server.listening import Listener
from server.models import (
    ListenOut,
    PlacesOut,
    PointOut,
    ProfileOut,
    QueryOut,
    SimilarityOut,
    SimilarityResult,
    TextQuery,
    TileJSON,
    ViewOut,
    parse_bbox_param,
    parse_hours_param,
    point_levels,
    similarity_request,
    similarity_results,
)
from server.ogc import Coverage, TileLayer, gdal_wms, wmts_capabilities
from server.params import (
    AnyColormap,
    Rescale,
    build_params,
    inline,
    query_params,
    rescale_of,
)
from server.queries import (
    MAX_TEXT_CHARS,
    QUERY_ID_PATTERN,
    TEXT_PATTERN,
    is_query_id,
    text_query_id,
)
from server.render import HEATMAP_COLORMAPS, UNCERTAINTY_COLORMAPS, palette
from server.service import Service
from server.tiles import DEFAULT_COLORMAP, SCALES, Scale, TileRequest
from server.views import ViewPreparer, view_tiles

QueryPath = Annotated[
    str,
    Path(
        min_length=1, max_length=MAX_TEXT_CHARS, pattern=TEXT_PATTERN,
        description="query id, or URL-encoded query text (may hold /, %, ? and #, encoded)",
    ),
]  # fmt: skip
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_NUMBER = r"-?\d+(\.\d+)?([eE][-+]?\d+)?"
BBOX_PATTERN = rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$"
QueryParam = Annotated[
    str,
    Query(min_length=1, max_length=MAX_TEXT_CHARS, pattern=TEXT_PATTERN,
          description="query id or text"),
]  # fmt: skip
SegmentQuery = Annotated[
    str,
    Path(min_length=1, max_length=MAX_TEXT_CHARS, pattern=TEXT_PATTERN,
         description="query id, or URL-encoded query text without '/' (register such texts "
         "with POST /queries and use the id)"),
]  # fmt: skip
ClipExt = Enum("ClipExt", {e: e for e in MEDIA_TYPES}, type=str)  # type: ignore[misc]
QueryIdPath = Annotated[
    str, Path(pattern=QUERY_ID_PATTERN, max_length=64, description="id from POST /queries")
]
# What a registered query leads to (OpenAPI links: clients and API fuzzers follow them).
QUERY_LINKS = {
    "GetQuery": {"operationId": "get_query", "parameters": {"query_id": "$response.body#/id"}},
    "HeatmapTile": {"operationId": "heatmap_tile", "parameters": {"query": "$response.body#/id"}},
    "TileJSON": {"operationId": "tilejson", "parameters": {"query_id": "$response.body#/id"}},
    "Legend": {"operationId": "legend", "parameters": {"query": "$response.body#/id"}},
    "WMTS": {"operationId": "wmts_capabilities",
             "parameters": {"query_id": "$response.body#/id"}},
    "GDAL": {"operationId": "gdal_wms", "parameters": {"query_id": "$response.body#/id"}},
}  # fmt: skip
TILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "256 x 256 palette PNG"},
    304: {"description": "not modified (If-None-Match)"},
    **responses(404, 422, 503),
}


def etag_of(body: bytes) -> str:
    """Strong ETag: a content hash."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match comparison (weak comparison, as RFC 9110 prescribes for it)."""
    if header.strip() == "*":
        return True
    return etag in [t.strip().removeprefix("W/") for t in header.split(",")]


def query_out(qid: str, emb: QueryEmbedding, sounds: SoundGallery | None = None) -> QueryOut:
    """The public description of a registered query (with how familiar it is to the model when
    the service has a gallery to compare it with)."""
    familiarity, hint = (None, None)
    if sounds is not None:
        familiarity, hint = sounds.familiarity(emb.kind, emb.mu, emb.uncertainty)
    return QueryOut(
        id=qid,
        kind=emb.kind,
        uncertainty=emb.uncertainty,
        familiarity=familiarity,
        hint=hint,
        tiles=f"/tiles/{qid}/{{z}}/{{x}}/{{y}}.png",
        tilejson=f"/queries/{qid}/tilejson.json",
        wmts=f"/queries/{qid}/WMTSCapabilities.xml",
        gdal=f"/queries/{qid}/gdal.xml",
    )


@dataclass
class SoundscapeFactory:
    """Every route of one loaded service, registered on `router`."""

    svc: Service
    router: APIRouter = field(default_factory=APIRouter)

    def __post_init__(self) -> None:
        cfg, engine = self.svc.model.config, self.svc.engine
        self.params = build_params(
            list(cfg.audio_sources), list(cfg.caption_sources),
            [lv.psm_zoom for lv in engine.levels], engine.zoom_range,
        )  # fmt: skip
        p = self.params
        # Parsed request parameters, declared once (server/params.py) and solved on the loop.
        self.Tile = Annotated[p.tile, Depends(inline(p.tile))]
        self.Meta = Annotated[p.metadata, Depends(inline(p.metadata))]
        self.HeatmapRender = Annotated[p.heatmap_render, Depends(inline(p.heatmap_render))]
        self.UncertaintyRender = Annotated[
            p.uncertainty_render, Depends(inline(p.uncertainty_render))
        ]
        self.MetaB = Annotated[p.metadata_b, Depends(inline(p.metadata_b))]
        self.CompareRender = Annotated[p.compare_render, Depends(inline(p.compare_render))]
        self.listener = Listener(engine, self.svc.sounds)
        self.level_query = Annotated[
            p.psm_zoom | None, Query(description="PSM zoom (default: by web zoom)")
        ]
        self.psm_query = Annotated[
            p.psm_zoom | None, Query(description="PSM zoom (default: the finest level)")
        ]
        self.register_routes()

    def register_routes(self) -> None:
        """Register every route family."""
        self.tile_routes()
        self.view_routes()
        self.compare_route()
        self.query_routes()
        self.legend_route()
        self.similarity_route()
        self.map_routes()
        self.listen_routes()
        self.place_routes()
        self.info_route()
        self.ops_routes()

    # -- shared steps -------------------------------------------------------------------------
    async def resolve(self, query: str) -> tuple[str, QueryEmbedding]:
        """A query id or text -> (id, embedding); text is registered on first use."""
        registry = self.svc.registry
        if is_query_id(query):
            emb = registry.lookup_local(query) or await self.svc.executor.run(
                registry.lookup, query
            )
            if emb is None:
                raise UnknownQueryError(query)
            return query, emb
        qid = text_query_id(self.svc.model_id, query)
        emb = registry.lookup_local(qid)
        if emb is not None:
            return qid, emb
        return await self.svc.executor.run(registry.register_text, query)

    async def rate_limited(self, request: Request) -> None:
        """Dependency of the POST routes: one token of the client's bucket."""
        host = request.client.host if request.client else "-"
        wait = self.svc.limiter.acquire(host)
        if wait > 0:
            raise RateLimitedError(self.svc.limiter.retry_after(wait))

    async def png(
        self, request: Request, kind: str, key: str, render: Callable[..., tuple[bytes, str]],
        *args: Any,
    ) -> Response:  # fmt: skip
        """A cached PNG (an LRU hit answers on the event loop), with ETag and 304."""
        t0 = time.perf_counter()
        body = self.svc.cache.lru.get(key)
        if body is not None:
            self.svc.metrics.observe_cache("lru", "hit")
            outcome = "lru"
        else:
            body, outcome = await self.svc.executor.run(render, *args)
        etag = etag_of(body)
        dur = (time.perf_counter() - t0) * 1000
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={self.svc.settings.cache_max_age_s}",
            "Server-Timing": f'cache;desc="{outcome}", app;dur={dur:.2f}',
        }
        inm = request.headers.get("if-none-match")
        if inm and etag_matches(inm, etag):
            self.svc.metrics.tile_seconds.labels(kind, "304").observe(dur / 1000)
            return Response(status_code=304, headers=headers)
        self.svc.metrics.tile_seconds.labels(kind, outcome).observe(dur / 1000)
        return Response(body, media_type="image/png", headers=headers)

    # -- route families -----------------------------------------------------------------------
    def tile_routes(self) -> None:
        """Heatmap, uncertainty and imagery tiles."""
        tiles, Level = self.svc.tiles, self.level_query

        @self.router.get(
            "/tiles/{query:path}/{z}/{x}/{y}.png", response_class=Response,
            responses=TILE_RESPONSES, operation_id="heatmap_tile",
            summary="Heatmap tile of a query under metadata", tags=["tiles"],
        )  # fmt: skip
        async def heatmap_tile(
            request: Request,
            query: QueryPath,
            tile: self.Tile,
            meta: self.Meta,
            render: self.HeatmapRender,
            level: Level = None,
        ) -> Response:
            lv = tiles.address(tile.z, tile.x, tile.y, level)
            qid, emb = await self.resolve(query)
            req = TileRequest(tile.z, tile.x, tile.y, meta.metadata, level, render.scale,
                              render.colormap.value, render.ramp)  # fmt: skip
            key = tiles.heatmap_key(qid, req)
            return await self.png(request, "heatmap", key, tiles.heatmap, qid, emb, req, lv)

        @self.router.get(
            "/uncertainty/{z}/{x}/{y}.png", response_class=Response, responses=TILE_RESPONSES,
            summary="Uncertainty tile (||sigma||_1 of the fused image embedding)", tags=["tiles"],
        )  # fmt: skip
        async def uncertainty_tile(
            request: Request,
            tile: self.Tile,
            meta: self.Meta,
            render: self.UncertaintyRender,
            level: Level = None,
        ) -> Response:
            lv = tiles.address(tile.z, tile.x, tile.y, level)
            req = TileRequest(tile.z, tile.x, tile.y, meta.metadata, level, "relative",
                              render.colormap.value, render.ramp)  # fmt: skip
            key = tiles.uncertainty_key(req)
            return await self.png(request, "uncertainty", key, tiles.uncertainty, req, lv)

        @self.router.get(
            "/imagery/{z}/{x}/{y}.png", response_class=Response, responses=TILE_RESPONSES,
            summary="Base-map tile rendered from the store's imagery (works offline)",
            tags=["tiles"],
        )  # fmt: skip
        async def imagery_tile(request: Request, tile: self.Tile) -> Response:
            tiles.address(tile.z, tile.x, tile.y)
            key = tiles.imagery_key(tile.z, tile.x, tile.y)
            return await self.png(request, "imagery", key, tiles.imagery, tile.z, tile.x, tile.y)

    def view_routes(self) -> None:
        """A whole view (and its hours) prepared as one job: its tiles end up in the cache."""
        svc, Level = self.svc, self.level_query
        preparer = ViewPreparer(svc.tiles, svc.settings.workers_threads)
        bbox_doc = "the view: west,south,east,north in degrees"
        hours_doc = "time-lapse frames: distinct hours 0..23 (each replaces the metadata's hour)"
        Bbox = Annotated[str, Query(pattern=BBOX_PATTERN, description=bbox_doc)]
        WebZoom = Annotated[int, Path(ge=0, le=30, description="web zoom")]
        Hours = Annotated[
            str | None, Query(pattern=r"^\d{1,2}(,\d{1,2}){0,23}$", description=hours_doc)
        ]

        async def prepare(
            z: int, bbox: str, hours: str | None, make: Callable[[int, int, Any], TileRequest],
            meta: Any, level: int | None, query: tuple[str, QueryEmbedding] | None,
        ) -> ViewOut:  # fmt: skip
            box = parse_bbox_param(bbox).as_tuple()
            hour_list = parse_hours_param(hours) if hours else None
            metas = [meta.replace(hour=h) for h in hour_list] if hour_list else [meta]
            lo, hi = svc.engine.zoom_range
            if not lo <= z <= hi:
                raise OutOfRangeError(f"zoom {z} is outside this store's zoom range {lo}..{hi}")
            tiles = view_tiles(box, z)
            if len(tiles) * len(metas) > svc.settings.max_view_tiles:
                raise TooLargeError(
                    f"the view needs {len(tiles)} tiles x {len(metas)} frames; at most "
                    f"{svc.settings.max_view_tiles} tiles per request: zoom in or ask fewer hours"
                )
            lv = svc.tiles.address(tiles[0].z, tiles[0].x, tiles[0].y, level)
            frames = [[make(t.x, t.y, m) for t in tiles] for m in metas]
            qid, emb = query if query else (None, None)
            report = await svc.executor.run(preparer.prepare, frames, lv, qid, emb)
            return ViewOut(tiles=report.tiles, frames=report.frames, hours=hour_list,
                           rendered=report.rendered, chunks=report.fused_chunks,
                           seconds=round(report.seconds, 3))  # fmt: skip

        @self.router.post(
            "/views/tiles/{query:path}/{z}", response_model=ViewOut, tags=["tiles"],
            summary="Prepare every heatmap tile of a view (and its hours) in one job",
            dependencies=[Depends(self.rate_limited)],
            responses=responses(404, 413, 422, 429, 503),
        )  # fmt: skip
        async def heatmap_view(
            query: QueryPath,
            z: WebZoom,
            bbox: Bbox,
            meta: self.Meta,
            render: self.HeatmapRender,
            level: Level = None,
            hours: Hours = None,
        ) -> ViewOut:
            resolved = await self.resolve(query)

            def make(x: int, y: int, m: Any) -> TileRequest:
                return TileRequest(z, x, y, m, level, render.scale, render.colormap.value,
                                   render.ramp)  # fmt: skip

            return await prepare(z, bbox, hours, make, meta.metadata, level, resolved)

        @self.router.post(
            "/views/uncertainty/{z}", response_model=ViewOut, tags=["tiles"],
            summary="Prepare every uncertainty tile of a view (and its hours) in one job",
            dependencies=[Depends(self.rate_limited)],
            responses=responses(404, 413, 422, 429, 503),
        )  # fmt: skip
        async def uncertainty_view(
            z: WebZoom,
            bbox: Bbox,
            meta: self.Meta,
            render: self.UncertaintyRender,
            level: Level = None,
            hours: Hours = None,
        ) -> ViewOut:
            def make(x: int, y: int, m: Any) -> TileRequest:
                return TileRequest(z, x, y, m, level, "relative", render.colormap.value,
                                   render.ramp)  # fmt: skip

            return await prepare(z, bbox, hours, make, meta.metadata, level, None)

    def compare_route(self) -> None:
        """Difference tiles: one query or time against another."""
        tiles, Level = self.svc.tiles, self.level_query

        @self.router.get(
            "/compare/{query_a}/{query_b}/{z}/{x}/{y}.png", response_class=Response,
            responses=TILE_RESPONSES, operation_id="compare_tile", tags=["tiles"],
            summary="Difference tile: score of A minus score of B (B: A's metadata with the b_* "
            "overrides), a diverging ramp centred at 0",
        )  # fmt: skip
        async def compare_tile(
            request: Request,
            query_a: SegmentQuery,
            query_b: SegmentQuery,
            tile: self.Tile,
            meta: self.Meta,
            meta_b: self.MetaB,
            render: self.CompareRender,
            level: Level = None,
        ) -> Response:
            lv = tiles.address(tile.z, tile.x, tile.y, level)
            a, b = await self.resolve(query_a), await self.resolve(query_b)
            metadata_b = meta_b.override(meta.metadata)
            req = TileRequest(tile.z, tile.x, tile.y, meta.metadata, level, "relative",
                              render.colormap.value, render.ramp)  # fmt: skip
            key = tiles.compare_key(a[0], b[0], metadata_b, req)
            return await self.png(request, "compare", key, tiles.compare, a, b, metadata_b, req,
                                  lv)  # fmt: skip

    def query_routes(self) -> None:
        """Register a query, look one up, its TileJSON."""
        svc = self.svc
        upload_doc = (
            f"WAV, FLAC, OGG (Vorbis/Opus) or MP3; at most {svc.settings.max_audio_s:g} s, "
            f"{svc.settings.max_channels} channels, {svc.settings.max_sample_rate} Hz"
        )
        body_schema = {
            "application/json": {"schema": TextQuery.model_json_schema()},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["audio"],
                "properties": {"audio": {"type": "string", "format": "binary",
                                         "description": upload_doc}},
            }},
        }  # fmt: skip

        @self.router.post(
            "/queries", response_model=QueryOut, summary="Register a text or audio query",
            tags=["queries"], dependencies=[Depends(self.rate_limited)],
            responses={200: {"links": QUERY_LINKS}, **responses(413, 415, 422, 429, 503)},
            operation_id="create_query",
            openapi_extra={"requestBody": {"required": True, "content": body_schema}},
        )  # fmt: skip
        async def create_query(request: Request) -> QueryOut:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "application/json":
                text = _text_of(await request.body())
                qid, emb = await svc.executor.run(svc.registry.register_text, text)
            elif ctype == "multipart/form-data":
                async with request.form(max_files=1, max_fields=8) as form:
                    upload = form.get("audio")
                    if not isinstance(upload, UploadFile):
                        raise InputError("multipart upload needs the file in field 'audio'")
                    data = await upload.read()
                qid, emb = await svc.executor.run(
                    svc.registry.register_audio, data, svc.audio_limits
                )
            else:
                raise UnsupportedMediaError(
                    "send JSON {\"text\": ...} or multipart/form-data with field 'audio'"
                )
            return query_out(qid, emb, svc.sounds)

        @self.router.get(
            "/queries/{query_id}", response_model=QueryOut, tags=["queries"],
            operation_id="get_query",
            summary="A registered query, looked up without registering anything",
            responses=responses(404, 422, 503),
        )  # fmt: skip
        async def get_query(query_id: QueryIdPath) -> QueryOut:
            return query_out(*await self.resolve(query_id), svc.sounds)

        @self.router.get(
            "/queries/{query_id}/tilejson.json", tags=["gis"], operation_id="tilejson",
            response_model=TileJSON,
            summary="TileJSON 3.0 of a query's heatmap (metadata and rendering carried in the "
            "tile URLs)",
            responses=responses(404, 422, 503),
        )  # fmt: skip
        async def tilejson(
            request: Request,
            query_id: QueryIdPath,
            meta: self.Meta,
            render: self.HeatmapRender,
            level: self.level_query = None,  # type: ignore[valid-type]
        ) -> TileJSON:
            await self.resolve(query_id)
            heat, _ = self.layers(request, query_id, meta, render, level)
            cov = self.coverage(level)
            w, s, e, n = cov.bounds
            return TileJSON(
                name=heat.title, description=heat.abstract, tiles=[heat.url],
                minzoom=cov.minzoom, maxzoom=cov.maxzoom, bounds=[w, s, e, n],
                center=[(w + e) / 2, (s + n) / 2, min(cov.maxzoom, cov.minzoom + 2)],
                attribution=f"PSM soundscape map, model {svc.model_id}",
            )  # fmt: skip

        @self.router.get(
            "/queries/{query_id}/WMTSCapabilities.xml", tags=["gis"], response_class=Response,
            operation_id="wmts_capabilities",
            summary="OGC WMTS 1.0.0 capabilities: the heatmap and uncertainty layers of a query "
            "(QGIS, ArcGIS, GDAL)",
            responses={200: {"content": {"application/xml": {}}}, **responses(404, 422, 503)},
        )  # fmt: skip
        async def wmts(
            request: Request,
            query_id: QueryIdPath,
            meta: self.Meta,
            render: self.HeatmapRender,
            level: self.level_query = None,  # type: ignore[valid-type]
        ) -> Response:
            await self.resolve(query_id)
            layers = list(self.layers(request, query_id, meta, render, level))
            body = wmts_capabilities(f"soundscape {query_id}", layers, self.coverage(level))
            return Response(body, media_type="application/xml")

        @self.router.get(
            "/queries/{query_id}/gdal.xml", tags=["gis"], response_class=Response,
            operation_id="gdal_wms",
            summary="GDAL WMS service description of a query's heatmap (or uncertainty) tiles: "
            "gdal_translate or rasterio open it",
            responses={200: {"content": {"application/xml": {}}}, **responses(404, 422, 503)},
        )  # fmt: skip
        async def gdal_xml(
            request: Request,
            query_id: QueryIdPath,
            meta: self.Meta,
            render: self.HeatmapRender,
            level: self.level_query = None,  # type: ignore[valid-type]
            layer: Annotated[
                Literal["heatmap", "uncertainty"], Query(description="which tiles")
            ] = "heatmap",
        ) -> Response:
            await self.resolve(query_id)
            heat, unc = self.layers(request, query_id, meta, render, level)
            body = gdal_wms(heat if layer == "heatmap" else unc, self.coverage(level))
            return Response(body, media_type="application/xml")

    def layers(
        self, request: Request, query_id: str, meta: Any, render: Any, level: int | None
    ) -> tuple[TileLayer, TileLayer]:
        """The heatmap and uncertainty tile layers of a query, parameters in their URLs."""
        base = str(request.base_url).rstrip("/")
        lv = None if level is None else int(level)
        heat_qs = urlencode(query_params(meta, render, level=lv))
        unc_qs = urlencode(query_params(meta, level=lv))
        path = "{z}/{x}/{y}.png"
        return (
            TileLayer("heatmap", f"soundscape heatmap {query_id}",
                      "-CSD between each place and the query under the metadata",
                      f"{base}/tiles/{query_id}/{path}" + (f"?{heat_qs}" if heat_qs else "")),
            TileLayer("uncertainty", "soundscape uncertainty",
                      "||sigma||_1 of each place's fused embedding under the metadata",
                      f"{base}/uncertainty/{path}" + (f"?{unc_qs}" if unc_qs else "")),
        )  # fmt: skip

    def coverage(self, level: int | None) -> Coverage:
        """Where the store holds cells and the web zooms served (those of `level` if given)."""
        engine = self.svc.engine
        zmin, zmax = engine.zoom_range if level is None else engine.level_zooms[int(level)]
        return Coverage(engine.coverage_bounds(None if level is None else int(level)), zmin, zmax)

    def legend_route(self) -> None:
        """The colour scale and value range of a map."""
        svc = self.svc

        @self.router.get(
            "/legend", summary="Colour scale and value range of a map", tags=["tiles"],
            operation_id="legend",
            responses=responses(404, 422, 503),
        )  # fmt: skip
        async def legend(
            meta: self.Meta,
            meta_b: self.MetaB,
            query: Annotated[
                str | None,
                Query(min_length=1, max_length=MAX_TEXT_CHARS, pattern=TEXT_PATTERN,
                      description="query id or text; omit for the uncertainty legend"),
            ] = None,
            scale: Annotated[
                Scale, Query(description="relative, absolute or probability (as the tiles')")
            ] = "relative",
            colormap: Annotated[
                AnyColormap | None, Query(description="ramp (default by kind)")
            ] = None,
            rescale: Rescale = None,
            query_b: Annotated[
                str | None,
                Query(min_length=1, max_length=MAX_TEXT_CHARS, pattern=TEXT_PATTERN,
                      description="a comparison's query B (id or text): the legend of "
                      "/compare tiles"),
            ] = None,
        ) -> dict[str, Any]:  # fmt: skip
            ramp = rescale_of(rescale)
            if query_b is not None:
                if query is None:
                    raise InputError("a comparison's legend needs query (A) as well as query_b")
                return await self.compare_legend(
                    query, query_b, meta.metadata, meta_b.override(meta.metadata), colormap, ramp
                )
            kind = "uncertainty" if query is None else "heatmap"
            qid, emb = (None, None) if query is None else await self.resolve(query)
            scale = "relative" if query is None else scale
            if ramp is not None:
                lo, hi = ramp
            else:
                lo, hi = await svc.executor.run(
                    svc.tiles.value_range, qid, emb, meta.metadata, scale
                )
            cmap = colormap.value if colormap is not None else DEFAULT_COLORMAP[kind]
            label = {"uncertainty": "||sigma||_1", "heatmap": "-CSD"}[kind]
            label = SCALE_LABELS.get(scale, label) if kind == "heatmap" else label
            marks = [] if ramp is not None or emb is None else await svc.executor.run(
                svc.tiles.legend_marks, qid, emb, meta.metadata, scale
            )  # fmt: skip
            fitted = "rescale" if ramp is not None else FITTED_ON.get(scale, "land")
            return {
                "kind": kind, "query": qid, "scale": scale, "colormap": cmap, "min": lo,
                "max": hi, "label": label, "colors": legend_colors(cmap),
                "words": LEGEND_WORDS[kind], "fitted_on": fitted, "marks": marks,
            }  # fmt: skip

    async def compare_legend(
        self, query_a: str, query_b: str, meta_a: Any, meta_b: Any, colormap: Any,
        ramp: tuple[float, float] | None,
    ) -> dict[str, Any]:  # fmt: skip
        """The legend of a difference map: its range around 0 and its diverging ramp."""
        a, b = await self.resolve(query_a), await self.resolve(query_b)
        if ramp is not None:
            lo, hi = ramp
        else:
            lo, hi = await self.svc.executor.run(
                self.svc.tiles.difference_range, a, meta_a, b, meta_b
            )
        cmap = colormap.value if colormap is not None else DEFAULT_COLORMAP["compare"]
        return {
            "kind": "compare", "query": a[0], "query_b": b[0], "scale": "difference",
            "colormap": cmap, "min": lo, "max": hi,
            "metadata": meta_a.key(), "metadata_b": meta_b.key(),
            "label": "-CSD of A minus -CSD of B (above 0: more like A)",
            "colors": legend_colors(cmap),
        }  # fmt: skip

    def similarity_route(self) -> None:
        """Scores at points, or the top-k cells of a bbox."""
        svc = self.svc
        body_type = similarity_request(self.params, svc.settings.max_points, svc.settings.max_top_k)

        @self.router.post(
            "/similarity", response_model=SimilarityOut, tags=["queries"],
            summary="Scores at points, or the top-k cells of a bbox (says if it is exact)",
            dependencies=[Depends(self.rate_limited)],
            responses={200: {"content": {"application/geo+json": {"schema": {"type": "object"}}}},
                       **responses(404, 413, 422, 429, 503)},
        )  # fmt: skip
        async def similarity(body: body_type) -> Any:  # type: ignore[valid-type]
            qid, emb = await self.resolve(body.query.id or body.query.text)
            engine, meta = svc.engine, body.metadata.metadata
            level = engine.level(body.level) if body.level else engine.default_level()
            if body.points is not None:
                pts = np.asarray(body.points, np.float64).reshape(-1, 2)
                ds = await svc.executor.run(engine.points, emb, meta, level, pts[:, 0], pts[:, 1])
            else:
                bbox = BBox(*body.bbox)
                cells = engine.bbox_chunks(level, bbox) * level.n * level.n
                if cells > svc.settings.max_bbox_cells:
                    raise TooLargeError(
                        f"the bbox spans {cells} cells at PSM zoom {level.psm_zoom}; at most "
                        f"{svc.settings.max_bbox_cells}: use a smaller bbox or a coarser level"
                    )
                ds = await svc.executor.run(engine.top_k, emb, meta, level, bbox, body.top_k)
            facts = await svc.executor.run(describe_results, svc.tiles, qid, emb, meta, ds)
            search = {}
            if body.bbox is not None:
                search = {"exact": bool(ds.attrs["exact"]), "fused_cells": int(ds.attrs["fused"]),
                          "searched_cells": int(ds.attrs["searched"])}  # fmt: skip
            if body.format == "geojson":
                collection = feature_collection(ds)
                for feature, fact in zip(collection["features"], facts, strict=True):
                    feature["properties"] |= fact
                props = collection["properties"]
                for name in ("exact", "fused", "searched"):
                    props.pop(name, None)
                props |= {"query": qid, "psm_zoom": level.psm_zoom} | search
                return JSONResponse(collection, media_type="application/geo+json")
            # Validated, not model_copy(update=): the place must become a PlaceName, or every
            # answer with places logs pydantic serializer warnings.
            results = [SimilarityResult.model_validate(r.model_dump() | fact)
                       for r, fact in zip(similarity_results(ds), facts, strict=True)]  # fmt: skip
            return SimilarityOut(query=qid, level=level.psm_zoom, results=results, **search)

    def map_routes(self) -> None:
        """A region as a Cloud-Optimized GeoTIFF; the values under one point at every level."""
        svc, engine = self.svc, self.svc.engine
        bbox_doc = "west,south,east,north in degrees"

        @self.router.get(
            "/maps/{query:path}.tif", tags=["maps"], response_class=Response,
            summary="A region's score, probability and uncertainty as a Cloud-Optimized GeoTIFF",
            responses={200: {"content": {COG_TYPE: {}}, "description": "COG, float32 bands"},
                       **responses(404, 413, 422, 503)},
        )  # fmt: skip
        async def map_cog(
            query: QueryPath,
            bbox: Annotated[str, Query(pattern=BBOX_PATTERN, description=bbox_doc)],
            meta: self.Meta,
            level: self.psm_query = None,  # type: ignore[valid-type]
            crs: Annotated[
                str | None,
                Query(max_length=64, description="reproject to this CRS (default EPSG:3857)"),
            ] = None,
        ) -> Response:
            box = parse_bbox_param(bbox)
            lv = engine.level(level) if level else engine.default_level()
            cells = engine.region_cells(lv, box)
            if cells > svc.settings.max_map_cells:
                raise TooLargeError(
                    f"the bbox spans {cells} cells at PSM zoom {lv.psm_zoom}; at most "
                    f"{svc.settings.max_map_cells} per map: use a smaller bbox or a coarser level"
                )
            if crs:
                check_crs(crs)
            qid, emb = await self.resolve(query)
            body = await svc.executor.run(engine.map_cog, emb, meta.metadata, lv, box, crs, qid)
            name = f"soundscape-{qid}-psm{lv.psm_zoom}.tif"
            disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
            return Response(body, media_type=COG_TYPE, headers=disposition)

        @self.router.get(
            "/point/{lon},{lat}", tags=["maps"], response_model=PointOut,
            summary="Score, probability and uncertainty under a point, at every level",
            responses=responses(404, 422, 503),
        )  # fmt: skip
        async def point(
            lon: Annotated[float, Path(ge=-180, le=180, description="longitude (degrees)")],
            lat: Annotated[float, Path(ge=-90, le=90, description="latitude (degrees)")],
            query: QueryParam,
            meta: self.Meta,
        ) -> PointOut:  # fmt: skip
            qid, emb = await self.resolve(query)
            found = await svc.executor.run(engine.point_levels, emb, meta.metadata, lat, lon)
            return PointOut(lon=lon, lat=lat, query=qid, levels=point_levels(found))

    def listen_routes(self) -> None:
        """What would I hear here, a clip of the gallery, and when a sound peaks here."""
        svc, engine, listener = self.svc, self.svc.engine, self.listener
        Lat = Annotated[float, Query(ge=-90, le=90, description="latitude (degrees)")]
        Lon = Annotated[float, Query(ge=-180, le=180, description="longitude (degrees)")]

        def level_of(psm: Any) -> Any:
            return engine.level(int(psm)) if psm else engine.default_level()

        @self.router.get(
            "/listen", tags=["listen"], response_model=ListenOut,
            summary="What would I hear here? Gallery clips and labels ranked for the place "
            "under the metadata",
            responses=responses(404, 422, 503),
        )  # fmt: skip
        async def listen(
            lat: Lat,
            lon: Lon,
            meta: self.Meta,
            level: self.psm_query = None,  # type: ignore[valid-type]
            k: Annotated[
                int, Query(ge=1, le=svc.settings.max_listen_k, description="clips to return")
            ] = 5,
        ) -> Any:
            return await svc.executor.run(listener.listen, lat, lon, meta.metadata,
                                          level_of(level), k)  # fmt: skip

        @self.router.get(
            "/gallery/{clip_id}.{ext}", tags=["listen"], response_class=Response,
            summary="A gallery clip (range requests supported)",
            responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}},
                       206: {"description": "the requested byte range"},
                       **responses(400, 404, 416, 422)},
        )  # fmt: skip
        async def gallery_clip(
            clip_id: Annotated[str, Path(pattern=CLIP_ID_PATTERN, description="clip id")],
            ext: Annotated[ClipExt, Path(description="the clip's container")],
        ) -> Response:
            clip = None if svc.sounds is None else svc.sounds.clip(clip_id)
            if clip is None or clip.ext != ext.value:
                raise NotFoundError(f"no clip {clip_id}.{ext.value} in this service's gallery")
            return FileResponse(
                svc.sounds.clip_file(clip), media_type=MEDIA_TYPES[clip.ext],
                headers={"Cache-Control": "public, max-age=31536000, immutable"},
            )  # fmt: skip

        @self.router.get(
            "/profile", tags=["listen"], response_model=ProfileOut,
            summary="When does it peak here? A query's score at the place for each hour and "
            "month (one batched fusion)",
            responses=responses(404, 422, 503),
        )  # fmt: skip
        async def profile(
            lat: Lat,
            lon: Lon,
            query: QueryParam,
            meta: self.Meta,
            level: self.psm_query = None,  # type: ignore[valid-type]
        ) -> Any:  # fmt: skip
            qid, emb = await self.resolve(query)
            found = await svc.executor.run(listener.profile, emb, lat, lon, meta.metadata,
                                           level_of(level))  # fmt: skip
            return {**found, "query": qid}

    def place_routes(self) -> None:
        """Place names (GeoNames, offline): the largest places in a box, and a name search."""
        svc = self.svc

        @self.router.get(
            "/places", tags=["places"], response_model=PlacesOut,
            summary="The most populous places in a bbox (map labels)",
            responses=responses(422, 503),
        )  # fmt: skip
        async def places(
            bbox: Annotated[str, Query(pattern=BBOX_PATTERN, description="west,south,east,north")],
            limit: Annotated[int, Query(ge=1, le=200, description="places to return")] = 30,
        ) -> Any:
            box = parse_bbox_param(bbox)
            found = await svc.executor.run(largest_places, box.as_tuple(), limit)
            return PlacesOut(places=found)

        @self.router.get(
            "/places/search", tags=["places"], response_model=PlacesOut,
            summary="Places whose name starts with the text (accents and case ignored), "
            "largest first",
            responses=responses(422, 503),
        )  # fmt: skip
        async def search_places(
            q: Annotated[
                str, Query(min_length=1, max_length=100, pattern=TEXT_PATTERN, description="name")
            ],
            limit: Annotated[int, Query(ge=1, le=20, description="places to return")] = 8,
        ) -> Any:
            return PlacesOut(places=await svc.executor.run(search_places_named, q, limit))

    def info_route(self) -> None:
        """What the service serves: model, store levels, zooms, vocabulary, limits."""
        svc = self.svc

        @self.router.get(
            "/api/info", summary="Model, store levels, bounds, zooms, vocabulary", tags=["info"]
        )
        async def info() -> dict[str, Any]:
            return service_info(svc)

    def ops_routes(self) -> None:
        """Liveness, readiness and metrics."""
        svc = self.svc

        @self.router.api_route("/healthz", methods=["GET", "HEAD"], summary="Liveness",
                               tags=["ops"])  # fmt: skip
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @self.router.api_route(
            "/readyz", methods=["GET", "HEAD"], summary="Readiness: model and store loaded",
            tags=["ops"],
        )  # fmt: skip
        async def readyz() -> JSONResponse:
            redis = svc.cache.redis
            return JSONResponse({
                "status": "ready",
                "model_id": svc.model_id,
                "store_levels": [lv.psm_zoom for lv in svc.engine.levels],
                "startup_s": round(svc.ready_s, 3),
                "redis": None if redis is None else ("up" if redis.up else "down"),
                "queue_depth": svc.executor.depth,
            })  # fmt: skip

        @self.router.get("/metrics", summary="Prometheus metrics of this worker", tags=["ops"],
                         response_class=Response)  # fmt: skip
        async def metrics() -> Response:
            return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")


# One sentence per training source, for people choosing what a map should sound like.
SOURCE_HELP = {
    "yfcc": "Flickr videos (YFCC100M): everyday sounds people filmed, mostly in towns.",
    "inat": "iNaturalist: wildlife recordings, mostly animal calls.",
    "aporee": "Radio Aporee: field recordings of what a place sounds like.",
    "freesound": "Freesound: sound effects and ambiences people uploaded (no time of day).",
    "meta": "The recording's own title and tags.",
    "qwen": "A sentence written by an audio-language model (Qwen-Audio) listening to the clip.",
    "pengi": "A short tag from an audio captioning model (Pengi).",
}
SCALE_LABELS = {
    "probability": "match probability",
    "percentile": "share of this map's places scoring lower (%)",
}
FITTED_ON = {"absolute": "all months and hours", "percentile": "land"}
LEGEND_WORDS = {
    "heatmap": {"low": "less likely", "high": "more likely"},
    "uncertainty": {"low": "more certain", "high": "less certain"},
}


def legend_colors(cmap: str) -> list[str]:
    """11 evenly spaced colours of a ramp, as #rrggbb."""
    pal = np.frombuffer(palette(cmap), np.uint8).reshape(256, 3)[1:]
    stops = pal[np.linspace(0, len(pal) - 1, 11).round().astype(int)]
    return ["#" + bytes(int(c) for c in rgb).hex() for rgb in stops]


def _text_of(body: bytes) -> str:
    """The text of a POST /queries JSON body (InputError with the reason if it is not one)."""
    try:
        return TextQuery.model_validate_json(body).text
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise InputError(validation_message(errors)) from exc


def service_info(svc: Service) -> dict[str, Any]:
    """The /api/info document."""
    cfg, engine, store = svc.model.config, svc.engine, svc.store
    base_m = cfg.image.tile_size * cfg.image.native_gsd
    levels = [
        {
            "psm_zoom": lv.psm_zoom,
            "tile_zoom": lv.tile_zoom,
            "cells_per_tile": lv.n,
            "cell_size_m": lv.cell_size,
            # The ground a cell's image covers: PSM zoom z reads z times the model's footprint.
            "footprint_km": round(lv.psm_zoom * base_m / 1000, 1),
            "chunks": store.extent(lv.psm_zoom).n_chunks(),
            # Web zooms this level serves when asked for by name (others are 404).
            "web_zooms": list(engine.level_zooms[lv.psm_zoom]),
        }
        for lv in engine.levels
    ]
    basemap = svc.settings
    return {
        "model": {"id": svc.model_id, "config": cfg.name, "embed_dim": cfg.embed_dim},
        "store": {
            "model_id": store.model_id,
            "levels": levels,
            "bounds": store.attrs.get("bounds"),
            "created": store.attrs.get("created"),
            "imagery": bool(svc.tiles.imagery_spec),
        },
        "gallery": None
        if svc.sounds is None
        else {"clips": len(svc.sounds.clips), "labels": len(svc.sounds.labels)},
        "zoom_range": list(engine.zoom_range),
        # Which level serves each web zoom when the client names none (level "auto").
        "auto_levels": [
            {"psm_zoom": psm, "web_zooms": [lo, hi]} for psm, lo, hi in engine.auto_levels
        ],
        "compute": {
            "device": str(svc.model.device),
            "similarity_backend": engine.backend,
            "fusion_precision": "bf16" if engine.fusion.bf16 else "fp32",
        },
        "vocabulary": {
            "audio_sources": list(cfg.audio_sources),
            "caption_sources": list(cfg.caption_sources),
            "months": [1, 12],
            "hours": [0, 23],
            "source_help": {
                "audio": {s: SOURCE_HELP.get(s, "") for s in cfg.audio_sources},
                "caption": {s: SOURCE_HELP.get(s, "") for s in cfg.caption_sources},
            },
        },
        "basemap": None
        if basemap.basemap_url is None
        else {
            "url": basemap.basemap_url,
            "name": basemap.basemap_name,
            "attribution": basemap.basemap_attribution,
            "max_zoom": basemap.basemap_max_zoom,
        },
        "scales": list(SCALES),
        "colormaps": {
            "heatmap": list(HEATMAP_COLORMAPS),
            "uncertainty": list(UNCERTAINTY_COLORMAPS),
        },
        "limits": {
            "text_chars": MAX_TEXT_CHARS,
            "audio_seconds": svc.settings.max_audio_s,
            "body_mb": svc.settings.max_body_mb,
            "points": svc.settings.max_points,
            "top_k": svc.settings.max_top_k,
            "listen_k": svc.settings.max_listen_k,
        },
    }
