"""A sound gallery on disk, opened for ranking: clips and labels against one fused cell.

Layout of a gallery folder (written whole by `embeddings_store.sounds.build`, never half):

    gallery.json   manifest: format, version, model id, clips (id, file, caption, ...),
                   labels (label, query text), files skipped at build time and why
    clips.npy      (N, D + 2) float32: unit mean, c = sum exp(logvar), ||sigma||_1 per clip
    labels.npy     (M, D + 2) float32: the same for each label's text query
    clips/         the clips themselves, named <id>.<ext>

Arrays are read with `allow_pickle=False`; a clip is served only by an id the manifest names.
Ranking is -CSD between the cell and every clip: one matrix-vector product over the clips'
augmented vectors [mu, -c/2] (the cell plays the query's part), then a partial sort.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.errors import MissingResourceError, StoreError, StoreMismatchError
from model.scoring import (
    QueryEmbedding,
    augment_cells,
    augment_query,
    match_probability,
    score_from_inner_product,
)

FORMAT = "soundscape-sound-gallery"
VERSION = 1
MANIFEST = "gallery.json"
CLIPS_ARRAY = "clips.npy"
LABELS_ARRAY = "labels.npy"
CLIPS_DIR = "clips"
# Container -> (file extension, media type). Ids are content hashes, so names never collide.
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
CLIP_ID_PATTERN = r"^[0-9a-f]{16}$"
CLIP_ID = re.compile(CLIP_ID_PATTERN)
# How close a query must come to what the gallery knows (cosine of unit means to the nearest
# label for text, the nearest clip for audio): measured on the demo model, its label queries and
# clips sit above 0.8 ("frogs croaking near a pond" 0.98), vague words between ("sounds" 0.71),
# sounds it never heard below 0.6 ("a quiet library" 0.53, "jazz music in a bar" 0.39).
FAMILIAR_COSINE = 0.8
KNOWN_COSINE = 0.6
# ... and its own uncertainty: more than half a unit (about a third of the labels' spread on the
# demo model) above the labels' largest makes a near query vague and a far one unfamiliar
# ("typing on a keyboard": cosine 0.67, 15.6 against the labels' 15.0). Closer to the labels it
# says little: "cows mooing in a field" sits at 15.4 with cosine 0.96.
UNCERTAINTY_MARGIN = 0.5
# A label whose mean lies this close to a text query's (largest coordinate difference) is that
# query itself, embedded in another batch: it is not counted twice in the query's share.
SAME_QUERY_ATOL = 1e-4
HINTS = {
    "familiar": None,
    "vague": "This description is vague to the model (closest sound it knows: {near}): the "
    "map shows a broad guess.",
    "unfamiliar": "This sound is unfamiliar to the model: the map is a guess.",
}


@dataclass(frozen=True)
class Clip:
    """One clip of a gallery."""

    id: str
    ext: str  # a key of MEDIA_TYPES
    caption: str
    source: str  # the file's path relative to the audio folder it was built from
    duration_s: float
    sample_rate: int


@dataclass(frozen=True)
class Ranked:
    """Rows of a ranking, best first: their indices, -CSD scores and match probabilities."""

    index: np.ndarray
    score: np.ndarray
    probability: np.ndarray


def pack_rows(mu: np.ndarray, c: np.ndarray, unc: np.ndarray) -> np.ndarray:
    """(N, D + 2) float32 rows [mu, c, ||sigma||_1] as the gallery stores them."""
    mu = np.asarray(mu, np.float32).reshape(len(c), -1)
    return np.concatenate(
        [mu, np.asarray(c, np.float32)[:, None], np.asarray(unc, np.float32)[:, None]], axis=1
    )


def row_scores(rows_aug: np.ndarray, cell_aug: np.ndarray) -> np.ndarray:
    """(M,) float32 -CSD between one fused cell and every gallery row, both as [mu, -c/2]: one
    matrix-vector product (the cell plays the query's part)."""
    cell_aug = np.asarray(cell_aug, np.float32).reshape(-1)
    c_cell = float(-2.0 * cell_aug[-1])
    return score_from_inner_product(rows_aug @ augment_query(cell_aug[:-1]), c_cell)


def pair_scores(cells_aug: np.ndarray, rows_aug: np.ndarray) -> np.ndarray:
    """(N, M) float32 -CSD between many fused cells and the gallery rows (`row_scores` per
    cell, as one matrix product)."""
    cells_aug = np.asarray(cells_aug, np.float32).reshape(-1, rows_aug.shape[1])
    c_cells = -2.0 * cells_aug[:, -1:]
    query_side = np.concatenate([cells_aug[:, :-1], np.ones_like(c_cells)], axis=1)
    return score_from_inner_product(query_side @ rows_aug.T, 0.0) - c_cells


def rank_rows(score: np.ndarray, k: int, ab: tuple[float, float]) -> Ranked:
    """The k best of the rows' scores (-CSD), best first (all rows when k >= their number)."""
    k = min(int(k), score.shape[0])
    if k <= 0:
        empty = np.zeros(0, np.float32)
        return Ranked(np.zeros(0, np.int64), empty, empty)
    every = k >= score.shape[0]
    part = np.arange(score.shape[0]) if every else np.argpartition(-score, k - 1)[:k]
    best = part[np.argsort(-score[part], kind="stable")]
    top = score[best]
    return Ranked(best.astype(np.int64), top, match_probability(top, *ab))


class SoundGallery:
    """An opened gallery: its clips and labels, ready to be ranked against fused cells."""

    def __init__(
        self,
        root: Path,
        manifest: dict,
        clip_rows: np.ndarray,
        label_rows: np.ndarray,
        backend: str = "numpy",
    ) -> None:
        self.root = root
        self.manifest = manifest
        self.model_id: str = manifest["model_id"]
        self.clips = [Clip(**c) for c in manifest["clips"]]
        self.labels: list[str] = [entry["label"] for entry in manifest["labels"]]
        self.label_queries: list[str] = [entry["query"] for entry in manifest["labels"]]
        dim = clip_rows.shape[1] - 2
        self.clip_aug = augment_cells(clip_rows[:, :dim], clip_rows[:, dim])
        self.label_aug = augment_cells(label_rows[:, :dim], label_rows[:, dim])
        self.clip_uncertainty = np.ascontiguousarray(clip_rows[:, dim + 1])
        self.label_uncertainty = np.ascontiguousarray(label_rows[:, dim + 1])
        self._by_id = {clip.id: i for i, clip in enumerate(self.clips)}
        self.embed_dim = dim
        self.backend = backend
        self._index = _faiss_index(self.clip_aug) if backend == "faiss" else None

    @classmethod
    def open(
        cls, path: str | Path, expect_model_id: str | None = None, backend: str = "numpy"
    ) -> SoundGallery:
        """Open a gallery folder; refuse a foreign folder, a damaged one or another model's.

        `backend` ranks clips with numpy (one matvec) or faiss (an exact inner-product index,
        on the GPUs when faiss-gpu sees any)."""
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise MissingResourceError(
                f"no sound gallery at {root} (build one with `soundscape gallery build "
                f"--audio-dir DIR --out {root}`)"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{manifest_path} is not a gallery manifest: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StoreError(f"{manifest_path} is not a sound gallery manifest")
        if manifest.get("version") != VERSION:
            raise StoreError(
                f"{root} is a version {manifest.get('version')} gallery; this service reads "
                f"version {VERSION}: rebuild it with {rebuild_command(manifest, root)}"
            )
        if expect_model_id is not None and manifest.get("model_id") != expect_model_id:
            raise StoreMismatchError(
                f"the sound gallery {root} was embedded by model {manifest.get('model_id')}, "
                f"but the loaded checkpoint is {expect_model_id}: rebuild it for this model "
                f"with {rebuild_command(manifest, root)}"
            )
        clip_rows = _read_rows(root / CLIPS_ARRAY, len(manifest.get("clips", [])))
        label_rows = _read_rows(root / LABELS_ARRAY, len(manifest.get("labels", [])))
        if clip_rows.shape[1] != label_rows.shape[1]:
            raise StoreError(f"{root}: clip and label embeddings differ in width")
        try:
            return cls(root, manifest, clip_rows, label_rows, backend)
        except (KeyError, TypeError) as exc:
            raise StoreError(f"{manifest_path} is damaged: {exc}") from exc

    # -- lookups ------------------------------------------------------------------------------
    def clip(self, clip_id: str) -> Clip | None:
        """The clip with this id, or None."""
        index = self._by_id.get(clip_id)
        return None if index is None else self.clips[index]

    def clip_file(self, clip: Clip) -> Path:
        """Where a clip's audio lies (inside the gallery's clips folder, named by its id)."""
        return self.root / CLIPS_DIR / f"{clip.id}.{clip.ext}"

    # -- ranking ------------------------------------------------------------------------------
    def rank_clips(self, cell_aug: np.ndarray, k: int, ab: tuple[float, float]) -> Ranked:
        """The k clips most likely heard in a fused cell, best first."""
        if self._index is None or k <= 0 or not self.clips:
            return rank_rows(row_scores(self.clip_aug, cell_aug), k, ab)
        cell_aug = np.asarray(cell_aug, np.float32).reshape(-1)
        query = np.ascontiguousarray(augment_query(cell_aug[:-1])[None], np.float32)
        inner, ids = self._index.search(query, min(int(k), len(self.clips)))
        keep = ids[0] >= 0
        score = score_from_inner_product(inner[0][keep], float(-2.0 * cell_aug[-1]))
        return Ranked(ids[0][keep].astype(np.int64), score, match_probability(score, *ab))

    def rank_labels(self, cell_aug: np.ndarray, ab: tuple[float, float]) -> Ranked:
        """Every label, ranked for a fused cell, best first."""
        return rank_rows(self.label_scores(cell_aug)[0], len(self.labels), ab)

    def familiarity(self, kind: str, mu: np.ndarray, uncertainty: float) -> tuple[str, str | None]:
        """('familiar' | 'vague' | 'unfamiliar', a hint for people or None) of a query: how
        near its mean comes to the labels (text) or clips (audio), and how uncertain it is
        next to the labels."""
        rows = self.label_aug if kind == "text" or not self.clips else self.clip_aug
        if rows.shape[0] == 0:
            return "familiar", None
        cos = rows[:, :-1] @ np.asarray(mu, np.float32)
        nearest = int(np.argmax(cos))
        top = float(cos[nearest])
        most = float(self.label_uncertainty.max()) if self.labels else float("inf")
        unsure = uncertainty > most + UNCERTAINTY_MARGIN
        if top < KNOWN_COSINE or (top < FAMILIAR_COSINE and unsure):
            level = "unfamiliar"
        elif top < FAMILIAR_COSINE or unsure:
            level = "vague"
        else:
            level = "familiar"
        hint = HINTS[level]
        if hint is not None:
            near = self.labels[nearest] if rows is self.label_aug else self.clips[nearest].caption
            hint = hint.format(near=f"“{near}”")
        return level, hint

    def label_logits(
        self, cells_aug: np.ndarray, ab: tuple[float, float], besides: QueryEmbedding
    ) -> np.ndarray | None:
        """(N, M) match logits a * score + b of fused cells against every label but one that is
        the query `besides` itself (a text query embedded in another batch, counted once where
        the query is), or None when no other label is left."""
        if not self.labels:
            return None
        logits = ab[0] * self.label_scores(cells_aug) + ab[1]
        if besides.kind == "text":
            same = np.abs(self.label_aug[:, :-1] - besides.mu[None, :]).max(axis=1)
            logits = logits[:, same > SAME_QUERY_ATOL]
        return logits if logits.shape[1] else None

    def label_scores(self, cells_aug: np.ndarray) -> np.ndarray:
        """(N, labels) -CSD of fused cells against every label (one cell for /listen, a whole
        level for the evaluation)."""
        return pair_scores(cells_aug, self.label_aug)


def _faiss_index(aug: np.ndarray) -> object:
    """An exact inner-product index of the clips' augmented vectors (on the GPUs if any)."""
    import faiss

    index = faiss.IndexFlatIP(aug.shape[1])
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(aug, np.float32))
    return index


def rebuild_command(manifest: dict, root: Path) -> str:
    """The command that rebuilds a gallery from the inputs its manifest records."""
    inputs = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
    parts = ["soundscape gallery build", f"--audio-dir {inputs.get('audio_dir') or 'DIR'}"]
    if inputs.get("captions"):
        parts.append(f"--captions {inputs['captions']}")
    if inputs.get("labels"):
        parts.append(f"--labels {inputs['labels']}")
    parts += ["--checkpoint <this checkpoint>", f"--out {root}", "--overwrite"]
    return "`" + " ".join(parts) + "`"


def _read_rows(path: Path, count: int) -> np.ndarray:
    """A (count, D + 2) float32 array written by the builder (never a pickle)."""
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} cannot be read as a gallery array: {exc}") from exc
    if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[0] != count or rows.shape[1] < 3:
        raise StoreError(f"{path} holds {rows.shape} {rows.dtype}, expected ({count}, D + 2)")
    if not np.all(np.isfinite(rows)):
        raise StoreError(f"{path} holds non-finite values")
    return rows
