"""Build a sound gallery from a folder of clips: checked, embedded, resumable, written whole.

Files are taken in sorted order and embedded in parts of `batch` files. Each finished part is
committed to `<out>.partial/parts/` (its rows, then its record, each by an atomic rename), so a
killed build re-run with the same inputs skips what is done. The gallery appears at `<out>` only
when complete: the partial folder is renamed into place as the last step. Files that cannot be
used (not audio, corrupt, too long, a duplicate) are listed in the manifest with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from embeddings_store.audio import AudioLimits, decode_audio, sniff
from embeddings_store.sounds.gallery import (
    CLIPS_ARRAY,
    CLIPS_DIR,
    FORMAT,
    LABELS_ARRAY,
    MANIFEST,
    VERSION,
    pack_rows,
)
from model.errors import AudioError, InputError
from model.scoring import uncertainty, variance_sum

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
MAX_FILE_BYTES = 64 << 20  # a clip file larger than this is skipped, never read whole
MAX_LABELS = 2000
MAX_LABEL_CHARS = 256
MAX_CAPTION_CHARS = 500
DEFAULT_LIMITS = AudioLimits(max_seconds=60.0)
Log = Callable[[str], None]


@dataclass
class GalleryBuild:
    """What a build produced."""

    out: Path
    clips: int
    labels: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    parts_reused: int = 0
    seconds: float = 0.0


def model_id_of(model: torch.nn.Module) -> str:
    """A loaded checkpoint's id, or the id of a model built in memory."""
    from model.checkpoint import model_id

    found = getattr(model, "model_id", None)
    return str(found) if found else model_id(model)


def read_captions(path: Path | None) -> dict[str, str]:
    """file (relative to the audio folder) -> caption, from a CSV with `file,caption` columns."""
    if path is None:
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"file", "caption"} <= set(reader.fieldnames):
            raise InputError(f"{path}: the captions CSV needs a header with `file` and `caption`")
        out = {}
        for line, row in enumerate(reader, start=2):
            name, text = (
                (row.get("file") or "").strip(),
                " ".join((row.get("caption") or "").split()),
            )
            if not name or not text:
                raise InputError(f"{path}:{line}: empty file or caption")
            out[Path(name).as_posix()] = text[:MAX_CAPTION_CHARS]
    return out


def read_labels(path: Path | None) -> list[tuple[str, str]]:
    """(label, query text) pairs from a file of lines `label` or `label<TAB>query text`
    (blank lines and lines starting with # are ignored)."""
    if path is None:
        return []
    pairs: list[tuple[str, str]] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        label, _, query = (part.strip() for part in line.partition("\t"))
        query = query or label
        if len(label) > MAX_LABEL_CHARS or len(query) > MAX_LABEL_CHARS:
            raise InputError(
                f"{path}:{number}: a label or its query is over {MAX_LABEL_CHARS} chars"
            )
        pairs.append((label, query))
    if len(pairs) > MAX_LABELS:
        raise InputError(f"{path}: {len(pairs)} labels; at most {MAX_LABELS}")
    if len({label for label, _ in pairs}) != len(pairs):
        raise InputError(f"{path}: a label is listed twice")
    return pairs


def audio_files(audio_dir: Path) -> list[Path]:
    """The folder's audio files (by suffix), recursively, in a stable order."""
    if not audio_dir.is_dir():
        raise InputError(f"{audio_dir} is not a folder")
    found = [p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES]
    return sorted(found, key=lambda p: p.relative_to(audio_dir).as_posix())


def build_sound_gallery(
    model: torch.nn.Module,
    audio_dir: str | Path,
    out: str | Path,
    captions: str | Path | None = None,
    labels: str | Path | None = None,
    limits: AudioLimits = DEFAULT_LIMITS,
    batch: int = 32,
    overwrite: bool = False,
    progress: bool = True,
    log: Log = print,
) -> GalleryBuild:
    """Embed every usable clip of `audio_dir` (and the labels) into a gallery at `out`."""
    started = time.monotonic()
    audio_dir, out = Path(audio_dir), Path(out)
    captions_path = None if captions is None else Path(captions)
    labels_path = None if labels is None else Path(labels)
    caption_of = read_captions(captions_path)
    label_pairs = read_labels(labels_path)
    files = audio_files(audio_dir)
    if out.exists():
        if not overwrite:
            raise InputError(f"{out} exists: pass --overwrite to replace it")
        shutil.rmtree(out)
    model_id = model_id_of(model)
    rel = [f.relative_to(audio_dir).as_posix() for f in files]
    work = _work_dir(out, model_id, audio_dir, rel, batch, log)
    parts = [files[i : i + batch] for i in range(0, len(files), batch)]
    reused = 0
    bar = tqdm(total=len(files), unit="clip", desc="gallery", disable=None if progress else True)
    for number, part in enumerate(parts):
        if (work / "parts" / f"part-{number:05d}.npy").exists():
            reused += 1
        else:
            _build_part(model, audio_dir, part, work, number, limits)
        bar.update(len(part))
    bar.close()
    manifest = _assemble(
        work, len(parts), caption_of, label_pairs, model, {
            "audio_dir": str(audio_dir), "captions": None if captions_path is None
            else str(captions_path), "labels": None if labels_path is None else str(labels_path),
        },
    )  # fmt: skip
    os.replace(work, out)
    report = GalleryBuild(out, len(manifest["clips"]), len(manifest["labels"]),
                          manifest["skipped"], reused, time.monotonic() - started)  # fmt: skip
    for skip in report.skipped:
        log(f"skipped {skip['file']}: {skip['reason']}")
    return report


