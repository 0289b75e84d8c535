"""Listening quality on the demo: /listen labels, /profile peaks and compare signs against the
demo world's truth (embeddings_store/demo/listen_quality.py), on the demo store and gallery.

    .venv/bin/python scripts/eval_listen.py                 # the demo built by `soundscape demo`
    .venv/bin/python scripts/eval_listen.py --cache-dir DIR --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache-dir", type=Path, default=None, help="demo cache folder")
    p.add_argument("--level", type=int, default=1, help="PSM zoom")
    p.add_argument("--profile-cells", type=int, default=200, help="cells per class profiled")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from embeddings_store.demo.build import load_layers
    from embeddings_store.demo.listen_quality import listen_report
    from embeddings_store.demo.paths import demo_paths
    from embeddings_store.sounds.gallery import SoundGallery
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint

    paths = demo_paths(args.cache_dir)
    missing = [x for x in (paths.checkpoint, paths.store, paths.gallery) if not x.exists()]
    if missing:
        print(f"eval_listen: {missing[0]} is missing: run `soundscape demo --no-serve` first",
              file=sys.stderr)  # fmt: skip
        return 2
    model = load_checkpoint(paths.checkpoint)
    store = EmbeddingStore.open(paths.store, expect_model_id=model.model_id)
    gallery = SoundGallery.open(paths.gallery, expect_model_id=model.model_id)
    t0 = time.perf_counter()
    report = listen_report(model, store, load_layers(paths), gallery, args.level,
                           max_profile_cells=args.profile_cells)  # fmt: skip
    result = {"model_id": model.model_id, **report.to_json(),
              "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    print(json.dumps(result, indent=2))
    print(f"\nPSM zoom {report.psm_zoom}, {report.land_cells:,} land cells\n")
    print("| measure | model | reference | target |\n|---|---:|---:|---:|")
    print(f"| true top class in /listen's top 3 labels | {report.label_top3:.2f} | "
          f"{report.label_top3_blind:.2f} (metadata-blind) | 0.70 |")  # fmt: skip
    print(f"| songbirds dawn − midnight > 0 ({report.compare_cells} cells) | "
          f"{report.compare_songbirds:.2f} | | 0.80 |")  # fmt: skip
    for name, share in report.profile_peak.items():
        print(f"| /profile peak in {name}'s right hours ({report.profile_cells[name]} cells) | "
              f"{share:.2f} | {report.profile_peak_truth[name]:.2f} (world's own profile) | "
              f"0.80 |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
