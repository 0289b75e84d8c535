"""Stores on object storage: precompute, resume and read through s3:// against a real S3 server.

The server is moto's S3 implementation running over HTTP on a free local port, so the same
s3fs/aiobotocore client code that talks to AWS, MinIO or Ceph is exercised end to end, from
separate processes as well as in-process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embeddings_store.grid import CellExtent, Level, tile_window
from embeddings_store.precompute import PrecomputeSpec, precompute
from embeddings_store.region import Region
from embeddings_store.storage import StorageAccessError, parse_storage_options, store_exists
from embeddings_store.store import EmbeddingStore, StoreError, StoreMismatchError

BBOX = (-104.0, 36.0, -101.0, 38.0)  # inside the Blue Marble crop (-110..-90, 30..45)
BASE_M = 20000.0
LEVELS = (Level(1, 8, 4), Level(5, 7, 4))  # a dozen chunks: quick, yet long enough to kill
BUCKET = "soundscape"
KEY, SECRET = "testing-key", "testing-secret"
# No profile, config file or instance metadata of the machine may leak into the tests.
HERMETIC_AWS = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
INSTALL_HINT = "install the dev extra: pip install -c constraints.txt -e '.[dev]' (moto, s3fs)"


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free port with one empty bucket; yields its endpoint URL."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.fail(f"object-storage tests need moto's S3 server and boto3 ({exc}); {INSTALL_HINT}")
    try:
        import s3fs  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"object-storage tests need s3fs ({exc}); {INSTALL_HINT}")
    # werkzeug logs every request at INFO: hundreds of lines that would bury a failure's cause.
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()
    werkzeug_log.setLevel(level)


@pytest.fixture(scope="module")
def s3_client(s3_endpoint):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )


def options(endpoint: str) -> dict[str, str]:
    return {"endpoint_url": endpoint, "key": KEY, "secret": SECRET}


def hermetic_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS settings of the machine (profiles, keys)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HF_HUB_OFFLINE="1", **HERMETIC_AWS, **extra)
    return env


def aws_environment(mp: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point this process at the test server through the standard AWS_* variables only."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        mp.delenv(key)
    for key, value in aws_env(endpoint).items():
        if key.startswith("AWS_"):
            mp.setenv(key, value)
    # fsspec caches s3fs instances by their arguments, so instances made here (no options) never
    # mix with those made with explicit options. They are not dropped afterwards: an
    # asynchronous s3fs instance (what zarr makes) has no finaliser and would warn when collected.


def precompute_cmd(tif: Path, ckpt: Path, store: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "server.cli",
        "precompute",
        "--imagery",
        str(tif),
        "--checkpoint",
        str(ckpt),
        "--store",
        store,
        "--bbox=" + ",".join(map(str, BBOX)),
        "--levels",
        ",".join(f"{lv.psm_zoom}:{lv.tile_zoom}:{lv.n}" for lv in LEVELS),
        "--base-footprint",
        str(BASE_M),
        "--batch-size",
        "16",
        "--with-fused",
        "--no-progress",
        *extra,
    ]


def local_objects(root: Path) -> dict[str, bytes]:
    """Every file of a local store except the root metadata (it holds the creation time)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != "zarr.json"
    }


def bucket_objects(client, prefix: str) -> dict[str, bytes]:
    """The same for a store in the bucket."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if rel != "zarr.json":
                out[rel] = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    return out


@pytest.fixture(scope="module")
def local_reference(bluemarble_tif, tiny_checkpoint, tmp_path_factory) -> Path:
    """The same job run in-process into a local folder."""
    store = tmp_path_factory.mktemp("ref") / "ref.zarr"
    spec = PrecomputeSpec(
        imagery=str(bluemarble_tif),
        checkpoint=str(tiny_checkpoint),
        store=str(store),
        levels=LEVELS,
        region=Region(BBOX),
        base_footprint_m=BASE_M,
        batch_size=16,
        with_fused=True,
    )
    precompute(spec, progress=False)
    return store


def aws_env(endpoint: str) -> dict[str, str]:
    """A process environment that reaches the test server through AWS_* variables only."""
    return hermetic_env(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET
    )


def start_dask_cluster(env: dict[str, str], workdir: Path) -> tuple[str, list[subprocess.Popen]]:
    """A scheduler and two single-threaded worker processes on a free local port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            **quiet,
        )
    ]
    worker = [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"]
    for _ in range(2):
        procs.append(subprocess.Popen([*worker, "--local-directory", str(workdir)], **quiet))
    return address, procs


def stop(procs: list[subprocess.Popen]) -> None:
    """Workers first, then the scheduler (so no worker waits to reconnect to it)."""
    for group in (procs[1:], procs[:1]):
        for p in group:
            p.terminate()
        for p in group:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def s3_store(s3_endpoint, s3_client, bluemarble_tif, tiny_checkpoint, tmp_path_factory) -> str:
    """`soundscape precompute --store s3://...` killed mid-run, then re-run to completion.

    The killed run gets its endpoint and keys as --storage-option flags; the re-run only the
    standard AWS_* variables, so both ways of reaching object storage are covered.
    """
    url = f"s3://{BUCKET}/killed.zarr"
    flags = [f"--storage-option={k}={v}" for k, v in options(s3_endpoint).items()]
    log = tmp_path_factory.mktemp("logs") / "killed.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            precompute_cmd(bluemarble_tif, tiny_checkpoint, url, *flags),
            env=hermetic_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.time() + 120
        done_prefix = "killed.zarr/psm1/done/c/"
        while time.time() < deadline and proc.poll() is None:
            listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=done_prefix)
            if listed.get("KeyCount", 0) >= 3:
                break
            time.sleep(0.05)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert alive, f"the job ended before it could be killed: {log.read_text()}"
    partial = EmbeddingStore.open(url, storage_options=options(s3_endpoint))
    assert not partial.is_complete()
    # The re-run goes in-process (a subprocess would spend seconds importing torch again).
    from server.cli import main

    args = precompute_cmd(bluemarble_tif, tiny_checkpoint, url)[3:]  # drop python -m server.cli
    with pytest.MonkeyPatch.context() as mp:
        aws_environment(mp, s3_endpoint)
        assert main(args) == 0
    return url


