"""The XYZ tile reader on real data: tiles cut from Blue Marble with rasterio's warper, served
from a local folder and a local HTTP server, compared with the GeoTIFF they came from.
"""

from __future__ import annotations

import pickle
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mercantile
import numpy as np
import pytest
from PIL import Image
from rasterio.enums import Resampling
from rasterio.warp import reproject

from embeddings_store.grid import HALF_WORLD
from embeddings_store.imagery import Imagery, ImageryError, XyzImagery, open_imagery
from tests.embeddings_store.imagery.helpers import (
    Server,
    footprint,
    mean_abs_diff,
    origin,
    tile_transform,
    write_tif,
)


def test_xyz_over_http_matches_the_geotiff(
    usa_tif: Path, tiles: Path, http: Server, tmp_path: Path
) -> None:
    geotiff = open_imagery(str(usa_tif))
    xyz = open_imagery(f"xyz:{http.url}/tiles/{{z}}/{{x}}/{{y}}.png", cache_dir=tmp_path)
    assert isinstance(xyz, XyzImagery) and isinstance(xyz, Imagery)
    for px, zoom in ((64, 4), (224, 6)):
        bounds = footprint(-100, 39, 640_000)
        assert xyz.zoom_for(bounds, px) == zoom
        a, cov_a = xyz.read(bounds, px)
        b, cov_b = geotiff.read(bounds, px)
        assert a.shape == (px, px, 3) and cov_a == cov_b == 1.0
        assert b.std() > 10  # real texture, so the comparison can fail
        mad = mean_abs_diff(a, b)
        assert mad < 1.5, px
        # A geolocation error of one output pixel would show: the tolerance is tight enough.
        step = (bounds[2] - bounds[0]) / px
        shifted, _ = geotiff.read((bounds[0] + step, bounds[1], bounds[2] + step, bounds[3]), px)
        assert mean_abs_diff(a, shifted) > 3 * mad, px
    desc = xyz.describe()
    assert desc["kind"] == "xyz" and desc["crs"] == "EPSG:3857" and desc["maxzoom"] == 19
    assert xyz.native_gsd == pytest.approx(156543.03 / 2**19, rel=1e-4)


def test_xyz_missing_tiles_are_uncovered(tiles: Path, http: Server, tmp_path: Path) -> None:
    bounds = footprint(-100, 39, 640_000)
    full, _ = open_imagery(f"xyz:{http.url}/tiles/{{z}}/{{x}}/{{y}}.png").read(bounds, 64)
    centre = mercantile.tile(-100, 39, 4)
    http.state["missing"].add(f"/tiles/4/{centre.x}/{centre.y}.png")
    http.requests.clear()
    spec = f"xyz:{http.url}/tiles/{{z}}/{{x}}/{{y}}.png"
    img, cov = open_imagery(spec, cache_dir=tmp_path).read(bounds, 64)
    tb = mercantile.xy_bounds(centre)
    ix = max(0.0, min(bounds[2], tb.right) - max(bounds[0], tb.left))
    iy = max(0.0, min(bounds[3], tb.top) - max(bounds[1], tb.bottom))
    expected = 1 - ix * iy / ((bounds[2] - bounds[0]) * (bounds[3] - bounds[1]))
    assert 0 < expected < 1 and cov == pytest.approx(expected, abs=0.04)
    covered = img.any(axis=2)
    assert covered.mean() == pytest.approx(cov, abs=0.01)
    assert mean_abs_diff(img[covered], full[covered]) < 1.5
    # The 404 is cached too: a new reader on the same cache makes no request at all.
    n = len(http.requests)
    img2, cov2 = open_imagery(spec, cache_dir=tmp_path).read(bounds, 64)
    assert len(http.requests) == n and cov2 == cov and (img2 == img).all()
    assert list(tmp_path.glob(f"xyz-*/4/{centre.x}/{centre.y}.missing"))


def test_xyz_local_folder_template(tiles: Path, http: Server) -> None:
    bounds = footprint(-97, 41, 400_000)
    local = open_imagery(f"xyz:{tiles}/{{z}}/{{x}}/{{y}}.png")
    remote = open_imagery(f"xyz:{http.url}/tiles/{{z}}/{{x}}/{{y}}.png")
    for px in (32, 100):
        a, cov_a = local.read(bounds, px)
        b, cov_b = remote.read(bounds, px)
        assert cov_a == cov_b == 1.0 and (a == b).all()
    # Outside the cut area the files are absent: uncovered, no error.
    img, cov = local.read(footprint(-60, 20, 400_000), 32)
    assert cov == 0.0 and not img.any()
    file_url = open_imagery(f"xyz:{tiles.as_uri()}/{{z}}/{{x}}/{{y}}.png")
    assert (file_url.read(bounds, 32)[0] == local.read(bounds, 32)[0]).all()


