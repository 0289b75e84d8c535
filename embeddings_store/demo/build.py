"""Builds the demo: world files, the trained demo model, its evaluation, and the demo store.

Every step is skipped when its output exists and resumes when it was interrupted (training
resumes from its last trainer state, the store from its done chunks), so `soundscape demo` is
cheap the second time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from embeddings_store.demo.paths import DemoPaths
from embeddings_store.demo.recipe import DemoRecipe

if TYPE_CHECKING:  # heavy (torch models, audio synthesis): imported where they are used
    from embeddings_store.demo.dataset import DemoWorldDataset
    from embeddings_store.demo.geo import GeoLayers

# The demo map's default region: the contiguous USA, as in the paper's figures.
DEMO_STORE_BBOX: tuple[float, float, float, float] = (-125.0, 24.0, -66.5, 49.5)


Log = Callable[[str], None]


def ensure_world_files(paths: DemoPaths, log: Log = print) -> None:
    """The world's geo layers and the imagery GeoTIFF the demo reads footprints from."""
    from embeddings_store.demo.geo import GeoLayers
    from embeddings_store.demo.imagery import write_demo_imagery

    if paths.imagery.exists() and GeoLayers.cache_path(paths.root).exists():
        return
    t0 = time.perf_counter()
    layers = GeoLayers.load(paths.root)
    if not paths.imagery.exists():
        write_demo_imagery(paths.imagery, layers)
    log(f"world files ready in {time.perf_counter() - t0:.1f} s ({paths.root})")


def load_layers(paths: DemoPaths) -> GeoLayers:
    """The world's geo layers (built on first use, then loaded from the cache)."""
    from embeddings_store.demo.geo import GeoLayers

    return GeoLayers.load(paths.root)


def demo_datasets(
    paths: DemoPaths,
    layers: GeoLayers,
    recipe: DemoRecipe,
    splits: tuple[str, ...] = ("train", "test"),
    progress: bool = True,
) -> dict[str, DemoWorldDataset]:
    """The demo world's splits, with footprints rendered (or loaded from the cache)."""
    from embeddings_store.demo.dataset import DemoWorldDataset
    from model.config import load_config

    img = load_config(recipe.config).image
    return {
        split: DemoWorldDataset(
            split,
            recipe.world,
            layers,
            paths.imagery,
            read_px=img.tile_size,
            base_footprint_m=img.tile_size * img.native_gsd,
            cache_dir=paths.samples,
            progress=progress,
        )
        for split in splits
    }


