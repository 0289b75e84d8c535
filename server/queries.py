"""Query registry: text or audio -> content-hashed id -> cached Gaussian query embedding."""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata

import numpy as np
import torch

from embeddings_store.audio import AudioLimits, decode_audio
from model.errors import InputError
from model.scoring import QueryEmbedding
from server.cache import TieredCache

# The limit is on the text as sent (what the OpenAPI schema can state and a client can check);
# normalising may lengthen it a little (NFKC expands some ligatures), which the tokenizer bounds.
MAX_TEXT_CHARS = 256
# A query text must hold something besides whitespace (else it normalises to nothing). Python
# also splits on the separators U+001C..U+001F and U+0085, which JSON Schema's \s does not name.
TEXT_PATTERN = r"[^\s\x1c-\x1f\x85]"
QUERY_ID_PATTERN = r"^(txt|aud)-[0-9a-f]{24}$"
QUERY_ID = re.compile(QUERY_ID_PATTERN)


def normalize_text(text: str) -> str:
    """NFKC, trimmed, whitespace runs collapsed to one space; InputError if too long or empty."""
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"the query text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
    norm = " ".join(unicodedata.normalize("NFKC", text).split())
    if not norm:
        raise InputError("the query text is empty")
    return norm


def text_query_id(model_id: str, text: str) -> str:
    """Id of a text query: hash of the model id and the normalised text."""
    digest = hashlib.sha256(f"{model_id}\0text\0{normalize_text(text)}".encode()).hexdigest()
    return f"txt-{digest[:24]}"


def audio_query_id(model_id: str, samples: np.ndarray, sample_rate: int) -> str:
    """Id of an audio query: hash of the model id and the decoded samples (not the file bytes)."""
    h = hashlib.sha256(f"{model_id}\0audio\0{sample_rate}\0{samples.shape}\0".encode())
    h.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    return f"aud-{h.hexdigest()[:24]}"


def is_query_id(value: str) -> bool:
    """Whether a string has the shape of a query id (else it is query text)."""
    return bool(QUERY_ID.match(value))


class QueryRegistry:
    """Registers queries and finds their embeddings (cache, else the model)."""

    def __init__(self, model: torch.nn.Module, model_id: str, cache: TieredCache) -> None:
        self.model = model
        self.model_id = model_id
        self.cache = cache
        # The audio feature extractor seeds numpy's global RNG: one audio embedding at a time.
        self._audio_lock = threading.Lock()

    @staticmethod
    def _key(query_id: str) -> str:
        return f"q:{query_id}"

    def lookup(self, query_id: str) -> QueryEmbedding | None:
        """A registered query's embedding, or None (blocking: may ask Redis)."""
        data, _ = self.cache.get(self._key(query_id))
        return QueryEmbedding.from_bytes(data) if data is not None else None

    def lookup_local(self, query_id: str) -> QueryEmbedding | None:
        """Like `lookup` but in-process only (safe on the event loop)."""
        data = self.cache.get_local(self._key(query_id))
        return QueryEmbedding.from_bytes(data) if data is not None else None

    def register_text(self, text: str) -> tuple[str, QueryEmbedding]:
        """Id and embedding of a text query (embedded once, then cached)."""
        norm = normalize_text(text)
        qid = text_query_id(self.model_id, norm)

        def embed() -> bytes:
            return QueryEmbedding.from_text(self.model, norm).to_bytes()

        data, _ = self.cache.get_or_compute(self._key(qid), embed)
        return qid, QueryEmbedding.from_bytes(data)

    def register_audio(self, data: bytes, limits: AudioLimits) -> tuple[str, QueryEmbedding]:
        """Id and embedding of an uploaded audio file (validated; AudioError if unacceptable)."""
        audio = decode_audio(data, limits)
        qid = audio_query_id(self.model_id, audio.samples, audio.sample_rate)

        def embed() -> bytes:
            # (frames, channels) -> (channels, frames): the tower averages channels itself.
            wave = np.ascontiguousarray(audio.samples.T)
            with self._audio_lock:
                emb = QueryEmbedding.from_audio(
                    self.model, wave if wave.shape[0] > 1 else wave[0], audio.sample_rate
                )
            return emb.to_bytes()

        value, _ = self.cache.get_or_compute(self._key(qid), embed)
        return qid, QueryEmbedding.from_bytes(value)
