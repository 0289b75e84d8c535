"""Plain-language facts about scored places: the nearest named place, the place's rank on its
map and how confident the model is there; and place names for labels and search. Blocking."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from embeddings_store.places import NEAR_KM, PlaceIndex
from model.metadata import Metadata
from model.scoring import QueryEmbedding
from server.tiles import TileService, percentile_in

# Confidence from a cell's uncertainty among its map's land cells: the lowest third is "high".
CONFIDENCE_THIRDS = (33, 67)


def place_names(lat: np.ndarray, lon: np.ndarray) -> list[dict[str, str] | None]:
    """The nearest populated place within `NEAR_KM` of each point (None where none or NaN)."""
    out: list[dict[str, str] | None] = [None] * len(lat)
    ok = np.flatnonzero(np.isfinite(lat) & np.isfinite(lon))
    if ok.size == 0:
        return out
    index = PlaceIndex.load()
    idx, km = index.nearest(np.asarray(lat)[ok], np.asarray(lon)[ok])
    for i, j, d in zip(ok.tolist(), idx.tolist(), km.tolist(), strict=True):
        if d <= NEAR_KM:
            out[i] = index.place(j).short()
    return out


def confidence_words(uncertainty: np.ndarray, summary: np.ndarray) -> list[str | None]:
    """'high' / 'medium' / 'low' confidence from uncertainty terciles (None where unknown)."""
    low, high = summary[CONFIDENCE_THIRDS[0]], summary[CONFIDENCE_THIRDS[1]]
    return [
        None if not np.isfinite(u) else "high" if u <= low else "medium" if u <= high else "low"
        for u in np.asarray(uncertainty, np.float64)
    ]


def describe_results(
    tiles: TileService, query_id: str, query: QueryEmbedding, meta: Metadata, ds: xr.Dataset
) -> list[dict[str, Any]]:
    """Per scored row: `place`, `percentile` (share of the map's land places scoring lower,
    0..100) and `confidence`; null where the row has no cell."""
    score = np.asarray(ds["score"].values, np.float64)
    lat = np.asarray(ds["cell_lat"].values if "cell_lat" in ds else ds["lat"].values)
    lon = np.asarray(ds["cell_lon"].values if "cell_lon" in ds else ds["lon"].values)
    percentile = percentile_in(tiles.summary(query_id, query, meta), score)
    confidence = confidence_words(ds["uncertainty"].values, tiles.summary(None, None, meta))
    places = place_names(lat, lon)
    return [
        {
            "place": places[i] if np.isfinite(score[i]) else None,
            "percentile": round(float(percentile[i]), 1) if np.isfinite(score[i]) else None,
            "confidence": confidence[i] if np.isfinite(score[i]) else None,
        }
        for i in range(score.shape[0])
    ]


def largest_places(bbox: tuple[float, float, float, float], limit: int) -> list[dict[str, Any]]:
    """The most populous places in a bbox, as /places answers them."""
    return [vars(p) for p in PlaceIndex.load().largest_in(bbox, limit)]


def search_places_named(text: str, limit: int) -> list[dict[str, Any]]:
    """Places named like the text, as /places/search answers them."""
    return [vars(p) for p in PlaceIndex.load().search(text, limit)]
