"""Prometheus metrics: tile latency by cache outcome, cache hits, queue depth.

With several uvicorn workers `soundscape serve` sets PROMETHEUS_MULTIPROC_DIR, each worker
writes its samples there and /metrics (answered by any worker) reports all workers together.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's metrics in their own registry (one per app, so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tile_seconds = Histogram(
            "soundscape_tile_seconds",
            "Tile latency in the server by tile kind and cache outcome (lru, redis, miss, 304)",
            ["kind", "cache"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "soundscape_cache_lookups_total",
            "Cache lookups by tier and outcome; hit ratio = hit / (hit + miss)",
            ["tier", "outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "soundscape_requests_total",
            "HTTP requests by route template (never the raw path) and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "soundscape_rejected_total",
            "Requests refused for load (503) or rate (429)",
            ["reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "soundscape_queue_depth",
            "Jobs running or waiting in the model/scoring executor (all workers)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    def observe_cache(self, tier: str, outcome: str) -> None:
        """Count one cache lookup (the TieredCache observer)."""
        self.cache_lookups.labels(tier, outcome).inc()

    def count_request(self, route: str, status: int) -> None:
        """Count one answered request (the middleware's observer)."""
        self.requests.labels(route, str(status)).inc()

    def set_depth(self, depth: int) -> None:
        """Record this worker's executor depth."""
        self.queue_depth.set(depth)

    def render(self) -> bytes:
        """Text exposition format (every worker's samples in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
