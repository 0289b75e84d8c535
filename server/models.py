"""JSON bodies of the HTTP API (requests and answers), as pydantic models.

No `from __future__ import annotations`: the similarity request is built per service from its
parameter types, and FastAPI must see real types.
"""

import math
from typing import Annotated, Any, Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from embeddings_store.scoring import BBox
from model.errors import InputError
from server.params import Params
from server.queries import MAX_TEXT_CHARS, QUERY_ID_PATTERN, TEXT_PATTERN

QueryText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        pattern=TEXT_PATTERN,
        description=f"what to listen for, at most {MAX_TEXT_CHARS} characters with at least "
        "one that is not whitespace; normalised (NFKC, spaces collapsed) for its id",
    ),
]
QueryId = Annotated[
    str, Field(pattern=QUERY_ID_PATTERN, max_length=64, description="id from POST /queries")
]


class TextQuery(BaseModel):
    """POST /queries JSON body."""

    model_config = ConfigDict(extra="forbid")
    text: QueryText


class QueryOut(BaseModel):
    """A registered query."""

    id: str = Field(..., description="content hash of the query and the model id")
    kind: Literal["text", "audio"]
    uncertainty: float = Field(..., description="||sigma||_1 of the query embedding")
    tiles: str = Field(..., description="XYZ tile URL template (append metadata parameters)")
    tilejson: str = Field(..., description="TileJSON 3.0 URL")
    wmts: str = Field(..., description="OGC WMTS 1.0.0 capabilities URL (QGIS, ArcGIS, GDAL)")
    gdal: str = Field(..., description="GDAL WMS service description URL (gdal_translate)")
    familiarity: Literal["familiar", "vague", "unfamiliar"] | None = Field(
        None,
        description="how near the query comes to the sounds the service's gallery knows, and how "
        "uncertain it is (null without a gallery)",
    )
    hint: str | None = Field(None, description="a sentence for people when not familiar")


def _one_of(*names: str) -> dict[str, Any]:
    """JSON-schema edit: exactly one of the named properties, none of them null."""

    def edit(schema: dict[str, Any]) -> None:
        for name in names:
            prop = schema["properties"][name]
            options = [o for o in prop.pop("anyOf", [prop.copy()]) if o.get("type") != "null"]
            prop.pop("default", None)
            if len(options) == 1:
                prop.update(options[0])
            else:
                prop["anyOf"] = options
        schema["oneOf"] = [{"required": [name]} for name in names]

    return {"json_schema_extra": edit}


class QueryRef(BaseModel):
    """A query by id or by text (exactly one)."""

    model_config = ConfigDict(extra="forbid", **_one_of("id", "text"))
    id: QueryId | None = None
    text: QueryText | None = None

    @model_validator(mode="after")
    def _one(self) -> "QueryRef":
        if (self.id is None) == (self.text is None):
            raise ValueError("give exactly one of id or text")
        return self


PROBABILITY_DOC = "match probability (calibrated when the model carries a calibration)"


class PlaceName(BaseModel):
    """A GeoNames place's name, first-level division and country."""

    name: str
    admin1: str
    country_code: str


class Place(PlaceName):
    """A GeoNames place."""

    lat: float
    lon: float
    population: int = Field(description="0 where GeoNames gives none (under 15,000)")


class PlacesOut(BaseModel):
    """GET /places and /places/search answer."""

    places: list[Place]


class SimilarityResult(BaseModel):
    """One scored cell (fields are null where the store has no cell)."""

    lat: float
    lon: float
    score: float | None = Field(None, description="-CSD between the cell and the query")
    probability: float | None = Field(None, description=PROBABILITY_DOC)
    uncertainty: float | None = Field(None, description="||sigma||_1 of the fused cell")
    place: PlaceName | None = Field(None, description="the nearest populated place (60 km)")
    percentile: float | None = Field(
        None, description="share (0..100) of this map's land places that score lower"
    )
    confidence: Literal["high", "medium", "low"] | None = Field(
        None, description="the cell's uncertainty among this metadata's land cells, in words"
    )


