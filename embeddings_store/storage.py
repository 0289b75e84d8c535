"""Where a store lives: a local folder or any fsspec URL (s3://, gs://, az://, memory://, ...).

Credentials and endpoints reach the object store either as fsspec `storage_options` (for s3fs:
`key`, `secret`, `endpoint_url`, `anon`, `client_kwargs`, ...) or through the environment
variables the backend reads itself (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL, AWS_PROFILE, ...), so a server or a worker configured by its environment
needs no options at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from model.errors import StorageAccessError


def user_cache_dir() -> Path:
    """The project's folder in the user cache: $XDG_CACHE_HOME/soundscape-map (~/.cache when
    unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "soundscape-map"


def is_url(location: str | Path) -> bool:
    """Whether a location is an fsspec URL rather than a local path."""
    return "://" in str(location) and not str(location).startswith("file://")


def local_path(location: str | Path) -> Path:
    """A local location as a Path (a file:// URL loses its scheme)."""
    text = str(location)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def parse_storage_options(
    pairs: Iterable[str] = (), json_text: str | None = None
) -> dict[str, Any] | None:
    """Options from a JSON object and KEY=VALUE pairs (later pairs win); None when empty.

    A VALUE is read as JSON when it is valid JSON (`anon=true`, `client_kwargs={"region_name":
    "eu-west-1"}`), otherwise kept as a string; quote a string that would read as JSON
    (`key='"12345"'`).
    """
    options: dict[str, Any] = {}
    if json_text:
        try:
            loaded = json.loads(json_text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--storage-options is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ValueError("--storage-options must be a JSON object")
        options.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--storage-option {pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options or None


def store_exists(location: str | Path, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether a Zarr v3 group (its root zarr.json) exists at the location."""
    if not is_url(location):
        return (local_path(location) / "zarr.json").exists()
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(str(location), **(storage_options or {}))
    except (ImportError, ValueError, TypeError) as exc:
        # an unknown protocol, a backend not installed (fsspec's message names the package), or
        # options the backend does not take
        raise ValueError(f"cannot open {location}: {exc}") from exc
    marker = f"{path.rstrip('/')}/zarr.json"
    # fsspec caches filesystems and their listings per process: ask the object store itself, so
    # a store written by another process (a worker, an earlier run) is seen.
    fs.invalidate_cache(marker)
    try:
        return bool(fs.exists(marker))
    except Exception as exc:  # backends raise their own types (botocore, aiohttp, ...)
        raise StorageAccessError(
            f"cannot reach {location}: {exc}. Check the endpoint and credentials (storage "
            f"options, or the backend's environment variables such as AWS_ENDPOINT_URL, "
            f"AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        ) from exc
