"""Model and scoring work off the event loop: a bounded thread pool.

Concurrent requests for the same computation share it in the cache (`TieredCache`), the one
single flight of the service, not here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from model.errors import BusyError

T = TypeVar("T")


class BoundedExecutor:
    """A thread pool that refuses work beyond `threads + queue_limit` jobs in flight."""

    def __init__(
        self,
        threads: int,
        queue_limit: int,
        init: Callable[[], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="soundscape", initializer=init)
        self._on_depth = on_depth or (lambda depth: None)
        self.threads = threads
        self.limit = threads + queue_limit
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        """Jobs submitted and not finished (running + queued)."""
        return self._pending

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the pool; BusyError when the queue is full."""
        with self._lock:
            if self._pending >= self.limit:
                raise BusyError()
            self._pending += 1
            depth = self._pending
        self._on_depth(depth)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            with self._lock:
                self._pending -= 1
                depth = self._pending
            self._on_depth(depth)

    def shutdown(self) -> None:
        """Stop accepting work and let running jobs finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)
