"""HTTP routes (DESIGN §5): thin handlers over the engine, the tile service and the registry.

Parameter types are built from the loaded model and store (source vocabularies, PSM zooms, zoom
range), so the OpenAPI schema states the real enumerations and bounds. No `from __future__
import annotations` here: FastAPI must see these locally built types, not strings.
"""

import hashlib
import math
import time
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.datastructures import UploadFile

from server.engine import Hits
from server.fused import Metadata
from server.queries import (
    MAX_TEXT_CHARS,
    QueryEmbedding,
    is_query_id,
    normalize_text,
    text_query_id,
)
from server.render import HEATMAP_COLORMAPS, UNCERTAINTY_COLORMAPS, palette
from server.service import Service
from server.tiles import TileRequest

Scale = Literal["relative", "probability"]
HeatmapColormap = Enum("HeatmapColormap", {c: c for c in HEATMAP_COLORMAPS}, type=str)
UncertaintyColormap = Enum("UncertaintyColormap", {c: c for c in UNCERTAINTY_COLORMAPS}, type=str)
LegendColormap = Enum(
    "LegendColormap",
    {c: c for c in dict.fromkeys(HEATMAP_COLORMAPS + UNCERTAINTY_COLORMAPS)},
    type=str,
)


class TextQuery(BaseModel):
    """POST /queries JSON body."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(
        ...,
        min_length=1,
        max_length=4 * MAX_TEXT_CHARS,
        description=f"what to listen for; normalised (NFKC, spaces collapsed), at most "
        f"{MAX_TEXT_CHARS} characters after normalisation",
    )


class QueryOut(BaseModel):
    """A registered query."""

    id: str = Field(..., description="content hash of the query and the model id")
    kind: Literal["text", "audio"]
    uncertainty: float = Field(..., description="||sigma||_1 of the query embedding")
    tiles: str = Field(..., description="XYZ tile URL template (append metadata parameters)")
    tilejson: str = Field(..., description="TileJSON 3.0 URL")


class SimilarityResult(BaseModel):
    """One scored cell (fields are null where the store has no cell)."""

    lat: float
    lon: float
    score: float | None = Field(None, description="-CSD between the cell and the query")
    probability: float | None = Field(None, description="learned match probability")
    uncertainty: float | None = Field(None, description="||sigma||_1 of the fused cell")


class SimilarityOut(BaseModel):
    """POST /similarity answer."""

    query: str
    level: int = Field(..., description="PSM zoom of the cells scored")
    results: list[SimilarityResult]


@dataclass
class TileParams:
    """Parsed metadata and rendering parameters of a tile request."""

    meta: Metadata
    level: int | None
    scale: Scale
    colormap: str


def _num(v: float) -> float | None:
    return None if not math.isfinite(float(v)) else float(v)


def _results(hits: Hits) -> list[SimilarityResult]:
    return [
        SimilarityResult(
            lat=float(hits.lat[i]),
            lon=float(hits.lon[i]),
            score=_num(hits.score[i]) if hits.valid[i] else None,
            probability=_num(hits.probability[i]) if hits.valid[i] else None,
            uncertainty=_num(hits.uncertainty[i]) if hits.valid[i] else None,
        )
        for i in range(len(hits.lat))
    ]


def etag_of(body: bytes) -> str:
    """Strong ETag: a content hash."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match comparison (weak comparison, as RFC 9110 prescribes for it)."""
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def build_router(svc: Service) -> APIRouter:
    """All API routes for a loaded service."""
    cfg = svc.model.config
    engine = svc.engine
    zmin, zmax = engine.zoom_range
    AudioSource = Enum("AudioSource", {k: k for k in cfg.audio_sources}, type=str)
    CaptionSource = Enum("CaptionSource", {k: k for k in cfg.caption_sources}, type=str)
    PsmZoom = IntEnum("PsmZoom", {f"psm{lv.psm_zoom}": lv.psm_zoom for lv in engine.levels})
    max_xy = (1 << zmax) - 1
    router = APIRouter()

    z_doc = Path(
        description=f"web zoom, {zmin}..{zmax} for this store (else 404)",
        json_schema_extra={"minimum": zmin, "maximum": zmax},
    )
    x_doc = Path(
        description="tile column, 0..2^z-1 (else 404)",
        json_schema_extra={"minimum": 0, "maximum": max_xy},
    )
    y_doc = Path(
        description="tile row, 0..2^z-1 (else 404)",
        json_schema_extra={"minimum": 0, "maximum": max_xy},
    )

    class MetadataIn(BaseModel):
        """Metadata fused into the image side; a missing field is masked."""

        model_config = ConfigDict(extra="forbid")
        month: int | None = Field(None, ge=1, le=12, description="month 1..12")
        hour: int | None = Field(None, ge=0, le=23, description="hour of day 0..23")
        asource: AudioSource | None = Field(None, description="audio source style")
        tsource: CaptionSource | None = Field(None, description="caption source style")
        location: bool = Field(True, description="fuse each cell's latitude/longitude")

        def to_meta(self) -> Metadata:
            """As the engine's Metadata."""
            return Metadata(
                self.month,
                self.hour,
                None if self.asource is None else self.asource.value,
                None if self.tsource is None else self.tsource.value,
                self.location,
            )

    class QueryRef(BaseModel):
        """A query by id or by text."""

        model_config = ConfigDict(extra="forbid")
        id: str | None = Field(None, max_length=64, description="id from POST /queries")
        text: str | None = Field(None, min_length=1, max_length=4 * MAX_TEXT_CHARS)

        @model_validator(mode="after")
        def _one(self) -> "QueryRef":
            if (self.id is None) == (self.text is None):
                raise ValueError("give exactly one of id or text")
            return self

    lat_t = Annotated[float, Field(ge=-90, le=90)]
    lon_t = Annotated[float, Field(ge=-180, le=180)]

    class SimilarityIn(BaseModel):
        """Score points, or find the top-k cells in a bbox."""

        model_config = ConfigDict(extra="forbid")
        query: QueryRef
        metadata: MetadataIn = Field(default_factory=MetadataIn)
        level: PsmZoom | None = Field(None, description="PSM zoom (default: finest level)")
        points: list[tuple[lat_t, lon_t]] | None = Field(
            None, max_length=svc.settings.max_points, description="[[lat, lon], ...]"
        )
        bbox: tuple[lon_t, lat_t, lon_t, lat_t] | None = Field(
            None, description="[west, south, east, north] in degrees"
        )
        top_k: int = Field(10, ge=1, le=svc.settings.max_top_k, description="cells for a bbox")

        @model_validator(mode="after")
        def _one(self) -> "SimilarityIn":
            if (self.points is None) == (self.bbox is None):
                raise ValueError("give exactly one of points or bbox")
            if self.bbox is not None:
                w, s, e, n = self.bbox
                if not (w < e and s < n):
                    raise ValueError("bbox needs west < east and south < north")
            return self

    def make_params(
        month: int | None, hour: int | None, asource: Enum | None, tsource: Enum | None,
        location: bool, level: int | None, scale: Scale = "relative", colormap: str = "viridis",
    ) -> TileParams:  # fmt: skip
        meta = Metadata(
            month, hour,
            None if asource is None else asource.value,
            None if tsource is None else tsource.value,
            location,
        )  # fmt: skip
        return TileParams(meta, None if level is None else int(level), scale, colormap)

    # Metadata query parameters shared by heatmap and uncertainty tiles.
    MonthQ = Annotated[int | None, Query(ge=1, le=12, description="month 1..12; omit to mask")]
    HourQ = Annotated[int | None, Query(ge=0, le=23, description="hour 0..23; omit to mask")]
    AsourceQ = Annotated[AudioSource | None, Query(description="audio source; omit to mask")]
    TsourceQ = Annotated[CaptionSource | None, Query(description="caption source; omit to mask")]
    LocationQ = Annotated[bool, Query(description="fuse each cell's lat/lon")]
    LevelQ = Annotated[PsmZoom | None, Query(description="PSM zoom (default: by web zoom)")]

    # Dependencies are async so FastAPI runs them inline, not in its thread pool.
    async def tile_params(
        month: MonthQ = None,
        hour: HourQ = None,
        asource: AsourceQ = None,
        tsource: TsourceQ = None,
        location: LocationQ = True,
        level: LevelQ = None,
        scale: Annotated[
            Scale,
            Query(description="relative: 2nd..98th percentile of the map; probability: [0, 1]"),
        ] = "relative",
        colormap: Annotated[
            HeatmapColormap, Query(description="colour-vision-safe ramp")
        ] = HeatmapColormap.viridis,
    ) -> TileParams:
        return make_params(month, hour, asource, tsource, location, level, scale, colormap.value)

    async def uncertainty_params(
        month: MonthQ = None,
        hour: HourQ = None,
        asource: AsourceQ = None,
        tsource: TsourceQ = None,
        location: LocationQ = True,
        level: LevelQ = None,
        colormap: Annotated[
            UncertaintyColormap, Query(description="colour-vision-safe ramp")
        ] = UncertaintyColormap.cividis,
    ) -> TileParams:
        return make_params(month, hour, asource, tsource, location, level, "relative",
                           colormap.value)  # fmt: skip

    async def rate_limited(request: Request) -> None:
        host = request.client.host if request.client else "-"
        wait = svc.limiter.acquire(host)
        if wait > 0:
            svc.metrics.rejected.labels("rate").inc()
            raise HTTPException(
                429,
                "too many requests; slow down",
                headers={"Retry-After": str(svc.limiter.retry_after(wait))},
            )

    async def resolve_query(query: str) -> tuple[str, QueryEmbedding]:
        if is_query_id(query):
            emb = svc.registry.lookup_local(query)
            if emb is None:
                emb = await svc.executor.run(svc.registry.lookup, query)
            if emb is None:
                raise HTTPException(
                    404, f"unknown query id {query!r}: register the query with POST /queries"
                )
            return query, emb
        try:
            qid = text_query_id(svc.model_id, query)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        emb = svc.registry.lookup_local(qid)
        if emb is None:
            qid, emb = await svc.executor.run_once(f"q:{qid}", svc.registry.register_text, query)
        return qid, emb

    def tile_response(request: Request, png: bytes, kind: str, outcome: str, t0: float) -> Response:
        etag = etag_of(png)
        dur = (time.perf_counter() - t0) * 1000
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={svc.settings.cache_max_age_s}",
            "Server-Timing": f'cache;desc="{outcome}", app;dur={dur:.2f}',
        }
        inm = request.headers.get("if-none-match")
        if inm and etag_matches(inm, etag):
            svc.metrics.tile_seconds.labels(kind, "304").observe(dur / 1000)
            return Response(status_code=304, headers=headers)
        svc.metrics.tile_seconds.labels(kind, outcome).observe(dur / 1000)
        return Response(png, media_type="image/png", headers=headers)

    async def cached_tile(key: str, fn: Any, *args: Any) -> tuple[bytes, str]:
        png = svc.cache.lru.get(key)
        if png is not None:
            svc.metrics.observe_cache("lru", "hit")
            return png, "lru"
        return await svc.executor.run_once(key, fn, *args)

    tile_responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"image/png": {}}, "description": "256 x 256 palette PNG"},
        304: {"description": "not modified (If-None-Match)"},
        404: {"description": "tile outside the pyramid or the store's zoom range"},
        422: {"description": "invalid parameters"},
        503: {"description": "busy: retry after the Retry-After seconds"},
    }

    @router.get(
        "/tiles/{query}/{z}/{x}/{y}.png",
        response_class=Response,
        responses=tile_responses,
        summary="Heatmap tile of a query under metadata",
        tags=["tiles"],
    )
    async def heatmap_tile(
        request: Request,
        query: Annotated[
            str,
            Path(max_length=4 * MAX_TEXT_CHARS, description="query id, or URL-encoded query text"),
        ],
        z: Annotated[int, z_doc],
        x: Annotated[int, x_doc],
        y: Annotated[int, y_doc],
        p: Annotated[TileParams, Depends(tile_params)],
    ) -> Response:
        t0 = time.perf_counter()
        svc.tiles.check(z, x, y)
        engine.level_for_tile(z, p.level)
        qid, emb = await resolve_query(query)
        req = TileRequest(z, x, y, p.meta, p.level, p.scale, p.colormap)
        png, outcome = await cached_tile(
            svc.tiles.heatmap_key(qid, req), svc.tiles.heatmap, qid, emb, req
        )
        return tile_response(request, png, "heatmap", outcome, t0)

    @router.get(
        "/uncertainty/{z}/{x}/{y}.png",
        response_class=Response,
        responses=tile_responses,
        summary="Uncertainty tile (||sigma||_1 of the fused image embedding)",
        tags=["tiles"],
    )
    async def uncertainty_tile(
        request: Request,
        z: Annotated[int, z_doc],
        x: Annotated[int, x_doc],
        y: Annotated[int, y_doc],
        p: Annotated[TileParams, Depends(uncertainty_params)],
    ) -> Response:
        t0 = time.perf_counter()
        svc.tiles.check(z, x, y)
        engine.level_for_tile(z, p.level)
        req = TileRequest(z, x, y, p.meta, p.level, "relative", p.colormap)
        png, outcome = await cached_tile(svc.tiles.uncertainty_key(req), svc.tiles.uncertainty, req)
        return tile_response(request, png, "uncertainty", outcome, t0)

    @router.get(
        "/imagery/{z}/{x}/{y}.png",
        response_class=Response,
        responses=tile_responses,
        summary="Base-map tile rendered from the store's imagery (works offline)",
        tags=["tiles"],
    )
    async def imagery_tile(
        request: Request,
        z: Annotated[int, z_doc],
        x: Annotated[int, x_doc],
        y: Annotated[int, y_doc],
    ) -> Response:
        t0 = time.perf_counter()
        svc.tiles.check(z, x, y)
        png, outcome = await cached_tile(svc.tiles.imagery_key(z, x, y), svc.tiles.imagery, z, x, y)
        return tile_response(request, png, "imagery", outcome, t0)

    @router.post(
        "/queries",
        response_model=QueryOut,
        summary="Register a text or audio query",
        tags=["queries"],
        dependencies=[Depends(rate_limited)],
        responses={
            413: {"description": "body or audio too large/long"},
            415: {"description": "not JSON/multipart, or not WAV/FLAC/OGG/MP3 audio"},
            422: {"description": "invalid text or audio"},
            429: {"description": "rate limited"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": TextQuery.model_json_schema()},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["audio"],
                            "properties": {
                                "audio": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "WAV, FLAC, OGG (Vorbis/Opus) or MP3; "
                                    f"at most {svc.settings.max_audio_s:g} s, "
                                    f"{svc.settings.max_channels} channels, "
                                    f"{svc.settings.max_sample_rate} Hz",
                                }
                            },
                        }
                    },
                },
            }
        },
    )
    async def create_query(request: Request) -> QueryOut:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                body = TextQuery.model_validate_json(await request.body())
                normalize_text(body.text)
            except ValidationError as exc:
                detail = [
                    {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors()
                ]
                raise HTTPException(422, detail) from exc
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc
            qid = text_query_id(svc.model_id, body.text)
            qid, emb = await svc.executor.run_once(
                f"q:{qid}", svc.registry.register_text, body.text
            )
        elif ctype == "multipart/form-data":
            async with request.form(max_files=1, max_fields=8) as form:
                upload = form.get("audio")
                if not isinstance(upload, UploadFile):
                    raise HTTPException(422, "multipart upload needs the file in field 'audio'")
                data = await upload.read()
            qid, emb = await svc.executor.run(svc.registry.register_audio, data, svc.audio_limits)
        else:
            raise HTTPException(
                415, "send JSON {\"text\": ...} or multipart/form-data with field 'audio'"
            )
        return query_out(qid, emb)

    @router.get(
        "/queries/{query_id}",
        response_model=QueryOut,
        summary="A registered query, looked up without registering anything",
        tags=["queries"],
        responses={404: {"description": "unknown query id"}, 422: {"description": "not an id"}},
    )
    async def get_query(
        query_id: Annotated[str, Path(max_length=64, description="id from POST /queries")],
    ) -> QueryOut:
        if not is_query_id(query_id):
            raise HTTPException(422, f"{query_id!r} is not a query id (txt-... or aud-...)")
        qid, emb = await resolve_query(query_id)
        return query_out(qid, emb)

    @router.get(
        "/queries/{query_id}/tilejson.json",
        summary="TileJSON 3.0 of a query's heatmap (metadata parameters pass through)",
        tags=["queries"],
        responses={404: {"description": "unknown query id"}},
    )
    async def tilejson(
        request: Request,
        query_id: Annotated[str, Path(max_length=64, description="id from POST /queries")],
        p: Annotated[TileParams, Depends(tile_params)],
    ) -> dict[str, Any]:
        if not is_query_id(query_id):
            raise HTTPException(404, f"unknown query id {query_id!r}")
        await resolve_query(query_id)
        base = str(request.base_url).rstrip("/")
        qs = f"?{request.url.query}" if request.url.query else ""
        w, s, e, n = (float(v) for v in svc.store.attrs["bounds"])
        return {
            "tilejson": "3.0.0",
            "name": f"soundscape {query_id}",
            "tiles": [f"{base}/tiles/{query_id}/{{z}}/{{x}}/{{y}}.png{qs}"],
            "minzoom": zmin,
            "maxzoom": zmax,
            "bounds": [w, s, e, n],
            "center": [(w + e) / 2, (s + n) / 2, max(zmin, min(zmax, zmin + 2))],
            "scheme": "xyz",
            "attribution": f"PSM soundscape map, model {svc.model_id}",
        }

    @router.get("/legend", summary="Colour scale and value range of a map", tags=["tiles"])
    async def legend(
        query: Annotated[
            str | None,
            Query(
                max_length=4 * MAX_TEXT_CHARS,
                description="query id or text; omit for the uncertainty legend",
            ),
        ] = None,
        month: Annotated[int | None, Query(ge=1, le=12, description="month 1..12")] = None,
        hour: Annotated[int | None, Query(ge=0, le=23, description="hour 0..23")] = None,
        asource: Annotated[AudioSource | None, Query(description="audio source")] = None,
        tsource: Annotated[CaptionSource | None, Query(description="caption source")] = None,
        location: Annotated[bool, Query(description="fuse lat/lon")] = True,
        scale: Annotated[Scale, Query(description="relative or probability")] = "relative",
        colormap: Annotated[
            LegendColormap | None, Query(description="ramp (default by kind)")
        ] = None,
    ) -> dict[str, Any]:
        p = make_params(month, hour, asource, tsource, location, None, scale)
        if query is None:
            lo, hi = await svc.executor.run(svc.tiles.value_range, None, None, p.meta, "relative")
            kind, cmap, label, scale = "uncertainty", "cividis", "||sigma||_1", "relative"
        else:
            qid, emb = await resolve_query(query)
            lo, hi = await svc.executor.run(svc.tiles.value_range, qid, emb, p.meta, p.scale)
            kind, cmap = "heatmap", "viridis"
            label = "match probability" if p.scale == "probability" else "-CSD"
        cmap = colormap.value if colormap is not None else cmap
        pal = np.frombuffer(palette(cmap), np.uint8).reshape(256, 3)[1:]
        stops = pal[np.linspace(0, len(pal) - 1, 11).round().astype(int)]
        return {
            "kind": kind,
            "query": None if query is None else qid,
            "scale": scale,
            "colormap": cmap,
            "min": lo,
            "max": hi,
            "label": label,
            "colors": ["#" + bytes(int(c) for c in rgb).hex() for rgb in stops],
        }

    @router.post(
        "/similarity",
        response_model=SimilarityOut,
        summary="Scores at points, or the top-k cells of a bbox (exact -CSD)",
        tags=["queries"],
        dependencies=[Depends(rate_limited)],
        responses={404: {"description": "unknown query id"}, 429: {"description": "rate limited"}},
    )
    async def similarity(body: SimilarityIn) -> SimilarityOut:
        ref = body.query
        if ref.id is not None:
            qid, emb = await resolve_query(ref.id) if is_query_id(ref.id) else _unknown(ref.id)
        else:
            qid, emb = await resolve_query(ref.text or "")
        meta = body.metadata.to_meta()
        level = engine.level(int(body.level)) if body.level is not None else engine.default_level()
        if body.points is not None:
            pts = np.asarray(body.points, np.float64).reshape(-1, 2)
            hits = await svc.executor.run(
                engine.score_points, emb, meta, level, pts[:, 0], pts[:, 1]
            )
        else:
            assert body.bbox is not None
            cells = engine.count_bbox_cells(level, body.bbox)
            if cells > svc.settings.max_bbox_cells:
                raise HTTPException(
                    422,
                    f"the bbox spans {cells} cells at PSM zoom {level.psm_zoom}; "
                    f"at most {svc.settings.max_bbox_cells}: use a smaller bbox or a coarser level",
                )
            hits = await svc.executor.run(engine.top_k, emb, meta, level, body.bbox, body.top_k)
        return SimilarityOut(query=qid, level=level.psm_zoom, results=_results(hits))

    @router.get(
        "/api/info", summary="Model, store levels, bounds, zooms, vocabulary", tags=["info"]
    )
    async def info() -> dict[str, Any]:
        levels = []
        for lv in engine.levels:
            ext = svc.store.extent(lv.psm_zoom)
            levels.append(
                {
                    "psm_zoom": lv.psm_zoom,
                    "tile_zoom": lv.tile_zoom,
                    "cells_per_tile": lv.n,
                    "cell_size_m": lv.cell_size,
                    "chunks": ext.n_chunks(),
                    # Web zooms this level serves when asked for by name (others are 404).
                    "web_zooms": list(engine.level_zooms[lv.psm_zoom]),
                }
            )
        return {
            "model": {"id": svc.model_id, "config": cfg.name, "embed_dim": cfg.embed_dim},
            "store": {
                "model_id": svc.store.model_id,
                "levels": levels,
                "bounds": svc.store.attrs.get("bounds"),
                "created": svc.store.attrs.get("created"),
                "imagery": bool(svc.tiles.imagery_spec),
            },
            "zoom_range": [zmin, zmax],
            # Which level serves each web zoom when the client names none (level "auto").
            "auto_levels": [
                {"psm_zoom": psm, "web_zooms": [lo, hi]} for psm, lo, hi in engine.auto_levels
            ],
            "compute": {
                "device": str(svc.model.device),
                "similarity_backend": engine.backend,
                "fusion_precision": "bf16" if svc.model.device.type == "cuda" else "fp32",
            },
            "vocabulary": {
                "audio_sources": list(cfg.audio_sources),
                "caption_sources": list(cfg.caption_sources),
                "months": [1, 12],
                "hours": [0, 23],
            },
            "basemap": None
            if svc.settings.basemap_url is None
            else {
                "url": svc.settings.basemap_url,
                "name": svc.settings.basemap_name,
                "attribution": svc.settings.basemap_attribution,
                "max_zoom": svc.settings.basemap_max_zoom,
            },
            "scales": ["relative", "probability"],
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
            },
        }

    @router.api_route("/healthz", methods=["GET", "HEAD"], summary="Liveness", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.api_route(
        "/readyz",
        methods=["GET", "HEAD"],
        summary="Readiness: model and store loaded",
        tags=["ops"],
    )
    async def readyz() -> JSONResponse:
        redis = svc.cache.redis
        return JSONResponse(
            {
                "status": "ready",
                "model_id": svc.model_id,
                "store_levels": [lv.psm_zoom for lv in engine.levels],
                "startup_s": round(svc.ready_s, 3),
                "redis": None if redis is None else ("up" if redis.available else "down"),
                "queue_depth": svc.executor.depth,
            }
        )

    @router.get(
        "/metrics",
        summary="Prometheus metrics of this worker",
        tags=["ops"],
        response_class=Response,
    )
    async def metrics() -> Response:
        return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")

    return router


def query_out(qid: str, emb: QueryEmbedding) -> QueryOut:
    """The public description of a registered query."""
    return QueryOut(
        id=qid,
        kind=emb.kind,
        uncertainty=emb.uncertainty,
        tiles=f"/tiles/{qid}/{{z}}/{{x}}/{{y}}.png",
        tilejson=f"/queries/{qid}/tilejson.json",
    )


def _unknown(query_id: str) -> Any:
    raise HTTPException(404, f"unknown query id {query_id!r}: register it with POST /queries")
