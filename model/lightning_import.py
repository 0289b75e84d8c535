"""Import the official PSM PyTorch-Lightning `.ckpt` files into our model.

The key layout is described in docs/ARCHITECTURE.md, "Checkpoints".

The reference loads its own checkpoints with `strict=False`, so a renamed or missing tensor goes
unnoticed there. Here every key must be accounted for: the architecture is taken from
the base config plus the checkpoint's `hyper_parameters`, cross-checked against what the tensor
shapes reveal, and the renamed state dict is loaded strictly. Only buffers whose presence depends
on the transformers/torch version that wrote the file are tolerated on either side.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.checkpoint import CheckpointError, save_checkpoint
from model.config import METADATA_COMPONENTS, FusionConfig, ModelConfig, load_config
from model.fusion import MetadataEmbedding
from model.psm import PSM
from model.transforms import SAT_TYPES

# Reference prefix -> our prefix. An entry ending in "." renames a whole sub-tree; any other
# entry renames exactly one key. The first matching entry wins.
LIGHTNING_KEY_MAP: tuple[tuple[str, str], ...] = (
    ("sat_encoder.encoder.backbone.", "image_encoder.backbone."),
    ("sat_encoder.encoder.projector.", "image_encoder.projector."),
    ("sat_encoder.encoder.meta_fuser.", "fuser."),
    ("sat_encoder.encoder.mean_head.", "image_head.mean_head."),
    ("sat_encoder.encoder.std_head.", "image_head.std_head."),
    ("audio_encoder.model.model.", "audio_tower.model."),
    ("audio_encoder.mean_head.", "audio_head.mean_head."),
    ("audio_encoder.std_head.", "audio_head.std_head."),
    ("audio_encoder.head.", "audio_head.head."),
    ("text_encoder.model.model.", "text_tower.model."),
    ("text_encoder.mean_head.", "text_head.mean_head."),
    ("text_encoder.std_head.", "text_head.std_head."),
    ("text_encoder.head.", "text_head.head."),
    ("criterion.shift", "criterion.shift"),
    ("criterion.negative_scale", "criterion.negative_scale"),
    ("criterion.tau", "criterion.tau"),
)

# Buffers that are either recomputed from the architecture or pure bookkeeping, and whose
# persistence changed between transformers/torch versions (transformers 4.28 saved
# `position_ids` but not `token_type_ids`). Missing ones keep the freshly built values; extra
# ones are dropped; present on both sides with equal shapes, the checkpoint's value is loaded.
VOLATILE_BUFFER_SUFFIXES: tuple[str, ...] = (
    ".position_ids",
    ".token_type_ids",
    ".relative_position_index",
    ".num_batches_tracked",
)

_SAT = "sat_encoder.encoder."
_REPORT_LIMIT = 20
_PROBABILISTIC_LOSSES = {"pcmepp", "pcme++", "pcme", "probabilistic"}
_DETERMINISTIC_LOSSES = {"infonce", "clip", "contrastive"}


def map_lightning_key(key: str) -> str | None:
    """Our state-dict name for a reference key, or None when no rule covers it."""
    for ref, ours in LIGHTNING_KEY_MAP:
        if ref.endswith("."):
            if key.startswith(ref):
                return ours + key[len(ref) :]
        elif key == ref:
            return ours
    return None


def _reference_key(ours: str) -> str:
    """Inverse of `map_lightning_key`, used to name missing keys as the user's file would."""
    for ref, mine in LIGHTNING_KEY_MAP:
        if mine.endswith("."):
            if ours.startswith(mine):
                return ref + ours[len(mine) :]
        elif ours == mine:
            return ref
    return ours


def _is_volatile(key: str) -> bool:
    return key.endswith(VOLATILE_BUFFER_SUFFIXES)


