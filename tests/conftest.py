"""Shared fixtures: tiny models built locally (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def test_config():
    from model.config import load_config

    return load_config("test")


@pytest.fixture
def tiny_model(test_config):
    from model.psm import PSM

    torch.manual_seed(0)
    return PSM(test_config).eval()


@pytest.fixture(scope="session")
def bluemarble_tif(tmp_path_factory) -> Path:
    """NASA Blue Marble over the central USA (-110..-90 E, 30..45 N) as an EPSG:4326 GeoTIFF."""
    from embeddings_store.demo.geo import write_bluemarble_geotiff

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
