"""Write a synthetic world-size store for scale benchmarks (embeddings_store/synthetic.py).

    .venv/bin/python scripts/make_world_store.py --cells 1000000 --out /tmp/world-1m.zarr
        [--checkpoint C] [--like STORE] [--pool 65536] [--seed 0] [--overwrite]
    .venv/bin/python scripts/make_world_store.py --cells 1000000 --out /tmp/world-512.zarr \
        --random-model paper-offline     # D=512: the paper's widths, seeded random weights

The store is tied to the checkpoint's model id (default: the demo model), so `soundscape serve
--store OUT --checkpoint C` and scripts/bench_scale.py serve it. `--like` draws the image
embeddings from a real store's cells (default: the demo store, when it is built for an
embedding of the model's width; else random normal ones). `--random-model CONFIG` first writes
a model of that config with seeded random weights (to --checkpoint, default beside OUT): timing
does not depend on the weights, so it stands in for a trained model of the same widths.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, required=True, help="land cells wanted (about)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--checkpoint", default=None, help="model (default: the demo model)")
    p.add_argument("--like", default=None, help="draw h from this store (default: demo store)")
    p.add_argument("--pool", type=int, default=65536, help="distinct image embeddings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--random-model", metavar="CONFIG", default=None,
                   help="write a seeded random-weight model of this config (e.g. paper-offline) "
                   "to --checkpoint (default OUT-model.safetensors) and use it")  # fmt: skip
    args = p.parse_args()

    from embeddings_store.demo.paths import demo_paths
    from embeddings_store.store import EmbeddingStore
    from embeddings_store.synthetic import write_world_store
    from model.checkpoint import load_checkpoint, save_random_checkpoint
    from model.config import load_config
    from model.errors import SoundscapeError, exit_code

    demo = demo_paths()
    beside = args.out.with_name(f"{args.out.stem}-model.safetensors")
    checkpoint = args.checkpoint or str(beside if args.random_model else demo.checkpoint)
    if args.pool < 1:
        print("make_world_store: --pool must be positive", file=sys.stderr)
        return 2
    if args.random_model:
        try:
            save_random_checkpoint(load_config(args.random_model), checkpoint, args.seed)
        except SoundscapeError as exc:
            print(f"make_world_store: {exc}", file=sys.stderr)
            return exit_code(exc)
        print(f"wrote {checkpoint}: config {args.random_model}, random weights (seed {args.seed})")
    if not Path(checkpoint).exists():
        print(f"make_world_store: {checkpoint} does not exist: run `soundscape demo` or pass "
              "--checkpoint", file=sys.stderr)  # fmt: skip
        return 2
    t0 = time.perf_counter()
    try:
        model = load_checkpoint(checkpoint)
        if args.like:
            like = EmbeddingStore.open(args.like)
        else:  # the demo store's cells when it is built for an embedding of this width
            like = EmbeddingStore.open(demo.store) if demo.store.exists() else None
            if like is not None and like.embed_dim != model.config.embed_dim:
                like = None

        def progress(done: int, total: int) -> None:
            if done == total or done % max(1, total // 20) == 0:
                print(f"  {done}/{total} rows of chunks ({time.perf_counter() - t0:.0f} s)",
                      file=sys.stderr)  # fmt: skip

        store = write_world_store(args.out, model, args.cells, pool=args.pool, seed=args.seed,
                                  like=like, overwrite=args.overwrite, on_row=progress)  # fmt: skip
    except SoundscapeError as exc:
        print(f"make_world_store: {exc}", file=sys.stderr)
        return exit_code(exc)
    import numpy as np

    valid = int(np.asarray(store.array(1, "valid")[:], bool).sum())
    lv = store.levels[0]
    took = time.perf_counter() - t0
    print(f"wrote {args.out}: {valid:,} valid cells of {lv} over {store.attrs['bounds']} "
          f"(model {store.model_id}, D={store.embed_dim}) in {took:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
