"""Which sounds are heard where and when in the demo world (docs/ARCHITECTURE.md, "The demo").

A sound class's unnormalised rate at a place and time is a product of four smooth factors,

    rate_c = prior_c * place_c(land cover, urban, coast, fresh water, latitude)
                     * season_c(temperature proxy, local month, latitude)
                     * diel_c(hour, sunrise/sunset at that latitude and month)  + floor,

and the class distribution is the rates normalised to sum to 1. The floor keeps every class
possible everywhere. Season uses the *local* month (shifted by six months south of the equator)
and a latitude-based temperature proxy, so high-latitude winters are quiet; dawn-anchored classes
(songbirds, rooster) follow the real sunrise, clipped to early morning so the structure stays
recognisable at polar latitudes. Hours are local solar time.

Summary of the rules:

* songbirds: forests, woodland, cropland mosaics, urban parks; dawn chorus plus a dusk peak;
  breeding season in spring/summer; almost silent in cold winters.
* insects: warm places and months (temperature proxy above ~14 C); chorus in the evening/night.
* frogs: wetlands, lakes and rivers (MODIS wetland/water nearby) and humid forests; warm months,
  evening/night.
* farm animals, rooster: croplands and grazing land, rural; rooster peaks at dawn.
* road traffic, horns/sirens, crowd, construction: urban density; rush hours 7-9 and 16-19,
  construction in working hours, crowds by day and evening, little at night.
* waves: within a few km of the coast (and at sea); stormier in mid/high-latitude winters.
* wind: open, barren, snow and grassland, the sea and high latitudes; windier in winter.
* rain/thunder: tropics and humid forests, wet season in local summer; afternoon thunderstorms
  when warm; rare in deserts and quiet when freezing.
* bells: towns and villages, by day, peaks at 7, 12 and 18.
* stream: forests and wetlands; frozen in cold winters, snow-melt peak in spring.
"""

from __future__ import annotations

import numpy as np

from embeddings_store.demo import CLASS_NAMES
from embeddings_store.demo.geo import GeoLayers

N_CLASSES = len(CLASS_NAMES)
C = {name: i for i, name in enumerate(CLASS_NAMES)}

AUDIO_SOURCES: tuple[str, ...] = ("yfcc", "inat", "aporee", "freesound")
CAPTION_SOURCES: tuple[str, ...] = ("meta", "qwen", "pengi")
FREESOUND = AUDIO_SOURCES.index("freesound")

# Small rate every class keeps everywhere and always (the "background floor").
FLOOR = 0.004

# Ground truth "class likely here": the year- and day-averaged probability is at least
# max(LIKELY_QUANTILE quantile of that class over the world's land, LIKELY_MIN_PROB).
LIKELY_QUANTILE = 0.75
LIKELY_MIN_PROB = 0.05

# For classes whose occurrence depends on the hour: (hours when it is likely, hours when it is
# not) at a place where the class occurs; insects, frogs and rain/thunder in warm months.
TIME_DEPENDENT: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    C["songbirds"]: ((5, 6), (23, 0, 1)),
    C["insects"]: ((21, 22, 23), (11, 12, 13)),
    C["frogs"]: ((21, 22, 23), (11, 12, 13)),
    C["rooster"]: ((5, 6, 7), (13, 14, 15)),
    C["road_traffic"]: ((8, 17), (2, 3, 4)),
    C["horns_sirens"]: ((9, 18), (3, 4)),
    C["crowd"]: ((12, 19), (3, 4)),
    C["construction"]: ((10, 14), (1, 2, 22)),
    C["bells"]: ((12,), (2, 3)),
    C["rain_thunder"]: ((15, 16, 17), (7, 8, 9)),
}

