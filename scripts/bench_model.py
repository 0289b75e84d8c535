"""Benchmark the PSM model pieces that matter for serving, per named config.

Measures, for each config: metadata fusion + image head throughput (the tile-serving hot path,
cells/s), image encoder throughput (img/s), fp32 and bf16 autocast for both; text and audio query
latency (ms per single query, fp32); and once, `score_cells` over 1M x 512 float32 cells.

Run from the repository root (no install needed):

    python scripts/bench_model.py                        # paper + test, a few minutes on 2 cores
    python scripts/bench_model.py --quick                # CI smoke test, under a minute
    python scripts/bench_model.py --configs test --repeats 3 --json /tmp/bench.json

Configs whose pretrained CLAP towers are not on this machine (the paper config names
laion/clap-htsat-fused) are measured with architecture-identical towers with random weights:
timing does not depend on the weights. Prints a Markdown table to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# scripts/ is not a package: make `model` importable from a plain checkout.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from model.config import (  # noqa: E402
    AUDIO_SOURCES,
    CAPTION_SOURCES,
    AudioTowerConfig,
    ModelConfig,
    TextTowerConfig,
    load_config,
)
from model.fusion import MetadataFuser  # noqa: E402
from model.heads import make_head  # noqa: E402
from model.metadata import MetadataBatch, make_metadata  # noqa: E402
from model.psm import PSM  # noqa: E402
from model.scoring import score_cells  # noqa: E402
from model.towers.clap import ClapAudioTower, ClapTextTower  # noqa: E402
from model.towers.resolve import PretrainedNotFoundError, resolve_pretrained  # noqa: E402
from model.vit import ImageEncoder  # noqa: E402

FUSION_BATCHES = (1024, 2048, 4096)
# Per-config sizes from the benchmark brief: a ViT-B/16 batch of 16 keeps a full run on 2 CPU
# cores to minutes; the paper model hears 10 s clips, the test model gets 5 s (longer than its
# 1 s window, so the fused-crop feature path runs).
IMAGE_BATCH = {"paper": 16, "test": 64}
CLIP_SECONDS = {"paper": 10.0, "test": 5.0}
DEFAULT_IMAGE_BATCH = 32
TEXT_QUERY = "birds singing near a river in the early morning"
# laion/clap-htsat-fused is a default-sized HTSAT audio model with 2-D attentional feature fusion.
PAPER_CLAP_AUDIO = {"enable_fusion": True, "fusion_type": "aff_2d"}
BUSY_SHARE = 0.10  # flag rows during which other processes used more of the machine than this


@dataclass
class Result:
    """One benchmark row; times are per call, in seconds."""

    config: str
    benchmark: str
    dtype: str
    batch: int
    times_s: list[float]
    unit: str = ""  # throughput unit; empty for latency rows
    note: str = ""
    other_cpu: float | None = None  # share of the machine used by other processes meanwhile
    p50_ms: float = field(init=False)
    min_ms: float = field(init=False)
    max_ms: float = field(init=False)
    throughput: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.p50_ms = statistics.median(self.times_s) * 1e3
        self.min_ms = min(self.times_s) * 1e3
        self.max_ms = max(self.times_s) * 1e3
        self.throughput = self.batch / (self.p50_ms / 1e3) if self.unit else None


@dataclass
class Settings:
    """Resolved run settings (after --quick and per-config defaults)."""

    device: torch.device
    repeats: int
    latency_repeats: int
    warmup: int
    latency_warmup: int
    fusion_batches: tuple[int, ...]
    precisions: tuple[str, ...]
    image_batch: int | None
    quick: bool
    seed: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def synchronize(device: torch.device) -> None:
    # CUDA kernels are asynchronous: without a sync we would time the launch, not the work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CpuMeter:
    """Share of the machine's CPU time used by other processes since construction (Linux only).

    On a 2-core machine a concurrent test run easily triples our timings; this is the evidence.
    """

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float, float] | None:
        try:
            first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[1:9])
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        own = os.times()
        busy = (user + nice + system + irq + softirq) / tick
        return time.perf_counter(), busy, steal / tick, own.user + own.system

    def shares(self, min_window_s: float = 0.2) -> tuple[float, float] | None:
        """(other processes, hypervisor steal) as fractions of all cores; None if unmeasurable."""
        end = self._read()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        # /proc/stat counts in 10 ms ticks: shorter windows give noise, not information.
        if wall < min_window_s:
            return None
        capacity = wall * (os.cpu_count() or 1)
        other = (end[1] - self.start[1]) - (end[3] - self.start[3])
        return max(0.0, other / capacity), (end[2] - self.start[2]) / capacity


def time_calls(
    fn: Callable[[], object], repeats: int, warmup: int, device: torch.device
) -> tuple[list[float], float | None]:
    """Per-call wall times of `repeats` calls after `warmup` untimed ones (which build caches),
    and the share of CPU other processes used meanwhile."""
    meter = CpuMeter()
    for _ in range(warmup):
        fn()
        synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    shares = meter.shares()
    return times, shares[0] if shares else None


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """bf16 autocast on the device's own backend, or a disabled one for fp32."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state() -> dict[str, Any]:
    # Others edit model/ concurrently: record exactly which code was measured.
    def run(*cmd: str) -> str:
        return subprocess.run(
            ["git", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "commit": run("rev-parse", "--short", "HEAD"),
            "dirty": bool(run("status", "--porcelain")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_supported": bf16_supported(device),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    info.update({f"git_{k}": v for k, v in git_state().items()})
    return info


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # Without native bf16 instructions oneDNN emulates bf16 and is slower than fp32.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# -- 1. fusion ------------------------------------------------------------------------------------
def random_metadata(n: int, rng: np.random.Generator) -> MetadataBatch:
    """Every component present, so the fuser attends over all 7 tokens (the costliest case)."""
    return make_metadata(
        lat=rng.uniform(-90, 90, n),
        lon=rng.uniform(-180, 180, n),
        month=rng.integers(1, 13, n),
        hour=rng.integers(0, 24, n),
        asource=rng.integers(0, len(AUDIO_SOURCES), n),
        tsource=rng.integers(0, len(CAPTION_SOURCES), n),
    )


def map_metadata(n: int, rng: np.random.Generator) -> MetadataBatch:
    """A map's batch: one month, hour and pair of sources for every cell, a location per cell
    (the tile path; the fuser projects the shared tokens once)."""
    return make_metadata(
        lat=rng.uniform(-90, 90, n), lon=rng.uniform(-180, 180, n),
        month=5, hour=14, asource=1, tsource=0,
    )  # fmt: skip


# what each fusion row's metadata is: a sweep (every row its own) or a map (shared)
FUSION_CASES = {"fusion (PSM.fuse)": random_metadata, "fusion, a map's cells": map_metadata}


def bench_fusion(name: str, cfg: ModelConfig, s: Settings) -> list[Result]:
    seed_everything(s.seed)
    # Only what PSM.fuse runs: the full paper PSM needs CLAP files that are not on this machine.
    fuser = MetadataFuser(cfg.fusion, cfg.embed_dim) if cfg.fusion is not None else None
    head = make_head(cfg.embed_dim, cfg.embed_dim, cfg.probabilistic, project=False)
    nn.ModuleList([m for m in (fuser, head) if m is not None]).to(s.device).eval()
    rng = np.random.default_rng(s.seed)
    note = "fuser + image head" if fuser is not None else "image head only (config has no fuser)"
    results = []
    for (what, make_meta), batch in itertools.product(FUSION_CASES.items(), s.fusion_batches):
        h = torch.randn(batch, cfg.embed_dim, device=s.device)
        meta = make_meta(batch, rng).to(s.device)
        for precision in s.precisions:

            def fuse(
                h: Tensor = h, meta: MetadataBatch = meta, precision: str = precision
            ) -> object:
                with autocast(s.device, precision):
                    return head(fuser(h, meta) if fuser is not None else h)

            times, other = time_calls(fuse, s.repeats, s.warmup, s.device)
            results.append(Result(name, what, precision, batch, times, "cells/s", note, other))
            log(f"  {what}  {precision} B={batch}: {results[-1].throughput:,.0f} cells/s")
    return results


# -- 2. image encoder -----------------------------------------------------------------------------
def bench_image(name: str, cfg: ModelConfig, s: Settings) -> list[Result]:
    seed_everything(s.seed)
    encoder = ImageEncoder(cfg.image, cfg.embed_dim).to(s.device).eval()
    batch = s.image_batch or IMAGE_BATCH.get(name, DEFAULT_IMAGE_BATCH)
    if s.quick and s.image_batch is None:
        batch = max(1, batch // 4)
    size = cfg.image.img_size
    images = torch.randn(batch, cfg.image.in_chans, size, size, device=s.device)
    note = (
        f"{size}px, patch {cfg.image.patch_size}, depth {cfg.image.depth}, d {cfg.image.embed_dim}"
    )
    results = []
    for precision in s.precisions:

        def encode(precision: str = precision) -> object:
            with autocast(s.device, precision):
                return encoder(images, 1.0)

        times, other = time_calls(encode, s.repeats, s.warmup, s.device)
        results.append(
            Result(name, "image encoder (h_i)", precision, batch, times, "img/s", note, other)
        )
        log(f"  image   {precision} B={batch}: {results[-1].throughput:,.1f} img/s")
    return results


# -- 3. text and audio queries --------------------------------------------------------------------
def available_offline(spec: str | None) -> bool:
    if not spec:
        return True
    try:
        resolve_pretrained(spec)
    except PretrainedNotFoundError:
        return False
    return True


def substitute_towers(cfg: ModelConfig) -> tuple[ClapTextTower, ClapAudioTower, str]:
    """Random-weight CLAP towers with the laion/clap-htsat-fused architecture.

    Default ClapTextConfig is RoBERTa-base, as that checkpoint's text model; the audio side is a
    default ClapAudioConfig with fusion, and the tower's extractor defaults (48 kHz, 10 s, 64 mel,
    hop 480, fusion truncation) match its preprocessor config.
    """
    text_cfg = TextTowerConfig.model_validate(
        {
            **cfg.text.model_dump(),
            "kind": "clap",
            "pretrained": None,
            "tokenizer": None,
            "clap_text": {},
        }
    )
    audio_cfg = AudioTowerConfig.model_validate(
        {
            **cfg.audio.model_dump(),
            "pretrained": None,
            "clap_audio": PAPER_CLAP_AUDIO,
            "feature": {},
        }
    )
    note = "random-weight CLAP, htsat-fused arch."
    return ClapTextTower(text_cfg), ClapAudioTower(audio_cfg), note


def bench_queries(name: str, cfg: ModelConfig, s: Settings) -> list[Result]:
    seed_everything(s.seed)
    psm: PSM | None = None
    tokens_from_tokenizer = True
    if available_offline(cfg.audio.pretrained) and available_offline(cfg.text.pretrained):
        psm = PSM(cfg).to(s.device).eval()
        text_tower, audio_tower = psm.text_tower, psm.audio_tower
        text_head, audio_head = psm.text_head, psm.audio_head
        note = "full PSM, random weights"
    else:
        text_tower, audio_tower, note = substitute_towers(cfg)
        text_head = make_head(cfg.text.projection_dim, cfg.embed_dim, cfg.probabilistic)
        audio_head = make_head(cfg.audio.projection_dim, cfg.embed_dim, cfg.probabilistic)
        for module in (text_tower, audio_tower, text_head, audio_head):
            module.to(s.device).eval()
        # The random-weight tower's byte-level tokenizer is not RoBERTa's: time the model on ids.
        tokens_from_tokenizer = False

    rep, warm, dev = s.latency_repeats, s.latency_warmup, s.device
    results: list[Result] = []

    def add(benchmark: str, fn: Callable[[], object], extra: str = "") -> None:
        times, other = time_calls(fn, rep, warm, dev)
        results.append(Result(name, benchmark, "fp32", 1, times, "", f"{note}{extra}", other))
        log(f"  query   {benchmark}: p50 {results[-1].p50_ms:.1f} ms")

    max_len = cfg.text.max_length
    if tokens_from_tokenizer:
        tokens = text_tower.tokenize([TEXT_QUERY])
        add("text: tokenize", lambda: text_tower.tokenize([TEXT_QUERY]))
    else:
        vocab = text_tower.model.config.vocab_size
        # Skip the special ids at the bottom of the RoBERTa vocabulary (1 is padding).
        ids = torch.randint(5, vocab, (1, max_len))
        tokens = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    tokens = {k: v.to(dev) for k, v in tokens.items()}
    add("text: forward + head", lambda: text_head(text_tower(**tokens)), f"; {max_len} tokens")
    if psm is not None:
        add("text: end to end (embed_texts)", lambda: psm.embed_texts([TEXT_QUERY]))

    seconds = CLIP_SECONDS.get(name, float(cfg.audio.max_seconds))
    sr = audio_tower.sample_rate
    rng = np.random.default_rng(s.seed)
    # Noise at the tower's own rate: upload resampling is a separate, input-dependent cost.
    wave = (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32)
    clip = f"; {seconds:g} s @ {sr / 1000:g} kHz"
    feats = audio_tower.features([wave], sr)
    shape = "x".join(map(str, feats["input_features"].shape))
    add("audio: features", lambda: audio_tower.features([wave], sr), f"{clip}, mel {shape}")
    dev_feats = {k: v.to(dev) for k, v in feats.items()}
    add("audio: forward + head", lambda: audio_head(audio_tower(**dev_feats)), clip)
    if psm is not None:
        add("audio: end to end (embed_audio)", lambda: psm.embed_audio([wave], sr), clip)
    else:

        def audio_end_to_end() -> object:
            f = audio_tower.features([wave], sr)
            return audio_head(audio_tower(**{k: v.to(dev) for k, v in f.items()}))

        add("audio: end to end", audio_end_to_end, clip)
    return results


# -- 4. scoring -----------------------------------------------------------------------------------
def bench_scoring(cells: int, dim: int, s: Settings) -> Result:
    rng = np.random.default_rng(s.seed)
    # Uniform values: cost does not depend on them, and random normals take seconds to draw.
    mu = rng.random((cells, dim), dtype=np.float32)
    c = rng.random(cells, dtype=np.float32)
    q = rng.random(dim, dtype=np.float32)
    times, other = time_calls(
        lambda: score_cells(mu, c, q, 0.5), s.latency_repeats, s.latency_warmup, torch.device("cpu")
    )
    result = Result(
        "-",
        f"score_cells ({cells:,} x {dim})",
        "fp32",
        cells,
        times,
        "cells/s",
        "numpy on CPU, one query",
        other,
    )
    log(f"  scoring: p50 {result.p50_ms:.1f} ms")
    return result


# -- output ---------------------------------------------------------------------------------------
def markdown_table(results: Sequence[Result]) -> str:
    rows = [
        "| config | benchmark | dtype | batch | p50 ms | min–max ms | throughput | notes |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r.throughput is None:
            tput = "—"
        elif r.throughput >= 1e6:
            tput = f"{r.throughput / 1e6:,.1f} M {r.unit}"
        else:
            tput = (
                f"{r.throughput:,.1f} {r.unit}"
                if r.throughput < 100
                else f"{r.throughput:,.0f} {r.unit}"
            )
        note = r.note
        if r.other_cpu is not None and r.other_cpu > BUSY_SHARE:
            note += f" **(busy: other processes used {r.other_cpu:.0%} CPU)**"
        rows.append(
            f"| {r.config} | {r.benchmark} | {r.dtype} | {r.batch:,} | {r.p50_ms:,.1f} | "
            f"{r.min_ms:,.1f}–{r.max_ms:,.1f} | {tput} | {note} |"
        )
    return "\n".join(rows)


# what --parts names: each measures one config
PARTS = {"fusion": bench_fusion, "image": bench_image, "queries": bench_queries}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--configs", default="paper,test", help="comma-separated config names or .json paths"
    )
    p.add_argument(
        "--repeats",
        type=int,
        help="timed repeats for throughput rows (default 5, quick 2); latency rows use 4x as many",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--quick", action="store_true", help="few repeats and small batches (CI smoke)")
    p.add_argument("--json", type=Path, help="also write all results and raw timings to this file")
    p.add_argument(
        "--fusion-batches", help="comma-separated fusion batch sizes (default 1024,2048,4096)"
    )
    p.add_argument("--image-batch", type=int, help="image encoder batch (default per config)")
    p.add_argument("--precisions", default="fp32,bf16", help="subset of fp32,bf16")
    p.add_argument(
        "--score-cells", type=int, default=1_000_000, help="cells for score_cells (0: skip)"
    )
    p.add_argument("--score-dim", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    return p.parse_args(argv)


def resolve_settings(args: argparse.Namespace) -> Settings:
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    repeats = args.repeats or (2 if args.quick else 5)
    if args.fusion_batches:
        batches = tuple(int(b) for b in args.fusion_batches.split(","))
    else:
        batches = FUSION_BATCHES[:1] if args.quick else FUSION_BATCHES
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    unknown = set(precisions) - {"fp32", "bf16"}
    if unknown:
        raise SystemExit(f"unknown precision(s) {sorted(unknown)}; use fp32 and/or bf16")
    if "bf16" in precisions and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log("this GPU has no bf16: measuring fp32 only")
        precisions = tuple(p for p in precisions if p != "bf16")
    return Settings(
        device=device,
        repeats=repeats,
        latency_repeats=4 * repeats,
        warmup=1,
        # A few more warm-up calls for latency: single queries are short and noisier.
        latency_warmup=1 if args.quick else 3,
        fusion_batches=batches,
        precisions=precisions,
        image_batch=args.image_batch,
        quick=args.quick,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = resolve_settings(args)
    started = time.perf_counter()
    env = environment(s.device)
    log(f"environment: {env}")
    probe = CpuMeter()
    time.sleep(1.0)
    before = probe.shares()
    env["other_cpu_before_start"] = round(before[0], 3) if before else None
    if before and before[0] > BUSY_SHARE:
        log(f"warning: other processes use {before[0]:.0%} of the CPU; figures will be pessimistic")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; use {', '.join(PARTS)}")
    run_meter = CpuMeter()
    results: list[Result] = []
    with torch.inference_mode():
        for name in (c.strip() for c in args.configs.split(",") if c.strip()):
            cfg = load_config(name)
            log(f"[{name}]")
            for part in parts:
                results += PARTS[part](name, cfg, s)
            gc.collect()  # the paper towers hold ~0.6 GB; drop them before the next config
        if args.score_cells > 0:
            results.append(bench_scoring(args.score_cells, args.score_dim, s))
    wall = time.perf_counter() - started
    during = run_meter.shares()
    env["other_cpu_during_run"] = round(during[0], 3) if during else None
    env["steal_during_run"] = round(during[1], 3) if during else None

    print("## Environment\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print(
        f"- repeats: {s.repeats} (throughput), {s.latency_repeats} (latency); "
        f"warm-up {s.warmup}/{s.latency_warmup}; quick: {s.quick}; seed: {s.seed}"
    )
    print(f"- benchmark wall time (after imports): {wall:.1f} s\n")
    print(markdown_table(results))

    if args.json:
        payload = {
            "environment": env,
            "settings": {**asdict(s), "device": str(s.device)},
            "wall_s": wall,
            "results": [asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
