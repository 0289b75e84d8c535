"""Decoded store chunks kept in memory, least recently used first out, within a byte budget.

A fused chunk depends on the metadata, its stored arrays do not: a view under a new hour, each
frame of a time-lapse and every tile margin reaching into a neighbour read the same chunks
again. Each such read costs zarr a chunk fetch and decompression per array (about 1.7 ms alone,
5-7 ms while two jobs fuse beside it on two cores), as much as fusing the chunk's cells at
times. A store that does not change under its reader (a server's) keeps them here instead
(`EmbeddingStore.keep_chunks`; docs/ARCHITECTURE.md, "Caches").
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

Observer = Callable[[str, str], None]  # (tier, "hit" | "miss"), as the tiered cache reports


class ChunkCache:
    """Arrays of whole chunks by key, read-only, within `max_bytes` (thread-safe)."""

    TIER = "chunks"

    def __init__(self, max_bytes: int, observer: Observer | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"a chunk cache needs a positive budget, got {max_bytes} bytes")
        self.max_bytes = int(max_bytes)
        self.observer = observer
        self._entries: OrderedDict[Hashable, dict[str, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The chunk's arrays when every one of `names` is held (then most recently used)."""
        with self._lock:
            arrays = self._entries.get(key)
            found = arrays is not None and all(n in arrays for n in names)
            if found:
                self._entries.move_to_end(key)
        if self.observer is not None:
            self.observer(self.TIER, "hit" if found else "miss")
        return dict(arrays) if found and arrays is not None else None

    def put(self, key: Hashable, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Keep a chunk's arrays (merged with those already held for it), made read-only so
        no reader can change what the next one gets; returns everything held for the key. A
        chunk larger than the whole budget is returned but not kept."""
        fresh = {}
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            arr.flags.writeable = False
            fresh[name] = arr
        with self._lock:
            held = self._entries.pop(key, {})
            self._bytes -= sum(a.nbytes for a in held.values())
            merged = {**held, **fresh}
            size = sum(a.nbytes for a in merged.values())
            if size <= self.max_bytes:
                self._entries[key] = merged
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, old = self._entries.popitem(last=False)
                    self._bytes -= sum(a.nbytes for a in old.values())
        return dict(merged)
