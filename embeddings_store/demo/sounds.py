"""The demo's sound gallery: several varied synthesised clips per class, captioned, and the 14
class labels, embedded by the demo model (`soundscape gallery build` on files written here)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from embeddings_store.demo import CLASS_NAMES
from embeddings_store.demo.audio import SAMPLE_RATE, synthesize
from embeddings_store.demo.captions import CLASS_QUERIES, caption
from embeddings_store.demo.paths import DemoPaths

CLIPS_PER_CLASS = 6
CLIP_SECONDS = 5.0
GALLERY_SEED = 20240
# Each class's label as a person reads it; its query is the class's free-form map query.
LABELS: tuple[str, ...] = tuple(name.replace("_", " ").replace("horns sirens", "horns and sirens")
                                .replace("rain thunder", "rain and thunder")
                                for name in CLASS_NAMES)  # fmt: skip


def write_gallery_audio(folder: Path, clips_per_class: int = CLIPS_PER_CLASS) -> None:
    """Write the clips (FLAC), captions.csv and labels.txt; deterministic for the seed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(GALLERY_SEED)
    rows = []
    for k, name in enumerate(CLASS_NAMES):
        for i in range(clips_per_class):
            wave = synthesize(k, rng, CLIP_SECONDS, SAMPLE_RATE)
            file = f"{name}-{i + 1}.flac"
            sf.write(folder / file, wave, SAMPLE_RATE, format="FLAC")
            # Captions read like the qwen source's sentences, without a time: a clip is played
            # for whatever hour the listener asks about.
            rows.append({"file": file, "caption": caption(k, rng, 1)})
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"{label}\t{query}" for label, query in zip(LABELS, CLASS_QUERIES, strict=True)]
    (folder / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def gallery_ready(paths: DemoPaths, model_id: str) -> bool:
    """Whether the demo gallery exists for this model."""
    try:
        manifest = json.loads((paths.gallery / "gallery.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("model_id") == model_id and len(manifest.get("labels", [])) == len(LABELS)


def build_demo_gallery(
    paths: DemoPaths, progress: bool = True, log: Callable[[str], None] = print
) -> Path:
    """Synthesise the clips (once) and embed them with the demo model into `paths.gallery`."""
    from embeddings_store.sounds.build import build_sound_gallery
    from model.checkpoint import load_checkpoint

    audio = paths.gallery_audio
    if not (audio / "labels.txt").exists():
        write_gallery_audio(audio)
    model = load_checkpoint(paths.checkpoint, device="cpu")
    report = build_sound_gallery(
        model, audio, paths.gallery, captions=audio / "captions.csv",
        labels=audio / "labels.txt", overwrite=True, progress=progress, log=log,
    )  # fmt: skip
    log(f"demo gallery ready: {report.clips} clips, {report.labels} labels, "
        f"{report.seconds:.0f} s ({paths.gallery})")  # fmt: skip
    return paths.gallery
