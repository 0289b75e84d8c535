"""The offline precompute job: imagery + checkpoint + region + levels -> embedding store.

Work is split into chunks (one XYZ tile of n x n cells at a level's tile zoom); each chunk is
computed independently with a fixed batching order, written atomically and then marked done.
So a killed job re-run skips finished chunks and produces the same bytes, and the same chunk
function runs in-process or as one Dask task per chunk on a cluster (`--scheduler`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from embeddings_store.cells import Cells
from embeddings_store.fusion import fuse
from embeddings_store.grid import WORLD, CellExtent, Level
from embeddings_store.region import Region
from embeddings_store.store import EmbeddingStore
from model.errors import StoreError
from model.inference import inference_precision, use_bf16
from model.metadata import Metadata

# A footprint is read at the model's native tile size, then resized to its input size, as the
# reference's zoom transform (crop zoom*tile px, resize to tile) followed by the eval transform.
READ_THREADS = 4


@dataclass(frozen=True)
class PrecomputeSpec:
    """Everything a worker needs to compute a chunk (plain data, so it pickles for Dask)."""

    imagery: str
    checkpoint: str
    store: str
    levels: tuple[Level, ...]
    region: Region
    base_footprint_m: float | None = None  # default: the model's tile_size x native GSD
    batch_size: int = 64
    with_fused: bool = False
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16
    min_coverage: float = 0.5
    cache_dir: str | None = None
    # Torch threads per process. Float reductions can depend on the thread count, so workers use
    # the submitting process's count: a cluster run is then bit-identical to an in-process one.
    threads: int | None = None
    # fsspec options of a remote store; may hold secrets, so left out of reprs (Dask logs them).
    storage_options: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def resolved_device(self) -> torch.device:
        """'auto' -> cuda when available, else cpu."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def use_bf16(self) -> bool:
        """Whether inference runs under bf16 autocast (the one policy of `model.inference`)."""
        return use_bf16(self.resolved_device(), self.precision)


@dataclass
class ChunkResult:
    """Arrays of one chunk, ready for `EmbeddingStore.write_chunk`."""

    h: np.ndarray
    valid: np.ndarray
    mu0: np.ndarray | None = None
    c0: np.ndarray | None = None
    u0: np.ndarray | None = None


def default_levels(
    base_footprint_m: float, region: Region, psm_zooms: Iterable[int] = (1, 3, 5), n: int = 16
) -> tuple[Level, ...]:
    """One level per PSM zoom with cells about half a footprint apart at the region's centre.

    Half-footprint spacing makes neighbouring footprints overlap, as the reference's 6 km grid
    under 12.8 km footprints did, so maps are smooth rather than blocky.
    """
    lat = math.radians(0.5 * (region.bbox[1] + region.bbox[3]))
    levels = []
    for z in psm_zooms:
        spacing = 0.5 * z * base_footprint_m / math.cos(lat)  # projected metres
        cell_zoom = max(round(math.log2(WORLD / spacing)), int(math.log2(n)))
        levels.append(Level(z, cell_zoom - int(math.log2(n)), n))
    return tuple(levels)


