"""Fixtures for the service: a tiny real store, a real redis-server and a real uvicorn process.

The store is built by the real precompute job from a Blue Marble crop with the `test` model
(seeded random weights), a few dozen chunks, so the session pays seconds for it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from embeddings_store.grid import Level

BBOX = (-104.0, 36.0, -99.0, 40.0)  # inside the Blue Marble crop below
BASE_M = 20000.0
LEVELS = (Level(1, 8, 8), Level(5, 6, 8))
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up in {timeout} s ({last})")


@pytest.fixture(scope="session")
def tiny_store(bluemarble_tif, tiny_checkpoint, tmp_path_factory) -> Path:
    from embeddings_store.precompute import PrecomputeSpec, precompute
    from embeddings_store.region import Region

    store = tmp_path_factory.mktemp("store") / "store.zarr"
    spec = PrecomputeSpec(
        imagery=str(bluemarble_tif),
        checkpoint=str(tiny_checkpoint),
        store=str(store),
        levels=LEVELS,
        region=Region(BBOX),
        base_footprint_m=BASE_M,
        batch_size=64,
        with_fused=True,  # mu0/c0: the no-metadata maps come straight from the store
    )
    precompute(spec, progress=False)
    return store


@pytest.fixture(scope="session")
def tiny_gallery(tiny_store, tiny_checkpoint) -> Path:
    """A sound gallery beside the tiny store, where `serve` finds it: one synthesised clip per
    demo class with captions, the 14 class labels, and a corrupt clip (listed as skipped)."""
    from embeddings_store.demo.sounds import write_gallery_audio
    from embeddings_store.sounds.build import build_sound_gallery
    from model.checkpoint import load_checkpoint

    audio = tiny_store.parent / "gallery-audio"
    write_gallery_audio(audio, clips_per_class=1)
    (audio / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEnot really a wave file")
    out = tiny_store.parent / "gallery"
    build_sound_gallery(
        load_checkpoint(tiny_checkpoint), audio, out, captions=audio / "captions.csv",
        labels=audio / "labels.txt", progress=False, log=lambda _: None,
    )  # fmt: skip
    return out


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_redis(port: int | None = None) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: apt-get install -y redis-server "
            "(scripts/system-packages.txt lists it)"
        )
    port = port or free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, proc)

    def ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    wait_until(ping, 10, "redis-server")
    return server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@dataclass
class ServiceProcess:
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_service(
    store: Path, checkpoint: Path, log: Path, redis_url: str | None = None,
    workers: int = 1, args: tuple[str, ...] = (), **env: str,
) -> ServiceProcess:  # fmt: skip
    port = free_port()
    cmd = [
        sys.executable, "-m", "server.cli", "serve", "--port", str(port),
        "--store", str(store), "--checkpoint", str(checkpoint), "--workers", str(workers),
    ]  # fmt: skip
    if redis_url:
        cmd += ["--redis-url", redis_url]
    cmd += list(args)
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "SOUNDSCAPE_RATE_LIMIT_PER_MIN": "100000",
        "SOUNDSCAPE_RATE_BURST": "100000",
        **env,
    }
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full_env, stdout=handle, stderr=subprocess.STDOUT
        )
    svc = ServiceProcess(f"http://127.0.0.1:{port}", proc, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log.read_text()[-3000:]}")
        return httpx.get(f"{svc.url}/readyz", timeout=1).status_code == 200

    try:
        wait_until(ready, 60, "soundscape serve")
        # /readyz answers as soon as one worker is up; the others may still be loading (slowly,
        # on a busy machine), and a test that needs all of them must not race that.
        wait_until(lambda: len(ready_pids(log)) >= workers, 60, f"{workers} serve workers")
    except BaseException:
        svc.stop()
        raise
    return svc


def ready_pids(log: Path) -> set[int]:
    """Process ids of the service workers that have logged "ready"."""
    lines = log.read_text(errors="replace").splitlines()
    return {
        json.loads(line)["pid"]
        for line in lines
        if line.startswith("{") and '"msg": "ready"' in line
    }


@pytest.fixture(scope="session")
def service(
    tiny_store, tiny_checkpoint, tiny_gallery, redis_server, tmp_path_factory
) -> Iterator[ServiceProcess]:
    svc = start_service(
        tiny_store, tiny_checkpoint, tmp_path_factory.mktemp("log") / "serve.log",
        redis_server.url,
    )  # fmt: skip
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def client(service) -> Iterator[httpx.Client]:
    with service.client() as c:
        yield c


@pytest.fixture(scope="module")
def app_factory(tiny_store, tiny_checkpoint):
    """Make an in-process app on the test store (settings as keyword arguments)."""
    from server.app import create_app
    from server.settings import Settings

    def make(**kw):
        return create_app(Settings(store=str(tiny_store), checkpoint=str(tiny_checkpoint),
                                   log_json=False, **kw))  # fmt: skip

    return make