class SimilarityOut(BaseModel):
    """POST /similarity answer."""

    query: str
    level: int = Field(..., description="PSM zoom of the cells scored")
    results: list[SimilarityResult]
    exact: bool | None = Field(
        None,
        description="top-k only: true when the search proved its answer (every cell scored, or "
        "every unscored cell's predicted score plus the safety margin below the k-th best); "
        "false when it reached its fusion budget first (null for points)",
    )
    fused_cells: int | None = Field(
        None, description="top-k only: cells this request fused under the metadata"
    )
    searched_cells: int | None = Field(
        None, description="top-k only: eligible cells in the bbox the answer was chosen from"
    )


def similarity_request(params: Params, max_points: int, max_top_k: int) -> type[BaseModel]:
    """The POST /similarity body for a service's vocabularies, levels and limits."""
    lat_t = Annotated[float, Field(ge=-90, le=90)]
    lon_t = Annotated[float, Field(ge=-180, le=180)]

    class SimilarityBase(BaseModel):
        model_config = ConfigDict(extra="forbid", **_one_of("points", "bbox"))

        @model_validator(mode="after")
        def _one(self) -> Any:
            if (self.points is None) == (self.bbox is None):  # type: ignore[attr-defined]
                raise ValueError("give exactly one of points or bbox")
            if self.bbox is not None:  # type: ignore[attr-defined]
                w, s, e, n = self.bbox  # type: ignore[attr-defined]
                if not (w < e and s < n):
                    raise ValueError("bbox needs west < east and south < north")
            return self

    return create_model(
        "SimilarityIn",
        __base__=SimilarityBase,
        __doc__="Score points, or find the top-k cells in a bbox.",
        query=(QueryRef, ...),
        metadata=(params.metadata_body, Field(default_factory=params.metadata_body)),
        level=(params.psm_zoom | None, Field(None, description="PSM zoom (default: finest)")),
        points=(
            list[tuple[lat_t, lon_t]] | None,
            Field(None, max_length=max_points, description="[[lat, lon], ...]"),
        ),
        bbox=(
            tuple[lon_t, lat_t, lon_t, lat_t] | None,
            Field(None, description="[west, south, east, north] in degrees"),
        ),
        top_k=(int, Field(10, ge=1, le=max_top_k, description="cells for a bbox")),
        format=(
            Literal["json", "geojson"],
            Field("json", description="json, or a GeoJSON FeatureCollection of points"),
        ),
    )


def similarity_results(ds: xr.Dataset) -> list[SimilarityResult]:
    """The rows of a scored Dataset (dim `point` or `cell`), null where there is no cell."""

    def num(v: float) -> float | None:
        return None if not math.isfinite(float(v)) else float(v)

    lat, lon = ds["lat"].values, ds["lon"].values
    score, prob, unc = (np.asarray(ds[v].values) for v in ("score", "probability", "uncertainty"))
    return [
        SimilarityResult(
            lat=float(lat[i]),
            lon=float(lon[i]),
            score=num(score[i]),
            probability=num(prob[i]) if math.isfinite(score[i]) else None,
            uncertainty=num(unc[i]) if math.isfinite(score[i]) else None,
        )
        for i in range(lat.shape[0])
    ]


class PointCell(BaseModel):
    """The cell under a point at one level."""

    lon: float = Field(..., description="longitude of the cell centre")
    lat: float = Field(..., description="latitude of the cell centre")
    x: float = Field(..., description="EPSG:3857 x of the cell centre (m)")
    y: float = Field(..., description="EPSG:3857 y of the cell centre (m)")


class PointLevel(BaseModel):
    """Values under the point at one PSM zoom (null where the store has no cell)."""

    psm_zoom: int
    cell: PointCell | None
    score: float | None = Field(None, description="-CSD between the cell and the query")
    probability: float | None = Field(None, description=PROBABILITY_DOC)
    uncertainty: float | None = Field(None, description="||sigma||_1 of the fused cell")


class PointOut(BaseModel):
    """GET /point answer: the point, the query and one entry per store level."""

    lon: float
    lat: float
    query: str
    levels: list[PointLevel]