def _fingerprint(model_id: str, audio_dir: Path, rel: list[str], batch: int) -> str:
    h = hashlib.sha256(f"{model_id}\0{batch}\0".encode())
    for name in rel:
        st = (audio_dir / name).lstat()
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _work_dir(
    out: Path, model_id: str, audio_dir: Path, rel: list[str], batch: int, log: Log
) -> Path:
    """The partial folder of this build: kept when the inputs are the same, else started over."""
    work = out.with_name(out.name + ".partial")
    state = {"model_id": model_id, "inputs": _fingerprint(model_id, audio_dir, rel, batch)}
    state_file = work / "state.json"
    if work.exists():
        try:
            same = json.loads(state_file.read_text()) == state
        except (OSError, ValueError):
            same = False
        if same:
            log(f"resuming the build in {work}")
            return work
        log(f"{work} belongs to other inputs or another model: starting over")
        shutil.rmtree(work)
    (work / "parts").mkdir(parents=True)
    (work / CLIPS_DIR).mkdir()
    _write_atomic(state_file, json.dumps(state).encode())
    return work


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _build_part(
    model: torch.nn.Module,
    audio_dir: Path,
    files: list[Path],
    work: Path,
    number: int,
    limits: AudioLimits,
) -> None:
    """Decode, copy and embed one part's files; commit its rows and record atomically."""
    clips: list[dict] = []
    skipped: list[dict[str, str]] = []
    waves: dict[int, list[tuple[int, np.ndarray]]] = {}
    for path in files:
        name = path.relative_to(audio_dir).as_posix()
        try:
            data = _read_clip(path)
            container = sniff(data)
            audio = decode_audio(data, limits)
        except (AudioError, OSError) as exc:
            skipped.append({"file": name, "reason": str(exc)})
            continue
        clip_id = hashlib.sha256(data).hexdigest()[:16]
        target = work / CLIPS_DIR / f"{clip_id}.{container}"
        if not target.exists():
            _write_atomic(target, data)
        rate = audio.sample_rate
        waves.setdefault(rate, []).append((len(clips), np.ascontiguousarray(audio.samples.T)))
        clips.append({
            "id": clip_id, "ext": container, "source": name,
            "duration_s": round(audio.samples.shape[0] / rate, 3), "sample_rate": rate,
        })  # fmt: skip
    rows = np.zeros((len(clips), model.config.embed_dim + 2), np.float32)
    model.eval()
    for rate, group in waves.items():
        order = [i for i, _ in group]
        g = model.embed_audio([w if w.shape[0] > 1 else w[0] for _, w in group], rate)
        rows[order] = _rows_of(g)
    parts = work / "parts"
    record = {"clips": clips, "skipped": skipped}
    _write_atomic(parts / f"part-{number:05d}.json", json.dumps(record).encode())
    tmp = parts / f"part-{number:05d}.tmp.npy"
    np.save(tmp, rows, allow_pickle=False)
    os.replace(tmp, parts / f"part-{number:05d}.npy")  # the part counts as done from here


def _read_clip(path: Path) -> bytes:
    if path.is_symlink() or not path.is_file():
        raise AudioError("not a regular file (links are not followed)")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise AudioError(f"{size >> 20} MiB; clips of at most {MAX_FILE_BYTES >> 20} MiB are read")
    return path.read_bytes()


def _rows_of(g) -> np.ndarray:
    """Gallery rows of a GaussianEmbedding: [mu, c, ||sigma||_1]."""
    logvar = g.logvar.float()
    return pack_rows(
        g.mu.float().cpu().numpy(),
        variance_sum(logvar).cpu().numpy(),
        uncertainty(logvar).cpu().numpy(),
    )


def _assemble(
    work: Path,
    n_parts: int,
    caption_of: dict[str, str],
    label_pairs: list[tuple[str, str]],
    model: torch.nn.Module,
    inputs: dict[str, str | None],
) -> dict:
    """Join the parts (dropping duplicates), embed the labels, write the final layout."""
    clips: list[dict] = []
    rows: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for number in range(n_parts):
        record = json.loads((work / "parts" / f"part-{number:05d}.json").read_text())
        part_rows = np.load(work / "parts" / f"part-{number:05d}.npy", allow_pickle=False)
        skipped += record["skipped"]
        for clip, row in zip(record["clips"], part_rows, strict=True):
            if clip["id"] in seen:
                skipped.append({"file": clip["source"],
                                "reason": f"the same audio as {seen[clip['id']]}"})  # fmt: skip
                continue
            seen[clip["id"]] = clip["source"]
            stem = Path(clip["source"]).stem.replace("_", " ").replace("-", " ")
            clip["caption"] = caption_of.get(clip["source"], stem)
            clips.append(clip)
            rows.append(row)
    dim = model.config.embed_dim
    clip_rows = np.stack(rows) if rows else np.zeros((0, dim + 2), np.float32)
    label_rows = np.zeros((0, dim + 2), np.float32)
    if label_pairs:
        model.eval()
        label_rows = _rows_of(model.embed_texts([q for _, q in label_pairs]))
    np.save(work / CLIPS_ARRAY, clip_rows.astype(np.float32), allow_pickle=False)
    np.save(work / LABELS_ARRAY, label_rows.astype(np.float32), allow_pickle=False)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model_id": model_id_of(model),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": inputs,
        "clips": clips,
        "labels": [{"label": label, "query": query} for label, query in label_pairs],
        "skipped": skipped,
    }
    kept = {f"{c['id']}.{c['ext']}" for c in clips}
    for f in (work / CLIPS_DIR).iterdir():  # copies of files later found to be duplicates
        if f.name not in kept:
            f.unlink()
    shutil.rmtree(work / "parts")
    (work / "state.json").unlink()
    _write_atomic(work / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest
