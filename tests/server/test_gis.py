"""Maps that leave the browser, against the live test service: the COG export, /point,
GeoJSON similarity, fixed colour ranges (rescale, scale=absolute), and the WMTS and GDAL WMS
descriptions opened by real GDAL (rasterio's WMS and WMTS drivers)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import mercantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from tests.server.helpers import decode_tile

INNER = (-103.0, 37.0, -100.5, 39.0)  # well inside the store's BBOX
META = {"month": 6, "hour": 12, "asource": "inat"}


@pytest.fixture(scope="module")
def qid(client) -> str:
    r = client.post("/queries", json={"text": "wind over dry grassland"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["wmts"] == f"/queries/{out['id']}/WMTSCapabilities.xml"
    assert out["gdal"] == f"/queries/{out['id']}/gdal.xml"
    return out["id"]


@pytest.fixture(scope="module")
def cog(client, qid, tmp_path_factory) -> Path:
    bbox = ",".join(map(str, INNER))
    r = client.get(f"/maps/{qid}.tif", params={"bbox": bbox, "level": 5, **META}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/tiff")
    assert f"soundscape-{qid}-psm5.tif" in r.headers["content-disposition"]
    path = tmp_path_factory.mktemp("cog") / "map.tif"
    path.write_bytes(r.content)
    return path


def point_values(client, qid: str, lon: float, lat: float, psm: int, **meta) -> dict:
    r = client.get(f"/point/{lon},{lat}", params={"query": qid, **meta})
    assert r.status_code == 200, r.text
    (level,) = [lv for lv in r.json()["levels"] if lv["psm_zoom"] == psm]
    return level


# -- COG export -------------------------------------------------------------------------------
def test_cog_is_valid_with_named_bands_crs_bounds_and_tags(cog: Path, qid: str) -> None:
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _warnings = cog_validate(str(cog))
    assert valid, errors
    with rasterio.open(cog) as src:
        assert src.count == 3 and src.dtypes == ("float32",) * 3
        assert src.descriptions == ("score", "probability", "uncertainty")
        assert src.crs.to_epsg() == 3857
        assert np.isnan(src.nodata)
        tags = src.tags()
        assert tags["query"] == qid and tags["psm_zoom"] == "5"
        assert tags["metadata"] == "m6h12ainatt-l1" and tags["model_id"].startswith("psm-")
        assert tags["bbox"] == ",".join(map(str, INNER))
        # The raster covers the bbox (whole cells around it) and no more than a cell beyond.
        w, s, e, n = INNER
        (x0, x1), (y0, y1) = warp_transform("EPSG:4326", "EPSG:3857", [w, e], [s, n])
        b, cell = src.bounds, src.res[0]
        assert b.left <= x0 + cell and b.right >= x1 - cell
        assert b.bottom <= y0 + cell and b.top >= y1 - cell
        assert b.left > x0 - 2 * cell and b.right < x1 + 2 * cell
        score = src.read(1)
        assert np.isfinite(score).mean() > 0.9


def test_cog_score_equals_point_and_similarity(client, cog: Path, qid: str) -> None:
    with rasterio.open(cog) as src:
        bands = src.read()
        rows, cols = np.nonzero(np.isfinite(bands[0]))
        picks = np.linspace(0, rows.size - 1, 6).round().astype(int)
        xs, ys = rasterio.transform.xy(src.transform, rows[picks], cols[picks])
    lons, lats = warp_transform("EPSG:3857", "EPSG:4326", list(xs), list(ys))
    body = {"query": {"id": qid}, "points": [[la, lo] for la, lo in zip(lats, lons, strict=True)],
            "level": 5, "metadata": META}  # fmt: skip
    sim = client.post("/similarity", json=body).json()["results"]
    for i, (lon, lat) in enumerate(zip(lons, lats, strict=True)):
        r, c = rows[picks[i]], cols[picks[i]]
        at = point_values(client, qid, lon, lat, 5, **META)
        for band, name in enumerate(("score", "probability", "uncertainty")):
            assert at[name] == pytest.approx(float(bands[band, r, c]), abs=1e-4), name
            assert sim[i][name] == pytest.approx(float(bands[band, r, c]), abs=1e-4), name


def test_cog_reprojects_on_request(client, qid: str) -> None:
    params = {"bbox": "-102,37.5,-101,38.5", "level": 5}
    native = client.get(f"/maps/{qid}.tif", params=params)
    r = client.get(f"/maps/{qid}.tif", params=params | {"crs": "EPSG:4326"})
    assert r.status_code == 200, r.text
    with rasterio.MemoryFile(native.content) as mem, mem.open() as src:
        want = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        values = src.read(1)
    with rasterio.MemoryFile(r.content) as mem, mem.open() as src:
        assert src.crs.to_epsg() == 4326
        assert src.bounds == pytest.approx(want, abs=src.res[0])
        # Nearest-neighbour warping keeps each cell's value.
        warped = src.read(1)
        assert set(np.unique(warped[np.isfinite(warped)])) <= set(np.unique(values))


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"bbox": "-102,37,-101"}, 422, "bbox"),
        ({"bbox": "-101,37,-102,38"}, 422, "west"),
        ({"bbox": "-102,37,-101,38", "crs": "EPSG:999999"}, 422, "unknown CRS"),
        ({"bbox": "-102,37,-101,38", "hour": 24}, 422, "hour"),
        ({"bbox": "10,10,11,11", "level": 5}, 404, "no cell"),
        ({"bbox": "-179,-80,179,80", "level": 1}, 413, "at most 2000000"),
    ],
)
def test_map_bad_input(client, qid: str, params: dict, status: int, words: str) -> None:
    r = client.get(f"/maps/{qid}.tif", params=params)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_map_unknown_query_is_404(client) -> None:
    r = client.get("/maps/txt-" + "0" * 24 + ".tif", params={"bbox": "-102,37,-101,38"})
    assert r.status_code == 404


# -- /point and GeoJSON -----------------------------------------------------------------------
def test_point_every_level_and_outside(client, qid: str) -> None:
    r = client.get("/point/-101.5,38.2", params={"query": qid, "hour": 5})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["lon"], out["lat"], out["query"]) == (-101.5, 38.2, qid)
    assert [lv["psm_zoom"] for lv in out["levels"]] == [1, 5]
    for lv in out["levels"]:
        assert lv["score"] is not None and 0 <= lv["probability"] <= 1 and lv["uncertainty"] > 0
        cell = lv["cell"]
        assert abs(cell["lon"] + 101.5) < 0.5 and abs(cell["lat"] - 38.2) < 0.5
        x, y = mercantile.xy(cell["lon"], cell["lat"])
        assert (cell["x"], cell["y"]) == pytest.approx((x, y), abs=1e-3)
    outside = client.get("/point/20,10", params={"query": qid}).json()
    assert all(lv["score"] is None and lv["cell"] is None for lv in outside["levels"])
    for bad in ("/point/200,10", "/point/10,-91", "/point/a,b"):
        assert client.get(bad, params={"query": qid}).status_code == 422, bad
    assert client.get("/point/10,10").status_code == 422  # query is required


def test_similarity_geojson_equals_json(client, qid: str) -> None:
    body = {"query": {"id": qid}, "bbox": list(INNER), "top_k": 7, "level": 5, "metadata": META}
    plain = client.post("/similarity", json=body).json()["results"]
    r = client.post("/similarity", json=body | {"format": "geojson"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 7
    assert fc["properties"]["query"] == qid and fc["properties"]["psm_zoom"] == 5
    assert fc["properties"]["exact"] is True and fc["properties"]["searched_cells"] >= 7
    for rank, (feat, row) in enumerate(zip(fc["features"], plain, strict=True), start=1):
        assert feat["geometry"]["type"] == "Point"
        assert feat["geometry"]["coordinates"] == pytest.approx([row["lon"], row["lat"]])
        assert feat["properties"]["rank"] == rank
        assert feat["properties"]["score"] == pytest.approx(row["score"])
    r = client.post("/similarity", json=body | {"format": "shapefile"})
    assert r.status_code == 422


# -- fixed colour ranges ----------------------------------------------------------------------
def inner_tile(z: int) -> tuple[int, int, int]:
    t = mercantile.tile(-101.7, 38.1, z)
    return z, t.x, t.y


def tile(client, qid: str, z: int, x: int, y: int, **params) -> bytes:
    r = client.get(f"/tiles/{qid}/{z}/{x}/{y}.png", params=params)
    assert r.status_code == 200, r.text
    return r.content


def test_rescale_maps_min_to_first_and_max_to_last_colour(client, qid: str) -> None:
    z, x, y = inner_tile(7)
    lg = client.get("/legend", params={"query": qid, **META}).json()
    lo, hi = lg["min"], lg["max"]
    default = decode_tile(tile(client, qid, z, x, y, **META))
    covered = default > 0
    assert covered.mean() > 0.5
    # rescale = the map's own range draws exactly the default tile.
    same = decode_tile(tile(client, qid, z, x, y, rescale=f"{lo!r},{hi!r}", **META))
    np.testing.assert_array_equal(same, default)
    # Reversed: the ramp runs the other way (palette 1..255 mirrored, to rounding).
    rev = decode_tile(tile(client, qid, z, x, y, rescale=f"{hi!r},{lo!r}", **META))
    assert np.abs(rev[covered].astype(int) - (256 - default[covered].astype(int))).max() <= 1
    # Everything above max: the last colour; everything below min: the first.
    top = decode_tile(tile(client, qid, z, x, y, rescale="-90000,-80000", **META))
    assert set(np.unique(top[covered])) == {255}
    bottom = decode_tile(tile(client, qid, z, x, y, rescale="80000,90000", **META))
    assert set(np.unique(bottom[covered])) == {1}
    # min = max draws a step at that value: first colour below, last at or above.
    mid = (lo + hi) / 2
    step = decode_tile(tile(client, qid, z, x, y, rescale=f"{mid!r},{mid!r}", **META))
    assert set(np.unique(step[covered])) == {1, 255}
    assert ((step == 255) == (default >= 128))[covered].mean() > 0.97
    # The legend reports the rescaled range.
    lg2 = client.get("/legend", params={"query": qid, "rescale": f"{hi},{lo}"}).json()
    assert (lg2["min"], lg2["max"]) == (hi, lo)


@pytest.mark.parametrize("bad", ["1", "1,2,3", "a,b", "1e999,0", "nan,1", "1,,2", "1;2"])
def test_rescale_bad_values_are_422(client, qid: str, bad: str) -> None:
    z, x, y = inner_tile(7)
    for path in (f"/tiles/{qid}/{z}/{x}/{y}.png", f"/uncertainty/{z}/{x}/{y}.png", "/legend"):
        r = client.get(path, params={"rescale": bad})
        assert r.status_code == 422, (path, bad, r.text)
        assert "rescale" in r.json()["detail"]


def test_absolute_scale_is_one_range_for_every_hour_and_month(client, qid: str) -> None:
    ranges = []
    for meta in ({"hour": 3}, {"hour": 15}, {"month": 2, "hour": 22}, {}):
        lg = client.get("/legend", params={"query": qid, "scale": "absolute", **meta}).json()
        assert lg["scale"] == "absolute"
        ranges.append((lg["min"], lg["max"]))
    assert len(set(ranges)) == 1, ranges
    lo, hi = ranges[0]
    # An absolute tile is drawn in exactly that range, whatever the hour.
    z, x, y = inner_tile(7)
    for hour in (3, 15):
        absolute = tile(client, qid, z, x, y, scale="absolute", hour=hour)
        fixed = tile(client, qid, z, x, y, rescale=f"{lo!r},{hi!r}", hour=hour)
        assert absolute == fixed
    # Other metadata (an audio source) is a different sweep, so a different range.
    other = client.get("/legend", params={"query": qid, "scale": "absolute", "asource": "yfcc"})
    assert other.status_code == 200
    # An hour's relative range lies within (or close to) the absolute one.
    rel = client.get("/legend", params={"query": qid, "hour": 3}).json()
    span = hi - lo
    assert rel["min"] > lo - span and rel["max"] < hi + span


# -- GIS clients: GDAL's WMS and WMTS drivers against the live service ------------------------
def rgba(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).transpose(2, 0, 1)


def check_gdal_raster(client, src, qid: str, z: int, params: dict, store_path: Path) -> None:
    """A tile-aligned window of the GDAL raster at its full resolution equals our tile, and
    the store's west edge lies where /point says it does."""
    assert src.crs.to_epsg() == 3857 and src.count == 4
    assert src.res == pytest.approx((mercantile.CE / (256 << z),) * 2, rel=1e-9)
    zz, x, y = inner_tile(z)
    b = mercantile.xy_bounds(x, y, zz)
    row, col = src.index(b.left + 1, b.top - 1)
    window = Window(col, row, 256, 256)
    got = src.read(window=window)
    want = rgba(tile(client, qid, zz, x, y, **params))
    np.testing.assert_array_equal(got, want)
    # The store's valid mask ends at a known cell edge: opaque just east, clear just west.
    psm = params.get("level", 5)
    edge_x, lat = west_edge(store_path, psm, 38.0)
    quarter = cell_size(store_path, psm) / 4
    _, y_m = mercantile.xy(0.0, lat)
    for x_m, inside in ((edge_x + quarter, True), (edge_x - quarter, False)):
        r, c = src.index(x_m, y_m)
        alpha = src.read(4, window=Window(c, r, 1, 1))[0, 0]
        lon, _ = mercantile.lnglat(x_m, y_m)
        at = point_values(client, qid, lon, lat, psm)
        assert (alpha == 255) == inside == (at["score"] is not None), (lon, alpha, at)


