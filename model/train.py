"""Training loop: AdamW, cosine annealing with warm restarts (stepped per step), AMP on GPU,
gradient clipping, checkpoint and exact resume.

Every random choice of step `s` (batch order, zoom levels, augmentation, metadata dropping,
dropout) is derived from (seed, s), so a run resumed from a checkpoint continues with the very
same losses as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from model.checkpoint import save_checkpoint
from model.data import Batch, CachedCollator, SoundscapeDataset, collate
from model.losses import combine_pair_losses
from model.metadata import apply_metadata_drop
from model.psm import PSM
from model.train_config import TrainConfig
from model.transforms import PSM_ZOOM_LEVELS, TRAIN_AUGMENTATIONS


def step_rng(seed: int, step: int, stream: int) -> np.random.Generator:
    """Independent, reproducible random stream for one purpose at one step."""
    return np.random.default_rng([seed, step, stream])


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of step `step`: epochs are seeded permutations, batches consecutive slices."""
    per_epoch = max(n // batch_size, 1)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch, 7]).permutation(n)
    return perm[pos * batch_size : (pos + 1) * batch_size]


def psm_loss(
    model: PSM, batch: Batch, audio_tower_out: Tensor | None = None
) -> tuple[Tensor, dict[str, float]]:
    """Reference objective: (1-w) L(image, audio) + w (L(image, text) + L(audio, text)).

    `audio_tower_out`: the batch's audio tower outputs when they are already known (a frozen
    tower); the audio head runs on them.
    """
    sat = model.embed_images(batch.images, batch.zoom, batch.metadata)
    if audio_tower_out is None:
        aud = model.embed_audio_features(batch.audio)
    else:
        aud = model.audio_head(audio_tower_out)
    txt = model.embed_text_tokens(batch.text)
    crit = model.criterion
    l_ia, _ = crit(sat, aud)
    l_it, _ = crit(sat, txt)
    l_at, _ = crit(aud, txt)
    loss = combine_pair_losses(l_ia, l_it, l_at, model.config.loss.text_weight)
    return loss, {"loss_ia": l_ia.item(), "loss_it": l_it.item(), "loss_at": l_at.item()}


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """The reference's cosine with restarts, times a linear warm-up when `cfg.warmup_steps`."""
    if cfg.warmup_steps <= 0:
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=cfg.restart_period
        )
    period, warmup = cfg.restart_period, cfg.warmup_steps

    def factor(step: int) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * (step % period) / period))
        return min(1.0, (step + 1) / warmup) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# Settings a resumed run may change: the run length (train longer) and where and how it runs,
# none of which changes what a step computes. Every other TrainConfig field must match the
# state's, so a field added later is checked without being listed here.
RESUME_MAY_CHANGE = frozenset(
    {"steps", "checkpoint_every", "device", "amp", "cache_features", "feature_workers", "extra"}
)


def changed_settings(saved: dict[str, object], cfg: TrainConfig) -> list[str]:
    """'name: saved -> now' for each setting outside RESUME_MAY_CHANGE that differs.

    States written before a setting existed count as having its default.
    """
    now, default = asdict(cfg), asdict(TrainConfig())
    out = []
    for name, value in now.items():
        if name in RESUME_MAY_CHANGE:
            continue
        before = saved.get(name, default[name])
        if before != value:
            out.append(f"{name}: {before!r} -> {value!r}")
    return out


