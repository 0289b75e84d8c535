"""Imagery readers: the model's input image for a cell footprint, from a GeoTIFF/COG or XYZ tiles.

Spec syntax accepted by `open_imagery` (one string, so it can travel through a CLI and be
recorded in the store attributes):

    path/to/image.tif                  a local raster GDAL can read (GeoTIFF, COG, VRT, JP2, ...)
    file:///abs/path/image.tif         the same, as a file URL
    https://host/path/cog.tif          a remote COG, read with HTTP range requests (GDAL /vsicurl/)
    s3://bucket/key.tif                object storage (also gs://, az://), via GDAL /vsis3/ etc.
    /vsis3/bucket/key.tif              any GDAL virtual path, passed through unchanged
    xyz:https://host/{z}/{x}/{y}.png   XYZ ("slippy map") tiles over HTTP(S)
    xyz:/local/folder/{z}/{x}/{y}.png  XYZ tiles in a local folder (also xyz:file:///...)

Options follow a `#` as `key=value` pairs joined by `&` (a URL fragment is never sent to the
server, so this cannot clash with a URL's own query string):

    raster:  bands=4,3,2        1-based bands to use as R,G,B (or one band, shown as grey)
             scale=0,3000       map this value range linearly to 0..255 (non-uint8 data)
    xyz:     minzoom=0 maxzoom=19 tile_size=256 bounds=west,south,east,north (degrees)

e.g. `xyz:https://tiles.example.com/{z}/{x}/{y}.jpg?key=abc#maxzoom=17&bounds=-10,35,30,60`.
Templates use `{z}`, `{x}` and `{y}` (or `{-y}` for TMS row order); nothing else.

Every reader returns `(out_px x out_px x 3 uint8 RGB, coverage)` for footprint bounds in EPSG:3857
metres. Coverage is the fraction of output pixels whose value comes from real data: a pixel is
covered when (about) half or more of its resampling weight falls on valid source pixels (not
nodata, not transparent, inside the raster, not in a missing tile); the warp's / resize's alpha
channel measures that weight. Uncovered pixels are 0 in all three bands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embeddings_store.imagery.base import Imagery, ImageryError
from embeddings_store.imagery.geotiff import GeoTiffImagery
from embeddings_store.imagery.spec import (
    RASTER_OPTIONS,
    XYZ_OPTIONS,
    check_option_keys,
    parse_floats,
    parse_int,
    split_options,
)
from embeddings_store.imagery.xyz import XyzImagery

__all__ = ["GeoTiffImagery", "Imagery", "ImageryError", "XyzImagery", "open_imagery"]


def open_imagery(spec: str | Path, cache_dir: str | Path | None = None) -> Imagery:
    """Open an imagery source from a spec string (see the module docstring for the syntax)."""
    if isinstance(spec, Path):
        return GeoTiffImagery(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ImageryError(f"imagery spec must be a non-empty string, got {spec!r}")
    location, options = split_options(spec.strip())
    if location.startswith("xyz:"):
        check_option_keys(options, XYZ_OPTIONS, spec)
        kwargs: dict[str, Any] = {}
        for key in ("minzoom", "maxzoom", "tile_size"):
            if key in options:
                kwargs[key] = parse_int(options[key], key)
        if "bounds" in options:
            kwargs["bounds"] = parse_floats(options["bounds"], "bounds", 4)
        return XyzImagery(location[len("xyz:") :], cache_dir=cache_dir, **kwargs)
    check_option_keys(options, RASTER_OPTIONS, spec)
    bands = None
    if "bands" in options:
        bands = [parse_int(b, "bands") for b in options["bands"].split(",")]
    scale = parse_floats(options["scale"], "scale", 2) if "scale" in options else None
    return GeoTiffImagery(location, bands=bands, scale=scale)
