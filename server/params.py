"""Request parameters, declared once: metadata, rendering, tile address, level.

The metadata fields are one table (`METADATA_FIELDS`) turned into both the query-string
dependency (`MetadataParams`, for tiles, legends, TileJSON...) and the JSON body model
(`MetadataBody`, for POST /similarity), so a new metadata field is one entry here plus its
meaning in `model.metadata.Metadata`. The source vocabularies, PSM zooms and zoom range come
from the loaded model and store, so the OpenAPI schema states the real enumerations and bounds.
No `from __future__ import annotations`: FastAPI must see these locally built types.
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, create_model

from model.metadata import Metadata
from server.render import (
    DIVERGING_COLORMAPS,
    HEATMAP_COLORMAPS,
    RESCALE_MAX_CHARS,
    RESCALE_PATTERN,
    UNCERTAINTY_COLORMAPS,
    parse_rescale,
)
from server.tiles import DEFAULT_COLORMAP, Scale

# name -> (description, extra constraints); the types come from the vocabularies.
METADATA_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "month": ("month 1..12; omit to mask", {"ge": 1, "le": 12}),
    "hour": ("hour of day 0..23; omit to mask", {"ge": 0, "le": 23}),
    "asource": ("audio source the map should sound like; omit to mask", {}),
    "tsource": ("caption source; omit to mask", {}),
    "location": ("fuse each cell's latitude/longitude", {}),
}


def _enum(name: str, values: list[str]) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


HeatmapColormap = _enum("HeatmapColormap", list(HEATMAP_COLORMAPS))
UncertaintyColormap = _enum("UncertaintyColormap", list(UNCERTAINTY_COLORMAPS))
DivergingColormap = _enum("DivergingColormap", list(DIVERGING_COLORMAPS))
AnyColormap = _enum(
    "Colormap",
    list(dict.fromkeys(HEATMAP_COLORMAPS + UNCERTAINTY_COLORMAPS + DIVERGING_COLORMAPS)),
)


@functools.cache
def inline(cls: type) -> Callable[..., Coroutine[Any, Any, Any]]:
    """`cls` as an async dependency with the same parameters: FastAPI runs async dependencies
    on the event loop, sync ones (a dataclass constructor) in its thread pool, which costs a
    cached tile most of its time."""

    async def make(**kwargs: Any) -> Any:
        return cls(**kwargs)

    make.__signature__ = inspect.signature(cls)  # type: ignore[attr-defined]
    make.__name__ = cls.__name__
    return make


RESCALE_DOC = (
    "min,max: the values drawn in the first and last colour (titiler's rescale; max < min "
    "reverses the ramp, min = max draws a step); overrides the scale's range"
)
Rescale = Annotated[
    str | None,
    Query(pattern=RESCALE_PATTERN, max_length=RESCALE_MAX_CHARS, description=RESCALE_DOC),
]


def rescale_of(text: str | None) -> tuple[float, float] | None:
    """A `rescale` parameter as (min, max); InputError (422) if it is not two numbers."""
    return None if text is None else parse_rescale(text)


def _ramp_of(render: Any) -> tuple[float, float] | None:
    return rescale_of(render.rescale)


def query_params(*parsed: Any, level: int | None = None) -> dict[str, str]:
    """Parsed parameter objects (metadata, render) back as a canonical query string's fields:
    what differs from the defaults, from validated values only (URLs built from it carry
    nothing a client sent unchecked)."""
    out: dict[str, str] = {}
    for obj in parsed:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None or value == f.default:
                continue
            value = getattr(value, "value", value)
            out[f.name] = str(value).lower() if isinstance(value, bool) else str(value)
    if level is not None:
        out["level"] = str(int(level))
    return out


def _metadata_of(params: Any) -> Metadata:
    """The model's Metadata of a parsed parameter object (enum members to their names)."""
    return Metadata(**{f: getattr(getattr(params, f), "value", getattr(params, f))
                       for f in METADATA_FIELDS})  # fmt: skip


def _override(params: Any, base: Metadata) -> Metadata:
    """`base` with the `b_*` fields that were given put in."""
    given = {f: getattr(getattr(params, f"b_{f}"), "value", getattr(params, f"b_{f}"))
             for f in METADATA_FIELDS}  # fmt: skip
    return base.replace(**{f: v for f, v in given.items() if v is not None})


class _MetadataBodyBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @property
    def metadata(self) -> Metadata:
        """As the model's Metadata."""
        return _metadata_of(self)


@dataclass(frozen=True)
class Params:
    """The parameter types of one loaded service (built from its model and store)."""

    metadata: type  # query-string dependency with a `.metadata` property
    metadata_body: type[BaseModel]  # the same fields as a JSON object
    psm_zoom: type[IntEnum]
    tile: type  # z/x/y path dependency
    heatmap_render: type  # scale + colormap dependency
    uncertainty_render: type  # colormap dependency
    metadata_b: type  # b_* overrides of a comparison's second map, with `.override(meta)`
    compare_render: type  # diverging colormap + rescale