# Habitat suitability (0..1) of each MODIS IGBP land-cover class (rows 0..16) for the classes
# whose presence follows land cover. Row 0 describes inland water (lakes); the open sea is
# handled by the distance to land.
_HABITAT_CLASSES = (
    "songbirds",
    "insects",
    "frogs",
    "farm_animals",
    "rooster",
    "road_traffic",
    "wind",
    "rain_thunder",
    "stream",
)
# fmt: off
_HABITAT_TABLE = np.array([
    #  birds insect  frogs   farm  roost   road   wind   rain stream
    [ 0.30,  0.30,  0.80,  0.05,  0.05,  0.20,  0.50,  0.60,  0.40],  #  0 water (lakes)
    [ 0.90,  0.50,  0.30,  0.10,  0.05,  0.30,  0.25,  0.70,  0.90],  #  1 evergreen needleleaf
    [ 1.00,  1.00,  0.60,  0.05,  0.10,  0.20,  0.10,  1.00,  0.80],  #  2 evergreen broadleaf
    [ 0.80,  0.40,  0.30,  0.10,  0.05,  0.20,  0.25,  0.60,  0.90],  #  3 deciduous needleleaf
    [ 1.00,  0.70,  0.40,  0.15,  0.10,  0.40,  0.20,  0.70,  0.80],  #  4 deciduous broadleaf
    [ 1.00,  0.60,  0.40,  0.15,  0.10,  0.40,  0.20,  0.70,  0.85],  #  5 mixed forest
    [ 0.60,  0.60,  0.15,  0.20,  0.20,  0.40,  0.40,  0.50,  0.45],  #  6 closed shrubland
    [ 0.35,  0.40,  0.05,  0.20,  0.15,  0.40,  0.80,  0.25,  0.15],  #  7 open shrubland
    [ 0.90,  0.90,  0.35,  0.30,  0.35,  0.40,  0.30,  0.80,  0.50],  #  8 woody savanna
    [ 0.70,  1.00,  0.25,  0.45,  0.45,  0.40,  0.55,  0.70,  0.30],  #  9 savanna
    [ 0.50,  0.80,  0.20,  0.70,  0.40,  0.50,  0.80,  0.60,  0.30],  # 10 grassland
    [ 0.70,  0.90,  1.00,  0.15,  0.15,  0.20,  0.50,  0.80,  0.60],  # 11 permanent wetland
    [ 0.60,  0.70,  0.35,  1.00,  1.00,  0.60,  0.40,  0.60,  0.25],  # 12 cropland
    [ 0.45,  0.20,  0.05,  0.15,  0.30,  1.00,  0.10,  0.50,  0.10],  # 13 urban
    [ 0.85,  0.80,  0.40,  0.90,  1.00,  0.60,  0.30,  0.70,  0.40],  # 14 crop/natural mosaic
    [ 0.00,  0.00,  0.00,  0.00,  0.00,  0.05,  1.00,  0.20,  0.15],  # 15 snow and ice
    [ 0.05,  0.05,  0.01,  0.02,  0.02,  0.30,  1.00,  0.08,  0.05],  # 16 barren
])
# fmt: on
_HAB = {c: _HABITAT_TABLE[:, j] for j, c in enumerate(_HABITAT_CLASSES)}

# Overall loudness/frequency of each class, balancing how often it is drawn world-wide.
_PRIOR = np.array(
    [1.3, 0.8, 1.5, 0.6, 0.9, 1.0, 0.8, 1.3, 1.5, 1.0, 0.4, 0.6, 1.4, 0.6], dtype=np.float64
)

# P(audio source | class): yfcc, inat, aporee, freesound (iNat for animals, Freesound for
# machines/sirens, aporee for city and ambience, YFCC mixed).
_SOURCE_GIVEN_CLASS = np.array(
    [
        [0.25, 0.50, 0.21, 0.04],  # songbirds
        [0.25, 0.45, 0.25, 0.05],  # insects
        [0.22, 0.50, 0.24, 0.04],  # frogs
        [0.45, 0.08, 0.41, 0.06],  # farm_animals
        [0.45, 0.05, 0.44, 0.06],  # rooster
        [0.35, 0.00, 0.58, 0.07],  # road_traffic
        [0.30, 0.00, 0.52, 0.18],  # horns_sirens
        [0.42, 0.00, 0.53, 0.05],  # crowd
        [0.28, 0.00, 0.53, 0.19],  # construction
        [0.45, 0.00, 0.48, 0.07],  # waves
        [0.35, 0.00, 0.57, 0.08],  # wind
        [0.35, 0.00, 0.55, 0.10],  # rain_thunder
        [0.40, 0.00, 0.55, 0.05],  # bells
        [0.38, 0.04, 0.53, 0.05],  # stream
    ]
)
# P(caption source | audio source): meta, qwen, pengi.
_CAPTION_GIVEN_SOURCE = np.array(
    [[0.35, 0.40, 0.25], [0.60, 0.25, 0.15], [0.45, 0.35, 0.20], [0.55, 0.30, 0.15]]
)
_EXTRA_UNKNOWN_HOUR = 0.03  # besides Freesound, which never has a recording hour