# -- reading the file ---------------------------------------------------------------------------
# The only globals a checkpoint may name besides tensors and plain containers: Lightning's
# AttributeDict (where Lightning 2.x unified, 2.x standalone and 1.x define it), read as the
# plain dict it is, and argparse's Namespace for hyper-parameters saved as one. Nothing of
# Lightning is imported or run. torch's weights-only unpickler refuses every other global, so a
# file crafted to call os.system (or anything else) is refused without running it.
LIGHTNING_SAFE_GLOBALS: list[Any] = [
    (dict, "lightning.fabric.utilities.data.AttributeDict"),
    (dict, "lightning_fabric.utilities.data.AttributeDict"),
    (dict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    argparse.Namespace,
]


_REFUSALS = ("GLOBAL", "Can only build", "Can only create new object", "call reduce")


def _unpickling_reason(exc: Exception) -> str:
    """The part of torch's weights-only error that says what went wrong (not its advice)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation",
              "(1)", "(2)")  # fmt: skip
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            line = rest or (lines[i + 1] if i + 1 < len(lines) else "")
        elif line.startswith(advice):
            continue
        if line:
            return line.split(". Please use")[0][:300]
    return type(exc).__name__


def _refused_global(exc: Exception) -> str | None:
    """What the weights-only unpickler refused to build or call; None for other failures."""
    reason = _unpickling_reason(exc)
    return reason if any(word in reason for word in _REFUSALS) else None


def read_lightning_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state_dict, hyper_parameters) of a Lightning `.ckpt`; CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with torch.serialization.safe_globals(LIGHTNING_SAFE_GLOBALS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(exc)
        if refused is None:
            raise CheckpointError(
                f"{str(path)!r} is not a readable PyTorch checkpoint ({_unpickling_reason(exc)})"
            ) from exc
        raise CheckpointError(
            f"{str(path)!r} holds more than tensors and plain values ({refused}); refused "
            "without running it: a checkpoint must never run code"
        ) from exc
    except Exception as exc:
        hint = ""
        if path.suffix == ".safetensors":
            hint = "; a .safetensors file is already in the project's format and needs no import"
        reason = f"{type(exc).__name__}: {exc}"
        raise CheckpointError(
            f"{str(path)!r} is not a readable PyTorch checkpoint ({reason}){hint}"
        ) from exc
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        found = sorted(map(str, ckpt))[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a PyTorch-Lightning checkpoint: expected a dict with "
            f"'state_dict' and 'hyper_parameters', found {found}"
        )
    state = dict(ckpt["state_dict"])
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{str(path)!r}: state_dict entries that are not named tensors: {bad[:_REPORT_LIMIT]}"
        )
    hparams = ckpt.get("hyper_parameters") or {}
    if isinstance(hparams, argparse.Namespace):
        hparams = vars(hparams)
    return state, dict(hparams)


# -- architecture ---------------------------------------------------------------------------------
def _block_count(state: Mapping[str, Tensor], prefix: str) -> int | None:
    indices = set()
    for key in state:
        if key.startswith(prefix):
            head = key[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    return max(indices) + 1 if indices else None


def infer_architecture(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Architecture facts readable from reference-layout tensor shapes (absent = not readable)."""
    facts: dict[str, Any] = {}
    backbone = _SAT + "backbone."
    patch = state.get(backbone + "patch_embed.proj.weight")
    if patch is not None and patch.ndim == 4:
        facts["image.embed_dim"] = int(patch.shape[0])
        facts["image.in_chans"] = int(patch.shape[1])
        facts["image.patch_size"] = int(patch.shape[2])
    depth = _block_count(state, backbone + "blocks.")
    if depth is not None:
        facts["image.depth"] = depth
    fc1 = state.get(backbone + "blocks.0.mlp.fc1.weight")
    if fc1 is not None and fc1.ndim == 2:
        facts["image.mlp_hidden"] = int(fc1.shape[0])
    proj = state.get(_SAT + "projector.linear1.weight")
    if proj is not None and proj.ndim == 2:
        facts["embed_dim"] = int(proj.shape[0])

    fuser = _SAT + "meta_fuser."
    if any(k.startswith(fuser) for k in state):
        embed = fuser + "meta_embed."
        facts["fusion.components"] = tuple(
            c
            for c in METADATA_COMPONENTS
            if any(k.startswith(f"{embed}{MetadataEmbedding.MODULES[c]}.") for k in state)
        )
        layers = fuser + "transformer_encoder.layers."
        n_layers = _block_count(state, layers)
        if n_layers is not None:
            facts["fusion.num_layers"] = n_layers
        ff = state.get(layers + "0.linear1.weight")
        if ff is not None and ff.ndim == 2:
            facts["fusion.ff_dim"] = int(ff.shape[0])
        for module in ("location_fc", "month_fc", "time_fc"):
            w = state.get(f"{embed}{module}.fc1.weight")
            if w is not None and w.ndim == 2:
                facts["fusion.meta_hidden"] = int(w.shape[0])
                break
    elif any(k.startswith(backbone) for k in state):
        facts["fusion.components"] = ()

    for tower, prefix in (("audio", "audio_encoder.model.model.audio_projection."),
                          ("text", "text_encoder.model.model.text_projection.")):  # fmt: skip
        proj = state.get(prefix + "linear2.weight")
        if proj is not None and proj.ndim == 2:
            facts[f"{tower}.projection_dim"] = int(proj.shape[0])
    deterministic = "criterion.tau" in state or any(
        k.startswith(("audio_encoder.head.", "text_encoder.head.")) for k in state
    )
    probabilistic = "criterion.shift" in state or any(".mean_head." in k for k in state)
    if deterministic != probabilistic:
        facts["loss.type"] = "pcmepp" if probabilistic else "infonce"
    return facts


def _config_facts(config: ModelConfig) -> dict[str, Any]:
    img = config.image
    facts: dict[str, Any] = {
        "image.embed_dim": img.embed_dim,
        "image.in_chans": img.in_chans,
        "image.patch_size": img.patch_size,
        "image.depth": img.depth,
        "image.mlp_hidden": int(img.embed_dim * img.mlp_ratio),
        "embed_dim": config.embed_dim,
        "audio.projection_dim": config.audio.projection_dim,
        "text.projection_dim": config.text.projection_dim,
        "fusion.components": config.fusion.components if config.fusion else (),
        "loss.type": config.loss.type,
    }
    if config.fusion is not None:
        facts["fusion.num_layers"] = config.fusion.num_layers
        facts["fusion.ff_dim"] = config.fusion.ff_dim
        facts["fusion.meta_hidden"] = config.fusion.meta_hidden
    return facts


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise CheckpointError(f"hyper_parameters[{name!r}] = {value!r} is not a boolean")


def _loss_type(hparams: Mapping[str, Any]) -> str | None:
    """pcmepp / infonce as the hyper-parameters say, None when they say nothing."""
    said: dict[str, str] = {}
    if hparams.get("probabilistic") is not None:
        prob = _as_bool("probabilistic", hparams["probabilistic"])
        said["probabilistic"] = "pcmepp" if prob else "infonce"
    if hparams.get("loss_type") is not None:
        raw = str(hparams["loss_type"])
        norm = raw.strip().lower().replace("_", "").replace("-", "")
        if norm in _PROBABILISTIC_LOSSES:
            said["loss_type"] = "pcmepp"
        elif norm in _DETERMINISTIC_LOSSES:
            said["loss_type"] = "infonce"
        else:
            raise CheckpointError(
                f"hyper_parameters['loss_type'] = {raw!r} is not a known loss (pcmepp or infonce)"
            )
    if len(set(said.values())) > 1:
        raise CheckpointError(
            f"hyper_parameters disagree: probabilistic={hparams['probabilistic']!r} but "
            f"loss_type={hparams['loss_type']!r}; this model pairs Gaussian heads with pcmepp and "
            f"point heads with infonce"
        )
    return next(iter(said.values()), None)


def _metadata_components(value: Any) -> tuple[str, ...]:
    """Components named by a reference `metadata_type` string ('none' or '' -> none)."""
    text = str(value).strip().lower()
    if text in ("", "none", "null"):
        return ()
    tokens = [t for t in text.split("_") if t]
    unknown = [t for t in tokens if t not in METADATA_COMPONENTS]
    if unknown:
        raise CheckpointError(
            f"hyper_parameters['metadata_type'] = {value!r} names unknown components {unknown}; "
            f"known: {'_'.join(METADATA_COMPONENTS)} or 'none'"
        )
    return tuple(c for c in METADATA_COMPONENTS if c in tokens)


def lightning_config(
    base: ModelConfig, hparams: Mapping[str, Any], state: Mapping[str, Tensor]
) -> ModelConfig:
    """The base config with the checkpoint's hyper-parameters applied, checked against its shapes.

    Hyper-parameters win where present; where a file lacks one, the metadata components and the
    loss type fall back to what the state dict shows, everything else to the base config.
    """
    if base.text.kind != "clap":
        raise CheckpointError(
            f"config {base.name!r} uses a {base.text.kind} text tower; official PSM checkpoints "
            f"carry a CLAP text tower, use a CLAP config (e.g. 'paper')"
        )
    inferred = infer_architecture(state)
    data = base.model_dump(mode="python")

    sat_type = hparams.get("sat_type")
    if sat_type is not None:
        if sat_type not in SAT_TYPES:
            raise CheckpointError(
                f"hyper_parameters['sat_type'] = {sat_type!r} is unknown; "
                f"known: {sorted(SAT_TYPES)}"
            )
        gsd, tile = SAT_TYPES[sat_type]
        data["image"].update(sat_type=sat_type, native_gsd=gsd, tile_size=tile)
    if hparams.get("sat_input_size") is not None:
        data["image"]["img_size"] = int(hparams["sat_input_size"])

    if hparams.get("fc_dim") is not None:
        # fc_dim is the embedding width only: the CLAP towers keep their own projection width
        # (read from the weights below), which the heads map to fc_dim.
        data["embed_dim"] = int(hparams["fc_dim"])
    for tower in ("audio", "text"):
        if f"{tower}.projection_dim" in inferred:
            data[tower]["projection_dim"] = inferred[f"{tower}.projection_dim"]

    if "metadata_type" in hparams:
        components = _metadata_components(hparams["metadata_type"])
    else:
        default = base.fusion.components if base.fusion else ()
        components = inferred.get("fusion.components", default)
    if components:
        fusion = data["fusion"] or FusionConfig().model_dump(mode="python")
        fusion["components"] = components
        data["fusion"] = fusion
    else:
        data["fusion"] = None

    loss = _loss_type(hparams) or inferred.get("loss.type") or base.loss.type
    data["loss"]["type"] = loss
    for hp, field in (
        ("vib_beta", "vib_beta"),
        ("pseudo_match_alpha", "pseudo_match_alpha"),
        ("loss_text_weight", "text_weight"),
    ):
        if isinstance(hparams.get(hp), int | float) and not isinstance(hparams[hp], bool):
            data["loss"][field] = float(hparams[hp])

    try:
        config = ModelConfig.model_validate(data)
    except ValueError as exc:
        raise CheckpointError(
            f"the checkpoint's hyper_parameters do not give a valid config: {exc}"
        ) from exc

    wanted = _config_facts(config)
    clashes = [
        f"{name}: checkpoint {value!r}, config {wanted[name]!r}"
        for name, value in inferred.items()
        if wanted.get(name) != value
    ]
    if clashes:
        raise CheckpointError(
            f"checkpoint does not fit config {base.name!r} (after applying its hyper_parameters "
            f"{_hparams_summary(hparams)}): " + "; ".join(clashes) + ". Pass a config whose "
            "architecture matches the checkpoint (--config NAME or a .json file)."
        )
    return config


def _hparams_summary(hparams: Mapping[str, Any]) -> str:
    keys = ("metadata_type", "sat_type", "fc_dim", "probabilistic", "loss_type")
    return "{" + ", ".join(f"{k}={hparams[k]!r}" for k in keys if k in hparams) + "}"


# -- weights ----------------------------------------------------------------------------------
def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_REPORT_LIMIT])
    more = len(names) - _REPORT_LIMIT
    return shown + (f", ... (+{more} more)" if more > 0 else "")


