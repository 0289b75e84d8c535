"""Scoring engine: windows of fused cells scored against a query, value ranges, similarity.

Thin over the library: cells and windows come from `embeddings_store.grid`, fusion from the
model, scores from `model.scoring` (so tiles equal the model's own -CSD), and every fused chunk
goes through the byte cache keyed by (store, level, chunk, metadata).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from embeddings_store.grid import (
    MAX_LATITUDE,
    Level,
    TileWindow,
    auto_level_ranges,
    level_for_web_zoom,
    tiles_for_bbox,
    web_zoom_range,
)
from embeddings_store.store import EmbeddingStore
from model.scoring import augment_query, match_probability, score_from_inner_product
from server.cache import TieredCache
from server.fused import FusedChunk, Metadata, compute_chunk, fuse_cells, precomputed_chunk
from server.gallery import Gallery, build_gallery, pick_backend
from server.queries import QueryEmbedding

# Percentiles of the "relative" scale (DESIGN §5).
RANGE_PERCENTILES = (2.0, 98.0)
# A bbox spanning more chunks than this is searched in the level's gallery (one matrix).
GALLERY_MIN_CHUNKS = 64


class OutOfRange(ValueError):
    """A tile or level the store cannot serve (answered with 404)."""


@dataclass
class CellValues:
    """Values on a grid of cells and where they are defined."""

    values: np.ndarray  # (rows, cols) float32
    valid: np.ndarray  # (rows, cols) bool


@dataclass
class Hits:
    """Scored cells: coordinates, -CSD, match probability, uncertainty (NaN where no cell)."""

    lat: np.ndarray
    lon: np.ndarray
    score: np.ndarray
    probability: np.ndarray
    uncertainty: np.ndarray
    valid: np.ndarray


class Engine:
    """Model + store + cache: everything tiles and similarity need (blocking calls)."""

    def __init__(
        self,
        model: torch.nn.Module,
        store: EmbeddingStore,
        cache: TieredCache,
        range_max_cells: int = 200_000,
        gallery_mb: int = 1024,
        similarity_backend: str = "auto",
    ) -> None:
        self.model = model
        self.store = store
        self.cache = cache
        self.range_max_cells = range_max_cells
        self.gallery_bytes = gallery_mb << 20
        self.backend = pick_backend(similarity_backend)
        self._galleries: OrderedDict[tuple[int, str], Gallery] = OrderedDict()
        self._gallery_lock = threading.Lock()
        cfg = model.config
        self.vocabulary = (dict(cfg.audio_sources), dict(cfg.caption_sources))
        self.match_a, self.match_b = model.match_parameters()
        self.levels = store.levels
        self.zoom_range = web_zoom_range(self.levels)
        # What the page draws by (/api/info): each level's web zooms when named, the auto runs.
        self.level_zooms = {lv.psm_zoom: web_zoom_range([lv]) for lv in self.levels}
        self.auto_levels = auto_level_ranges(self.levels)
        # Identifies the store's contents in shared cache keys (two stores may share a Redis).
        ident = f"{store.model_id}|{store.attrs.get('created')}|{store.attrs.get('levels')}"
        self.store_token = hashlib.sha256(ident.encode()).hexdigest()[:12]
        self.coarse = min(self.levels, key=lambda lv: (lv.cell_zoom, -lv.psm_zoom))

    # -- levels -------------------------------------------------------------------------------
    def level(self, psm_zoom: int) -> Level:
        """The store's level for a PSM zoom; OutOfRange if it has none."""
        for lv in self.levels:
            if lv.psm_zoom == psm_zoom:
                return lv
        raise OutOfRange(
            f"the store has no PSM zoom {psm_zoom} level; it has "
            f"{[lv.psm_zoom for lv in self.levels]}"
        )

    def level_for_tile(self, z: int, psm_zoom: int | None) -> Level:
        """The level serving web zoom z (the user's PSM zoom if given); OutOfRange if none."""
        lo, hi = self.zoom_range
        if not lo <= z <= hi:
            raise OutOfRange(f"zoom {z} is outside this store's zoom range {lo}..{hi}")
        if psm_zoom is None:
            try:
                return level_for_web_zoom(self.levels, z)
            except ValueError as exc:
                raise OutOfRange(str(exc)) from exc
        lv = self.level(psm_zoom)
        lv_lo, lv_hi = self.level_zooms[psm_zoom]
        if not lv_lo <= z <= lv_hi:
            raise OutOfRange(f"PSM zoom {psm_zoom} serves web zooms {lv_lo}..{lv_hi}, not {z}")
        return lv

    def default_level(self) -> Level:
        """Finest level: the default for similarity."""
        return max(self.levels, key=lambda lv: (lv.cell_zoom, -lv.psm_zoom))

    # -- fused chunks -------------------------------------------------------------------------
    def fused_key(self, level: Level, tx: int, ty: int, meta: Metadata) -> str:
        """Cache key of a fused chunk."""
        return f"f:{self.store_token}:{level.psm_zoom}:{tx}:{ty}:{meta.key()}"

    def in_extent(self, level: Level, tx: int, ty: int) -> bool:
        """Whether the store holds chunk (tx, ty) of `level`."""
        ext = self.store.extent(level.psm_zoom)
        return ext.tx0 <= tx <= ext.tx1 and ext.ty0 <= ty <= ext.ty1

    def fused(self, level: Level, tx: int, ty: int, meta: Metadata) -> FusedChunk:
        """A chunk's fused cells (cache, else the model); empty outside the store."""
        if not self.in_extent(level, tx, ty):
            return FusedChunk.empty(level.n * level.n, self.store.embed_dim)
        data, _ = self.cache.get_or_compute(
            self.fused_key(level, tx, ty, meta),
            lambda: compute_chunk(
                self.model, self.store, level, tx, ty, meta, self.vocabulary
            ).to_bytes(),
        )
        return FusedChunk.from_bytes(data)

    def scoring_chunk(self, level: Level, tx: int, ty: int, meta: Metadata) -> FusedChunk:
        """The chunk that scores queries: the store's precomputed mu0/c0 when every metadata
        component is masked and the store has them (no model work), else the fused chunk."""
        if not (meta.masked and self.store.with_fused) or not self.in_extent(level, tx, ty):
            return self.fused(level, tx, ty, meta)
        data, _ = self.cache.get_or_compute(
            f"p:{self.store_token}:{level.psm_zoom}:{tx}:{ty}",
            lambda: precomputed_chunk(self.store, level, tx, ty).to_bytes(),
        )
        return FusedChunk.from_bytes(data)

    # -- scoring ------------------------------------------------------------------------------
    def chunk_scores(self, chunk: FusedChunk, query: QueryEmbedding) -> np.ndarray:
        """-CSD of every cell of a chunk: one matvec on the augmented vectors."""
        inner = chunk.aug @ augment_query(query.mu)
        return score_from_inner_product(inner, query.c)

    def window_values(
        self, window: TileWindow, meta: Metadata, query: QueryEmbedding | None
    ) -> CellValues:
        """Scores (or uncertainty when `query` is None) of a window's cells."""
        level = window.level
        rows, cols = window.shape
        values = np.zeros((rows, cols), np.float32)
        valid = np.zeros((rows, cols), bool)
        for tx, ty in window.chunks():
            if not self.in_extent(level, tx, ty):
                continue
            cx0, cx1, cy0, cy1 = level.chunk_cells(tx, ty)
            # Intersection of chunk and window, in chunk and window coordinates.
            x0, x1 = max(cx0, window.cx0), min(cx1, window.cx1)
            y0, y1 = max(cy0, window.cy0), min(cy1, window.cy1)
            src = (slice(y0 - cy0, y1 - cy0), slice(x0 - cx0, x1 - cx0))
            dst = (slice(y0 - window.cy0, y1 - window.cy0), slice(x0 - window.cx0, x1 - window.cx0))
            part = self._cells(level, tx, ty, meta, src, scores=query is not None)
            v = part.unc if query is None else self.chunk_scores(part, query)
            values[dst] = v.reshape(y1 - y0, x1 - x0)
            valid[dst] = part.valid.reshape(y1 - y0, x1 - x0)
        return CellValues(values, valid)

    def _cells(
        self, level: Level, tx: int, ty: int, meta: Metadata, src: tuple[slice, slice],
        scores: bool,
    ) -> FusedChunk:  # fmt: skip
        """Fused cells of a block of one chunk, row-major.

        A thin block (a tile's 1-cell margin reaching into a neighbouring chunk) is fused and
        cached on its own unless the whole chunk is already at hand: a cold tile then fuses
        about one chunk, not the nine its margins touch.
        """
        n = level.n
        r, c = src
        cells = (r.stop - r.start) * (c.stop - c.start)
        if scores and meta.masked and self.store.with_fused:
            chunk = self.scoring_chunk(level, tx, ty, meta)
        elif cells * 4 >= n * n or self.cache.lru.get(self.fused_key(level, tx, ty, meta)):
            chunk = self.fused(level, tx, ty, meta)
        else:
            key = f"{self.fused_key(level, tx, ty, meta)}:{r.start}:{r.stop}:{c.start}:{c.stop}"
            data, _ = self.cache.get_or_compute(
                key, lambda: self._fuse_block(level, tx, ty, meta, src).to_bytes()
            )
            return FusedChunk.from_bytes(data)
        flat = (np.arange(n * n).reshape(n, n)[src]).reshape(-1)
        return FusedChunk(chunk.aug[flat], chunk.unc[flat], chunk.valid[flat])

    def _fuse_block(
        self, level: Level, tx: int, ty: int, meta: Metadata, src: tuple[slice, slice]
    ) -> FusedChunk:
        d = self.store.embed_dim
        h16, valid2 = self.store.read_chunk(level.psm_zoom, tx, ty)
        h = np.asarray(h16[src], np.float32)
        valid = np.asarray(valid2[src], bool).reshape(-1)
        rows, cols = valid2[src].shape
        out = FusedChunk.empty(rows * cols, d)
        idx = np.flatnonzero(valid)
        if idx.size:
            cx0, _, cy0, _ = level.chunk_cells(tx, ty)
            r, c = np.divmod(idx, cols)
            lat = level.cell_centers_lat(cy0 + src[0].start + r)
            lon = level.cell_centers_lon(cx0 + src[1].start + c)
            aug, unc = fuse_cells(
                self.model, h.reshape(-1, d)[idx], lat, lon, meta, self.vocabulary
            )
            out.aug[idx], out.unc[idx], out.valid[idx] = aug, unc, True
        return out

    def probability(self, score: np.ndarray) -> np.ndarray:
        """Learned match probability of -CSD scores."""
        return match_probability(score, self.match_a, self.match_b)

    def value_range(self, meta: Metadata, query: QueryEmbedding | None) -> tuple[float, float]:
        """2nd..98th percentile of scores (uncertainty if no query) over the coarse level."""
        level = self.coarse
        ext = self.store.extent(level.psm_zoom)
        tiles = list(ext.tiles())
        budget = max(self.range_max_cells // (level.n * level.n), 1)
        if len(tiles) > budget:  # an even, deterministic sample of chunks
            tiles = [tiles[i] for i in np.linspace(0, len(tiles) - 1, budget).round().astype(int)]
        parts = []
        for tx, ty in tiles:
            if query is None:
                chunk = self.fused(level, tx, ty, meta)
                v = chunk.unc
            else:
                chunk = self.scoring_chunk(level, tx, ty, meta)
                v = self.chunk_scores(chunk, query)
            parts.append(v[chunk.valid])
        if not parts:
            return 0.0, 1.0
        lo, hi = np.percentile(np.concatenate(parts), RANGE_PERCENTILES)
        lo, hi = float(lo), float(hi)
        if not hi > lo:
            hi = lo + max(abs(lo) * 1e-6, 1e-6)
        return lo, hi

    # -- similarity ---------------------------------------------------------------------------
    def score_points(
        self, query: QueryEmbedding, meta: Metadata, level: Level, lat: np.ndarray, lon: np.ndarray
    ) -> Hits:
        """Score the cells under points (NaN where the store has no cell)."""
        lat = np.asarray(lat, np.float64)
        lon = np.asarray(lon, np.float64)
        count = lat.shape[0]
        score = np.full(count, np.nan, np.float32)
        unc = np.full(count, np.nan, np.float32)
        valid = np.zeros(count, bool)
        inside = np.abs(lat) <= MAX_LATITUDE
        cx, cy = level.cell_of_lonlat(lon, lat)
        n = level.n
        tx, ty = cx // n, cy // n
        for key in sorted(set(zip(tx[inside].tolist(), ty[inside].tolist(), strict=True))):
            if not self.in_extent(level, *key):
                continue
            sel = np.flatnonzero(inside & (tx == key[0]) & (ty == key[1]))
            chunk = self.scoring_chunk(level, key[0], key[1], meta)
            idx = (cy[sel] % n) * n + (cx[sel] % n)
            ok = chunk.valid[idx]
            scores = self.chunk_scores(chunk, query)
            score[sel[ok]] = scores[idx[ok]]
            u = chunk.unc if np.isfinite(chunk.unc).all() else self.fused(level, *key, meta).unc
            unc[sel[ok]] = u[idx[ok]]
            valid[sel[ok]] = True
        return Hits(lat, lon, score, self.probability(score), unc, valid)

    def count_bbox_cells(self, level: Level, bbox: tuple[float, float, float, float]) -> int:
        """Cells of the stored chunks a bbox query would scan."""
        return len(self._bbox_chunks(level, bbox)) * level.n * level.n

    def _bbox_chunks(
        self, level: Level, bbox: tuple[float, float, float, float]
    ) -> list[tuple[int, int]]:
        tx0, tx1, ty0, ty1 = tiles_for_bbox(bbox, level.tile_zoom)
        ext = self.store.extent(level.psm_zoom)
        return [
            (tx, ty)
            for ty in range(max(ty0, ext.ty0), min(ty1, ext.ty1) + 1)
            for tx in range(max(tx0, ext.tx0), min(tx1, ext.tx1) + 1)
        ]

    def top_k(
        self,
        query: QueryEmbedding,
        meta: Metadata,
        level: Level,
        bbox: tuple[float, float, float, float],
        k: int,
    ) -> Hits:
        """The k best cells (exact -CSD) whose centres lie in the bbox, best first."""
        west, south, east, north = bbox
        q = augment_query(query.mu)
        chunks = self._bbox_chunks(level, bbox)
        if len(chunks) > GALLERY_MIN_CHUNKS:
            gallery = self.gallery(level, meta)
            mask = (gallery.lat >= south) & (gallery.lat <= north)
            mask &= (gallery.lon >= west) & (gallery.lon <= east)
            inner, rows = gallery.search(q, k, mask)
            cx, cy, unc = gallery.cx[rows], gallery.cy[rows], gallery.unc[rows]
        else:
            inner, cx, cy, unc = self._top_k_chunks(q, meta, level, chunks, bbox, k)
        if unc.size and not np.isfinite(unc).all():
            unc = self.cell_uncertainty(level, cx, cy, meta)
        score = score_from_inner_product(inner, query.c)
        lat = level.cell_centers_lat(cy)
        lon = level.cell_centers_lon(cx)
        return Hits(lat, lon, score, self.probability(score), unc, np.ones(len(score), bool))

    def _top_k_chunks(
        self,
        q: np.ndarray,
        meta: Metadata,
        level: Level,
        chunks: list[tuple[int, int]],
        bbox: tuple[float, float, float, float],
        k: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        west, south, east, north = bbox
        n = level.n
        inners, cxs, cys, uncs = [], [], [], []
        for tx, ty in chunks:
            chunk = self.scoring_chunk(level, tx, ty, meta)
            cx0, cx1, cy0, cy1 = level.chunk_cells(tx, ty)
            lon = level.cell_centers_lon(np.arange(cx0, cx1))
            lat = level.cell_centers_lat(np.arange(cy0, cy1))
            inside = ((lat >= south) & (lat <= north))[:, None] & ((lon >= west) & (lon <= east))
            idx = np.flatnonzero(chunk.valid & inside.reshape(-1))
            if idx.size == 0:
                continue
            inner = chunk.aug[idx] @ q
            if inner.size > k:  # keep only this chunk's k best: exact, and memory stays small
                part = np.argpartition(-inner, k - 1)[:k]
                idx, inner = idx[part], inner[part]
            r, c = np.divmod(idx, n)
            inners.append(inner)
            cxs.append(cx0 + c)
            cys.append(cy0 + r)
            uncs.append(chunk.unc[idx])
        if not inners:
            empty = np.zeros(0, np.int64)
            return np.zeros(0, np.float32), empty, empty, np.zeros(0, np.float32)
        inner = np.concatenate(inners)
        order = np.argsort(-inner, kind="stable")[:k]
        return (
            inner[order],
            np.concatenate(cxs)[order],
            np.concatenate(cys)[order],
            np.concatenate(uncs)[order],
        )

    def cell_uncertainty(
        self, level: Level, cx: np.ndarray, cy: np.ndarray, meta: Metadata
    ) -> np.ndarray:
        """||sigma||_1 of a few cells, fusing just those cells (for precomputed scores)."""
        n, d = level.n, self.store.embed_dim
        h = np.zeros((cx.shape[0], d), np.float32)
        for tx, ty in sorted(set(zip((cx // n).tolist(), (cy // n).tolist(), strict=True))):
            sel = np.flatnonzero((cx // n == tx) & (cy // n == ty))
            h16, _ = self.store.read_chunk(level.psm_zoom, tx, ty)
            h[sel] = np.asarray(h16[cy[sel] % n, cx[sel] % n], np.float32)
        lat = level.cell_centers_lat(cy)
        lon = level.cell_centers_lon(cx)
        _, unc = fuse_cells(self.model, h, lat, lon, meta, self.vocabulary)
        return unc

    def gallery(self, level: Level, meta: Metadata) -> Gallery:
        """The level's cells under `meta` as one searchable matrix (built once, kept in memory)."""
        key = (level.psm_zoom, meta.key())
        with self._gallery_lock:  # one build at a time: a build can take most of the memory
            found = self._galleries.get(key)
            if found is not None:
                self._galleries.move_to_end(key)
                return found
            ext = self.store.extent(level.psm_zoom)
            valid_all = np.asarray(self.store.array(level.psm_zoom, "valid")[:], bool)
            n = level.n

            def valid_of(tx: int, ty: int) -> np.ndarray:
                r, c = (ty - ext.ty0) * n, (tx - ext.tx0) * n
                return valid_all[r : r + n, c : c + n]

            def chunk_of(tx: int, ty: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                if meta.masked and self.store.with_fused:
                    # Read straight from the store: a million cells would flush the LRU.
                    chunk = precomputed_chunk(self.store, level, tx, ty)
                else:
                    chunk = self.fused(level, tx, ty, meta)
                return chunk.aug, chunk.unc, chunk.valid

            gallery = build_gallery(
                level, list(ext.tiles()), valid_of, chunk_of, self.store.embed_dim, self.backend
            )
            self._galleries[key] = gallery
            while (
                len(self._galleries) > 1
                and sum(g.nbytes for g in self._galleries.values()) > self.gallery_bytes
            ):
                self._galleries.popitem(last=False)
            return gallery