def train_demo_model(
    paths: DemoPaths,
    dataset: DemoWorldDataset,
    recipe: DemoRecipe,
    progress: bool = True,
    log: Log = print,
) -> tuple[Path, str]:
    """Train (or resume training) the demo model and export it; returns (checkpoint, model id)."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.psm import PSM
    from model.train import Trainer

    torch.manual_seed(recipe.train.seed)
    model = PSM(load_config(recipe.config))
    trainer = Trainer(model, dataset, recipe.train, paths.train_dir)
    if trainer.try_resume():
        log(f"resuming training at step {trainer.step} of {recipe.train.steps}")
    t0 = time.perf_counter()
    trainer.train(progress=progress)
    log(f"trained {recipe.train.steps} steps ({time.perf_counter() - t0:.0f} s this run)")
    mid = save_checkpoint(trainer.model.cpu().eval(), paths.checkpoint)
    (paths.train_dir / "losses.json").write_text(json.dumps(trainer.losses))
    return paths.checkpoint, mid


StoreState = Literal["missing", "stale", "incomplete", "ready"]


def store_state(
    paths: DemoPaths, model_id: str, bbox: tuple[float, float, float, float]
) -> StoreState:
    """Where the demo store stands: missing, stale (another model, region or schema: rebuilt
    from scratch), incomplete (resumable) or ready."""
    from embeddings_store.store import EmbeddingStore
    from model.errors import StoreError

    if not paths.store.exists():
        return "missing"
    try:
        store = EmbeddingStore.open(paths.store)
    except StoreError:
        return "stale"
    same_region = tuple(store.attrs.get("bounds", ())) == tuple(float(v) for v in bbox)
    if store.model_id != model_id or not same_region:
        return "stale"
    return "ready" if store.is_complete() else "incomplete"


def build_demo_store(
    paths: DemoPaths,
    bbox: tuple[float, float, float, float] = DEMO_STORE_BBOX,
    progress: bool = True,
    log: Log = print,
) -> Path:
    """Precompute (or finish) the demo store over `bbox` at PSM zoom 1, 3 and 5, with
    mu0/c0/u0; a stale store is rebuilt, not refused: the demo owns its cache folder."""
    from embeddings_store.precompute import PrecomputeSpec, default_levels, precompute
    from embeddings_store.region import Region
    from model.checkpoint import read_header
    from model.config import ModelConfig

    header = read_header(paths.checkpoint)
    config = ModelConfig.model_validate_json(header["config"])
    region = Region(bbox)
    base = config.image.tile_size * config.image.native_gsd
    spec = PrecomputeSpec(
        imagery=str(paths.imagery),
        checkpoint=str(paths.checkpoint),
        store=str(paths.store),
        levels=default_levels(base, region),
        region=region,
        with_fused=True,
    )
    t0 = time.perf_counter()
    stale = store_state(paths, header["model_id"], bbox) == "stale"
    report = precompute(spec, overwrite=stale, progress=progress)
    log(
        f"demo store ready: {report.valid_cells:,} new cells in {report.chunks_computed} chunks, "
        f"{time.perf_counter() - t0:.0f} s ({paths.store})"
    )
    return paths.store


@dataclass(frozen=True)
class DemoBuild:
    """What `build_demo` left in the cache folder."""

    paths: DemoPaths
    model_id: str
    levels: tuple[tuple[int, int], ...]  # (PSM zoom, tile zoom) of each store level
    seconds: float


def build_demo(
    paths: DemoPaths,
    recipe: DemoRecipe,
    bbox: tuple[float, float, float, float] = DEMO_STORE_BBOX,
    retrain: bool = False,
    evaluate: bool = False,
    progress: bool = True,
    log: Log = print,
) -> DemoBuild:
    """Build whatever of the demo is missing: world files, the checkpoint (packaged, or trained
    here with `retrain`), the store over `bbox`, the sound gallery, and with `evaluate` its
    evaluation."""
    from embeddings_store.demo.sounds import build_demo_gallery, gallery_ready
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import read_header

    t0 = time.perf_counter()
    ensure_world_files(paths, log)
    ensure_checkpoint(paths, recipe, retrain=retrain, progress=progress, log=log)
    model_id = read_header(paths.checkpoint)["model_id"]
    if store_state(paths, model_id, bbox) != "ready":
        build_demo_store(paths, bbox, progress=progress, log=log)
    store = EmbeddingStore.open(paths.store, expect_model_id=model_id)
    if not gallery_ready(paths, model_id):
        build_demo_gallery(paths, progress=progress, log=log)
    if evaluate:
        evaluate_demo(paths, recipe, progress=progress, log=log)
    levels = tuple((lv.psm_zoom, lv.tile_zoom) for lv in store.levels)
    return DemoBuild(paths, model_id, levels, time.perf_counter() - t0)


def packaged_checkpoint() -> Path:
    """The demo model shipped with the package (trained by `make demo-model`)."""
    return Path(__file__).with_name("weights") / "demo.safetensors"


def ensure_checkpoint(
    paths: DemoPaths,
    recipe: DemoRecipe,
    retrain: bool = False,
    progress: bool = True,
    log: Log = print,
) -> Path:
    """The demo checkpoint in the cache: kept, copied from the package, or trained here."""
    import shutil

    if paths.checkpoint.exists() and not retrain:
        return paths.checkpoint
    shipped = packaged_checkpoint()
    if not retrain and shipped.exists():
        paths.root.mkdir(parents=True, exist_ok=True)
        tmp = paths.checkpoint.with_name(f".{paths.checkpoint.name}.tmp")
        shutil.copyfile(shipped, tmp)
        tmp.replace(paths.checkpoint)
        log(f"demo model: the packaged checkpoint ({shipped.name})")
        return paths.checkpoint
    log("training the demo model (resumable; about 15-20 min on 2 CPU cores)")
    data = demo_datasets(paths, load_layers(paths), recipe, splits=("train",), progress=progress)
    checkpoint, mid = train_demo_model(paths, data["train"], recipe, progress=progress, log=log)
    calibrate_demo_model(paths, recipe, progress=progress, log=log)
    log(f"demo model {mid} written to {checkpoint}")
    return checkpoint


def calibrate_demo_model(
    paths: DemoPaths, recipe: DemoRecipe, progress: bool = True, log: Log = print
) -> dict[str, tuple[float, float]]:
    """Fit the match probability's calibration on the validation split and save it in the
    checkpoint's header (the model id, which names the embeddings, stays the same)."""
    from embeddings_store.demo.calibration import fit_calibration
    from model.checkpoint import load_checkpoint, save_checkpoint

    model = load_checkpoint(paths.checkpoint)
    val = demo_datasets(paths, load_layers(paths), recipe, splits=("val",), progress=progress)
    model.calibration = fit_calibration(model, val["val"])
    save_checkpoint(model, paths.checkpoint)
    fitted = ", ".join(f"{k}: a={a:.3f} b={b:.3f}" for k, (a, b) in model.calibration.items())
    log(f"match probability calibrated on the validation split ({fitted})")
    return model.calibration