def _sig(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _bump(h: np.ndarray, center: np.ndarray | float, width: float) -> np.ndarray:
    """Gaussian bump on the 24-hour circle."""
    d = np.mod(h - center + 12.0, 24.0) - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


def _window(h: np.ndarray, start: float, end: float, edge: float = 0.8) -> np.ndarray:
    """Smooth indicator of start <= h <= end (hours, same day)."""
    return _sig((h - start) / edge) * _sig((end - h) / edge)


def local_month(month: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Month in the local seasonal calendar: shifted by six months south of the equator."""
    return np.where(lat < 0, np.mod(month + 5, 12) + 1, month)


def temperature_c(lat: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Rough mean air temperature (deg C) from latitude and month: a seasonal-quietness proxy."""
    a = np.abs(lat)
    annual = 27.0 - 0.45 * np.maximum(a - 12.0, 0.0)
    amplitude = 0.28 * np.maximum(a - 8.0, 0.0)
    return annual + amplitude * np.cos(2 * np.pi * (local_month(month, lat) - 7) / 12)


def sun_times(lat: np.ndarray, month: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local solar sunrise and sunset hours in the middle of the month."""
    doy = 30.44 * (month - 0.5)
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (doy - 81) / 365.0)
    phi = np.deg2rad(np.clip(lat, -89.9, 89.9))
    cos_w = np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0)
    half_day = np.rad2deg(np.arccos(cos_w)) / 15.0
    return 12.0 - half_day, 12.0 + half_day


def _place_factors(feats: dict[str, np.ndarray], lat: np.ndarray) -> np.ndarray:
    """(N, 14) time-independent factor of each class at each place, including the prior."""
    lc = np.clip(np.asarray(feats["landcover"]).astype(np.intp).reshape(-1), 0, 16)
    land = np.asarray(feats["land"]).astype(bool).reshape(-1)
    u = np.clip(np.asarray(feats["urban"], dtype=np.float64).reshape(-1), 0.0, 1.0)
    coast = np.maximum(np.asarray(feats["coast_km"], dtype=np.float64).reshape(-1), 0.0)
    fw = feats.get("fresh_water")
    fw = np.zeros_like(u) if fw is None else np.asarray(fw, dtype=np.float64).reshape(-1)
    alat = np.abs(lat)
    # Land sounds fade within a few km offshore.
    landness = np.where(land, 1.0, np.exp(-coast / 2.0))
    near_coast = np.exp(-coast / 3.0)

    # zeros, not empty: the waves/wind/rain columns are only filled after the landness scaling
    f = np.zeros((lat.size, N_CLASSES))
    f[:, C["songbirds"]] = _HAB["songbirds"][lc] * (1 - 0.5 * u**2)
    f[:, C["insects"]] = _HAB["insects"][lc] * (1 - 0.7 * u)
    f[:, C["frogs"]] = (0.4 * _HAB["frogs"][lc] + fw) * (1 - 0.8 * u)
    f[:, C["farm_animals"]] = _HAB["farm_animals"][lc] * (1 - u) ** 2
    # Roosters live in villages too, not only on farms.
    f[:, C["rooster"]] = _HAB["rooster"][lc] * (1 - u) ** 1.5 * (0.6 + 1.2 * u)
    f[:, C["road_traffic"]] = 0.06 * _HAB["road_traffic"][lc] + 1.3 * u**0.8
    f[:, C["horns_sirens"]] = 1.1 * u**2
    f[:, C["crowd"]] = 0.02 + u**1.5
    f[:, C["construction"]] = 0.7 * u**1.5
    f[:, C["bells"]] = 0.02 + u * (1.2 - 0.6 * u)
    f[:, C["stream"]] = 0.6 * _HAB["stream"][lc] * (1 - 0.8 * u)
    f *= landness[:, None]
    # Waves, wind and rain are heard at sea as well.
    lake = land & (lc == 0)
    f[:, C["waves"]] = np.where(land, 1.6 * near_coast + 0.15 * fw * lake, 0.5 + 1.1 * near_coast)
    f[:, C["wind"]] = np.where(land, _HAB["wind"][lc], 0.8) * (0.6 + 0.8 * alat / 90.0)
    tropics = np.exp(-((lat / 18.0) ** 2))
    f[:, C["rain_thunder"]] = np.where(land, _HAB["rain_thunder"][lc], 0.6) * (0.4 + 0.8 * tropics)
    return f * _PRIOR


def _season_factors(lat: np.ndarray, month: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """(N, 14) seasonal factor of each class for one month per row."""
    m = local_month(month, lat)
    alat = np.abs(lat)
    seasonality = np.minimum(1.0, alat / 30.0)  # the tropics have weak seasons
    mid_lat = np.minimum(1.0, alat / 40.0)
    summer = np.cos(2 * np.pi * (m - 7) / 12)  # +1 in local July, -1 in local January
    spring = np.cos(2 * np.pi * (m - 5.5) / 12)
    s = np.ones((lat.size, N_CLASSES))
    s[:, C["songbirds"]] = 0.03 + 0.97 * _sig((temp - 6) / 2.5) * (
        0.65 + 0.35 * spring * seasonality
    )
    s[:, C["insects"]] = _sig((temp - 14) / 3)
    s[:, C["frogs"]] = _sig((temp - 11) / 3) * (0.75 + 0.25 * spring * seasonality)
    s[:, C["farm_animals"]] = 0.5 + 0.5 * _sig(temp / 4)
    s[:, C["rooster"]] = 0.6 + 0.4 * _sig(temp / 4)
    s[:, C["crowd"]] = 0.75 + 0.25 * _sig((temp - 12) / 5)
    s[:, C["construction"]] = 0.55 + 0.45 * _sig(temp / 4)
    s[:, C["waves"]] = 1 - 0.3 * summer * mid_lat
    s[:, C["wind"]] = 1 - 0.35 * summer * mid_lat
    monsoon = np.minimum(1.0, alat / 10.0) * np.exp(-((lat / 25.0) ** 2))
    s[:, C["rain_thunder"]] = (1 + 0.7 * summer * monsoon) * (0.25 + 0.75 * _sig((temp + 1) / 2))
    melt = np.exp(-0.5 * (np.mod(m - 5 + 6, 12) - 6) ** 2)
    s[:, C["stream"]] = 0.2 + 0.8 * _sig((temp + 1) / 2) + 0.3 * melt * mid_lat
    return s


def _diel_factors(
    hour: np.ndarray, sunrise: np.ndarray, sunset: np.ndarray, temp: np.ndarray
) -> np.ndarray:
    """(N, 14) time-of-day factor of each class for one hour per row."""
    h = hour.astype(np.float64)
    daylight = _sig((h - sunrise) / 0.7) * _sig((sunset - h) / 0.7)
    # Anchor dawn/dusk to the sun but keep them in the early morning/evening at polar latitudes.
    dawn = np.clip(sunrise, 4.5, 6.5)
    dusk = np.clip(sunset, 17.0, 21.0)
    rush = _bump(h, 8.0, 1.2) + _bump(h, 17.5, 1.5)
    d = np.ones((h.size, N_CLASSES))
    d[:, C["songbirds"]] = (
        0.04 + _bump(h, dawn + 0.3, 1.2) + 0.35 * _bump(h, dusk - 0.5, 1.2) + 0.3 * daylight
    )
    d[:, C["insects"]] = 0.2 + 0.25 * daylight + _bump(h, 22.0, 2.5)
    d[:, C["frogs"]] = 0.08 + _bump(h, 21.5, 2.5)
    d[:, C["farm_animals"]] = (
        0.25 + 0.5 * _window(h, 6, 20) + 0.3 * (_bump(h, 7.0, 1.0) + _bump(h, 17.5, 1.0))
    )
    d[:, C["rooster"]] = 0.08 + 1.2 * _bump(h, np.clip(sunrise, 5.0, 6.5), 1.3) + 0.25 * daylight
    d[:, C["road_traffic"]] = 0.08 + 0.55 * _window(h, 6, 22) + 0.6 * rush
    d[:, C["horns_sirens"]] = 0.08 + 0.8 * _window(h, 7, 22) + 0.4 * rush
    d[:, C["crowd"]] = 0.06 + 0.9 * _window(h, 9, 22.5) + 0.3 * _bump(h, 19.0, 2.0)
    d[:, C["construction"]] = 0.03 + _window(h, 7.5, 17)
    d[:, C["wind"]] = 0.75 + 0.35 * _bump(h, 15.0, 3.5)
    convective = _sig((temp - 18) / 3)
    d[:, C["rain_thunder"]] = 0.55 + 0.9 * convective * _bump(h, 16.0, 2.5)
    d[:, C["bells"]] = (
        0.03
        + 0.35 * _window(h, 7, 20)
        + 0.4 * _bump(h, 7.0, 0.5)
        + 0.7 * _bump(h, 12.0, 0.5)
        + 0.45 * _bump(h, 18.0, 0.5)
    )
    return d


def _normalise(rates: np.ndarray) -> np.ndarray:
    """Rates plus the floor, normalised to probabilities per row."""
    rates = rates + FLOOR
    return rates / rates.sum(axis=1, keepdims=True)


def class_distribution(
    feats: dict[str, np.ndarray],
    lat: np.ndarray,
    month: np.ndarray | None,
    hour: np.ndarray | None,
) -> np.ndarray:
    """(N, 14) class probabilities; month/hour None (or <1 / <0 per row) are averaged over."""
    lat = np.asarray(lat, dtype=np.float64).reshape(-1)
    n = lat.size
    month_a = np.zeros(n, np.int64) if month is None else np.broadcast_to(month, (n,)).astype(int)
    hour_a = np.full(n, -1, np.int64) if hour is None else np.broadcast_to(hour, (n,)).astype(int)
    if np.any(month_a > 12) or np.any(hour_a > 23):
        raise ValueError("month must be 1..12 (or <1 for unknown), hour 0..23 (or <0)")
    place = _place_factors(feats, lat)
    out = np.empty((n, N_CLASSES))
    month_known = month_a >= 1
    hour_known = hour_a >= 0
    for mk in (True, False):
        for hk in (True, False):
            rows = np.flatnonzero((month_known == mk) & (hour_known == hk))
            if rows.size:
                out[rows] = _distribution_rows(
                    place[rows], lat[rows], month_a[rows], hour_a[rows], mk, hk
                )
    return out


def _distribution_rows(
    place: np.ndarray,
    lat: np.ndarray,
    month: np.ndarray,
    hour: np.ndarray,
    month_known: bool,
    hour_known: bool,
) -> np.ndarray:
    """Distribution for rows that all know (or all lack) month and hour; unknowns averaged."""
    # Season and diel factors depend only on (lat, month, hour): compute them once per distinct
    # combination (a map grid has few distinct latitudes), then broadcast to the rows.
    key = np.stack([lat, month.astype(np.float64), hour.astype(np.float64)], axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    ulat = uniq[:, 0]
    u_months = [uniq[:, 1]] if month_known else [np.full(ulat.size, m, float) for m in range(1, 13)]
    u_hours = [uniq[:, 2]] if hour_known else [np.full(ulat.size, h, float) for h in range(24)]
    acc = np.zeros((lat.size, N_CLASSES))
    for mm in u_months:
        temp = temperature_c(ulat, mm)
        sunrise, sunset = sun_times(ulat, mm)
        seasonal = place * _season_factors(ulat, mm, temp)[inv]
        for hh in u_hours:
            acc += _normalise(seasonal * _diel_factors(hh, sunrise, sunset, temp)[inv])
    return acc / (len(u_months) * len(u_hours))


def likely_thresholds(layers: GeoLayers) -> np.ndarray:
    """Per-class probability above which a class counts as "likely here" (memoised per layers)."""
    cached = layers.cache.get("likely_thresholds")
    if cached is not None:
        return cached
    # Reference: centres of the 1 deg cells over land between 60 S and 85 N (a fixed set, so the
    # thresholds do not depend on the query).
    lat1 = np.arange(-59.5, 85.0, 1.0)
    lon1 = np.arange(-179.5, 180.0, 1.0)
    glat, glon = (a.reshape(-1) for a in np.meshgrid(lat1, lon1, indexing="ij"))
    feats = layers.sample(glat, glon)
    keep = feats["land"]
    feats = {k: v[keep] for k, v in feats.items()}
    p = class_distribution(feats, glat[keep], None, None)
    thr = np.maximum(np.quantile(p, LIKELY_QUANTILE, axis=0), LIKELY_MIN_PROB)
    layers.cache["likely_thresholds"] = thr
    return thr


def class_likely_here(
    layers: GeoLayers,
    lat: np.ndarray,
    lon: np.ndarray,
    class_index: int,
    threshold: float | None = None,
) -> np.ndarray:
    """Ground truth "class likely here": its year- and day-averaged probability >= a threshold.

    The default threshold is per class: the larger of its 75th percentile over the world's land
    (1 deg reference grid, 60 S to 85 N) and LIKELY_MIN_PROB, so "likely" means both "in the top
    quarter of places for this class" and "not merely the background floor".
    """
    if not 0 <= class_index < N_CLASSES:
        raise ValueError(f"class_index must be in 0..{N_CLASSES - 1}")
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    shape = np.broadcast_shapes(lat.shape, lon.shape)
    lat_f = np.broadcast_to(lat, shape).reshape(-1)
    lon_f = np.broadcast_to(lon, shape).reshape(-1)
    p = class_distribution(layers.sample(lat_f, lon_f), lat_f, None, None)[:, class_index]
    thr = likely_thresholds(layers)[class_index] if threshold is None else threshold
    return (p >= thr).reshape(shape)


def _draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of `probs` (inverse CDF; deterministic given rng)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1)


Bbox = tuple[float, float, float, float]


def _location_pools(
    layers: GeoLayers, bbox: Bbox | None = None, land_weights: tuple[float, float] = (0.1, 10.0)
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(cell ids, cumulative weights) for land, coastal and sea sampling; land cells weigh
    area x (floor + town weight x urban density). Memoised per bbox and weights."""
    key = ("location_pools", bbox, land_weights)
    cached = layers.cache.get(key)
    if cached is not None:
        return cached
    rows = np.arange(layers.land.shape[0])
    lat_row = 90.0 - layers.res_deg * (rows + 0.5)
    area = np.broadcast_to(np.cos(np.deg2rad(lat_row))[:, None], layers.land.shape)
    inhabited = (lat_row > -60.0)[:, None]  # Antarctica has (almost) no recordings
    if bbox is not None:
        west, south, east, north = bbox
        if not (west < east and south < north):
            raise ValueError(f"bbox must be (west, south, east, north), got {bbox}")
        cols = np.arange(layers.land.shape[1])
        lon_col = -180.0 + layers.res_deg * (cols + 0.5)
        inhabited = (
            inhabited
            & ((lat_row >= south) & (lat_row <= north))[:, None]
            & ((lon_col >= west) & (lon_col <= east))[None, :]
        )
    pools = []
    # Recordings cluster where people are: weight land by area and urban density.
    land = layers.land & inhabited
    coastal = (layers.coast_km < 10.0) & inhabited
    sea = ~layers.land & (layers.coast_km < 300.0) & inhabited
    floor, town = land_weights
    for mask, extra in ((land, floor + town * layers.urban), (coastal, None), (sea, None)):
        ids = np.flatnonzero(mask)
        w = area.reshape(-1)[ids]
        if extra is not None:
            w = w * extra.reshape(-1)[ids]
        pools.append((ids, np.cumsum(w, dtype=np.float64)))
    if all(ids.size == 0 for ids, _ in pools):
        raise ValueError(f"the region {bbox} has no land, coast or sea cells to sample")
    layers.cache[key] = pools
    return pools


def sample_world(
    layers: GeoLayers,
    n: int,
    seed: int,
    bbox: Bbox | None = None,
    land_weights: tuple[float, float] = (0.1, 10.0),
) -> dict[str, np.ndarray]:
    """Draw n recordings: place, month, hour (-1 unknown), class, audio and caption source.

    Places are 80% land (weighted towards towns by `land_weights`, see `_location_pools`), 13%
    within 10 km of a coast and 7% at sea (within 300 km of land), optionally only inside `bbox`
    (west, south, east, north); the class is drawn from class_distribution at the true hour,
    which Freesound recordings (and 3% of the others) then lose.
    """
    rng = np.random.default_rng(seed)
    pools = _location_pools(layers, bbox, land_weights)
    # Inland regions have no coast or sea: their share goes to the pools that exist.
    mix = np.array([0.80, 0.13, 0.07]) * [ids.size > 0 for ids, _ in pools]
    comp = _draw(rng, np.broadcast_to(mix / mix.sum(), (n, 3)))
    cell = np.empty(n, np.int64)
    for k, (ids, cum) in enumerate(pools):
        sel = np.flatnonzero(comp == k)
        if sel.size == 0:  # drawing nothing leaves the generator's state as it was
            continue
        u = rng.random(sel.size) * cum[-1]
        cell[sel] = ids[np.minimum(np.searchsorted(cum, u, side="right"), ids.size - 1)]
    row, col = np.divmod(cell, layers.land.shape[1])
    lat = 90.0 - layers.res_deg * (row + rng.random(n))
    lon = -180.0 + layers.res_deg * (col + rng.random(n))
    month = rng.integers(1, 13, n)
    # People record more by day, but nights are well represented.
    hour_w = 0.5 + _window(np.arange(24.0), 7, 21)
    hour_true = _draw(rng, np.broadcast_to(hour_w / hour_w.sum(), (n, 24)))
    probs = class_distribution(layers.sample(lat, lon), lat, month, hour_true)
    cls = _draw(rng, probs)
    source = _draw(rng, _SOURCE_GIVEN_CLASS[cls])
    hour = np.where((source == FREESOUND) | (rng.random(n) < _EXTRA_UNKNOWN_HOUR), -1, hour_true)
    caption = _draw(rng, _CAPTION_GIVEN_SOURCE[source])
    return {
        "lat": lat,
        "lon": lon,
        "month": month.astype(np.int64),
        "hour": hour.astype(np.int64),
        "class_index": cls.astype(np.int64),
        "audio_source": source.astype(np.int64),
        "caption_source": caption.astype(np.int64),
    }


def class_posterior(probs: np.ndarray, audio_source: np.ndarray) -> np.ndarray:
    """p(class | place, time, audio source): the world's distribution times P(source | class).

    This is what an ideal model that sees all of a recording's metadata knows about its class
    (the caption source depends on the audio source only, so it adds nothing).
    """
    post = np.asarray(probs) * _SOURCE_GIVEN_CLASS[:, np.asarray(audio_source)].T
    return post / post.sum(axis=1, keepdims=True)


def split_of(lat: np.ndarray, lon: np.ndarray, seed: int = 0) -> np.ndarray:
    """'train'/'val'/'test' (80/10/10) by a seeded hash of the 1 deg x 1 deg cell, like GeoSound."""
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    ilat = np.clip(np.floor(lat), -90, 89).astype(np.int64) + 90
    ilon = np.floor(np.mod(lon + 180.0, 360.0)).astype(np.int64) % 360
    key = (ilat * 360 + ilon).astype(np.uint64)
    # Python ints for the seed so numpy never sees a scalar overflow.
    salt = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)
    u = _splitmix64(key ^ salt).astype(np.float64) / 2.0**64
    return np.where(u < 0.8, "train", np.where(u < 0.9, "val", "test"))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
