"""Redis outages, restarts, several workers and many concurrent clients, over real HTTP."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.server.conftest import ready_pids, start_redis, start_service
from tests.server.helpers import audio_bytes, decode_tile

SOAK_S = float(os.environ.get("SOUNDSCAPE_TEST_SOAK_S", "30"))


@pytest.fixture
def own_redis():
    server = start_redis()
    yield server
    server.stop()


def test_killing_redis_never_fails_a_request(own_redis, tiny_store, tiny_checkpoint, tmp_path):
    svc = start_service(tiny_store, tiny_checkpoint, tmp_path / "serve.log", own_redis.url,
                        SOUNDSCAPE_REDIS_RETRY_S="0.5")  # fmt: skip
    try:
        with svc.client(timeout=20) as c:
            qid = c.post("/queries", json={"text": "frogs at night"}).json()["id"]
            assert c.get(f"/tiles/{qid}/8/55/98.png").status_code == 200
            assert c.get("/readyz").json()["redis"] == "up"
            own_redis.stop()  # SIGKILL mid-test
            statuses = Counter()
            t0 = time.monotonic()
            for i in range(12):
                for url in (
                    f"/tiles/{qid}/8/55/98.png",  # cached
                    f"/tiles/{qid}/8/55/98.png?month={i + 1}",  # new metadata: computed
                    f"/uncertainty/9/{110 + i % 3}/197.png?hour={i}",
                    f"/tiles/rain%20{i}/8/56/98.png",  # a brand-new text query
                ):
                    r = c.get(url)
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        decode_tile(r.content)
                r = c.post("/queries", json={"text": f"wind {i}"})
                statuses[r.status_code] += 1
                r = c.post("/similarity", json={"query": {"id": qid}, "points": [[38, -101]]})
                statuses[r.status_code] += 1
            assert statuses == Counter({200: 72}), statuses
            assert time.monotonic() - t0 < 60
            # Redis comes back on the same port: the service uses it again.
            back = start_redis(own_redis.port)
            try:
                deadline = time.monotonic() + 10
                while c.get(f"/tiles/{qid}/8/55/98.png?hour=1").status_code == 200:
                    if c.get("/readyz").json()["redis"] == "up" or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert c.get("/readyz").json()["redis"] == "up"
            finally:
                back.stop()
    finally:
        svc.stop()


def wait_for_redis_state(client, want: str, within_s: float) -> float:
    """Seconds until /readyz reports `want` for Redis (fails after `within_s`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within_s:
        if client.get("/readyz").json()["redis"] == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"/readyz did not say redis {want!r} within {within_s} s")


def test_readiness_tells_the_truth_about_redis(own_redis, tiny_store, tiny_checkpoint, tmp_path):
    # Nothing but /readyz is asked while Redis dies: readiness must notice it by itself.
    svc = start_service(tiny_store, tiny_checkpoint, tmp_path / "serve.log", own_redis.url)
    try:
        with svc.client(timeout=20) as c:
            assert c.get("/readyz").json()["redis"] == "up"
            own_redis.stop()  # SIGKILL
            assert wait_for_redis_state(c, "down", 2.0) < 2.0
            assert c.get("/readyz").status_code == 200  # the service itself is still ready
            qid = c.post("/queries", json={"text": "owls hooting"}).json()["id"]
            assert c.get(f"/tiles/{qid}/8/55/98.png").status_code == 200  # tiles still served
            back = start_redis(own_redis.port)
            try:
                wait_for_redis_state(c, "up", 5.0)
                # ... and the tier is used again: a new query lands in the restarted Redis.
                qid = c.post("/queries", json={"text": "owls hooting again"}).json()["id"]
                assert b"q:" + qid.encode() in redis_keys(back.port)
            finally:
                back.stop()
    finally:
        svc.stop()


def request_pids(log) -> set[int]:
    """Worker processes that answered POST /queries (from their JSON access logs)."""
    pids = set()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"path": "/queries"' in line and '"method": "POST"' in line:
            pids.add(json.loads(line)["pid"])
    return pids


def post_fresh(url: str, text: str, headers: dict | None = None) -> int:
    """POST /queries on a new connection (so the OS spreads requests over the workers)."""
    with httpx.Client(base_url=url, timeout=30, headers={"connection": "close"}) as c:
        return c.post("/queries", json={"text": text}, headers=headers or {}).status_code


def test_rate_limits_are_shared_by_workers_and_not_chosen_by_clients(
    own_redis, tiny_store, tiny_checkpoint, tmp_path
):
    log = tmp_path / "serve.log"
    svc = start_service(tiny_store, tiny_checkpoint, log, own_redis.url, workers=2,
                        SOUNDSCAPE_RATE_LIMIT_PER_MIN="6", SOUNDSCAPE_RATE_BURST="4")  # fmt: skip
    try:
        codes = [post_fresh(svc.url, f"bucket {i}") for i in range(12)]
        # One bucket for the client across both workers: the burst, then 429s (per-worker
        # buckets would have let up to twice the burst through).
        assert codes.count(200) == 4 and codes[:4] == [200] * 4, codes
        assert set(codes[4:]) == {429}
        assert len(request_pids(log)) == 2, "both workers should have answered"
        # X-Forwarded-For is not trusted from an unconfigured peer: no escape to a new bucket.
        assert post_fresh(svc.url, "spoof", {"x-forwarded-for": "203.0.113.9"}) == 429
    finally:
        svc.stop()


