"""Service descriptions GIS clients read: OGC WMTS 1.0.0 capabilities and GDAL's WMS XML.

Both describe the XYZ tiles the service already serves, in the WebMercatorQuad tile matrix set
(morecantile's definition) limited to the store's zooms and bounds. XML is built with
ElementTree, so every value (URLs with their query strings included) is escaped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import mercantile
import morecantile

from embeddings_store.grid import MAX_LATITUDE, tiles_for_bbox

OWS = "http://www.opengis.net/ows/1.1"
WMTS = "http://www.opengis.net/wmts/1.0"
XLINK = "http://www.w3.org/1999/xlink"
TMS_ID = "WebMercatorQuad"


@dataclass(frozen=True)
class TileLayer:
    """One layer: its WMTS identifier, a title and an XYZ URL with {z}, {x} and {y}."""

    identifier: str
    title: str
    abstract: str
    url: str


@dataclass(frozen=True)
class Coverage:
    """Where the tiles have data: (west, south, east, north) degrees and web zooms."""

    bounds: tuple[float, float, float, float]
    minzoom: int
    maxzoom: int

    def tile_range(self, z: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the tiles at zoom z that meet the bounds."""
        x0, x1, y0, y1 = tiles_for_bbox(self.bounds, z)
        return x0, y0, x1, y1


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def wmts_capabilities(title: str, layers: list[TileLayer], coverage: Coverage) -> bytes:
    """WMTS 1.0.0 GetCapabilities document (RESTful, one PNG ResourceURL per layer)."""
    ET.register_namespace("", WMTS)
    ET.register_namespace("ows", OWS)
    ET.register_namespace("xlink", XLINK)
    root = ET.Element(f"{{{WMTS}}}Capabilities", {"version": "1.0.0"})
    ident = _sub(root, f"{{{OWS}}}ServiceIdentification")
    _sub(ident, f"{{{OWS}}}Title", title)
    _sub(ident, f"{{{OWS}}}ServiceType", "OGC WMTS")
    _sub(ident, f"{{{OWS}}}ServiceTypeVersion", "1.0.0")
    contents = _sub(root, f"{{{WMTS}}}Contents")
    w, s, e, n = coverage.bounds
    zooms = range(coverage.minzoom, coverage.maxzoom + 1)
    for layer in layers:
        el = _sub(contents, f"{{{WMTS}}}Layer")
        _sub(el, f"{{{OWS}}}Title", layer.title)
        _sub(el, f"{{{OWS}}}Abstract", layer.abstract)
        box = _sub(el, f"{{{OWS}}}WGS84BoundingBox", crs="urn:ogc:def:crs:OGC:2:84")
        _sub(box, f"{{{OWS}}}LowerCorner", f"{w!r} {max(s, -MAX_LATITUDE)!r}")
        _sub(box, f"{{{OWS}}}UpperCorner", f"{e!r} {min(n, MAX_LATITUDE)!r}")
        _sub(el, f"{{{OWS}}}Identifier", layer.identifier)
        style = _sub(el, f"{{{WMTS}}}Style", isDefault="true")
        _sub(style, f"{{{OWS}}}Identifier", "default")
        _sub(el, f"{{{WMTS}}}Format", "image/png")
        link = _sub(el, f"{{{WMTS}}}TileMatrixSetLink")
        _sub(link, f"{{{WMTS}}}TileMatrixSet", TMS_ID)
        limits = _sub(link, f"{{{WMTS}}}TileMatrixSetLimits")
        for z in zooms:
            x0, y0, x1, y1 = coverage.tile_range(z)
            lim = _sub(limits, f"{{{WMTS}}}TileMatrixLimits")
            _sub(lim, f"{{{WMTS}}}TileMatrix", str(z))
            for tag, value in (("MinTileRow", y0), ("MaxTileRow", y1), ("MinTileCol", x0),
                               ("MaxTileCol", x1)):  # fmt: skip
                _sub(lim, f"{{{WMTS}}}{tag}", str(value))
        template = (
            layer.url.replace("{z}", "{TileMatrix}")
            .replace("{x}", "{TileCol}")
            .replace("{y}", "{TileRow}")
        )
        _sub(el, f"{{{WMTS}}}ResourceURL", format="image/png", resourceType="tile",
             template=template)  # fmt: skip
    tms = morecantile.tms.get(TMS_ID)
    tms_el = _sub(contents, f"{{{WMTS}}}TileMatrixSet")
    _sub(tms_el, f"{{{OWS}}}Identifier", TMS_ID)
    _sub(tms_el, f"{{{OWS}}}SupportedCRS", "urn:ogc:def:crs:EPSG::3857")
    _sub(tms_el, f"{{{WMTS}}}WellKnownScaleSet",
         "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")  # fmt: skip
    for z in zooms:
        m = tms.matrix(z)
        mat = _sub(tms_el, f"{{{WMTS}}}TileMatrix")
        _sub(mat, f"{{{OWS}}}Identifier", str(z))
        _sub(mat, f"{{{WMTS}}}ScaleDenominator", repr(m.scaleDenominator))
        ox, oy = m.pointOfOrigin
        _sub(mat, f"{{{WMTS}}}TopLeftCorner", f"{ox!r} {oy!r}")
        _sub(mat, f"{{{WMTS}}}TileWidth", str(m.tileWidth))
        _sub(mat, f"{{{WMTS}}}TileHeight", str(m.tileHeight))
        _sub(mat, f"{{{WMTS}}}MatrixWidth", str(m.matrixWidth))
        _sub(mat, f"{{{WMTS}}}MatrixHeight", str(m.matrixHeight))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def gdal_wms(layer: TileLayer, coverage: Coverage) -> bytes:
    """GDAL WMS service description (TMS mini-driver) of one layer: the tiles around the
    store's bounds at the finest zoom, one overview per coarser zoom down to the coarsest."""
    zmin, zmax = coverage.minzoom, coverage.maxzoom
    shift = zmax - zmin
    # The window is whole tiles of the coarsest zoom, so every overview stays tile-aligned.
    x0, y0, x1, y1 = coverage.tile_range(zmin)
    ul, lr = mercantile.xy_bounds(x0, y0, zmin), mercantile.xy_bounds(x1, y1, zmin)
    root = ET.Element("GDAL_WMS")
    service = _sub(root, "Service", name="TMS")
    url = layer.url.replace("{z}", "${z}").replace("{x}", "${x}").replace("{y}", "${y}")
    _sub(service, "ServerUrl", url)
    window = _sub(root, "DataWindow")
    for tag, value in (("UpperLeftX", ul.left), ("UpperLeftY", ul.top),
                       ("LowerRightX", lr.right), ("LowerRightY", lr.bottom)):  # fmt: skip
        _sub(window, tag, repr(value))
    _sub(window, "SizeX", str((x1 - x0 + 1) * 256 << shift))
    _sub(window, "SizeY", str((y1 - y0 + 1) * 256 << shift))
    _sub(window, "TileX", str(x0 << shift))
    _sub(window, "TileY", str(y0 << shift))
    _sub(window, "TileLevel", str(zmax))
    _sub(window, "YOrigin", "top")
    _sub(root, "Projection", "EPSG:3857")
    _sub(root, "BlockSizeX", "256")
    _sub(root, "BlockSizeY", "256")
    _sub(root, "BandsCount", "4")
    _sub(root, "OverviewCount", str(shift))
    _sub(root, "ZeroBlockHttpCodes", "204,404")
    _sub(root, "UserAgent", "soundscape-gdal")
    return ET.tostring(root, encoding="utf-8")
