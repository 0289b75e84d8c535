"""The XYZ reader's disk tile cache: a second reader on the same folder makes no request."""

from __future__ import annotations

from pathlib import Path

from embeddings_store.imagery import open_imagery
from tests.embeddings_store.imagery.helpers import Server, footprint


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
