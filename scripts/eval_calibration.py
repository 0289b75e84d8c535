"""Calibration of the demo model's match probability on held-out pairs (issue 24):
embeddings_store/demo/calibration.py on the demo built by `soundscape demo`.

    .venv/bin/python scripts/eval_calibration.py [--cache-dir DIR] [--fit] [--pairs 2000]
        [--json F] [--plot docs/calibration.png]

`--fit` refits the calibration on the validation split and saves it in the cache's checkpoint
(what `soundscape demo --retrain` does after training); without it the checkpoint's own
calibration is measured. The report is always on the test split.
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
    p.add_argument("--fit", action="store_true", help="refit on the validation split and save")
    p.add_argument("--pairs", type=int, default=2000, help="test recordings to pair up")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None, help="write a reliability diagram (PNG)")
    args = p.parse_args()

    from embeddings_store.demo.build import calibrate_demo_model, demo_datasets, load_layers
    from embeddings_store.demo.calibration import calibration_report
    from embeddings_store.demo.paths import demo_paths
    from embeddings_store.demo.recipe import DemoRecipe
    from model.checkpoint import load_checkpoint

    paths = demo_paths(args.cache_dir)
    if not paths.checkpoint.exists():
        print(f"eval_calibration: {paths.checkpoint} is missing: run `soundscape demo --no-serve`",
              file=sys.stderr)  # fmt: skip
        return 2
    recipe = DemoRecipe.load()
    if args.fit:
        calibrate_demo_model(paths, recipe)
    model = load_checkpoint(paths.checkpoint)
    test = demo_datasets(paths, load_layers(paths), recipe, splits=("test",))["test"]
    report = calibration_report(model, test, model.calibration, args.pairs)
    print("| query | pairs | matching share | ECE, learned | ECE, calibrated |")
    print("|---|---:|---:|---:|---:|")
    for kind, n in report.pairs.items():
        print(f"| {kind} | {n:,} | {report.base_rate[kind]:.3f} | "
              f"{report.learned[kind].ece:.3f} | {report.calibrated[kind].ece:.3f} |")  # fmt: skip
    if args.json:
        data = {"model_id": model.model_id, "calibration": model.calibration, **report.to_json()}
        args.json.write_text(json.dumps(data, indent=2))
    if args.plot:
        draw_reliability(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


def draw_reliability(report, out: Path) -> None:
    """One panel per query kind: observed match rate against predicted probability, learned and
    calibrated, with the pairs per bin underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = list(report.pairs)
    fig, axes = plt.subplots(
        2, len(kinds), figsize=(5.2 * len(kinds), 5.6), height_ratios=(3, 1), sharex=True,
        layout="constrained", squeeze=False,
    )  # fmt: skip
    for col, kind in enumerate(kinds):
        top, bottom = axes[0, col], axes[1, col]
        top.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
        for rel, name, color in (
            (report.learned[kind], "learned", "tab:red"),
            (report.calibrated[kind], "calibrated", "tab:blue"),
        ):
            conf, acc = np.array(rel.confidence), np.array(rel.accuracy)
            ok = np.isfinite(conf)
            top.plot(conf[ok], acc[ok], "o-", color=color, ms=4,
                     label=f"{name} (ECE {rel.ece:.3f})")  # fmt: skip
            centres = (np.array(rel.edges[:-1]) + np.array(rel.edges[1:])) / 2
            width = 1 / len(rel.count)
            offset = -width / 4 if name == "learned" else width / 4
            bottom.bar(centres + offset, rel.count, width=width / 2, color=color, alpha=0.7)
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed match rate",
                title=f"{kind} queries, {report.pairs[kind]:,} {report.split} pairs")  # fmt: skip
        top.legend(loc="upper left", fontsize=8)
        bottom.set(yscale="log", xlabel="predicted match probability", ylabel="pairs")
    fig.savefig(out, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