def test_forwarded_clients_get_their_own_buckets_behind_a_trusted_proxy(
    own_redis, tiny_store, tiny_checkpoint, tmp_path
):
    svc = start_service(tiny_store, tiny_checkpoint, tmp_path / "serve.log", own_redis.url,
                        args=("--forwarded-allow-ips", "127.0.0.1"),
                        SOUNDSCAPE_RATE_LIMIT_PER_MIN="6", SOUNDSCAPE_RATE_BURST="2")  # fmt: skip
    try:
        a = {"x-forwarded-for": "203.0.113.1"}
        b = {"x-forwarded-for": "203.0.113.2"}
        assert [post_fresh(svc.url, f"a{i}", a) for i in range(3)] == [200, 200, 429]
        assert [post_fresh(svc.url, f"b{i}", b) for i in range(3)] == [200, 200, 429]
    finally:
        svc.stop()


def test_rate_limits_fall_back_to_each_worker_when_redis_is_down(
    own_redis, tiny_store, tiny_checkpoint, tmp_path
):
    svc = start_service(tiny_store, tiny_checkpoint, tmp_path / "serve.log", own_redis.url,
                        SOUNDSCAPE_RATE_LIMIT_PER_MIN="6", SOUNDSCAPE_RATE_BURST="2")  # fmt: skip
    try:
        own_redis.stop()
        codes = [post_fresh(svc.url, f"down {i}") for i in range(4)]
        assert codes == [200, 200, 429, 429], codes  # limited, never a 500
    finally:
        svc.stop()


def redis_keys(port: int) -> list[bytes]:
    import redis

    return redis.Redis(port=port).keys("*")


def test_queries_survive_restarts_and_are_shared_by_workers(
    own_redis, tiny_store, tiny_checkpoint, tmp_path
):
    first = start_service(tiny_store, tiny_checkpoint, tmp_path / "a.log", own_redis.url)
    try:
        with first.client() as c:
            qid = c.post("/queries", files={"audio": ("a.flac", audio_bytes("FLAC", "PCM_16"))})
            qid = qid.json()["id"]
    finally:
        first.stop()
    # A new server (two workers) knows the audio query only through Redis.
    second = start_service(tiny_store, tiny_checkpoint, tmp_path / "b.log", own_redis.url,
                           workers=2)  # fmt: skip
    try:
        with second.client() as c:
            for i in range(16):  # new connections spread over both workers
                with second.client() as fresh:
                    r = fresh.get(f"/tiles/{qid}/8/{54 + i % 4}/98.png")
                    assert r.status_code == 200, r.text
            assert c.get("/readyz").status_code == 200
            # Whichever worker answers /metrics reports the tiles of both workers.
            for _ in range(3):
                with second.client() as fresh:
                    text = fresh.get("/metrics").text
                counted = sum(
                    float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("soundscape_tile_seconds_count")
                )  # fmt: skip
                assert counted == 16
        assert len(ready_pids(second.log)) == 2  # each worker loaded model and store
    finally:
        second.stop()


def test_concurrent_clients_get_no_errors(service, text_query_id):
    urls = []
    for i in range(6):
        for x in range(54, 58):
            urls.append(f"/tiles/{text_query_id}/8/{x}/98.png?month={i + 1}")
            urls.append(f"/uncertainty/8/{x}/99.png?hour={i}")
    urls += [f"/tiles/{text_query_id}/{z}/{x}/{y}.png" for z, x, y in
             [(6, 13, 24), (7, 27, 49), (9, 110, 197), (10, 221, 394)]]  # fmt: skip
    errors: list[str] = []
    counts = Counter()
    stop = time.monotonic() + SOAK_S
    lock = threading.Lock()

    def worker(k: int) -> None:
        with service.client(timeout=30) as c:
            i = k
            while time.monotonic() < stop:
                url = urls[i % len(urls)]
                i += 7
                try:
                    if i % 23 == 0:
                        r = c.post("/similarity", json={"query": {"id": text_query_id},
                                                        "points": [[38.0, -101.0]]})  # fmt: skip
                    else:
                        r = c.get(url)
                    ok = r.status_code in (200, 304)
                    with lock:
                        counts[r.status_code] += 1
                        if not ok:
                            errors.append(f"{url}: {r.status_code} {r.text[:200]}")
                except Exception as exc:  # a dropped connection is an error too
                    with lock:
                        errors.append(f"{url}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SOAK_S + 60)
    assert not errors, errors[:5]
    assert counts[200] > 32


@pytest.fixture(scope="module")
def text_query_id(client) -> str:
    return client.post("/queries", json={"text": "church bells"}).json()["id"]
