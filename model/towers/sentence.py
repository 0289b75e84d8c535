"""A frozen sentence-transformers text encoder followed by a trainable projection."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from model.config import TextTowerConfig
from model.towers.resolve import resolve_pretrained


class ClapStyleProjection(nn.Module):
    """LayerNorm -> Linear -> ReLU -> Linear, like CLAP's text_projection after a norm.

    Sentence embeddings are unit vectors (entries ~ 1/sqrt(dim)), so without the norm the
    linear layers' biases dominate at initialisation and every text starts at almost the same
    point (measured: mean pairwise cosine 0.97), which stalls contrastive training from scratch.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.linear1 = nn.Linear(in_dim, out_dim)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Project x."""
        return self.linear2(self.activation(self.linear1(self.norm(x))))


class SentenceTextTower(nn.Module):
    """Text -> frozen sentence embedding -> projection.

    The sentence model's weights are not part of this module's state dict: they come from the
    installed package or directory named in the config, which keeps our checkpoints small.
    """

    def __init__(self, cfg: TextTowerConfig, load_weights: bool = True) -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer

        if not cfg.pretrained:
            raise ValueError(
                "a sentence_transformers text tower needs `pretrained` (a model directory)"
            )
        self.cfg = cfg
        encoder = SentenceTransformer(
            resolve_pretrained(cfg.pretrained), device="cpu", local_files_only=True
        )
        encoder.eval()
        for p in encoder.parameters():
            p.requires_grad_(False)
        # Held in a tuple so nn.Module does not register (and checkpoint) the frozen weights.
        self._encoder = (encoder,)
        # sentence-transformers 6 renamed the accessor; accept both generations.
        get_dim = (
            getattr(encoder, "get_embedding_dimension", None)
            or encoder.get_sentence_embedding_dimension
        )
        self.sentence_dim = int(get_dim())
        self.projection = ClapStyleProjection(self.sentence_dim, cfg.projection_dim)

    @property
    def encoder(self):
        """The frozen sentence-transformers model."""
        return self._encoder[0]

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Sentence embeddings serve as 'tokens': the encoder is frozen, so run it once per text."""
        with torch.no_grad():
            emb = self.encoder.encode(
                list(texts),
                convert_to_tensor=True,
                device="cpu",
                batch_size=64,
                show_progress_bar=False,
            )
        # encode() runs under inference_mode; clone so the projection can be trained on it.
        return {"sentence_embedding": emb.float().clone()}

    def forward(self, sentence_embedding: Tensor) -> Tensor:
        """(B, projection_dim) from precomputed sentence embeddings."""
        return self.projection(sentence_embedding)