def parse_levels(text: str) -> tuple[tuple[int, int | None, int | None], ...]:
    """'1,3,5' (automatic grids) or '1:9:16,3:8:16' (psm_zoom:tile_zoom:n)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        bits = part.split(":")
        try:
            nums = [int(b) for b in bits]
        except ValueError as exc:
            raise ValueError(
                f"--levels entry {part!r} is not psm_zoom or psm_zoom:tile_zoom:n"
            ) from exc
        if len(nums) == 1:
            out.append((nums[0], None, None))
        elif len(nums) == 3:
            out.append((nums[0], nums[1], nums[2]))
        else:
            raise ValueError(f"--levels entry {part!r} is not psm_zoom or psm_zoom:tile_zoom:n")
        if nums[0] not in (1, 3, 5):
            raise ValueError(f"PSM zoom levels are 1, 3 and 5; got {nums[0]} in --levels")
    if not out:
        raise ValueError("--levels is empty")
    return tuple(out)


class ChunkComputer:
    """Model + imagery for computing chunks; one per process (workers cache it)."""

    def __init__(self, spec: PrecomputeSpec) -> None:
        from embeddings_store.imagery import open_imagery
        from model.checkpoint import load_checkpoint

        self.spec = spec
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.device = spec.resolved_device()
        self.model = load_checkpoint(spec.checkpoint, device=self.device)
        self.imagery = open_imagery(spec.imagery, cache_dir=spec.cache_dir)
        img = self.model.config.image
        self.read_px = img.tile_size
        self.input_px = img.img_size
        self.base_footprint_m = spec.base_footprint_m or img.tile_size * img.native_gsd
        self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="imagery")
        self._prefetch = ThreadPoolExecutor(1, thread_name_prefix="prefetch")

    def cell_mask(self, level: Level, tx: int, ty: int) -> np.ndarray:
        """(n, n) cells of the chunk whose centre lies inside the region."""
        cx0, cx1, cy0, cy1 = level.chunk_cells(tx, ty)
        lon = level.cell_centers_lon(np.arange(cx0, cx1))
        lat = level.cell_centers_lat(np.arange(cy0, cy1))
        lon_g, lat_g = np.meshgrid(lon, lat)
        return self.spec.region.contains(lon_g, lat_g)

    def load(self, level: Level, tx: int, ty: int) -> tuple[np.ndarray, torch.Tensor]:
        """Read the chunk's footprints: (valid (n, n), images (k, 3, S, S) of the valid cells)."""
        from model.transforms import eval_transform, to_tensor

        n = level.n
        cx0, _, cy0, _ = level.chunk_cells(tx, ty)
        inside = self.cell_mask(level, tx, ty)
        cells = [(r, c) for r in range(n) for c in range(n) if inside[r, c]]

        def read(rc: tuple[int, int]) -> tuple[np.ndarray, float]:
            bounds = level.footprint_bounds(cx0 + rc[1], cy0 + rc[0], self.base_footprint_m)
            return self.imagery.read(bounds, self.read_px)

        reads = list(self._pool.map(read, cells))
        valid = np.zeros((n, n), dtype=bool)
        images = []
        for (r, c), (img, coverage) in zip(cells, reads, strict=True):
            if coverage >= self.spec.min_coverage:
                valid[r, c] = True
                images.append(eval_transform(to_tensor(img), self.input_px))
        stacked = torch.stack(images) if images else torch.zeros(0, 3, self.input_px, self.input_px)
        return valid, stacked

    def compute(self, level: Level, tx: int, ty: int, valid: np.ndarray, images: torch.Tensor
                ) -> ChunkResult:  # fmt: skip
        """Embed the valid cells of a chunk in fixed-size batches (row-major order); with
        `with_fused`, also fuse them with every metadata component masked (mu0/c0/u0)."""
        n, d = level.n, self.model.config.embed_dim
        h = np.zeros((n * n, d), dtype=np.float32)
        idx = np.flatnonzero(valid.ravel())
        with inference_precision(self.device, self.spec.precision):
            for start in range(0, len(idx), self.spec.batch_size):
                sel = idx[start : start + self.spec.batch_size]
                x = images[start : start + len(sel)].to(self.device)
                h[sel] = self.model.encode_image(x, float(level.psm_zoom)).float().cpu().numpy()
        res = ChunkResult(h.reshape(n, n, d), valid)
        if self.spec.with_fused:
            # From the full-precision h (the store keeps float16): the most exact no-metadata map.
            cells = Cells(CellExtent.chunk(level, tx, ty), res.h, valid)
            fused = fuse(self.model, cells, Metadata.none(), self.spec.precision)
            res.mu0 = fused.aug[:, :-1].reshape(n, n, d)
            res.c0 = fused.variance.reshape(n, n)
            res.u0 = fused.unc.reshape(n, n)
        return res

    def run_chunk(self, store: EmbeddingStore, level: Level, tx: int, ty: int) -> int:
        """Compute and write one chunk; returns the number of valid cells."""
        valid, images = self.load(level, tx, ty)
        res = self.compute(level, tx, ty, valid, images)
        store.write_chunk(level.psm_zoom, tx, ty, res.h, res.valid, res.mu0, res.c0, res.u0)
        return int(res.valid.sum())

    def submit_load(self, level: Level, tx: int, ty: int) -> Future:
        """Start reading a chunk's imagery in the background (overlaps I/O with compute)."""
        return self._prefetch.submit(self.load, level, tx, ty)


@dataclass
class PrecomputeReport:
    """What a run did."""

    store: str
    model_id: str
    chunks_total: int
    chunks_computed: int
    valid_cells: int


def open_or_create_store(
    spec: PrecomputeSpec,
    model_id: str,
    config_name: str,
    embed_dim: int,
    imagery: dict[str, Any],
    overwrite: bool,
) -> EmbeddingStore:
    """The job's store: created, or reopened for resuming (refused if built differently)."""
    return EmbeddingStore.create(
        spec.store,
        model_id=model_id,
        config_name=config_name,
        embed_dim=embed_dim,
        levels=list(spec.levels),
        bbox=spec.region.bbox,
        imagery=imagery,
        with_fused=spec.with_fused,
        overwrite=overwrite,
        storage_options=spec.storage_options,
    )


