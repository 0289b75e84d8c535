"""How far bf16 fusion moves the served scores from fp32 (embeddings_store/precision.py).

.venv/bin/python scripts/eval_precision.py                  # the demo store and model
.venv/bin/python scripts/eval_precision.py --store S --checkpoint C --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_tiles import resolve_store  # noqa: E402

TEXTS = ["frogs calling from a marsh", "traffic on a busy road", "birds singing at dawn",
         "waves crashing on the shore"]  # fmt: skip
METADATA = [{"month": 2, "hour": 5, "asource": "inat"}, {"month": 7, "hour": 14, "asource": "yfcc"},
            {"month": 11, "hour": 22}]  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=None, help="store (default: the demo store)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the demo model)")
    p.add_argument("--chunks", type=int, default=24, help="chunks of the finest level compared")
    p.add_argument("--other", choices=["bf16", "fp32"], default="bf16", help="compared to fp32")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.chunks < 1:
        p.error("--chunks must be at least 1")
    if not resolve_store(args, "eval_precision"):
        return 2

    import torch

    from embeddings_store.precision import precision_agreement
    from embeddings_store.store import EmbeddingStore
    from model.checkpoint import load_checkpoint
    from model.metadata import Metadata
    from model.scoring import QueryEmbedding

    torch.set_num_threads(2)
    model = load_checkpoint(args.checkpoint)
    store = EmbeddingStore.open(args.store, expect_model_id=model.model_id)
    level = min(lv.psm_zoom for lv in store.levels)  # the level top places search
    queries = {t: QueryEmbedding.from_text(model, t) for t in TEXTS}
    rows = precision_agreement(model, store, queries, [Metadata(**m) for m in METADATA], level,
                               args.chunks, other=args.other)  # fmt: skip
    result = {"store": args.store, "model_id": model.model_id, "psm_zoom": level,
              "other": args.other, "rows": [r.to_json() for r in rows]}  # fmt: skip
    print(json.dumps(result, indent=2))
    print(f"\n{args.other} against fp32, PSM zoom {level}, {rows[0].cells:,} cells\n")
    print("| metadata | query | score span | max abs diff | median | Spearman | top-10 overlap |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.metadata} | {r.query} | {r.span:.3f} | {r.max_abs:.4f} | {r.median_abs:.4f} | "
              f"{r.spearman:.5f} | {r.top_overlap:.1f} |")  # fmt: skip
    worst = max(r.max_abs for r in rows)
    print(f"\nlargest difference {worst:.4f} (score spans {min(r.span for r in rows):.3f}–"
          f"{max(r.span for r in rows):.3f}); median difference at most "
          f"{max(r.median_abs for r in rows):.4f}; Spearman at least "
          f"{min(r.spearman for r in rows):.4f}; top-10 overlap "
          f"{min(r.top_overlap for r in rows):.1f}–{max(r.top_overlap for r in rows):.1f} "
          f"(mean {sum(r.top_overlap for r in rows) / len(rows):.2f})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
