"""Whole-level matrices built from a store, kept on disk between server starts.

At start-up the server reads the finest level's precomputed cells (the no-metadata gallery) and
image embeddings h (what top places search from) out of the store: for 10 M cells that is 277 s
of Zarr reads and decompression. Both are a pure function of the store's contents, so they are
saved here as plain .npy files (no pickles) and mapped back on the next start.

An entry is named by the store's identity (`store_token`), the level, what it holds and a digest
of the level's written chunks, so a store that gained chunks (a resumed precompute) gets a new
entry. The level's land, region and edge masks are kept too (a 10 M-cell level's take 28 s),
named also by the GeoNames and land-cover data they were drawn from. An entry is written to a
temporary folder and renamed into place when complete: a killed server leaves no half-written
entry behind, and two workers starting at once keep one.
Only `keep` entries are kept, the least recently used go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("soundscape.level_cache")

# Bump when what an entry holds, or how it is laid out, changes: older entries are then unused.
FORMAT_VERSION = 1
SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def level_digest(written: list[str], dim: int, extra: str = "") -> str:
    """Digest of a level's written chunks (`EmbeddingStore.written_chunks`), its width and
    `extra` (what else the entry depends on): changes when chunks are added."""
    h = hashlib.sha256(f"v{FORMAT_VERSION}|{dim}|{extra}|".encode())
    h.update("\n".join(written).encode())
    return h.hexdigest()[:16]


PREFETCH_BLOCK = 8 << 20


def prefetch(paths: list[Path]) -> threading.Thread:
    """Read files through once on a background thread, so that their pages are in the page
    cache before queries fault them in one by one: after a cold boot a 10 M-cell level's first
    top-10 took 13.6 s that way (its matrices read at 0.6 GB/s take 8 s). The kernel's own
    read-ahead hint (posix_fadvise WILLNEED) did nothing measurable here."""

    def read_through() -> None:
        buf = bytearray(PREFETCH_BLOCK)
        for path in paths:
            try:
                with open(path, "rb", buffering=0) as fh:
                    got = 1
                    while got:  # the bytes are dropped: reading them is the point
                        got = fh.readinto(buf)
            except OSError:  # gone or unreadable: the mapping will report it, not this
                continue

    thread = threading.Thread(target=read_through, name="soundscape-prefetch", daemon=True)
    thread.start()
    return thread


class LevelCache:
    """A folder of entries, each a folder of .npy arrays."""

    def __init__(self, root: str | Path, keep: int = 4, min_cells: int = 0) -> None:
        self.root = Path(root).expanduser()
        self.keep = max(1, int(keep))
        self.min_cells = int(min_cells)  # smaller levels build fast enough: not kept

    def _path(self, name: str) -> Path:
        if not name or not set(name) <= SAFE_NAME or name.startswith("."):
            raise ValueError(f"not a level cache entry name: {name!r}")
        return self.root / name

    def load(self, name: str, expect: dict[str, tuple[tuple[int, ...] | None, str]]) -> dict | None:
        """The entry's arrays, read-only mapped, or None when it is missing or does not hold
        exactly `expect` (array name -> (shape, or None for any; dtype)); its files are then
        read through once in the background (`prefetch`)."""
        out = self._map(name, expect)
        if out is not None:
            prefetch([self._path(name) / f"{key}.npy" for key in expect])
        return out

    def _map(self, name: str, expect: dict[str, tuple[tuple[int, ...] | None, str]]) -> dict | None:
        """`load` without the read-through."""
        path = self._path(name)
        if not path.is_dir():
            return None
        out = {}
        try:
            for key, (shape, dtype) in expect.items():
                arr = np.load(path / f"{key}.npy", mmap_mode="r", allow_pickle=False)
                if arr.dtype != np.dtype(dtype) or (shape is not None and arr.shape != shape):
                    raise ValueError(f"{key}: {arr.dtype}{arr.shape}, expected {dtype}{shape}")
                out[key] = arr
        except (OSError, ValueError) as exc:
            log.warning("level cache entry %s unusable (%s): rebuilding it", name, exc)
            shutil.rmtree(path, ignore_errors=True)
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(path)  # most recently used
        return out

    def save(self, name: str, arrays: dict[str, np.ndarray]) -> dict | None:
        """Write an entry (atomically) and return its arrays mapped from it; None (logged) when
        the disk refuses, so serving goes on from the arrays in hand."""
        path = self._path(name)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        except OSError as exc:
            log.warning("level cache %s not writable (%s)", self.root, exc)
            return None
        try:
            for key, arr in arrays.items():
                np.save(tmp / f"{key}.npy", np.asarray(arr), allow_pickle=False)
            try:
                tmp.rename(path)
            except OSError:
                if not path.is_dir():  # not another worker's copy: a real failure
                    raise
        except OSError as exc:
            log.warning("level cache entry %s not written (%s)", name, exc)
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._prune(path)
        expect = {k: (np.shape(a), np.asarray(a).dtype.str) for k, a in arrays.items()}
        return self._map(name, expect)  # just written: its pages are in the page cache

    def _prune(self, fresh: Path) -> None:
        """Drop the least recently used entries beyond `keep` (never `fresh`), and temporary
        folders a killed writer left more than an hour ago."""
        now = time.time()
        entries = []
        for p in self.root.iterdir():
            try:
                if not p.is_dir():
                    continue
                mtime = p.stat().st_mtime
            except OSError:  # another worker pruned it meanwhile
                continue
            if p.name.startswith(".tmp-"):
                if now - mtime > 3600:
                    shutil.rmtree(p, ignore_errors=True)
            elif p != fresh:
                entries.append((mtime, p))
        entries.sort(reverse=True)
        for _, p in entries[self.keep - 1 :]:
            shutil.rmtree(p, ignore_errors=True)
