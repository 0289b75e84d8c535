"""Whole views and time-lapses as one job: every chunk the view's tiles need is fused first, on
all the job's threads, then every tile is rendered into the tile cache.

A browser asking for a view tile by tile fuses a tile's margin in a neighbouring chunk on its
own whenever the neighbour is not cached yet (a thin block: one more model call and store read),
and spreads the work over whichever connections it opens. A prepared view fuses each chunk once,
whole, before any tile needs it, and renders with the tile route's own functions and cache keys,
so a tile fetched afterwards is a cache hit holding the very bytes the single-tile route makes
(docs/ARCHITECTURE.md, "Views and time-lapses").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import mercantile

from embeddings_store.grid import CellExtent, Level, tile_window
from embeddings_store.store import LevelExtent
from model.scoring import QueryEmbedding
from server.tiles import TileRequest, TileService


@dataclass
class ViewReport:
    """What preparing a view did."""

    tiles: int = 0  # tiles of every frame
    frames: int = 0
    rendered: int = 0  # tiles drawn now (the rest were cached already)
    fused_chunks: int = 0  # chunks fused now
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)


def view_tiles(bbox: tuple[float, float, float, float], z: int) -> list[mercantile.Tile]:
    """The XYZ tiles at zoom z that cover a lon/lat bbox (what a map shows of it)."""
    w, s, e, n = bbox
    return list(mercantile.tiles(w, s, e, n, zooms=z))


def view_blocks(
    level: Level, frame: Sequence[TileRequest], held: LevelExtent
) -> tuple[list[tuple[int, int]], list[CellExtent]]:
    """What a frame's tiles read: the stored chunks holding the tiles' own cells (fused whole),
    and the thin blocks their one-cell margins take from the stored chunks around them (cached
    on their own, as the tile route fuses a margin whose chunk it does not have)."""
    chunks: dict[tuple[int, int], None] = {}
    for req in frame:
        for key in tile_window(level, req.x, req.y, req.z).chunks():
            if held.holds_chunk(*key):
                chunks[key] = None
    blocks: dict[tuple[int, int, int, int], CellExtent] = {}
    for req in frame:
        window = tile_window(level, req.x, req.y, req.z, margin=1)
        for key in window.chunks():
            if key in chunks or not held.holds_chunk(*key):
                continue
            block = window.intersection(CellExtent.chunk(level, *key))
            if block is not None:
                blocks[(block.cx0, block.cx1, block.cy0, block.cy1)] = block
    return list(chunks), list(blocks.values())


class ViewPreparer:
    """Prepares views on a thread pool of its own (torch releases the GIL while it fuses)."""

    def __init__(self, tiles: TileService, threads: int) -> None:
        self.tiles = tiles
        self.threads = threads

    def prepare(
        self,
        frames: Sequence[Sequence[TileRequest]],
        level: Level,
        query_id: str | None,
        query: QueryEmbedding | None,
    ) -> ViewReport:
        """Fuse, range and render each frame (all tiles of one metadata) in turn, so the first
        frames are ready first. `query` None prepares uncertainty tiles."""
        t0 = time.perf_counter()
        report = ViewReport(frames=len(frames))
        engine, tiles = self.tiles.engine, self.tiles
        held = engine.store.extent(level.psm_zoom)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="soundscape-view") as pool:
            for frame in frames:
                if not frame:
                    continue
                meta, first = frame[0].meta, frame[0]
                chunks, margins = view_blocks(level, frame, held)
                # Every model job of the frame at once, then the tiles, which only read what is
                # cached now. The colour range (one job fusing a sample of chunks in turn) goes
                # first so it does not finish last; the margins go as one batched job.
                jobs = []
                if first.rescale is None:
                    jobs.append(pool.submit(tiles.value_range, query_id, query, meta, first.scale))
                missing = engine.fusion.uncached(level, chunks, meta)
                jobs += engine.fusion.submit(pool, level, missing, margins, meta)
                for job in jobs:
                    job.result()
                report.fused_chunks += len(missing)
                for _, outcome in pool.map(self._renderer(level, query_id, query), frame):
                    report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
                report.tiles += len(frame)
        report.rendered = report.outcomes.get("miss", 0)
        report.seconds = time.perf_counter() - t0
        return report

    def _renderer(
        self, level: Level, query_id: str | None, query: QueryEmbedding | None
    ) -> Callable[[TileRequest], tuple[bytes, str]]:
        if query is None:
            return lambda req: self.tiles.uncertainty(req, level)
        return lambda req: self.tiles.heatmap(query_id or "", query, req, level)
