"""Uncertainty against footprint size and diversity on the demo (the paper's two findings):
embeddings_store/demo/uncertainty_quality.py on the demo store built by `soundscape demo`.

    .venv/bin/python scripts/eval_uncertainty.py [--cache-dir DIR] [--points 400] [--json F]
        [--pairs 1200] [--maps docs/uncertainty-maps.png]

`--pairs` also measures, on held-out recording/image pairs, the image variance that minimises
PCME++'s matching loss given the learned means (`loss_optimal_variance`) against the learned one.

`--maps` draws the paper's Fig. 3 for the demo: ||sigma||_1 over the contiguous USA, no
metadata, at PSM zoom 1 and 5 side by side on one colour scale (land only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache-dir", type=Path, default=None, help="demo cache folder")
    p.add_argument("--points", type=int, default=400, help="random land points")
    p.add_argument("--pairs", type=int, default=1200,
                   help="held-out pairs for the loss-optimal variance (0: skip)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--maps", type=Path, default=None, help="write the uncertainty maps (PNG)")
    args = p.parse_args()

    from embeddings_store.demo.build import DEMO_STORE_BBOX, demo_datasets, load_layers
    from embeddings_store.demo.paths import demo_paths
    from embeddings_store.demo.quality import clip_means
    from embeddings_store.demo.recipe import DemoRecipe
    from embeddings_store.demo.uncertainty_quality import (
        CLOSENESS_CLIPS,
        optimal_variance_report,
        uncertainty_maps,
        uncertainty_report,
    )
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint

    paths = demo_paths(args.cache_dir)
    if not paths.store.exists():
        print(f"eval_uncertainty: {paths.store} is missing: run `soundscape demo --no-serve`",
              file=sys.stderr)  # fmt: skip
        return 2
    model = load_checkpoint(paths.checkpoint)
    store = EmbeddingStore.open(paths.store, expect_model_id=model.model_id)
    w, s, e, n = DEMO_STORE_BBOX
    inner = (w + 2, s + 2, e - 2, n - 2)  # keep footprints inside the store
    layers = load_layers(paths)
    test = demo_datasets(paths, layers, DemoRecipe.load(), splits=("test",), progress=False)
    clips = clip_means(model, test["test"], CLOSENESS_CLIPS)
    report = uncertainty_report(model, store, layers, inner, args.points, clips)
    print(json.dumps({"model_id": model.model_id, **report.to_json()}, indent=2))
    print("\n| metadata | mean ‖σ‖₁ by PSM zoom | share zoom 5 > zoom 1 | Spearman(‖σ‖₁, "
          "footprint entropy) by zoom |\n|---|---|---:|---|")  # fmt: skip
    for name in ("none", "full"):
        rho = by_zoom(report.spearman_entropy[name], "+.2f")
        print(f"| {name} | {by_zoom(report.mean[name], '.2f')} | "
              f"{report.share_5_over_1[name]:.2f} | {rho} |")  # fmt: skip
    print("\n| metadata | Spearman(‖σ‖₁, distance to the 50 nearest clips) by zoom | mean distance "
          "by zoom |\n|---|---|---|")  # fmt: skip
    for name in ("none", "full"):
        print(f"| {name} | {by_zoom(report.spearman_closeness[name], '+.2f')} | "
              f"{by_zoom(report.mean_clip_distance[name], '.3f')} |")  # fmt: skip
    data = report.to_json()
    if args.pairs > 0:
        opt = optimal_variance_report(model, test["test"], args.pairs)
        data["optimal_variance"] = opt.to_json()
        print(f"\nLoss-optimal image variance c* against the learned c = ||σ²||₁, {opt.pairs} "
              "test pairs, no metadata, PSM zoom 1 / 5:\n\n| | mean c* | mean c | "
              "Spearman(c, c*) | share zoom 5 > zoom 1 |\n|---|---|---|---|---:|")  # fmt: skip
        print(f"| model | {by_zoom(opt.mean_optimal, '.3f')} | {by_zoom(opt.mean_learned, '.3f')}"
              f" | {by_zoom(opt.spearman, '+.2f')} | c*: {opt.share_5_over_1_optimal:.2f}, "
              f"c: {opt.share_5_over_1_learned:.2f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    if args.maps:
        maps = uncertainty_maps(model, store, layers, DEMO_STORE_BBOX)
        draw_maps(maps, model.config.image.tile_size * model.config.image.native_gsd, args.maps)
        print(f"wrote {args.maps}")
    return 0


def by_zoom(values: dict[int, float], fmt: str) -> str:
    """'a / b / c': one figure per PSM zoom, lowest zoom first."""
    return " / ".join(format(values[z], fmt) for z in sorted(values))


def draw_maps(maps: dict, base_m: float, out: Path) -> None:
    """Zoom 1 and zoom 5 side by side, one colour scale (2nd-98th percentile of both)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lo, hi = min(maps), max(maps)
    both = np.concatenate([maps[z].values.ravel() for z in (lo, hi)])
    vmin, vmax = np.nanpercentile(both, [2, 98])
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.9), layout="constrained")
    for ax, z in zip(axes, (lo, hi), strict=True):
        m = maps[z]
        x, y = m["x"].values, m["y"].values
        origin = "upper" if y[0] > y[-1] else "lower"
        extent = (x.min(), x.max(), y.min(), y.max())
        im = ax.imshow(m.values, extent=extent, origin=origin, cmap="magma", vmin=vmin, vmax=vmax)
        ax.set_title(f"PSM zoom {z} (footprint {z * base_m / 1000:.0f} km): "
                     f"mean {float(np.nanmean(m.values)):.2f}")  # fmt: skip
        ax.set_axis_off()
    fig.colorbar(im, ax=axes, shrink=0.9, label="uncertainty ‖σ‖₁ (no metadata)")
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