def check_region_overlaps(
    region: Region, imagery_bounds: tuple[float, float, float, float]
) -> None:
    """Refuse a region that lies entirely outside the imagery."""
    w, s, e, n = region.bbox
    iw, is_, ie, in_ = imagery_bounds
    if iw > ie:  # imagery crossing the antimeridian: only the latitudes can be checked cheaply
        iw, ie = -180.0, 180.0
    if w >= ie or e <= iw or s >= in_ or n <= is_:
        raise ValueError(
            f"the region {region.bbox} lies outside the imagery, which covers "
            f"({iw:.4f}, {is_:.4f}, {ie:.4f}, {in_:.4f}) (west, south, east, north)"
        )


def precompute(
    spec: PrecomputeSpec,
    *,
    overwrite: bool = False,
    scheduler: str | None = None,
    progress: bool = True,
    on_chunk: Callable[[int, int, int], None] | None = None,
) -> PrecomputeReport:
    """Run the job to completion (resuming an interrupted one)."""
    if spec.threads is None:
        spec = dataclasses.replace(spec, threads=torch.get_num_threads())
    computer = ChunkComputer(spec)
    check_region_overlaps(spec.region, computer.imagery.bounds_lonlat())
    imagery_attrs = {**computer.imagery.describe(), "base_footprint_m": computer.base_footprint_m}
    cfg = computer.model.config
    store = open_or_create_store(
        spec, computer.model.model_id, cfg.name, cfg.embed_dim, imagery_attrs, overwrite
    )
    todo = [(lv, tx, ty) for lv in spec.levels for tx, ty in store.pending_tiles(lv.psm_zoom)]
    total = sum(store.extent(lv.psm_zoom).n_chunks() for lv in spec.levels)
    bar = tqdm(
        total=sum(lv.n * lv.n for lv, _, _ in todo),
        unit="cell",
        unit_scale=True,
        disable=None if progress else True,
        desc="precompute",
        dynamic_ncols=True,
    )
    valid_cells = 0
    try:
        if scheduler:
            valid_cells = _run_dask(spec, todo, scheduler, bar, on_chunk)
        else:
            valid_cells = _run_local(computer, store, todo, bar, on_chunk)
    finally:
        bar.close()
    return PrecomputeReport(spec.store, computer.model.model_id, total, len(todo), valid_cells)


def _run_local(
    computer: ChunkComputer,
    store: EmbeddingStore,
    todo: list[tuple[Level, int, int]],
    bar: tqdm,
    on_chunk: Callable[[int, int, int], None] | None,
) -> int:
    valid_cells = 0
    pending = computer.submit_load(*todo[0]) if todo else None
    for i, (lv, tx, ty) in enumerate(todo):
        assert pending is not None
        valid, images = pending.result()
        # Read the next chunk's imagery while the model works on this one.
        pending = computer.submit_load(*todo[i + 1]) if i + 1 < len(todo) else None
        res = computer.compute(lv, tx, ty, valid, images)
        store.write_chunk(lv.psm_zoom, tx, ty, res.h, res.valid, res.mu0, res.c0, res.u0)
        valid_cells += int(res.valid.sum())
        bar.update(lv.n * lv.n)
        if on_chunk:
            on_chunk(lv.psm_zoom, tx, ty)
    return valid_cells


_WORKER_STATE: dict[PrecomputeSpec, tuple[ChunkComputer, EmbeddingStore]] = {}
_WORKER_LOCK = threading.Lock()


def dask_chunk_task(spec: PrecomputeSpec, psm_zoom: int, tx: int, ty: int) -> int:
    """One Dask task: compute and write one chunk (model and store cached per worker process)."""
    with _WORKER_LOCK:
        state = _WORKER_STATE.get(spec)
        if state is None:
            computer = ChunkComputer(spec)
            store = EmbeddingStore.open(
                spec.store,
                expect_model_id=computer.model.model_id,
                storage_options=spec.storage_options,
                mode="r+",
            )
            state = _WORKER_STATE[spec] = (computer, store)
    computer, store = state
    level = next(lv for lv in spec.levels if lv.psm_zoom == psm_zoom)
    return computer.run_chunk(store, level, tx, ty)


def _run_dask(
    spec: PrecomputeSpec,
    todo: list[tuple[Level, int, int]],
    address: str,
    bar: tqdm,
    on_chunk: Callable[[int, int, int], None] | None,
) -> int:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise StoreError(
            "--scheduler needs the 'distributed' package: pip install distributed"
        ) from exc
    try:
        client = Client(address, timeout="10s")
    except OSError as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    valid_cells = 0
    try:
        futures = {
            client.submit(dask_chunk_task, spec, lv.psm_zoom, tx, ty, pure=False, retries=2): (
                lv,
                tx,
                ty,
            )
            for lv, tx, ty in todo
        }
        for fut in as_completed(futures):
            lv, tx, ty = futures[fut]
            valid_cells += int(fut.result())
            bar.update(lv.n * lv.n)
            if on_chunk:
                on_chunk(lv.psm_zoom, tx, ty)
    finally:
        client.close()
    return valid_cells
