"""Model and scoring work off the event loop: a bounded thread pool and async single flight."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    """Too many jobs are waiting: the client should retry (503 + Retry-After)."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("the service is busy; retry shortly")
        self.retry_after_s = retry_after_s


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
        self._flights: dict[str, asyncio.Future[Any]] = {}

    @property
    def depth(self) -> int:
        """Jobs submitted and not finished (running + queued)."""
        return self._pending

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the pool; Overloaded when the queue is full."""
        with self._lock:
            if self._pending >= self.limit:
                raise Overloaded()
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

    async def run_once(self, key: str, fn: Callable[..., T], *args: Any) -> T:
        """Like `run`, but concurrent calls with the same key share one job."""
        fut = self._flights.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        try:
            result = await self.run(fn, *args)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: followers re-raise it, nobody may be waiting
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._flights.pop(key, None)

    def shutdown(self) -> None:
        """Stop accepting work and let running jobs finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)
