"""Per-client token buckets for the POST endpoints: in Redis when configured (shared by every
worker and replica), in this process otherwise and whenever Redis cannot answer.

The client is the connection's peer address: uvicorn rewrites it from X-Forwarded-For only for
the proxies `soundscape serve --forwarded-allow-ips` names, so a client cannot pick its bucket.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from server.cache import RedisCache

# GCRA (the token bucket as one timestamp per client): emission interval T = 1/rate, burst
# tolerance (burst - 1) * T. Atomic in Redis, on Redis's clock, so workers agree.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return wait end
tat = tat + interval
redis.call('SET', KEYS[1], tat, 'PX', math.ceil(tat - now + tolerance) + 1000)
return 0
"""


class RateLimiter:
    """`rate_per_min` requests per minute per key, with bursts of up to `burst`."""

    def __init__(
        self,
        rate_per_min: int,
        burst: int,
        max_keys: int = 10_000,
        shared: RedisCache | None = None,
    ) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self.shared = shared
        self._script: Any = None
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds to wait."""
        if self.shared is not None:
            wait_ms = self.shared.call(lambda client: self._gcra(client, key))
            if wait_ms is not None:
                return float(wait_ms) / 1000.0
        return self._acquire_local(key)

    def _gcra(self, client: Any, key: str) -> int:
        if self._script is None:
            self._script = client.register_script(_GCRA)
        interval_ms = 1000.0 / self.rate
        tolerance_ms = (self.burst - 1.0) * interval_ms
        return int(self._script(keys=[f"rl:{key}"], args=[interval_ms, tolerance_ms]))

    def _acquire_local(self, key: str) -> float:
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
