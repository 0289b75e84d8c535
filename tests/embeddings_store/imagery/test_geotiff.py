"""The GeoTIFF/COG reader on real data: Blue Marble GeoTIFFs written with rasterio (any CRS,
overviews, nodata, alpha, masks, 16-bit, palettes), read locally and over HTTP range requests.
"""

from __future__ import annotations

import math
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp, Resampling
from rasterio.warp import calculate_default_transform, reproject

from embeddings_store.grid import HALF_WORLD
from embeddings_store.imagery import GeoTiffImagery, Imagery, ImageryError, open_imagery
from tests.embeddings_store.imagery.helpers import (
    DEG_PER_PX,
    USA,
    USA_TRANSFORM,
    Server,
    footprint,
    mean_abs_diff,
    origin,
    write_tif,
)


def world_pixel(world: np.ndarray, lon: float, lat: float) -> np.ndarray:
    return world[int((90 - lat) / DEG_PER_PX), int((lon + 180) / DEG_PER_PX)]


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