def evaluate_demo(
    paths: DemoPaths,
    recipe: DemoRecipe,
    n_test: int = 2000,
    progress: bool = True,
    log: Log = print,
) -> dict[str, object]:
    """Retrieval (with the oracle), map correctness and the match probability's calibration
    of the demo; written to the cache."""
    from embeddings_store.demo.calibration import calibration_report
    from embeddings_store.demo.quality import (
        class_audio_means,
        heldout_retrieval,
        map_report,
        retrieval_report,
    )
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint

    model = load_checkpoint(paths.checkpoint)
    layers = load_layers(paths)
    held = demo_datasets(paths, layers, recipe, splits=("val", "test"), progress=progress)
    test = held["test"]
    t0 = time.perf_counter()
    retrieval = retrieval_report(model, test, n_test)
    heldout = heldout_retrieval(model, held)
    store = EmbeddingStore.open(paths.store, expect_model_id=model.model_id)
    maps = map_report(model, store, layers, psm_zoom=1, class_means=class_audio_means(model, test))
    calibration = calibration_report(model, test, model.calibration, n_test)
    result = {
        "model_id": model.model_id,
        "retrieval": retrieval.to_json(),
        "heldout": heldout,
        "map": maps.to_json(),
        "calibration": calibration.to_json(),
        "seconds": time.perf_counter() - t0,
    }
    out = paths.root / "evaluation.json"
    out.write_text(json.dumps(result, indent=2))
    (paths.root / "evaluation.md").write_text(format_evaluation(result))
    log(f"evaluation written to {out}")
    return result