def test_killed_and_resumed_s3_run_equals_a_local_run(
    s3_store, s3_endpoint, s3_client, local_reference
):
    remote = EmbeddingStore.open(s3_store, storage_options=options(s3_endpoint))
    local = EmbeddingStore.open(local_reference)
    assert remote.is_complete()
    for name in ("model_id", "levels", "bounds", "imagery", "embed_dim", "with_fused"):
        assert remote.attrs[name] == local.attrs[name]
    for lv in LEVELS:
        for name in ("h", "valid", "mu0", "c0", "u0"):
            a = np.asarray(remote.array(lv.psm_zoom, name)[:])
            b = np.asarray(local.array(lv.psm_zoom, name)[:])
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (lv, name)
        assert np.asarray(local.array(lv.psm_zoom, "valid")[:]).any()
    # Object for object, the bucket holds the bytes the local folder holds.
    objects = bucket_objects(s3_client, "killed.zarr/")
    assert objects.keys() == local_objects(local_reference).keys()
    assert objects == local_objects(local_reference)


def test_windows_and_xarray_read_from_s3(s3_store, s3_endpoint, local_reference):
    remote = EmbeddingStore.open(s3_store, storage_options=options(s3_endpoint))
    local = EmbeddingStore.open(local_reference)
    for lv in LEVELS:
        ext = local.extent(lv.psm_zoom)
        z = lv.tile_zoom
        windows = (
            tile_window(lv, ext.tx0, ext.ty0, z, margin=2),  # straddles the store's corner
            tile_window(lv, 2 * ext.tx1 + 1, 2 * ext.ty1, z + 1),  # a deeper web tile
            tile_window(lv, ext.tx1 + 5, ext.ty0, z),  # wholly outside the store
        )
        for window in windows:
            got = remote.read_cells(window, precomputed=True)
            want = local.read_cells(window, precomputed=True)
            assert got.precomputed and got.extent == want.extent
            for name in ("h", "valid", "mu0", "c0", "u0"):
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        ds_remote, ds_local = remote.to_xarray(lv.psm_zoom), local.to_xarray(lv.psm_zoom)
        assert set(ds_remote.data_vars) == set(ds_local.data_vars)
        assert ds_remote["h"].dims == ("y", "x", "d")
        np.testing.assert_array_equal(ds_remote["h"].values, ds_local["h"].values)
        np.testing.assert_array_equal(ds_remote["lat"].values, ds_local["lat"].values)


def test_open_by_environment_alone_as_the_service_does(
    s3_store, s3_endpoint, local_reference, monkeypatch
):
    """A server configured only through AWS_* variables opens the store with no options."""
    aws_environment(monkeypatch, s3_endpoint)
    local = EmbeddingStore.open(local_reference)
    remote = EmbeddingStore.open(s3_store, expect_model_id=local.model_id)
    lv = LEVELS[0]
    ext = remote.extent(lv.psm_zoom)
    chunk = CellExtent.chunk(lv, ext.tx0, ext.ty0)
    got, want = remote.read_cells(chunk), local.read_cells(chunk)
    assert got.h.tobytes() == want.h.tobytes() and (got.valid == want.valid).all()


def test_a_file_url_is_a_local_store(local_reference):
    store = EmbeddingStore.open(local_reference.as_uri())
    assert store.is_complete()
    assert store.to_xarray(LEVELS[0].psm_zoom)["valid"].values.any()