def point_levels(found: list[tuple[int, xr.Dataset]]) -> list[PointLevel]:
    """PointLevel entries from (PSM zoom, one-point Dataset) pairs."""
    out = []
    for psm, ds in found:
        (row,) = similarity_results(ds)
        cell = None
        if row.score is not None:
            cell = PointCell(
                lon=float(ds["cell_lon"].values[0]), lat=float(ds["cell_lat"].values[0]),
                x=float(ds["x"].values[0]), y=float(ds["y"].values[0]),
            )  # fmt: skip
        values = row.model_dump(include={"score", "probability", "uncertainty"})
        out.append(PointLevel(psm_zoom=psm, cell=cell, **values))
    return out


class ViewOut(BaseModel):
    """POST /views/... answer: what preparing the view did (its tiles are now cached)."""

    tiles: int = Field(..., description="tiles of every frame, now in the tile cache")
    frames: int = Field(..., description="frames (one per hour asked, else one)")
    hours: list[int] | None = Field(None, description="the frames' hours, if asked")
    rendered: int = Field(..., description="tiles drawn by this request (others were cached)")
    chunks: int = Field(..., description="fused chunks not in this worker's memory before")
    seconds: float


def parse_hours_param(text: str) -> list[int]:
    """An `hours=0,1,...` query value: distinct hours 0..23 in the given order."""
    hours = [int(v) for v in text.split(",")]
    if any(not 0 <= h <= 23 for h in hours) or len(set(hours)) != len(hours):
        raise InputError(f"hours {text!r}: give distinct hours in 0..23")
    return hours


def parse_bbox_param(text: str) -> BBox:
    """A `bbox=W,S,E,N` query value (its shape is checked by the schema's pattern)."""
    try:
        return BBox(*(float(v) for v in text.split(",")))
    except (TypeError, ValueError) as exc:
        raise InputError(f"bbox {text!r}: {exc}") from exc


class TileJSON(BaseModel):
    """TileJSON 3.0.0 of a raster layer (what Leaflet plug-ins, MapLibre and QGIS read)."""

    tilejson: str = Field("3.0.0", description="TileJSON version")
    name: str
    description: str
    version: str = Field("1.0.0", description="version of this layer description")
    attribution: str
    scheme: str = Field("xyz", description="tile row order (y down from the north)")
    tiles: list[str] = Field(..., description="tile URL templates with {z}, {x} and {y}")
    minzoom: int
    maxzoom: int
    bounds: list[float] = Field(..., description="west, south, east, north (degrees)")
    center: list[float] = Field(..., description="longitude, latitude, zoom")


class ListenCell(BaseModel):
    """The cell a place falls in."""

    lat: float = Field(description="the cell centre's latitude")
    lon: float = Field(description="the cell centre's longitude")
    psm_zoom: int
    cell_size_m: float
    uncertainty: float = Field(description="||sigma||_1 of the fused cell under the metadata")


class ListenSound(BaseModel):
    """A gallery clip ranked for a place."""

    id: str
    caption: str
    score: float = Field(description="-CSD between the fused cell and the clip")
    probability: float = Field(description=PROBABILITY_DOC)
    duration_s: float
    audio_url: str = Field(description="where the clip plays (GET, range requests supported)")


class ListenLabel(BaseModel):
    """A label of the gallery's vocabulary ranked for a place."""

    label: str
    score: float
    probability: float


class ListenOut(BaseModel):
    """GET /listen answer: the cell, its most likely clips and every label, best first."""

    cell: ListenCell
    sounds: list[ListenSound]
    labels: list[ListenLabel]


class TimeValue(BaseModel):
    """A query's values at one hour or month of a place's profile."""

    score: float
    probability: float
    share: float | None = Field(
        default=None,
        description="the query's share of the place's match among itself and the gallery's "
        "labels (softmax of the match logits); null without a label vocabulary",
    )


class HourValue(TimeValue):
    """A query's values at one hour."""

    hour: int


class MonthValue(TimeValue):
    """A query's values in one month."""

    month: int


class ProfileOut(BaseModel):
    """GET /profile answer: a query's score at a place for each hour and month."""

    cell: ListenCell
    query: str
    hours: list[HourValue] = Field(description="24 entries, the month and sources as asked")
    months: list[MonthValue] = Field(description="12 entries, the hour and sources as asked")
    peak_by: Literal["share", "score"] = Field(
        description="what the peaks are read from: the share when the service has labels, "
        "else the score"
    )
    peak_hour: int
    peak_month: int
    summary: str = Field(description="the peak hour in words, e.g. 'peaks around 05:00'")
