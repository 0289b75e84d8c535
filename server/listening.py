"""Listening at a place: the sounds and labels a fused cell ranks first, and the cell's score
for a query at every hour and month (the /listen and /profile answers). Blocking calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from embeddings_store.grid import CellExtent, Level
from embeddings_store.sounds.gallery import SoundGallery
from embeddings_store.sounds.profile import profile_values
from embeddings_store.timesweep import HOURS, MONTHS, peak_words, time_profile
from model.errors import NotFoundError, OutOfRangeError
from model.metadata import Metadata
from model.scoring import QueryEmbedding
from server.engine import Engine


class Listener:
    """Answers /listen and /profile from the engine's cached fusion and a sound gallery."""

    def __init__(self, engine: Engine, sounds: SoundGallery | None) -> None:
        self.engine = engine
        self.sounds = sounds

    def _cell(self, level: Level, lat: float, lon: float) -> CellExtent:
        """The 1 x 1 block under a point; OutOfRangeError where the store holds no cell."""
        cell = CellExtent.cell_at(level, lat, lon)
        if cell is None:
            raise OutOfRangeError(f"latitude {lat} is outside the web map (|lat| <= 85.05)")
        if not self.engine.holds_any(cell):
            raise self._no_cell(level, lat, lon)
        return cell

    def _no_cell(self, level: Level, lat: float, lon: float) -> OutOfRangeError:
        return OutOfRangeError(f"the store has no cell at {lat}, {lon} (PSM zoom "
                               f"{level.psm_zoom})")  # fmt: skip

    def cell_info(self, level: Level, lat: float, lon: float, uncertainty: float) -> dict:
        """The cell part of an answer: centre, level, size, uncertainty."""
        return {"lat": lat, "lon": lon, "psm_zoom": level.psm_zoom,
                "cell_size_m": level.cell_size, "uncertainty": uncertainty}  # fmt: skip

    def listen(
        self, lat: float, lon: float, metadata: Metadata, level: Level, k: int
    ) -> dict[str, Any]:
        """The k gallery clips and every label ranked by -CSD against the cell under the
        point, fused under the metadata."""
        if self.sounds is None:
            raise NotFoundError(
                "this service has no sound gallery: build one with `soundscape gallery build` "
                "and start it with `soundscape serve --gallery G`"
            )
        cell = self._cell(level, lat, lon)
        fused = self.engine.fusion.block(cell, metadata)
        if not bool(fused.valid[0]):
            raise self._no_cell(level, lat, lon)
        model = self.engine.model
        clips = self.sounds.rank_clips(fused.aug[0], k, model.match_parameters("audio"))
        labels = self.sounds.rank_labels(fused.aug[0], model.match_parameters("text"))
        c_lat = float(level.cell_centers_lat([cell.cy0])[0])
        c_lon = float(level.cell_centers_lon([cell.cx0])[0])
        sounds = []
        for i, score, prob in zip(clips.index, clips.score, clips.probability, strict=True):
            clip = self.sounds.clips[int(i)]
            sounds.append({
                "id": clip.id, "caption": clip.caption, "score": float(score),
                "probability": float(prob), "duration_s": clip.duration_s,
                "audio_url": f"/gallery/{clip.id}.{clip.ext}",
            })  # fmt: skip
        return {
            "cell": self.cell_info(level, c_lat, c_lon, float(fused.unc[0])),
            "sounds": sounds,
            "labels": [
                {"label": self.sounds.labels[int(i)], "score": float(s), "probability": float(p)}
                for i, s, p in zip(labels.index, labels.score, labels.probability, strict=True)
            ],
        }

    def profile(
        self, query: QueryEmbedding, lat: float, lon: float, metadata: Metadata, level: Level
    ) -> dict[str, Any]:
        """The query's score, probability and (with the gallery's labels) share at the cell
        under the point for each hour and each month (one batched fusion), and the peak hour
        in words (`profile_values`)."""
        engine = self.engine
        cell = self._cell(level, lat, lon)
        fused = engine.fusion.block(cell, metadata)
        prof = time_profile(engine.model, engine.store, cell, metadata, engine.precision)
        if prof is None or not bool(fused.valid[0]):
            raise self._no_cell(level, lat, lon)
        model = engine.model
        values = profile_values(prof, query, model.match_parameters(query.kind), self.sounds,
                                model.match_parameters("text"))  # fmt: skip

        def rows(key: str, times: np.ndarray, at: dict[str, np.ndarray]) -> list[dict]:
            return [{key: int(t), **{name: float(v[i]) for name, v in at.items()}}
                    for i, t in enumerate(times)]  # fmt: skip

        return {
            "cell": self.cell_info(level, prof.lat, prof.lon, float(fused.unc[0])),
            "hours": rows("hour", HOURS, values.hours),
            "months": rows("month", MONTHS, values.months),
            "peak_by": values.peak_by,
            "peak_hour": values.peak_hour,
            "peak_month": values.peak_month,
            "summary": peak_words(values.peak_hour),
        }