def test_missing_s3_store_is_a_clear_error(s3_endpoint):
    url = f"s3://{BUCKET}/nothing-here.zarr"
    assert not store_exists(url, options(s3_endpoint))
    with pytest.raises(StoreError, match="no embedding store at s3://soundscape/nothing-here"):
        EmbeddingStore.open(url, storage_options=options(s3_endpoint))


def test_unreachable_object_store_is_a_clear_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    bad = {"endpoint_url": f"http://127.0.0.1:{closed}", "key": KEY, "secret": SECRET}
    bad["config_kwargs"] = {"retries": {"max_attempts": 1}}  # fail fast
    with pytest.raises(StorageAccessError, match=r"cannot reach s3://soundscape/x\.zarr.*endpoint"):
        EmbeddingStore.open(f"s3://{BUCKET}/x.zarr", storage_options=bad)
    with pytest.raises(ValueError, match="cannot open nosuchfs://"):
        store_exists("nosuchfs://bucket/x.zarr")


def test_overwrite_on_s3_leaves_no_chunk_of_the_old_store(s3_endpoint, s3_client):
    """--overwrite on object storage: the old store's chunks go, none can leak into the new one."""
    url, opts = f"s3://{BUCKET}/overwrite.zarr", options(s3_endpoint)
    kw = dict(
        config_name="test",
        embed_dim=8,
        levels=[Level(1, 6, 2)],
        bbox=(-104.0, 36.0, -103.0, 37.0),
        imagery={"kind": "none"},
        storage_options=opts,
    )
    old = EmbeddingStore.create(url, model_id="old-model", **kw)
    tx, ty = old.extent(1).tx0, old.extent(1).ty0
    old.write_chunk(1, tx, ty, np.ones((2, 2, 8), np.float32), np.ones((2, 2), bool))
    with pytest.raises(StoreMismatchError, match="model_id"):
        EmbeddingStore.create(url, model_id="new-model", **kw)
    new = EmbeddingStore.create(url, model_id="new-model", overwrite=True, **kw)
    assert new.model_id == "new-model" and not new.done_mask(1).any()
    keys = [
        o["Key"]
        for o in s3_client.list_objects_v2(Bucket=BUCKET, Prefix="overwrite.zarr/")["Contents"]
    ]
    # Creation writes the coordinate arrays; no cell or done-marker chunk may survive.
    assert not [k for k in keys if any(f"/{a}/c/" in k for a in ("h", "valid", "done"))], keys
    reopened = EmbeddingStore.open(url, storage_options=opts, expect_model_id="new-model")
    cells = reopened.read_cells(CellExtent.chunk(reopened.extent(1).level, tx, ty))
    h, valid = cells.h, cells.valid
    assert not valid.any() and not h.any()


@pytest.mark.slow
def test_dask_cluster_writes_straight_to_s3(
    s3_endpoint, bluemarble_tif, tiny_checkpoint, local_reference, tmp_path
):
    """Workers configured by AWS_* variables alone write the chunks a local run writes."""
    env = aws_env(s3_endpoint)
    address, cluster = start_dask_cluster(env, tmp_path / "dask")
    url = f"s3://{BUCKET}/dask.zarr"
    psm5 = LEVELS[-1]
    # One level only (its four chunks): the cluster's start-up is the slow part.
    cmd = precompute_cmd(bluemarble_tif, tiny_checkpoint, url, "--scheduler", address)
    cmd += ["--levels", f"{psm5.psm_zoom}:{psm5.tile_zoom}:{psm5.n}"]  # the last --levels wins
    try:
        out = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        stop(cluster)
    assert out.returncode == 0, out.stderr
    remote = EmbeddingStore.open(url, storage_options=options(s3_endpoint))
    local = EmbeddingStore.open(local_reference)
    assert remote.is_complete() and remote.extent(psm5.psm_zoom) == local.extent(psm5.psm_zoom)
    for name in ("h", "valid", "mu0", "c0", "u0"):
        a = np.asarray(remote.array(psm5.psm_zoom, name)[:])
        b = np.asarray(local.array(psm5.psm_zoom, name)[:])
        assert a.tobytes() == b.tobytes(), name


def test_storage_option_parsing():
    assert parse_storage_options([]) is None
    assert parse_storage_options(
        ["key=abc", "anon=false", 'client_kwargs={"region_name": "eu-west-1"}', "secret=a=b"]
    ) == {
        "key": "abc",
        "anon": False,
        "client_kwargs": {"region_name": "eu-west-1"},
        "secret": "a=b",
    }
    # A quoted JSON string stays a string; the pairs override the JSON object.
    assert parse_storage_options(['key="123"'], '{"key": "x", "anon": true}') == {
        "key": "123",
        "anon": True,
    }
    for bad_pairs, bad_json, message in (
        (["novalue"], None, "not KEY=VALUE"),
        (["=x"], None, "not KEY=VALUE"),
        ([], "{not json", "not JSON"),
        ([], "[1, 2]", "JSON object"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_storage_options(bad_pairs, bad_json)
