"""Uncertainty against footprint size and diversity on the demo (the paper's two findings):
embeddings_store/demo/uncertainty_quality.py on the demo store built by `soundscape demo`.

    .venv/bin/python scripts/eval_uncertainty.py [--cache-dir DIR] [--points 400] [--json F]
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
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from embeddings_store.demo.build import DEMO_STORE_BBOX, load_layers
    from embeddings_store.demo.paths import demo_paths
    from embeddings_store.demo.uncertainty_quality import uncertainty_report
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
    report = uncertainty_report(model, store, load_layers(paths), inner, args.points)
    print(json.dumps({"model_id": model.model_id, **report.to_json()}, indent=2))
    zooms = sorted(report.mean["none"])
    print("\n| metadata | mean ‖σ‖₁ by PSM zoom | share zoom 5 > zoom 1 | Spearman(‖σ‖₁, "
          "footprint entropy) by zoom |\n|---|---|---:|---|")  # fmt: skip
    for name in ("none", "full"):
        means = " / ".join(f"{report.mean[name][z]:.2f}" for z in zooms)
        rho = " / ".join(f"{report.spearman_entropy[name][z]:+.2f}" for z in zooms)
        print(f"| {name} | {means} | {report.share_5_over_1[name]:.2f} | {rho} |")
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