def map_state_dict(
    state: Mapping[str, Tensor], model: PSM, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """Rename reference keys to ours and check them strictly against `model`.

    Returns a complete state dict for `model` (volatile buffers the file lacks are taken from the
    model); raises CheckpointError naming every unexpected, missing or mis-shaped key.
    """
    own = model.state_dict()
    mapped: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        ours = map_lightning_key(key)
        if ours is None or ours not in own:
            if not _is_volatile(key):
                unexpected.append(key)
            continue
        mapped[ours] = tensor
        origin[ours] = key
    missing = [_reference_key(k) for k in own if k not in mapped and not _is_volatile(k)]
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        raise CheckpointError(
            f"{source} does not match config {model.config.name!r}: " + "; ".join(parts) + ". "
            "Hint: the architecture comes from the config plus the checkpoint's hyper_parameters "
            "(metadata_type, sat_type, fc_dim, probabilistic/loss_type); check --config and that "
            "the file is an official PSM Lightning checkpoint."
        )
    result: dict[str, Tensor] = {}
    mismatched: list[str] = []
    for key, target in own.items():
        tensor = mapped.get(key)
        if tensor is not None and tuple(tensor.shape) != tuple(target.shape):
            if _is_volatile(key):
                tensor = None
            else:
                mismatched.append(
                    f"{origin[key]} (checkpoint {tuple(tensor.shape)}, model {tuple(target.shape)})"
                )
                continue
        result[key] = target if tensor is None else tensor
    if mismatched:
        raise CheckpointError(
            f"{source} does not match config {model.config.name!r}: {len(mismatched)} tensor(s) "
            f"with the wrong shape: {_listing(mismatched)}"
        )
    return result


def import_lightning_checkpoint(
    path: str | Path, config: ModelConfig | str | Path = "paper"
) -> PSM:
    """Load an official PSM Lightning `.ckpt` into a PSM of `config` + its hyper-parameters."""
    base = config if isinstance(config, ModelConfig) else load_config(config)
    state, hparams = read_lightning_checkpoint(path)
    model_config = lightning_config(base, hparams, state)
    try:
        model = PSM(model_config, load_pretrained=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot build config {base.name!r} for the import: {exc}") from exc
    weights = map_state_dict(state, model, source=f"checkpoint {str(path)!r}")
    model.load_state_dict(weights, strict=True)
    return model.eval()


# -- command line -------------------------------------------------------------------------------
def run_import(args: argparse.Namespace) -> int:
    """`soundscape import-checkpoint`: convert a Lightning .ckpt to a .safetensors checkpoint."""
    ckpt = Path(args.ckpt)
    out = Path(args.out) if args.out else ckpt.with_suffix(".safetensors")
    model = import_lightning_checkpoint(ckpt, args.config)
    mid = save_checkpoint(model, out)
    cfg = model.config
    metadata = "_".join(cfg.fusion.components) if cfg.fusion else "none"
    print(
        f"imported {ckpt} -> {out} (config {cfg.name!r}, sat_type {cfg.image.sat_type}, "
        f"metadata {metadata}, loss {cfg.loss.type})"
    )
    print(mid)
    return 0