def format_evaluation(result: dict[str, object]) -> str:
    """Markdown tables: the paper-style retrieval table with oracle rows, and map correctness."""
    from model.evaluate import EvalRow, format_table

    ret = result["retrieval"]
    maps = result["map"]
    assert isinstance(ret, dict) and isinstance(maps, dict)
    rows = [EvalRow(**r) for r in ret["rows"]]
    o = ret["oracle"]
    lines = [format_table(rows, int(ret["n"])), ""]
    lines.append("| reference | I2A R@10% | I2A MR | A2I R@10% | A2I MR |")
    lines.append("|---|---:|---:|---:|---:|")
    oracles = (
        ("metadata", "oracle (place, time, source)"),
        ("place_only", "oracle (place)"),
        ("bayes", "Bayes-optimal (place, time, source)"),
    )
    for key, label in oracles:
        if f"{key}_i2a_recall" not in o:  # evaluation.json written before the row existed
            continue
        lines.append(
            f"| {label} | {o[f'{key}_i2a_recall']:.3f} | {o[f'{key}_i2a_median_rank']:g} | "
            f"{o[f'{key}_a2i_recall']:.3f} | {o[f'{key}_a2i_median_rank']:g} |"
        )
    lines.append("| random | 0.100 | | 0.100 | |")
    if "bayes_i2a_recall" in o:
        lines += [
            "",
            "The oracle ranks by p(class | place, time, source). For A2I that is the best ranking "
            "there is; for I2A the best (Bayes-optimal) ranking divides by the class's frequency, "
            "because an audio of a common class is more likely to be someone else's pair.",
        ]
    heldout = result.get("heldout") or {}  # absent in evaluation.json of older versions
    if heldout:
        lines += [
            "",
            "Zoom 1 with metadata on every pair of the held-out splits (a larger sample):",
            "",
            "| split | pairs | I2A R@10% | x oracle | A2I R@10% | x oracle |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, h in heldout.items():
            lines.append(
                f"| {name} | {h['n']:,} | {h['i2a_recall']:.3f} | "
                f"{h['i2a_recall'] / h['oracle_i2a_recall']:.2f} | {h['a2i_recall']:.3f} | "
                f"{h['a2i_recall'] / h['oracle_a2i_recall']:.2f} |"
            )
    lines += ["", f"Map correctness, PSM zoom {maps['psm_zoom']}, {maps['n_cells']:,} cells:", ""]
    lines += [
        'Columns: the class query\'s ROC-AUC against "class likely here" and the share of cells '
        "where the right hour beats the wrong hour — for the model (CSD), for the model's mean "
        "distance alone (no variance), and for ideal cells (the unit-length mixture of the "
        "classes' mean audio embeddings, weighted by the true class probabilities: what the "
        "means could reach).",
        "",
        "| class | ROC-AUC | ROC-AUC, ideal cells | right > wrong hour | mean distance only "
        "| ideal cells |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ideal_auc = maps.get("ideal_auc") or {}
    series = [
        maps["hour_wins"],
        maps.get("hour_wins_mean_only") or {},
        maps.get("ideal_hour_wins") or {},
    ]

    def pct(values: dict[str, float], name: str) -> str:
        return f"{values[name]:.0%}" if name in values else ""

    def mean_pct(values: dict[str, float]) -> str:
        return f"{sum(values.values()) / len(values):.0%}" if values else ""

    for name, auc in maps["auc"].items():
        ideal = f"{ideal_auc[name]:.3f}" if name in ideal_auc else ""
        hours = " | ".join(pct(v, name) for v in series)
        lines.append(f"| {name} | {auc:.3f} | {ideal} | {hours} |")
    ideal_mean = maps.get("ideal_mean_auc")
    lines.append(
        f"| **mean** | **{maps['mean_auc']:.3f}** | "
        f"{'' if ideal_mean is None else f'{ideal_mean:.3f}'} | "
        f"**{maps['mean_hour_wins']:.0%}** | {mean_pct(series[1])} | {mean_pct(series[2])} |"
    )
    cal = result.get("calibration")  # absent in evaluation.json of older versions
    if isinstance(cal, dict):
        lines += [
            "",
            f"Match probability calibration ({cal['split']} split, zoom 1 with metadata; a "
            "text pair is a class query and a recording, an audio pair two recordings; they "
            "match when the classes are the same; ECE over 15 equal-width bins; the calibration "
            "is fitted on the validation split):",
            "",
            "| query | pairs | matching share | ECE, learned | ECE, calibrated |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind, n in cal["pairs"].items():
            lines.append(
                f"| {kind} | {n:,} | {cal['base_rate'][kind]:.3f} | "
                f"{cal['learned'][kind]['ece']:.3f} | {cal['calibrated'][kind]['ece']:.3f} |"
            )
    return "\n".join(lines) + "\n"