def test_xyz_zoom_choice_is_capped(tiles: Path, usa_tif: Path) -> None:
    bounds = footprint(-100, 39, 640_000)
    capped = open_imagery(f"xyz:{tiles}/{{z}}/{{x}}/{{y}}.png#maxzoom=5&minzoom=3")
    assert capped.zoom_for(bounds, 224) == 5
    assert capped.zoom_for(footprint(-100, 39, 20_000_000), 8) == 3
    img, cov = capped.read(bounds, 224)  # upsampled from zoom 5
    ref, _ = open_imagery(str(usa_tif)).read(bounds, 224)
    assert cov == 1.0 and mean_abs_diff(img, ref) < 2.0
    fine = open_imagery(f"xyz:{tiles}/{{z}}/{{x}}/{{y}}.png#minzoom=12")
    with pytest.raises(ImageryError, match="lower minzoom"):
        fine.read(bounds, 64)


def test_xyz_wraps_at_the_antimeridian(world: np.ndarray, tmp_path: Path) -> None:
    small = np.ascontiguousarray(np.moveaxis(world[::4, ::4], -1, 0))
    src_t = origin(-180, 90, 4 / 15)
    for tile in mercantile.tiles(-180, -80, 180, 80, zooms=[1]):
        out = np.zeros((3, 256, 256), np.uint8)
        reproject(small, out, src_transform=src_t, src_crs="EPSG:4326", dst_crs="EPSG:3857",
                  dst_transform=tile_transform(tile),
                  resampling=Resampling.cubic)  # fmt: skip
        path = tmp_path / "1" / str(tile.x) / f"{tile.y}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.moveaxis(out, 0, -1)).save(path)
    reader = open_imagery(f"xyz:{tmp_path}/{{z}}/{{x}}/{{y}}.png#minzoom=1&maxzoom=1")
    half = 4_000_000.0
    img, cov = reader.read((HALF_WORLD - half, -half, HALF_WORLD + half, half), 32)
    assert cov == 1.0
    # Away from the seam (the kernel's reach), each half equals a read on its own side.
    east, _ = reader.read((HALF_WORLD - 2 * half, -half, HALF_WORLD, half), 32)
    west, _ = reader.read((-HALF_WORLD, -half, -HALF_WORLD + 2 * half, half), 32)
    assert mean_abs_diff(img[:, :14], east[:, 16:30]) < 1.0
    assert mean_abs_diff(img[:, 18:], west[:, 2:16]) < 1.0
    geotiff = open_imagery(str(write_tif(tmp_path / "world.tif", small, "EPSG:4326", src_t)))
    ref, _ = geotiff.read((HALF_WORLD - half, -half, HALF_WORLD + half, half), 32)
    assert mean_abs_diff(img, ref) < 2.5


def test_xyz_network_errors(tiles: Path, http: Server) -> None:
    template = f"{http.url}/tiles/{{z}}/{{x}}/{{y}}.png"
    bounds = footprint(-100, 39, 640_000)
    centre = mercantile.tile(-100, 39, 4)
    http.state["failing"].add(f"/tiles/4/{centre.x}/{centre.y}.png")
    reader = XyzImagery(template, retries=2, retry_delay=0.01)
    with pytest.raises(ImageryError, match=r"failed after 3 attempts.*HTTP 500"):
        reader.read(bounds, 64)
    assert http.requests.count(f"/tiles/4/{centre.x}/{centre.y}.png") == 3
    http.reset()
    http.state["forbidden"].add(f"/tiles/4/{centre.x}/{centre.y}.png")
    with pytest.raises(ImageryError, match=r"refused.*403.*API key"):
        XyzImagery(template, retry_delay=0.01).read(bounds, 64)
    assert http.requests.count(f"/tiles/4/{centre.x}/{centre.y}.png") == 1
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = XyzImagery(f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png", retries=1, retry_delay=0.01)
    with pytest.raises(ImageryError, match="failed after 2 attempts"):
        dead.read(bounds, 64)


def test_xyz_threads_pickle_and_redaction(tiles: Path, http: Server, tmp_path: Path) -> None:
    spec = f"xyz:{http.url}/tiles/{{z}}/{{x}}/{{y}}.png?api_key=SECRET&style=a#maxzoom=6"
    reader = open_imagery(spec, cache_dir=tmp_path)
    desc = reader.describe()
    assert "SECRET" not in str(desc) and "style=a" in str(desc["source"])
    assert "SECRET" not in (next(tmp_path.glob("xyz-*/source.txt"))).read_text()
    boxes = [footprint(-105 + i, 35 + (i % 5), 300_000) for i in range(12)]
    serial = [reader.read(b, 64) for b in boxes]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda b: reader.read(b, 64), boxes))
    for (a, ca), (b, cb) in zip(serial, parallel, strict=True):
        assert ca == cb and (a == b).all()
    clone = pickle.loads(pickle.dumps(reader))
    assert (clone.read(boxes[0], 64)[0] == serial[0][0]).all()
    reader.close()
    clone.close()