class Trainer:
    """Trains a PSM model on a `SoundscapeDataset`, writing checkpoints to `workdir`."""

    STATE = "trainer_state.pt"
    FINAL = "model.safetensors"

    def __init__(
        self, model: PSM, dataset: SoundscapeDataset, cfg: TrainConfig, workdir: str | Path
    ) -> None:
        if len(dataset) < cfg.batch_size:
            raise ValueError(
                f"dataset has {len(dataset)} samples, fewer than batch_size {cfg.batch_size}"
            )
        if cfg.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {cfg.warmup_steps}")
        if cfg.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (contrastive loss needs negatives)")
        if cfg.augment not in TRAIN_AUGMENTATIONS:
            raise ValueError(
                f"augment must be one of {sorted(TRAIN_AUGMENTATIONS)}, got {cfg.augment!r}"
            )
        if cfg.freeze_audio_at is not None:
            if not 0 <= cfg.freeze_audio_at <= cfg.steps:
                raise ValueError(
                    f"freeze_audio_at must be in [0, steps={cfg.steps}], got {cfg.freeze_audio_at}"
                )
            if not cfg.cache_features:
                raise ValueError("freeze_audio_at needs cache_features (the kept audio features)")
        bad = [z for z in cfg.zooms if z not in PSM_ZOOM_LEVELS]
        if bad:
            raise ValueError(f"zoom levels {bad} are not PSM zoom levels {PSM_ZOOM_LEVELS}")
        self.cfg = cfg
        self.device = cfg.resolved_device()
        self.model = model.to(self.device)
        self.dataset = dataset
        self.workdir = Path(workdir)
        params = [p for p in model.parameters() if p.requires_grad]
        # The reference decays every parameter, biases, norms, CLS and (a, b) included.
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.eps
        )
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.step = 0
        self.losses: list[float] = []
        # Every training sample's audio tower output, once the tower is frozen.
        self._audio_bank: Tensor | None = None
        self._pool: ThreadPoolExecutor | None = None  # background batch thread, while it pays
        self.collator = (
            CachedCollator(
                dataset,
                model.audio_tower.features,
                model.text_tower.tokenize,
                model.config.image.img_size,
                cfg.augment,
            )
            if cfg.cache_features
            else None
        )

    # -- state ------------------------------------------------------------------------------
    def save_state(self) -> Path:
        """Write model, optimizer, scheduler and progress atomically; returns the path."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / self.STATE
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "losses": self.losses,
                "train_config": asdict(self.cfg),
                "model_config": self.model.config.to_json(),
            },
            tmp,
        )
        os.replace(tmp, path)
        return path

    def try_resume(self) -> bool:
        """Load `workdir/trainer_state.pt` if present; True when resumed."""
        path = self.workdir / self.STATE
        if not path.exists():
            return False
        # Tensors and plain values only: a state file must never run code (torch's weights-only
        # unpickler refuses anything else).
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["model_config"] != self.model.config.to_json():
            raise ValueError(
                f"{path} was written for a different model config; use another --workdir"
            )
        changed = changed_settings(state.get("train_config", {}), self.cfg)
        if changed:
            raise ValueError(
                f"{path} was written with other training settings ({'; '.join(changed)}); "
                "use the same settings, another --workdir or --no-resume"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.losses = list(state["losses"])
        return True

    # -- loop -------------------------------------------------------------------------------
    def make_batch(self, step: int) -> Batch:
        """Deterministic training batch of step `step`."""
        cfg = self.cfg
        idx = batch_indices(len(self.dataset), cfg.batch_size, cfg.seed, step)
        zooms = step_rng(cfg.seed, step, 1).choice(cfg.zooms, size=len(idx))
        gen = torch.Generator().manual_seed(int(step_rng(cfg.seed, step, 2).integers(2**62)))
        if self.collator is not None:
            batch = self.collator(idx, zooms, gen)
        else:
            batch = collate(
                [self.dataset.sample(int(i), int(z)) for i, z in zip(idx, zooms, strict=True)],
                [int(z) for z in zooms],
                self.model.audio_tower.features,
                self.model.text_tower.tokenize,
                self.model.config.image.img_size,
                generator=gen,
                augment=cfg.augment,
            )
        batch.metadata = apply_metadata_drop(
            batch.metadata, cfg.meta_droprate, step_rng(cfg.seed, step, 3)
        )
        batch.indices = torch.as_tensor(idx, dtype=torch.long)
        return batch

    def audio_frozen(self) -> bool:
        """Whether the current step trains with the audio tower frozen."""
        at = self.cfg.freeze_audio_at
        return at is not None and self.step >= at

    def _freeze_audio(self) -> Tensor:
        """Freeze the audio tower (and the head with `freeze_audio_head`); run every training
        sample's audio through the tower once (eval mode, so the bank depends on the weights
        only and a resumed run rebuilds it exactly)."""
        assert self.collator is not None  # checked in __init__
        n = len(self.dataset)
        self.collator.warm(range(n), self.cfg.zooms[0], workers=1)  # fills what is missing
        frozen = [*self.model.audio_tower.parameters()]
        if self.cfg.freeze_audio_head:
            frozen += [*self.model.audio_head.parameters()]
        for p in frozen:
            p.requires_grad_(False)
            p.grad = None
        self.model.eval()
        parts = []
        with torch.no_grad():
            for start in range(0, n, 512):
                feats = self.collator.audio_features_of(range(start, min(n, start + 512)))
                parts.append(
                    self.model.audio_tower(**{k: v.to(self.device) for k, v in feats.items()})
                )
        return torch.cat(parts)

    def train_step(self, batch: Batch) -> tuple[float, dict[str, float]]:
        """One optimisation step on `batch`."""
        audio = None
        if self.audio_frozen():
            if self._audio_bank is None:
                self._audio_bank = self._freeze_audio()
            assert batch.indices is not None
            audio = self._audio_bank[batch.indices.to(self._audio_bank.device)]
        self.model.train()
        torch.manual_seed(int(step_rng(self.cfg.seed, self.step, 4).integers(2**62)))
        batch = batch.to(self.device)
        use_amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, logs = psm_loss(self.model, batch, audio)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), logs

    def train(
        self, progress: bool = True, on_step: Callable[[int, float], None] | None = None
    ) -> list[float]:
        """Run until `cfg.steps`, checkpointing every `checkpoint_every` steps and at the end."""
        bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            disable=None if progress else True,
            unit="step",
            dynamic_ncols=True,
        )
        cfg, n = self.cfg, len(self.dataset)
        if self.collator is not None and cfg.feature_workers > 1 and self.step < cfg.steps:
            t = time.perf_counter()
            self.collator.warm(range(n), cfg.zooms[0], cfg.feature_workers)
            bar.write(f"features of {n} samples in {time.perf_counter() - t:.0f} s")
        t0, seen = time.perf_counter(), 0
        # The next batch is built in a background thread while this step trains: audio synthesis
        # is mostly single-threaded numpy, so it overlaps with torch's compute. Batches depend
        # only on their step number, so prefetching changes nothing in the results.
        try:
            pending = self._request(self.step) if self.step < self.cfg.steps else None
            while pending is not None:
                batch = pending.result()
                nxt = self.step + 1
                pending = self._request(nxt) if nxt < self.cfg.steps else None
                loss, _ = self.train_step(batch)
                self.losses.append(loss)
                self.step += 1
                seen += len(batch)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss:.4f}", samples_s=f"{seen / (time.perf_counter() - t0):.1f}"
                )
                if on_step:
                    on_step(self.step, loss)
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    self.save_state()
        finally:
            self._stop_pool()
        bar.close()
        return self.losses

    def _request(self, step: int) -> Future[Batch]:
        """Batch `step`: built in the background thread while prefetching pays, else now."""
        if self._prefetch_pays(step):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="batches")
            return self._pool.submit(self.make_batch, step)
        # A live thread that has run torch ops slows every later step of this one (measured
        # 0.45 against 0.34 s/step on 2 cores), so it goes as soon as it is not needed.
        self._stop_pool()
        done: Future[Batch] = Future()
        done.set_result(self.make_batch(step))
        return done

    def _stop_pool(self) -> None:
        """Shut the background batch thread down, if one runs."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _prefetch_pays(self, step: int) -> bool:
        """Whether to build batch `step` in the background thread: only while its samples still
        need synthesising. A batch of cached samples takes ~10 ms to build, and a live
        background thread costs more than that (see `_request`)."""
        if self.collator is None:
            return True
        if len(self.collator) == len(self.dataset):
            return False  # all cached: skip drawing the epoch's permutation again
        idx = batch_indices(len(self.dataset), self.cfg.batch_size, self.cfg.seed, step)
        return not self.collator.cached(idx)

    def export(self) -> tuple[Path, str]:
        """Write the trained model in the project format; returns (path, model id)."""
        path = self.workdir / self.FINAL
        mid = save_checkpoint(self.model.cpu(), path)
        self.model.to(self.device)
        (self.workdir / "losses.json").write_text(json.dumps(self.losses))
        return path, mid
