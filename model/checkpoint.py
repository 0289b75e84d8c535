"""The project's checkpoint format: one safetensors file carrying weights, config and model id.

Header metadata holds the config (JSON), the metadata vocabulary and the model id, a content
hash of config and weights: stores and caches are keyed by it, so a changed model can never be
served against embeddings computed by another one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from model.config import ModelConfig
from model.errors import CheckpointError

if TYPE_CHECKING:  # PSM pulls in transformers (seconds): only loading needs it, not read_header
    from model.psm import PSM

FORMAT = "psm-checkpoint/1"


CALIBRATION_KINDS = ("text", "audio")


def model_id_for(config: ModelConfig, state: dict[str, torch.Tensor]) -> str:
    """Content hash of config and weights: 'psm-' + 16 hex digits.

    It names the embeddings a model computes, so a store stays valid when only the model's
    probability calibration (header metadata, `calibration_digest`) changes.
    """
    h = hashlib.sha256(config.to_json().encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "psm-" + h.hexdigest()[:16]


def model_id(model: PSM) -> str:
    """Model id of an in-memory model."""
    return model_id_for(model.config, model.state_dict())


def calibration_json(calibration: dict[str, tuple[float, float]]) -> str:
    """Canonical JSON of a calibration (kind -> [a, b])."""
    return json.dumps({k: [float(a), float(b)] for k, (a, b) in sorted(calibration.items())})


def calibration_digest(calibration: dict[str, tuple[float, float]]) -> str:
    """Short hash of a calibration for cache keys ("" for none)."""
    if not calibration:
        return ""
    return hashlib.sha256(calibration_json(calibration).encode()).hexdigest()[:8]


def parse_calibration(text: str | None, where: str) -> dict[str, tuple[float, float]]:
    """A checkpoint header's calibration, checked: known kinds, two finite numbers each."""
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {where} has an unreadable calibration: {exc}") from exc
    out: dict[str, tuple[float, float]] = {}
    ok = isinstance(data, dict)
    for kind, pair in data.items() if ok else []:
        good = (
            kind in CALIBRATION_KINDS
            and isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, int | float) and math.isfinite(v) for v in pair)
        )
        if not good:
            ok = False
            break
        out[kind] = (float(pair[0]), float(pair[1]))
    if not ok:
        raise CheckpointError(
            f"checkpoint {where} has an invalid calibration {text[:200]!r}: expected "
            f"{{kind: [a, b]}} with kinds in {CALIBRATION_KINDS} and finite numbers"
        )
    return out


def save_checkpoint(model: PSM, path: str | Path) -> str:
    """Write `model` atomically to `path` (.safetensors); returns its model id."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    calibration = getattr(model, "calibration", None) or {}
    mid = model_id_for(model.config, state)
    metadata = {
        "format": FORMAT,
        "model_id": mid,
        "config": model.config.to_json(),
        "vocabulary": json.dumps(
            {
                "audio_sources": model.config.audio_sources,
                "caption_sources": model.config.caption_sources,
            }
        ),
    }
    if calibration:
        metadata["calibration"] = calibration_json(calibration)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return mid


def save_random_checkpoint(config: ModelConfig, path: str | Path, seed: int = 0) -> str:
    """Save a model of `config` with weights drawn from `seed` (same seed, same model id): a
    stand-in for benchmarks, whose timings do not depend on the weights; returns its id."""
    from model.psm import PSM

    torch.manual_seed(seed)
    return save_checkpoint(PSM(config).eval(), path)


def read_header(path: str | Path) -> dict[str, str]:
    """Header metadata of a checkpoint, without loading weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is not a readable PSM checkpoint ({exc}); official PSM Lightning files "
            f"(.ckpt) are imported with `soundscape import-checkpoint`"
        ) from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a {FORMAT} file (format={meta.get('format')!r})"
        )
    return meta


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", verify: bool = True
) -> PSM:
    """Build the model described by the checkpoint and load its weights strictly (eval mode)."""
    meta = read_header(path)
    try:
        config = ModelConfig.model_validate_json(meta["config"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} carries no valid config: {exc}") from exc
    calibration = parse_calibration(meta.get("calibration"), repr(str(path)))
    try:
        from safetensors.torch import load_file

        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: {exc}") from exc
    if verify:
        actual = model_id_for(config, state)
        if actual != meta.get("model_id"):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupted: content hash {actual} != "
                f"recorded {meta.get('model_id')}"
            )
    from model.psm import PSM

    model = PSM(config)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # size mismatches
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit config {config.name!r}: {exc}"
        ) from exc
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit config {config.name!r}: missing keys "
            f"{result.missing_keys[:10]}, unexpected keys {result.unexpected_keys[:10]}"
        )
    model.calibration = calibration
    model.model_id = meta["model_id"]  # type: ignore[attr-defined]
    return model.to(device).eval()
