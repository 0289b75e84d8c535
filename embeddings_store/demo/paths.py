"""Where the demo's built files live: one cache folder outside the git tree (configurable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embeddings_store.demo.geo import default_cache_dir


@dataclass(frozen=True)
class DemoPaths:
    """The demo's files, all under one root folder."""

    root: Path

    @property
    def imagery(self) -> Path:
        """The demo imagery (Blue Marble with land cover and settlements drawn in) as a GeoTIFF."""
        return self.root / "imagery.tif"

    @property
    def train_dir(self) -> Path:
        """Training work folder (trainer state for resuming, losses, evaluation)."""
        return self.root / "train"

    @property
    def checkpoint(self) -> Path:
        """The trained demo model in the project's checkpoint format."""
        return self.root / "demo-model.safetensors"

    @property
    def store(self) -> Path:
        """The demo embedding store (Zarr) over the default region."""
        return self.root / "store.zarr"

    @property
    def gallery(self) -> Path:
        """The demo's sound gallery (synthesised clips and the 14 class labels) for /listen."""
        return self.root / "gallery"

    @property
    def gallery_audio(self) -> Path:
        """The synthesised clips, captions.csv and labels.txt the gallery is built from."""
        return self.root / "gallery-audio"

    @property
    def samples(self) -> Path:
        """Folder of cached training samples (rendered footprints and features)."""
        return self.root / "samples"


def demo_paths(cache_dir: str | Path | None = None) -> DemoPaths:
    """Paths of the demo's files under `cache_dir` (default: $SOUNDSCAPE_DEMO_CACHE or ~/.cache)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return DemoPaths(root)