def _level(store_path: Path, psm: int):
    from embeddings_store.store import EmbeddingStore

    store = EmbeddingStore.open(store_path)
    (level,) = [lv for lv in store.levels if lv.psm_zoom == psm]
    return store, level


def cell_size(store_path: Path, psm: int) -> float:
    return _level(store_path, psm)[1].cell_size


def west_edge(store_path: Path, psm: int, lat: float) -> tuple[float, float]:
    """EPSG:3857 x of the west edge of the westmost valid cell in the row at `lat`, and that
    row's centre latitude (from the store's own valid mask)."""
    store, level = _level(store_path, psm)
    ext = store.extent(psm)
    _, cy = level.cell_of_lonlat(np.array([0.0]), np.array([lat]))
    row = int(cy[0]) - ext.cy0
    valid = np.asarray(store.array(psm, "valid")[row, :], bool)
    cx = ext.cx0 + int(np.flatnonzero(valid)[0])
    x = float(level.cell_centers_x(np.array([cx]))[0]) - level.cell_size / 2
    return x, float(level.cell_centers_lat(cy)[0])


def test_gdal_wms_xml_opens_in_gdal_and_reads_our_tiles(
    client, service, qid, tmp_path, tiny_store
) -> None:
    params = {"level": 5, "hour": 7, "colormap": "magma"}
    r = client.get(f"/queries/{qid}/gdal.xml", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert root.tag == "GDAL_WMS" and root.find("Service").get("name") == "TMS"
    url = root.findtext("Service/ServerUrl")
    assert url.startswith(f"{service.url}/tiles/{qid}/${{z}}/${{x}}/${{y}}.png?")
    assert "hour=7" in url and "colormap=magma" in url and "level=5" in url
    assert root.findtext("OverviewCount") == "11"  # web zooms 4..15 of PSM zoom 5
    path = tmp_path / "map.xml"
    path.write_bytes(r.content)
    with rasterio.open(path) as src:
        check_gdal_raster(client, src, qid, 15, params, tiny_store)
        assert len(src.overviews(1)) == 11
    unc = client.get(f"/queries/{qid}/gdal.xml", params={"layer": "uncertainty", "hour": 7})
    assert "/uncertainty/${z}/${x}/${y}.png?hour=7" in unc.text


def test_wmts_capabilities_open_in_gdal(client, service, qid, tmp_path, tiny_store) -> None:
    params = {"level": 5, "month": 4, "scale": "probability"}
    r = client.get(f"/queries/{qid}/WMTSCapabilities.xml", params=params)
    assert r.status_code == 200, r.text
    ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    root = ET.fromstring(r.content)
    assert root.get("version") == "1.0.0"
    layers = {el.findtext("ows:Identifier", namespaces=ns): el
              for el in root.iterfind("w:Contents/w:Layer", ns)}  # fmt: skip
    assert set(layers) == {"heatmap", "uncertainty"}
    template = layers["heatmap"].find("w:ResourceURL", ns).get("template")
    assert template.startswith(f"{service.url}/tiles/{qid}/{{TileMatrix}}/{{TileCol}}/")
    assert "month=4" in template and "scale=probability" in template
    unc_template = layers["uncertainty"].find("w:ResourceURL", ns).get("template")
    assert "month=4" in unc_template and "scale=" not in unc_template
    matrices = root.findall("w:Contents/w:TileMatrixSet/w:TileMatrix", ns)
    assert [m.findtext("ows:Identifier", namespaces=ns) for m in matrices] == [
        str(z) for z in range(4, 16)
    ]
    path = tmp_path / "wmts.xml"
    path.write_bytes(r.content)
    with rasterio.open(f"WMTS:{path},layer=heatmap") as src:
        check_gdal_raster(client, src, qid, 15, params, tiny_store)


@pytest.mark.parametrize("route", ["gdal.xml", "WMTSCapabilities.xml", "tilejson.json"])
def test_gis_descriptions_bad_input(client, qid: str, route: str) -> None:
    assert client.get(f"/queries/txt-{'0' * 24}/{route}").status_code == 404
    assert client.get(f"/queries/{qid}/{route}", params={"hour": 30}).status_code == 422
    assert client.get(f"/queries/{qid}/{route}", params={"level": 2}).status_code == 422
    assert client.get(f"/queries/{qid}/{route}", params={"rescale": "x"}).status_code == 422
    assert client.get(f"/queries/not a query/{route}").status_code == 422


def test_tilejson_is_typed_and_carries_parameters(client, qid: str) -> None:
    params = {"hour": 3, "scale": "absolute", "rescale": "-5,5"}
    tj = client.get(f"/queries/{qid}/tilejson.json", params=params).json()
    assert set(tj) == {"tilejson", "name", "description", "version", "attribution", "scheme",
                       "tiles", "minzoom", "maxzoom", "bounds", "center"}  # fmt: skip
    assert "hour=3" in tj["tiles"][0] and "scale=absolute" in tj["tiles"][0]
    assert "rescale=-5%2C5" in tj["tiles"][0]
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "TileJSON" in schema
