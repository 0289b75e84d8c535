"""The XYZ reader's disk cache: raw tile bytes and markers for missing tiles, written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from embeddings_store.imagery.base import ImageryError


class TileCache:
    """Tiles of one URL template under `<cache_dir>/xyz-<hash of the template>/z/x/y<ext>`.

    A missing tile (HTTP 404/410/204) is remembered as an empty `y.missing` marker. Delete the
    folder to refetch. A failed write costs speed, never the read.
    """

    def __init__(self, cache_dir: str | Path, template: str, display: str, ext: str) -> None:
        digest = hashlib.sha256(template.encode()).hexdigest()[:16]
        self.root = Path(cache_dir).expanduser() / f"xyz-{digest}"
        self.ext = ext
        note = self.root / "source.txt"
        try:
            if not note.exists():
                atomic_write(note, (display + "\n").encode())
        except OSError as e:
            raise ImageryError(f"cannot use tile cache folder {cache_dir}: {e}") from e

    def path(self, z: int, x: int, y: int) -> Path:
        """Where tile z/x/y's bytes live."""
        return self.root / str(z) / str(x) / f"{y}{self.ext}"

    def get(self, z: int, x: int, y: int) -> tuple[bool, bytes | None]:
        """(found, bytes): found with None is a tile remembered as missing."""
        hit = self.path(z, x, y)
        if hit.exists():
            return True, hit.read_bytes()
        return hit.with_name(f"{y}.missing").exists(), None

    def put(self, z: int, x: int, y: int, data: bytes | None) -> None:
        """Remember a tile's bytes (None: the tile does not exist)."""
        hit = self.path(z, x, y)
        with contextlib.suppress(OSError):  # a full disk costs speed, not the read
            atomic_write(hit if data is not None else hit.with_name(f"{y}.missing"), data or b"")

    def forget(self, z: int, x: int, y: int) -> None:
        """Drop a cached tile (one that turned out not to decode)."""
        with contextlib.suppress(OSError):
            self.path(z, x, y).unlink()


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that readers see either nothing or all of it (rename in one folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