def build_params(
    audio_sources: list[str], caption_sources: list[str], psm_zooms: list[int],
    zoom_range: tuple[int, int],
) -> Params:  # fmt: skip
    """The parameter types for a model's vocabularies and a store's levels and zooms."""
    sources = {
        "asource": _enum("AudioSource", audio_sources),
        "tsource": _enum("CaptionSource", caption_sources),
    }
    types: dict[str, Any] = {"month": int | None, "hour": int | None, "location": bool}
    types |= {k: v | None for k, v in sources.items()}
    defaults = {"location": True}

    query_fields = [
        (name, Annotated[types[name], Query(description=desc, **extra)],
         dataclasses.field(default=defaults.get(name)))
        for name, (desc, extra) in METADATA_FIELDS.items()
    ]  # fmt: skip
    metadata_params = dataclasses.make_dataclass(
        "MetadataParams",
        query_fields,
        namespace={"metadata": property(_metadata_of, doc="As the model's Metadata.")},
        frozen=True,
    )
    metadata_params.__doc__ = "Metadata fused into the image side (query string)."
    b_types = {**types, "location": bool | None}  # None: as map A's
    b_fields = [
        (f"b_{name}",
         Annotated[b_types[name], Query(description=f"map B's {name} (default: map A's)",
                                        **extra)],
         dataclasses.field(default=None))
        for name, (desc, extra) in METADATA_FIELDS.items()
    ]  # fmt: skip
    metadata_b = dataclasses.make_dataclass(
        "MetadataOverrides", b_fields, namespace={"override": _override}, frozen=True
    )
    metadata_b.__doc__ = "A comparison's map B: map A's metadata with these fields replaced."
    body_fields: dict[str, Any] = {
        name: (types[name], Field(defaults.get(name), description=desc, **extra))
        for name, (desc, extra) in METADATA_FIELDS.items()
    }
    metadata_body = create_model(
        "MetadataBody",
        __base__=_MetadataBodyBase,
        __doc__="Metadata fused into the image side; a missing field is masked.",
        **body_fields,
    )
    psm_zoom = IntEnum("PsmZoom", {f"psm{z}": z for z in psm_zooms})  # type: ignore[misc]
    zmin, zmax = zoom_range
    max_xy = (1 << zmax) - 1

    @dataclass(frozen=True)
    class TileAddress:
        """An XYZ tile of the store's pyramid (404 outside it)."""

        z: Annotated[
            int,
            Path(description=f"web zoom, {zmin}..{zmax} for this store (else 404)",
                 json_schema_extra={"minimum": zmin, "maximum": zmax}),
        ]  # fmt: skip
        x: Annotated[
            int,
            Path(description="tile column, 0..2^z-1 (else 404)",
                 json_schema_extra={"minimum": 0, "maximum": max_xy}),
        ]  # fmt: skip
        y: Annotated[
            int,
            Path(description="tile row, 0..2^z-1 (else 404)",
                 json_schema_extra={"minimum": 0, "maximum": max_xy}),
        ]  # fmt: skip

    @dataclass(frozen=True)
    class HeatmapRender:
        """How a heatmap is coloured."""

        scale: Annotated[
            Scale,
            Query(description="relative: 2nd..98th percentile of this map; absolute: of the "
                  "query over every month and hour (one range for a time-lapse); "
                  "probability: [0, 1]"),
        ] = "relative"  # fmt: skip
        colormap: Annotated[HeatmapColormap, Query(description="colour-vision-safe ramp")] = (
            HeatmapColormap[DEFAULT_COLORMAP["heatmap"]]
        )  # type: ignore[misc]
        rescale: Rescale = None

        ramp = property(_ramp_of, doc="`rescale` as (min, max), or None.")

    @dataclass(frozen=True)
    class UncertaintyRender:
        """How an uncertainty map is coloured."""

        colormap: Annotated[UncertaintyColormap, Query(description="colour-vision-safe ramp")] = (
            UncertaintyColormap[DEFAULT_COLORMAP["uncertainty"]]
        )  # type: ignore[misc]
        rescale: Rescale = None

        ramp = property(_ramp_of, doc="`rescale` as (min, max), or None.")

    @dataclass(frozen=True)
    class CompareRender:
        """How a difference map is coloured (a diverging ramp centred at 0)."""

        colormap: Annotated[DivergingColormap, Query(description="diverging ramp")] = (
            DivergingColormap[DEFAULT_COLORMAP["compare"]]
        )  # type: ignore[misc]
        rescale: Rescale = None

        ramp = property(_ramp_of, doc="`rescale` as (min, max), or None.")

    return Params(
        metadata_params, metadata_body, psm_zoom, TileAddress, HeatmapRender, UncertaintyRender,
        metadata_b, CompareRender,
    )  # fmt: skip
