"""Per-client token buckets for the POST endpoints (in-process, per worker)."""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """`rate_per_min` requests per minute per key, with bursts of up to `burst`."""

    def __init__(self, rate_per_min: int, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                self._evict()
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _evict(self) -> None:
        # Bound memory under many clients: drop the oldest entries (they refill to full anyway).
        if len(self._buckets) > self.max_keys:
            for key in list(self._buckets)[: len(self._buckets) - self.max_keys]:
                del self._buckets[key]

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """Retry-After header value (whole seconds, at least 1)."""
        return max(1, math.ceil(wait_s))
