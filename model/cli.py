"""`soundscape train` and `soundscape evaluate`: thin argument parsing over model.train/evaluate."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from model.transforms import PSM_ZOOM_LEVELS, TRAIN_AUGMENTATIONS


def _zooms(text: str) -> tuple[int, ...]:
    try:
        zooms = tuple(int(z) for z in text.split(",") if z.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"zoom levels must be integers like 1,3,5, got {text!r}"
        ) from exc
    bad = [z for z in zooms if z not in PSM_ZOOM_LEVELS]
    if not zooms or bad:
        raise argparse.ArgumentTypeError(
            f"zoom levels must be among {PSM_ZOOM_LEVELS}, got {text!r}"
        )
    return zooms


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= `low`, with `what` in the error message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def _dataset_kwargs(text: str | None) -> dict[str, object]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--dataset-args must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--dataset-args must be a JSON object")
    return value


def _add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """--dataset and --dataset-args (train and evaluate read data the same way)."""
    p.add_argument("--dataset", default="synthetic", help="registered dataset name")
    p.add_argument(
        "--dataset-args",
        type=_dataset_kwargs,
        default={},
        help="JSON keyword arguments for the dataset",
    )


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register `train`."""
    p = sub.add_parser("train", help="train a PSM model on a registered dataset")
    p.add_argument(
        "--config", default="test", help="model config name (paper, demo, test) or .json path"
    )
    _add_dataset_arguments(p)
    p.add_argument("--workdir", type=Path, required=True, help="folder for checkpoints and logs")
    p.add_argument("--steps", type=_positive, default=1000, help="optimisation steps in all")
    p.add_argument("--batch-size", type=_positive, default=128, help="samples per step")
    p.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.2, help="AdamW weight decay")
    p.add_argument(
        "--restart-period", type=_positive, default=5000, help="cosine restart period (steps)"
    )
    p.add_argument(
        "--warmup-steps", type=_non_negative, default=0, help="linear warm-up steps (0 = none)"
    )
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clipping (0 = off)")
    p.add_argument(
        "--meta-droprate", type=float, default=0.5, help="share of samples losing each metadata"
    )
    p.add_argument(
        "--augment",
        choices=sorted(TRAIN_AUGMENTATIONS),
        default="reference",
        help="image augmentation: the reference's random resized crop + flip, or the whole "
        "footprint turned and mirrored (dihedral)",
    )
    p.add_argument(
        "--zooms",
        type=_zooms,
        default=PSM_ZOOM_LEVELS,
        help="PSM zoom levels to sample, e.g. 1,3,5",
    )
    p.add_argument(
        "--freeze-audio-at",
        type=_non_negative,
        default=None,
        help="freeze the audio tower from this step on (its outputs are computed once and "
        "reused; keeps every sample's features in memory)",
    )
    p.add_argument(
        "--freeze-audio-head",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --freeze-audio-at: freeze the audio head too (default), or keep training it "
        "on the frozen tower's outputs (--no-freeze-audio-head)",
    )
    p.add_argument("--seed", type=int, default=56, help="random seed (runs are deterministic)")
    p.add_argument(
        "--checkpoint-every", type=_positive, default=100, help="steps between trainer states"
    )
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.add_argument(
        "--no-resume", action="store_true", help="ignore an existing trainer state in --workdir"
    )
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="initialise CLAP towers from local pretrained weights",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when not a terminal)"
    )
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Train, export `model.safetensors`, print its model id."""
    from model.config import load_config
    from model.data import make_dataset
    from model.psm import PSM
    from model.train import TrainConfig, Trainer

    if not 0.0 <= args.meta_droprate <= 1.0:
        raise ValueError("--meta-droprate must be in [0, 1]")
    config = load_config(args.config)
    dataset = make_dataset(args.dataset, "train", **args.dataset_args)
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        restart_period=args.restart_period,
        warmup_steps=args.warmup_steps,
        grad_clip=args.grad_clip or None,
        meta_droprate=args.meta_droprate,
        augment=args.augment,
        freeze_audio_at=args.freeze_audio_at,
        freeze_audio_head=args.freeze_audio_head,
        cache_features=args.freeze_audio_at is not None,
        zooms=args.zooms,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
    )
    import torch

    torch.manual_seed(args.seed)
    trainer = Trainer(PSM(config, load_pretrained=args.pretrained), dataset, cfg, args.workdir)
    if not args.no_resume and trainer.try_resume():
        print(f"resumed from step {trainer.step} in {args.workdir}")
    losses = trainer.train(progress=not args.no_progress)
    path, mid = trainer.export()
    first = losses[0] if losses else float("nan")
    print(f"trained {trainer.step} steps; loss {first:.4f} -> {losses[-1]:.4f}")
    print(f"checkpoint: {path}\nmodel id: {mid}")
    return 0


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """Register `evaluate`."""
    p = sub.add_parser(
        "evaluate", help="zero-shot retrieval table (I2A/A2I R@10%% and median rank)"
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="a .safetensors checkpoint")
    _add_dataset_arguments(p)
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="dataset split"
    )
    p.add_argument("--samples", type=_positive, default=None, help="use the first N samples")
    p.add_argument(
        "--zooms", type=_zooms, default=PSM_ZOOM_LEVELS, help="PSM zoom levels, e.g. 1,3,5"
    )
    p.add_argument("--batch-size", type=_positive, default=64, help="samples embedded at once")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Print the results table."""
    from dataclasses import asdict

    from model.checkpoint import load_checkpoint
    from model.data import make_dataset
    from model.evaluate import evaluate, format_table

    model = load_checkpoint(args.checkpoint)
    dataset = make_dataset(args.dataset, args.split, **args.dataset_args)
    n = len(dataset) if args.samples is None else min(args.samples, len(dataset))
    rows = evaluate(model, dataset, zooms=args.zooms, max_samples=n, batch_size=args.batch_size)
    print(f"model {model.model_id} ({model.config.name}) on {args.dataset}/{args.split}")
    print(format_table(rows, n))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Convert an official Lightning checkpoint (imports torch only when run)."""
    from model.lightning_import import run_import as convert

    return convert(args)


def add_import_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `import-checkpoint` subcommand on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "import-checkpoint",
        help="convert an official PSM Lightning .ckpt into the project's .safetensors format",
        description=(
            "Read an official PSM PyTorch-Lightning checkpoint, build the architecture from "
            "--config plus the file's hyper_parameters, load every weight strictly and write a "
            ".safetensors checkpoint. Prints the model id."
        ),
    )
    parser.add_argument("ckpt", type=Path, help="the Lightning .ckpt file")
    parser.add_argument(
        "--config", default="paper", help="base model config name or .json path (default: paper)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output .safetensors path (default: the .ckpt path with suffix .safetensors)",
    )
    parser.set_defaults(func=run_import)
    return parser
