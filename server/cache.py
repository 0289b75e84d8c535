"""Byte caches: an in-process LRU, an optional Redis tier, and single-flight computation.

Values are always bytes (never pickles: a shared Redis must not be a code-execution channel).
Redis is an accelerator, not a dependency: every Redis error is swallowed, counted, and makes
the tier stand aside for a short pause, so an outage costs speed and never a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("soundscape.cache")

# Cross-worker single flight: lock lifetime, how long a waiter waits, how often it looks.
LOCK_TTL_S = 10.0
LOCK_WAIT_S = 5.0
LOCK_POLL_S = 0.01

# Called with (tier, outcome): tier "lru"/"redis", outcome "hit"/"miss"/"error".
Observer = Callable[[str, str], None]


class LRUCache:
    """Thread-safe LRU of bytes bounded by total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The value, refreshed as most recent; None when absent."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def set(self, key: str, value: bytes) -> None:
        """Insert, evicting least-recently-used entries; values above the budget are skipped."""
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._data[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self._size -= len(dropped)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size

    def __len__(self) -> int:
        return len(self._data)


class _RedisDown(Exception):
    """Internal signal, never raised past the cache: Redis could not answer (a miss)."""


class RedisCache:
    """Redis GET/SET with short timeouts; after a failure it is skipped for `retry_s`."""

    def __init__(self, url: str, timeout_s: float, retry_s: float, ttl_s: int) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: a slow or absent Redis must cost one short timeout, then be skipped.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
        )
        self.retry_s = retry_s
        self.ttl_s = ttl_s
        self._down_until = 0.0
        self._error_logged = False
        self.up = True  # what the last PING or command said (readiness reports it)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def available(self) -> bool:
        """False during the pause after a failure."""
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        self.up = False
        self._down_until = time.monotonic() + self.retry_s
        if not self._error_logged:
            log.warning("redis unavailable, serving from the local cache: %s", exc)
            self._error_logged = True

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """`fn(redis client)`, or None when Redis is paused or fails (the failure pauses it)."""
        if not self.available:
            return None
        try:
            return fn(self._client)
        except Exception as exc:
            self._failed(exc)
            return None

    def check(self) -> bool:
        """PING Redis now; a success ends the pause at once (the tier is used again)."""
        try:
            self._client.ping()
        except Exception as exc:
            self._failed(exc)
            return False
        if not self.up:
            log.warning("redis is back")
        self.up, self._down_until, self._error_logged = True, 0.0, False
        return True

    def watch(self, interval_s: float = 0.5) -> None:
        """PING every `interval_s` in a daemon thread, so readiness tells the truth even when
        no request touches Redis (stop with `close`)."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.check()

        self._watcher = threading.Thread(target=loop, name="redis-health", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        """Stop the health thread."""
        self._stop.set()

    def get(self, key: str) -> bytes | None:
        """Value or None; _RedisDown when Redis fails (or is paused: None)."""
        if not self.available:
            return None
        try:
            value = self._client.get(key)
        except Exception as exc:  # any redis/socket error: degrade, never fail
            self._failed(exc)
            raise _RedisDown from exc
        self._error_logged = False
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes) -> None:
        """Store with expiry; errors pause the tier."""
        if not self.available:
            return
        try:
            self._client.set(key, value, ex=self.ttl_s)
        except Exception as exc:
            self._failed(exc)

    def try_lock(self, key: str, ttl_s: float) -> Any:
        """Take the key's lock, shared by every worker: our lock (a redis-py `Lock` holding a
        unique token) when taken, False when another worker holds it, None when Redis cannot
        answer. Only the token's owner can release it."""
        if not self.available:
            return None
        lock = self._client.lock(f"lock:{key}", timeout=ttl_s, blocking=False)
        try:
            return lock if lock.acquire(blocking=False) else False
        except Exception as exc:
            self._failed(exc)
            return None

    def unlock(self, lock: Any) -> None:
        """Release a lock from `try_lock`; one that expired or was taken over is left alone."""
        from redis.exceptions import LockError

        try:
            lock.release()
        except LockError:
            pass  # no longer ours: deleting it would break another worker's single flight
        except Exception as exc:
            self._failed(exc)


class SingleFlight:
    """Concurrent callers of the same key share one computation (threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Future[bytes]] = {}

    def run(self, key: str, fn: Callable[[], bytes]) -> bytes:
        """Run `fn` once for all callers that ask for `key` while it runs."""
        with self._lock:
            fut = self._flights.get(key)
            leader = fut is None
            if leader:
                fut = self._flights[key] = Future()
        assert fut is not None
        if not leader:
            return fut.result()
        try:
            value = fn()
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(value)
            return value
        finally:
            with self._lock:
                self._flights.pop(key, None)


class TieredCache:
    """LRU in front of optional Redis in front of a computation, with single flight."""

    def __init__(
        self, lru: LRUCache, redis: RedisCache | None = None, observe: Observer | None = None
    ) -> None:
        self.lru = lru
        self.redis = redis
        self._observe = observe or (lambda tier, outcome: None)
        self._flight = SingleFlight()

    def get_local(self, key: str) -> bytes | None:
        """LRU only: cheap enough for the event loop."""
        value = self.lru.get(key)
        self._observe("lru", "hit" if value is not None else "miss")
        return value

    def get(self, key: str) -> tuple[bytes | None, str]:
        """(value, where): where is 'lru', 'redis' or 'miss'. Blocking (Redis)."""
        value = self.get_local(key)
        if value is not None:
            return value, "lru"
        if self.redis is not None:
            try:
                value = self.redis.get(key)
            except _RedisDown:
                self._observe("redis", "error")
                return None, "miss"
            self._observe("redis", "hit" if value is not None else "miss")
            if value is not None:
                self.lru.set(key, value)
                return value, "redis"
        return None, "miss"

    def set(self, key: str, value: bytes, shared: bool = True) -> None:
        """Store in the LRU and (when `shared`) in Redis."""
        self.lru.set(key, value)
        if shared and self.redis is not None:
            self.redis.set(key, value)

    def get_or_compute(
        self, key: str, compute: Callable[[], bytes], shared: bool = True
    ) -> tuple[bytes, str]:
        """Cached value or `compute()` (once for concurrent callers); returns (value, where)."""
        value, where = self.get(key)
        if value is not None:
            return value, where
        outcome = {"where": "miss"}

        def fill() -> bytes:
            # A concurrent leader may have filled the LRU between our miss and the flight.
            again = self.lru.get(key)
            if again is not None:
                outcome["where"] = "lru"
                return again
            lock = None
            if shared and self.redis is not None:
                # Single flight across processes: while another worker holds the key's lock,
                # wait (a bounded time) for its value; then compute here without its lock.
                lock = self.redis.try_lock(key, LOCK_TTL_S)
                if lock is False:
                    waited = self._wait_for_value(key)
                    if waited is not None:
                        outcome["where"] = "redis"
                        return waited
            try:
                fresh = compute()
                self.set(key, fresh, shared)
            finally:
                if lock and self.redis is not None:
                    self.redis.unlock(lock)
            return fresh

        value = self._flight.run(key, fill)
        return value, outcome["where"]

    def _wait_for_value(self, key: str) -> bytes | None:
        """The value another worker is computing, polled from Redis for at most LOCK_WAIT_S;
        None when Redis fails or the other worker takes too long."""
        assert self.redis is not None
        deadline = time.monotonic() + LOCK_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(LOCK_POLL_S)
            try:
                value = self.redis.get(key)
            except _RedisDown:
                return None
            if value is not None:
                self.lru.set(key, value)
                return value
        return None
