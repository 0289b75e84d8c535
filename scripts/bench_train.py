"""Benchmark one training step of a model config (the demo model's 20-minute budget rests on it).

Measures, on synthetic batches of the config's input sizes: the whole `Trainer.train_step`
(PCME++ loss forward + backward, gradient clipping, AdamW, scheduler), the same step with the
audio tower frozen (`TrainConfig.freeze_audio_at`; with and without its head) and, separately, the
forward + backward of the audio tower and of the image side (ViT + metadata fuser + heads),
the two parts that dominate it. Features are precomputed, as the demo trainer caches them.

Run from the repository root:

    python scripts/bench_train.py                      # demo config, batch 128
    python scripts/bench_train.py --quick              # CI smoke test, seconds
    python scripts/bench_train.py --config test --batch-size 32 --json /tmp/train.json

Prints a Markdown table (median / min ms per call, and the share of the machine other processes
used meanwhile, as `bench_model.py` does) to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

# scripts/ is not a package: make `model` (and the sibling bench_model) importable from a plain
# checkout.
REPO_ROOT = Path(__file__).resolve().parents[1]
for folder in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from bench_model import time_calls  # noqa: E402

from model.config import load_config  # noqa: E402
from model.data import Batch, SyntheticDataset  # noqa: E402
from model.psm import PSM  # noqa: E402
from model.train import Trainer  # noqa: E402
from model.train_config import TrainConfig  # noqa: E402


def bench(config: str, batch_size: int, repeats: int, warmup: int) -> list[dict[str, object]]:
    """Rows {benchmark, batch, p50_ms, min_ms, other_cpu} for one config."""
    torch.manual_seed(0)
    cfg = load_config(config)
    model = PSM(cfg)
    data = SyntheticDataset(
        size=batch_size,
        image_px=cfg.image.img_size,
        sample_rate=cfg.audio.sample_rate,
        seconds=float(cfg.audio.max_seconds),
    )
    train_cfg = TrainConfig(steps=1, batch_size=batch_size, lr=1e-3, cache_features=True)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(model, data, train_cfg, workdir)
        batch: Batch = trainer.make_batch(0).to(trainer.device)

        def audio() -> None:
            model.embed_audio_features(batch.audio).mu.sum().backward()

        def image() -> None:
            model.embed_images(batch.images, batch.zoom, batch.metadata).mu.sum().backward()

        # The same step once the audio tower is frozen (TrainConfig.freeze_audio_at): its
        # outputs come from the bank, so only the image and text sides (and, unless it is
        # frozen too, the audio head) train.
        frozen = Trainer(
            PSM(cfg), data, replace(train_cfg, freeze_audio_at=0), Path(workdir) / "frozen"
        )
        head = Trainer(
            PSM(cfg),
            data,
            replace(train_cfg, freeze_audio_at=0, freeze_audio_head=False),
            Path(workdir) / "head",
        )
        for t in (frozen, head):
            t.train_step(t.make_batch(0))  # builds the audio bank once

        model.train()
        rows = []
        for name, fn in (
            ("train step (loss, backward, AdamW)", lambda: trainer.train_step(batch)),
            ("train step, audio tower frozen", lambda: frozen.train_step(batch)),
            ("train step, audio tower frozen, head trains", lambda: head.train_step(batch)),
            ("audio tower forward + backward", audio),
            ("image side forward + backward", image),
        ):
            times, other_cpu = time_calls(fn, repeats, warmup, trainer.device)
            rows.append(
                {
                    "config": config,
                    "benchmark": name,
                    "batch": batch_size,
                    "p50_ms": statistics.median(times) * 1e3,
                    "min_ms": min(times) * 1e3,
                    "other_cpu": other_cpu,  # share of the machine other processes used
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="demo", help="model config name or JSON path")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="few repeats, small batch (smoke test)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.batch_size < 2:
        ap.error("--batch-size must be at least 2 (the contrastive loss needs negatives)")
    if args.quick:
        args.batch_size, args.repeats = min(args.batch_size, 8), 2
    rows = bench(args.config, args.batch_size, args.repeats, warmup=1 if args.quick else 3)
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}\n")
    print("| config | benchmark | batch | p50 ms | min ms | other load |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        load = "" if r["other_cpu"] is None else f"{r['other_cpu']:.0%}"
        print(
            f"| {r['config']} | {r['benchmark']} | {r['batch']} | "
            f"{r['p50_ms']:.1f} | {r['min_ms']:.1f} | {load} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
