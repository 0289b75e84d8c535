"""The scoring engine: the store's levels as the web sees them, and every score the service
gives out, each one a call of `embeddings_store.scoring.score_region` over cached fused cells.

Blocking calls (run them in the executor).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import mercantile
import numpy as np
import torch
import xarray as xr

from embeddings_store.coverage import LevelCoverage, coverage_tag, level_coverage
from embeddings_store.export import cog_bytes
from embeddings_store.fusion import FusedCells, fuse_h_at
from embeddings_store.grid import (
    CellExtent,
    Level,
    auto_level_ranges,
    level_for_web_zoom,
    web_zoom_range,
)
from embeddings_store.places import PlaceIndex
from embeddings_store.scoring import (
    VARIABLES,
    BBox,
    Points,
    Region,
    cells_dataset,
    region_attrs,
    score_region,
    top_cells,
)
from embeddings_store.search import (
    Candidates,
    CellMatrix,
    SearchBudget,
    SearchResult,
    Surrogate,
    build_surrogate,
    location_features,
    sample_rows,
    search_top_k,
)
from embeddings_store.store import EmbeddingStore
from embeddings_store.timesweep import DEFAULT_SWEEP_CELLS, sweep_values, time_sweep
from model.checkpoint import calibration_digest
from model.errors import OutOfRangeError
from model.metadata import Metadata
from model.scoring import (
    QueryEmbedding,
    augment_cells,
    augment_query,
    match_probability,
    score_from_inner_product,
)
from server.cache import TieredCache
from server.fused import CachedFusion
from server.gallery import Gallery, build_gallery, gallery_of, level_h, pick_backend
from server.level_cache import LevelCache, level_digest
from server.render import percentile_range, summary_range

COUNTRY_BYTES = 8  # a kept coverage's country code, ASCII padded with NULs

# Time sweeps (query-independent, about 1 MB each at the demo's width) kept in memory.
MAX_SWEEPS = 8
# A bbox spanning more chunks than this is searched in the level's gallery (one matrix).
GALLERY_MIN_CHUNKS = 64
# What a no-metadata gallery reads from a store that keeps its precomputed cells.
PRECOMPUTED_ARRAYS = ("valid", "mu0", "c0", "u0")
# (level, metadata) surrogates of the top-k search kept (each holds the cells it fused).
MAX_SURROGATES = 16


class Engine:
    """Model + store + cached fusion: everything tiles and similarity need."""

    def __init__(
        self,
        model: torch.nn.Module,
        store: EmbeddingStore,
        cache: TieredCache,
        range_max_cells: int = 4096,
        gallery_mb: int = 1024,
        similarity_backend: str = "auto",
        precision: str = "auto",
        sweep_cells: int = DEFAULT_SWEEP_CELLS,
        search_budget: SearchBudget | None = None,
        search_threads: int = 1,
        level_cache: LevelCache | None = None,
    ) -> None:
        self.model = model
        self.level_cache = level_cache
        self._written: dict[int, list[str]] = {}
        self.search_budget = search_budget or SearchBudget()
        self.search_threads = search_threads
        self._search_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._surrogates: OrderedDict[tuple[int, str], Surrogate] = OrderedDict()
        self._search_lock = threading.Lock()
        self.precision = precision
        self.sweep_cells = sweep_cells
        self._sweeps: OrderedDict[str, FusedCells] = OrderedDict()
        self._sweep_lock = threading.Lock()
        self.store = store
        self.fusion = CachedFusion(model, store, cache, precision)
        self.range_max_cells = range_max_cells
        self.gallery_bytes = gallery_mb << 20
        self.backend = pick_backend(similarity_backend)
        self._galleries: OrderedDict[tuple[int, str], Gallery] = OrderedDict()
        self._gallery_lock = threading.Lock()
        self._spill: Path | None = None
        self._level_h: dict[int, np.ndarray] = {}
        self._row_cache: dict[tuple[str, int, int], np.ndarray] = {}
        self._rows_lock = threading.RLock()
        self.levels = store.levels
        self.zoom_range = web_zoom_range(self.levels)
        # What the page draws by (/api/info): each level's web zooms when named, the auto runs.
        self.level_zooms = {lv.psm_zoom: web_zoom_range([lv]) for lv in self.levels}
        self.auto_levels = auto_level_ranges(self.levels)
        self.coarse = min(self.levels, key=lambda lv: (lv.cell_zoom, -lv.psm_zoom))
        self._coverage: dict[int, LevelCoverage] = {}
        self._coverage_lock = threading.Lock()

    @cached_property
    def store_token(self) -> str:
        """The store's identity in shared cache keys of drawn and scored answers; it names the
        model's probability calibration too (fused chunks, keyed by the store alone, do not
        depend on it). Computed once: model and store are fixed while the engine serves."""
        digest = calibration_digest(getattr(self.model, "calibration", {}))
        return f"{self.fusion.token}.{digest}" if digest else self.fusion.token

    # -- levels -------------------------------------------------------------------------------
    def level(self, psm_zoom: int) -> Level:
        """The store's level for a PSM zoom."""
        for lv in self.levels:
            if lv.psm_zoom == psm_zoom:
                return lv
        raise OutOfRangeError(
            f"the store has no PSM zoom {psm_zoom} level; it has "
            f"{[lv.psm_zoom for lv in self.levels]}"
        )

    def level_for_tile(self, z: int, psm_zoom: int | None) -> Level:
        """The level serving web zoom z (the user's PSM zoom if given)."""
        lo, hi = self.zoom_range
        if not lo <= z <= hi:
            raise OutOfRangeError(f"zoom {z} is outside this store's zoom range {lo}..{hi}")
        if psm_zoom is None:
            try:
                return level_for_web_zoom(self.levels, z)
            except ValueError as exc:
                raise OutOfRangeError(str(exc)) from exc
        lv = self.level(psm_zoom)
        lv_lo, lv_hi = self.level_zooms[psm_zoom]
        if not lv_lo <= z <= lv_hi:
            raise OutOfRangeError(f"PSM zoom {psm_zoom} serves web zooms {lv_lo}..{lv_hi}, not {z}")
        return lv

    def default_level(self) -> Level:
        """Finest level: the default for similarity."""
        return max(self.levels, key=lambda lv: (lv.cell_zoom, -lv.psm_zoom))

    def coverage_bounds(self, psm_zoom: int | None = None) -> tuple[float, float, float, float]:
        """(west, south, east, north) degrees of the cells the store holds (at one level, or
        at any): where tiles may have data. Wider than the precompute region, because a level
        holds whole chunks."""
        boxes = []
        for lv in self.levels if psm_zoom is None else [self.level(psm_zoom)]:
            cells = self.store.extent(lv.psm_zoom).cells
            nw = mercantile.bounds(cells.cx0, cells.cy0, lv.cell_zoom)
            se = mercantile.bounds(cells.cx1 - 1, cells.cy1 - 1, lv.cell_zoom)
            boxes.append((nw.west, se.south, se.east, nw.north))
        w, s, e, n = zip(*boxes, strict=True)
        return min(w), min(s), max(e), max(n)

    # -- where maps mean something -------------------------------------------------------------
    def coverage(self, level: Level) -> LevelCoverage:
        """Land, region and edge masks of a level (computed once, about 1 s the first time:
        the GeoNames index loads)."""
        with self._coverage_lock:
            found = self._coverage.get(level.psm_zoom)
            if found is None:
                found = self._kept_coverage(level)
                self._coverage[level.psm_zoom] = found
            return found

    def _kept_coverage(self, level: Level) -> LevelCoverage:
        """A level's masks, drawn or (for a large level) mapped from the level cache."""
        shape = self.store.extent(level.psm_zoom).cells.shape
        masks = ("valid", "land", "region", "edge")

        def draw() -> dict[str, np.ndarray]:
            cov = level_coverage(self.store, level, PlaceIndex.load())
            code = cov.country.encode("ascii").ljust(COUNTRY_BYTES, b"\0")
            return {**{k: getattr(cov, k) for k in masks}, "country": np.frombuffer(code, np.uint8)}

        expect = {**{k: (shape, "|b1") for k in masks}, "country": ((COUNTRY_BYTES,), "|u1")}
        arrays = self._kept(level, "coverage", shape[0] * shape[1], expect, draw, coverage_tag())
        country = bytes(arrays["country"]).rstrip(b"\0").decode("ascii")
        return LevelCoverage(level, *(np.array(arrays[k]) for k in masks), country)

    def mask_in(self, extent: CellExtent, mask: np.ndarray) -> np.ndarray:
        """A level-wide mask (over the stored extent) cut to `extent` (False outside it)."""
        held = self.store.extent(extent.level.psm_zoom).cells
        out = np.zeros(extent.shape, bool)
        inner = extent.intersection(held)
        if inner is not None:
            out[inner.slices_in(extent)] = mask[inner.slices_in(held)]
        return out

    def eligible(self, level: Level) -> np.ndarray:
        """Cells "top places" may name: the region's, off the edge (the valid cells off the
        edge where the level has no region, e.g. a store at sea)."""
        cov = self.coverage(level)
        eligible = cov.eligible
        return eligible if eligible.any() else cov.valid & ~cov.edge

    def holds_any(self, extent: CellExtent) -> bool:
        """Whether the store holds any chunk of `extent`."""
        held = self.store.extent(extent.level.psm_zoom)
        return any(held.holds_chunk(tx, ty) for tx, ty in extent.chunks())

    # -- scores -------------------------------------------------------------------------------
    def scores(
        self,
        query: QueryEmbedding | None,
        metadata: Metadata,
        level: Level,
        region: Region,
        variables: Sequence[str] = VARIABLES,
    ) -> xr.Dataset:
        """`score_region` over the cached fused cells."""
        return score_region(
            self.model, self.store, query, metadata, level, region,
            fusion=self.fusion, variables=variables,
        )  # fmt: skip

    def range_regions(self) -> list[CellExtent]:
        """Where colour ranges are measured: the coarse level, or an even, deterministic
        sample of its chunks when it holds more than `range_max_cells` cells."""
        level = self.coarse
        ext = self.store.extent(level.psm_zoom)
        tiles = list(ext.tiles())
        budget = max(self.range_max_cells // (level.n * level.n), 1)
        if len(tiles) <= budget:
            return [ext.cells]
        picks = np.linspace(0, len(tiles) - 1, budget).round().astype(int)
        return [CellExtent.chunk(level, *tiles[i]) for i in picks]

    def land_values(self, metadata: Metadata, query: QueryEmbedding | None) -> np.ndarray:
        """Scores (uncertainty if no query) of the coarse level's land cells, where a map's
        colours are fitted (all its cells where it has no land): the open sea would otherwise
        take the bottom of every land sound's range."""
        name = "uncertainty" if query is None else "score"
        cov = self.coverage(self.coarse)
        where = cov.land if cov.land.any() else cov.valid
        parts, regions = [], self.range_regions()
        # Up to range_max_cells cells under a new metadata: on the pool's threads, not this
        # job's one (at D=512 that halves the 4 s every new metadata's first answer waited).
        self.fuse_ahead(regions, metadata)
        for region in regions:
            values = self.scores(query, metadata, self.coarse, region, (name,))[name].values
            parts.append(values[self.mask_in(region, where)])
        values = np.concatenate(parts)
        return values[np.isfinite(values)]

    def summary(self, metadata: Metadata, query: QueryEmbedding | None) -> np.ndarray:
        """The 0th..100th percentiles (101 values) of `land_values`: a map's range, its
        percentile scale, its "top 5 %" and a place's rank on it."""
        values = self.land_values(metadata, query)
        if values.size == 0:
            return np.linspace(0.0, 1.0, 101)
        return np.percentile(values, np.arange(101)).astype(np.float64)

    def value_range(self, metadata: Metadata, query: QueryEmbedding | None) -> tuple[float, float]:
        """2nd..98th percentile of scores (uncertainty if no query) over the coarse level's
        land."""
        return summary_range(self.summary(metadata, query))

    def difference(
        self, a: QueryEmbedding, meta_a: Metadata, b: QueryEmbedding, meta_b: Metadata,
        level: Level, region: CellExtent,
    ) -> np.ndarray:  # fmt: skip
        """score(A) - score(B) over a block of cells (NaN where no cell)."""
        score_a = self.scores(a, meta_a, level, region, ("score",))["score"].values
        score_b = self.scores(b, meta_b, level, region, ("score",))["score"].values
        return score_a - score_b

    def difference_range(
        self, a: QueryEmbedding, meta_a: Metadata, b: QueryEmbedding, meta_b: Metadata
    ) -> tuple[float, float]:
        """(-m, m): a range centred at 0 holding the 2nd..98th percentile of A - B over the
        coarse level, so the diverging ramp's middle colour means 'no difference'."""
        parts = [self.difference(a, meta_a, b, meta_b, self.coarse, r).reshape(-1)
                 for r in self.range_regions()]  # fmt: skip
        lo, hi = percentile_range(np.concatenate(parts))
        m = max(abs(lo), abs(hi), 1e-6)
        return -m, m

    def absolute_range(
        self, metadata: Metadata, query: QueryEmbedding | None
    ) -> tuple[float, float]:
        """Like `value_range`, over every month and hour at once (`metadata.month`/`hour` are
        ignored): one colour range for all frames of a time-lapse."""
        return percentile_range(sweep_values(self.time_sweep(metadata), query))

    def time_sweep(self, metadata: Metadata) -> FusedCells:
        """The coarse level's sampled cells under every (month, hour), kept for a few metadata."""
        key = metadata.replace(month=None, hour=None).key()
        with self._sweep_lock:  # one sweep at a time: it is seconds of model work
            found = self._sweeps.get(key)
            if found is None:
                found = time_sweep(self.model, self.store, self.coarse, metadata,
                                   self.sweep_cells, self.precision)  # fmt: skip
                self._sweeps[key] = found
                while len(self._sweeps) > MAX_SWEEPS:
                    self._sweeps.popitem(last=False)
            self._sweeps.move_to_end(key)
            return found

    def points(
        self, query: QueryEmbedding, metadata: Metadata, level: Level, lat: np.ndarray,
        lon: np.ndarray,
    ) -> xr.Dataset:  # fmt: skip
        """Score, probability and uncertainty of the cells under points (NaN where none)."""
        return self.scores(query, metadata, level, Points.of(lat, lon))

    def region_cells(self, level: Level, bbox: BBox) -> int:
        """Cells a map of `bbox` at `level` holds."""
        return CellExtent.for_bbox(level, bbox.as_tuple()).size

    def map_cog(
        self, query: QueryEmbedding, metadata: Metadata, level: Level, bbox: BBox,
        crs: str | None, query_id: str,
    ) -> bytes:  # fmt: skip
        """The region as a Cloud-Optimized GeoTIFF (score, probability, uncertainty bands)."""
        self.fuse_ahead([CellExtent.for_bbox(level, bbox.as_tuple())], metadata)
        ds = self.scores(query, metadata, level, bbox)
        if not bool(ds["score"].notnull().any()):
            raise OutOfRangeError(f"the store has no cell in {bbox.as_tuple()} at PSM zoom "
                                  f"{level.psm_zoom}")  # fmt: skip
        return cog_bytes(ds, crs, {"query": query_id, "bbox": ",".join(map(str, bbox.as_tuple()))})

    def point_levels(
        self, query: QueryEmbedding, metadata: Metadata, lat: float, lon: float
    ) -> list[tuple[int, xr.Dataset]]:
        """(PSM zoom, values under the point) at every level of the store."""
        point = Points.of([lat], [lon])
        return [(lv.psm_zoom, self.scores(query, metadata, lv, point)) for lv in self.levels]

    def bbox_chunks(self, level: Level, bbox: BBox) -> int:
        """How many stored chunks hold cells of a bbox."""
        held = self.store.extent(level.psm_zoom)
        chunks = CellExtent.for_bbox(level, bbox.as_tuple()).chunks()
        return sum(held.holds_chunk(tx, ty) for tx, ty in chunks)

    def top_k(
        self, query: QueryEmbedding, metadata: Metadata, level: Level, bbox: BBox, k: int
    ) -> xr.Dataset:
        """The k best cells (-CSD) whose centres lie in the bbox, best first (dim cell), among
        the cells `eligible` allows (in the store's region, off its edge).

        A small bbox is scored whole from cached chunks, and a no-metadata search reads the
        store's precomputed cells: both exact. Otherwise a fitted surrogate picks which cells
        to fuse (`embeddings_store.search`). Attributes `exact`, `fused` (cells fused) and
        `searched` (cells considered) say how the answer was found.
        """
        if self.bbox_chunks(level, bbox) <= GALLERY_MIN_CHUNKS:
            extent = CellExtent.for_bbox(level, bbox.as_tuple())
            self.fuse_ahead([extent], metadata)
            ds = self.scores(query, metadata, level, bbox)
            keep = self.mask_in(extent, self.eligible(level))
            ds["score"] = ds["score"].copy(data=np.where(keep, ds["score"].values, np.nan))
            found = top_cells(ds, k)
            found.attrs |= {"exact": 1, "fused": 0, "searched": int(keep.sum())}
            return found
        base = self.gallery(level, Metadata.none())
        cands = self.candidates(level, base, bbox)
        qa = augment_query(query.mu)
        if self.fusion.from_store(metadata):
            mask = np.zeros(base.cx.size, bool)
            mask[cands.pool] = True
            inner, picked = base.search(qa, k, mask)
            result = SearchResult(picked, inner, base.unc[picked], True, 0, cands.pool.size, 0.0)
        else:
            result = self.surrogate_search(level, metadata, base, cands, qa, k)
        score = score_from_inner_product(result.inner, query.c)
        values = {
            "score": score,
            "probability": match_probability(score, *self.model.match_parameters(query.kind)),
            "uncertainty": result.unc,
        }
        cx, cy = base.cx[result.rows], base.cy[result.rows]
        attrs = region_attrs(self.store, query, metadata, level)
        attrs |= {"exact": int(result.exact), "fused": result.fused, "searched": result.pool}
        return cells_dataset(
            values, level.cell_centers_x(cx), level.cell_centers_y(cy),
            level.cell_centers_lat(cy), level.cell_centers_lon(cx), attrs,
        )  # fmt: skip

    def candidates(self, level: Level, base: Gallery, bbox: BBox) -> Candidates:
        """The level's no-metadata cells as search candidates, the pool cut to the bbox (the
        cells whose centres it holds, as `score_region` takes them)."""
        inside = base.inside(CellExtent.for_bbox(level, bbox.as_tuple()))
        inside &= self.eligible_rows(level, base)
        return Candidates(base.matrix, self.search_features(level, base), np.flatnonzero(inside))

    def eligible_rows(self, level: Level, base: Gallery) -> np.ndarray:
        """Which of the level's gallery rows `eligible` allows."""

        def pick() -> np.ndarray:
            held = self.store.extent(level.psm_zoom).cells
            return self.eligible(level)[base.cy - held.cy0, base.cx - held.cx0]

        return self._per_rows("eligible", level, base, pick)

    def search_sample(self, level: Level, base: Gallery) -> np.ndarray:
        """The rows every metadata's surrogate of the level is fitted on (drawn once)."""

        def draw() -> np.ndarray:
            rows = np.flatnonzero(self.eligible_rows(level, base))
            chunk_of_row = (base.cy.astype(np.int64) // level.n << 31) + base.cx // level.n
            return sample_rows(rows, chunk_of_row, self.search_budget, f"psm{level.psm_zoom}")

        return self._per_rows("sample", level, base, draw)

    def search_features(self, level: Level, base: Gallery) -> np.ndarray:
        """The surrogate's location columns of a level's gallery rows."""
        lat, lon = level.cell_centers_lat, level.cell_centers_lon
        return self._per_rows(
            "features", level, base, lambda: location_features(lat(base.cy), lon(base.cx))
        )

    def _per_rows(
        self, kind: str, level: Level, base: Gallery, compute: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """An array about a level's gallery rows, computed once per (kind, level, rows)."""
        key = (kind, level.psm_zoom, base.cx.size)
        with self._rows_lock:  # re-entrant: a compute may ask for another kind
            found = self._row_cache.get(key)
            if found is None:
                found = self._row_cache[key] = compute()
            return found

    def surrogate_search(
        self, level: Level, metadata: Metadata, base: Gallery, cands: Candidates,
        qa: np.ndarray, k: int,
    ) -> SearchResult:  # fmt: skip
        """Top-k by `search_top_k`, fitting (and keeping) the metadata's surrogate first."""

        h = self.level_h(level, base)

        def fuse_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            order = np.argsort(rows)  # a mapped h reads best in file order
            fused = fuse_h_at(self.model, h[rows[order]], level, base.cx[rows[order]],
                              base.cy[rows[order]], metadata, self.precision,
                              self.search_pool())  # fmt: skip
            back = np.empty_like(order)
            back[order] = np.arange(order.size)
            return fused.aug[back], fused.unc[back]

        key = (level.psm_zoom, metadata.key())
        # One search at a time: searches add fused rows to the shared surrogate, and each one
        # is model work that would only share the same cores.
        with self._search_lock:
            sur, sampled = self._surrogates.get(key), 0
            if sur is None:
                rows = self.search_sample(level, base)
                sur, sampled = build_surrogate(cands, rows, fuse_rows), rows.size
                self._surrogates[key] = sur
            self._surrogates.move_to_end(key)
            result = search_top_k(sur, cands, qa, k, fuse_rows, self.search_budget)
            result = dataclasses.replace(result, fused=result.fused + sampled)
            while len(self._surrogates) > 1 and (
                len(self._surrogates) > MAX_SURROGATES
                or sum(x.nbytes for x in self._surrogates.values()) > self.gallery_bytes // 2
            ):
                self._surrogates.popitem(last=False)
            return result

    def level_h(self, level: Level, base: Gallery) -> np.ndarray:
        """The image embeddings h of the level's valid cells in its gallery's row order (read
        once, a row of chunks at a time; mapped from a file when larger than half of
        `gallery_mb`): the cells a top-k search fuses are scattered over the whole level, and
        reading their chunks one by one would cost more than fusing them."""
        with self._gallery_lock:
            found = self._level_h.get(level.psm_zoom)
            if found is not None and found.shape[0] == base.cx.size:
                return found
            ext = self.store.extent(level.psm_zoom)
            n, dim = base.cx.size, self.store.embed_dim

            def read() -> dict[str, np.ndarray]:
                return {"h": level_h(
                    level, list(ext.tiles()),
                    lambda ty: self.store.read_band(level.psm_zoom, ty, ("h", "valid")),
                    ext.tx0, n, dim, (self.spill_dir(), self.gallery_bytes // 2),
                )}  # fmt: skip

            found = self._kept(level, "h", n, {"h": ((n, dim), "<f2")}, read)["h"]
            self._level_h[level.psm_zoom] = found
            return found

    def _kept(
        self,
        level: Level,
        what: str,
        cells: int,
        expect: dict[str, tuple[tuple[int, ...], str]],
        build: Callable[[], dict[str, np.ndarray]],
        extra: str = "",
    ) -> dict[str, np.ndarray]:
        """`build()`'s arrays, or for a level of at least the level cache's `min_cells` cells
        its copy of them, mapped: loaded when it holds `expect`, else built and saved (a built
        array's spill file is then removed, the copy serves)."""
        cache = self.level_cache
        if cache is None or cells < cache.min_cells:
            return build()
        name = self._kept_name(level, what, extra)
        found = cache.load(name, expect)
        if found is None:
            built = build()
            found = cache.save(name, built)
            if found is None:  # the disk refused: serve what was built
                return built
            for arr in built.values():
                self._unspill(arr)
        return found

    def _kept_name(self, level: Level, what: str, extra: str = "") -> str:
        """A level cache entry's name: the store, the level, what it holds, its written chunks
        (listed once: the store is fixed while the engine serves) and `extra`."""
        written = self._written.get(level.psm_zoom)
        if written is None:
            written = self._written[level.psm_zoom] = self.store.written_chunks(level.psm_zoom)
        digest = level_digest(written, self.store.embed_dim, extra)
        return f"{self.fusion.store_id}-psm{level.psm_zoom}-{what}-{digest}"

    def search_pool(self) -> ThreadPoolExecutor | None:
        """Threads a top-k search (one at a time) and `fuse_ahead` fuse on (None: the calling
        thread alone); they use as many torch threads as the thread that made the engine (the
        server's jobs: one)."""
        if self.search_threads < 2:
            return None
        with self._pool_lock:
            if self._search_pool is None:
                torch_threads = torch.get_num_threads()
                self._search_pool = ThreadPoolExecutor(
                    self.search_threads, thread_name_prefix="soundscape-search",
                    initializer=lambda: torch.set_num_threads(torch_threads),
                )  # fmt: skip
                weakref.finalize(self, self._search_pool.shutdown, wait=False)
            return self._search_pool

    def fuse_ahead(self, extents: Sequence[CellExtent], metadata: Metadata) -> int:
        """Fuse into the cache, on the search pool, what a scan of `extents` (one level's) would
        fuse in turn: their uncached chunks, one job each, and their thin edge parts in one
        batched job (the parts and bytes `CachedFusion.block` gives). For one request over many
        chunks (a map, a small top-k, a colour range); returns the jobs run."""
        pool = self.search_pool()
        if pool is None or not extents or self.fusion.from_store(metadata):
            return 0
        level, fusion = extents[0].level, self.fusion
        held = self.store.extent(level.psm_zoom)
        chunks, thin = {}, []  # chunks: an ordered set
        for extent in extents:
            for tx, ty in extent.chunks():
                block = extent.intersection(CellExtent.chunk(level, tx, ty))
                if block is None or not held.holds_chunk(tx, ty):
                    continue
                if fusion.thin_key(block, metadata) is not None:
                    thin.append(block)
                else:
                    chunks[tx, ty] = None
        chunks = fusion.uncached(level, list(chunks), metadata)
        if len(chunks) + bool(thin) < 2:  # one job gains nothing from a pool
            return 0
        jobs = fusion.submit(pool, level, chunks, thin, metadata)
        for job in jobs:
            job.result()
        return len(jobs)

    def _unspill(self, array: np.ndarray) -> None:
        """Remove an array's spill file (a live mapping keeps its pages until unmapped)."""
        path = getattr(array, "filename", None)
        if path is not None and self._spill is not None and Path(path).parent == self._spill:
            Path(path).unlink(missing_ok=True)

    def spill_dir(self) -> Path:
        """A folder of this engine's own for matrices larger than `gallery_mb` (removed with
        the engine)."""
        if self._spill is None:
            self._spill = Path(tempfile.mkdtemp(prefix="soundscape-gallery-"))
            weakref.finalize(self, shutil.rmtree, self._spill, ignore_errors=True)
        return self._spill

    def gallery(self, level: Level, metadata: Metadata) -> Gallery:
        """The level's cells under `metadata` as one searchable matrix (built once, kept)."""
        key = (level.psm_zoom, metadata.key())
        with self._gallery_lock:  # one build at a time: a build can take most of the memory
            found = self._galleries.get(key)
            if found is not None:
                self._galleries.move_to_end(key)
                return found
            ext = self.store.extent(level.psm_zoom)
            valid_all = self.coverage(level).valid  # read once, for the masks and here
            n = level.n
            # Read precomputed cells straight from the store: a million cells would flush the LRU.
            cached = not self.fusion.from_store(metadata)

            def valid_of(tx: int, ty: int) -> np.ndarray:
                r, c = (ty - ext.ty0) * n, (tx - ext.tx0) * n
                return valid_all[r : r + n, c : c + n]

            band: dict[str, object] = {}

            def chunk_of(tx: int, ty: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                if cached:
                    chunk = self.fusion.chunk(level, tx, ty, metadata)
                    return chunk.aug, chunk.unc, chunk.valid
                # The store's precomputed cells, a row of chunks at a time (tiles() is row-major).
                if band.get("ty") != ty:
                    band.clear()
                    band.update(self.store.read_band(level.psm_zoom, ty, PRECOMPUTED_ARRAYS))
                    band["ty"] = ty
                c = slice((tx - ext.tx0) * n, (tx - ext.tx0 + 1) * n)
                valid = np.asarray(band["valid"])[:, c].reshape(-1)
                mu0 = np.asarray(band["mu0"])[:, c].reshape(n * n, -1)
                aug = augment_cells(mu0, np.asarray(band["c0"])[:, c].reshape(-1))
                return aug, np.asarray(band["u0"])[:, c].reshape(-1), valid

            # A store's mu0 is float16: kept so, a no-metadata gallery is exact at half the bytes.
            half = self.fusion.from_store(metadata)

            def build() -> dict[str, np.ndarray]:
                g = build_gallery(level, list(ext.tiles()), valid_of, chunk_of,
                                  self.store.embed_dim, "numpy", half,
                                  (self.spill_dir(), self.gallery_bytes))  # fmt: skip
                m = g.matrix
                return {"mu": m.mu, "tail": m.tail, "cx": g.cx, "cy": g.cy, "unc": g.unc}

            if half:  # the store's own cells: a function of the store, kept between starts
                cells, dim = int(valid_all.sum()), self.store.embed_dim
                expect = {"mu": ((cells, dim), "<f2"), "tail": ((cells,), "<f4"),
                          "cx": ((cells,), "<i4"), "cy": ((cells,), "<i4"),
                          "unc": ((cells,), "<f4")}  # fmt: skip
                arrays = self._kept(level, "gallery", cells, expect, build)
            else:
                arrays = build()
            matrix = CellMatrix(arrays["mu"], arrays["tail"])
            gallery = gallery_of(level, arrays["cx"], arrays["cy"], arrays["unc"], matrix,
                                 self.backend)  # fmt: skip
            self._galleries[key] = gallery
            while (
                len(self._galleries) > 1
                and sum(g.nbytes for g in self._galleries.values()) > self.gallery_bytes
            ):
                self._galleries.popitem(last=False)
            return gallery
