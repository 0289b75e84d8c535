"""CLAP audio and text towers (Hugging Face), built from a config or loaded offline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor, nn
from transformers import (
    AutoTokenizer,
    ClapAudioConfig,
    ClapAudioModelWithProjection,
    ClapFeatureExtractor,
    ClapTextConfig,
    ClapTextModelWithProjection,
    PreTrainedTokenizerBase,
)

from model.config import AudioTowerConfig, TextTowerConfig
from model.towers.resolve import resolve_pretrained


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """(samples,) or (channels, samples) / (samples, channels) -> float32 mono by channel mean."""
    w = np.asarray(waveform, dtype=np.float32)
    if w.ndim == 1:
        return w
    if w.ndim != 2:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {w.shape}")
    channel_axis = 0 if w.shape[0] <= w.shape[1] else 1
    return w.mean(axis=channel_axis)


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling with soxr (torchaudio does not run beside our CPU torch)."""
    if orig_sr == target_sr:
        return waveform.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(waveform, orig_sr, target_sr, quality="HQ").astype(np.float32)


class ClapAudioTower(nn.Module):
    """Waveform -> CLAP `audio_embeds` (projection output, not normalised)."""

    def __init__(self, cfg: AudioTowerConfig, load_weights: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.pretrained:
            source = resolve_pretrained(cfg.pretrained)
            if load_weights:
                self.model = ClapAudioModelWithProjection.from_pretrained(
                    source, local_files_only=True
                )
            else:
                self.model = ClapAudioModelWithProjection(
                    ClapAudioConfig.from_pretrained(source, local_files_only=True)
                )
            self.extractor = ClapFeatureExtractor.from_pretrained(source, local_files_only=True)
        else:
            clap_cfg = ClapAudioConfig(projection_dim=cfg.projection_dim, **cfg.clap_audio)
            self.model = ClapAudioModelWithProjection(clap_cfg)
            self.extractor = ClapFeatureExtractor(
                sampling_rate=cfg.sample_rate,
                max_length_s=cfg.max_seconds,
                truncation="fusion" if clap_cfg.enable_fusion else "rand_trunc",
                **cfg.feature,
            )
        self.fusion = bool(self.model.config.enable_fusion)

    @property
    def sample_rate(self) -> int:
        """Sampling rate the feature extractor expects."""
        return int(self.extractor.sampling_rate)

    def features(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> dict[str, Tensor]:
        """Log-mel features for a batch of clips, deterministically.

        HF draws random crops for long clips with numpy's global RNG; we seed it per clip from the
        config (and restore the caller's RNG) so the same audio always embeds the same way. For
        fused models `is_longer` is forced True for every clip, as in PSM's training data.
        """
        clips = [resample(to_mono(w), sample_rate, self.sample_rate) for w in waveforms]
        state = np.random.get_state()
        try:
            feats = []
            # Single-threaded BLAS here: OpenBLAS threads left spinning after the mel transform
            # compete with torch's threads on small machines (measured +50 ms per 10 s query).
            with threadpool_limits(1, "blas"):
                for clip in clips:
                    np.random.seed(self.cfg.fusion_seed)
                    out = self.extractor(clip, sampling_rate=self.sample_rate, return_tensors="pt")
                    feats.append(out["input_features"])
        finally:
            np.random.set_state(state)
        input_features = torch.cat(feats, dim=0)
        is_longer = torch.full((len(clips), 1), self.fusion, dtype=torch.bool)
        return {"input_features": input_features, "is_longer": is_longer}

    def forward(self, input_features: Tensor, is_longer: Tensor | None = None) -> Tensor:
        """(B, projection_dim) audio embeddings from features."""
        if is_longer is None:
            is_longer = torch.full((input_features.shape[0], 1), self.fusion, dtype=torch.bool)
        out = self.model(
            input_features=input_features, is_longer=is_longer.to(input_features.device)
        )
        return out.audio_embeds


def byte_level_tokenizer(max_length: int) -> PreTrainedTokenizerBase:
    """A RoBERTa-style byte-level tokenizer built offline (256 byte tokens, no merges).

    Used by configs that train their own text tower from scratch (the `test` config).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_length,
    )


class ClapTextTower(nn.Module):
    """Text -> CLAP `text_embeds` (projection output, not normalised); RoBERTa tokenizer."""

    def __init__(self, cfg: TextTowerConfig, load_weights: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.pretrained:
            source = resolve_pretrained(cfg.pretrained)
            if load_weights:
                self.model = ClapTextModelWithProjection.from_pretrained(
                    source, local_files_only=True
                )
            else:
                self.model = ClapTextModelWithProjection(
                    ClapTextConfig.from_pretrained(source, local_files_only=True)
                )
            tok_source = resolve_pretrained(cfg.tokenizer) if cfg.tokenizer else source
            self.tokenizer = AutoTokenizer.from_pretrained(tok_source, local_files_only=True)
        else:
            self.model = ClapTextModelWithProjection(
                ClapTextConfig(projection_dim=cfg.projection_dim, **cfg.clap_text)
            )
            self.tokenizer = byte_level_tokenizer(cfg.max_length)

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Pad to max_length and truncate, as the reference (max_length 128)."""
        enc = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.cfg.max_length,
            return_tensors="pt",
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, projection_dim) text embeddings from token ids."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds
