"""The demo map-quality report of the shipped model, held fixed across the scoring-core rewrite.

`tests/data/quality-golden.json` holds the map report (ROC-AUC per class, hour tests) that the
code *before* issue 20 computed on the quality test's store; `test_quality_targets.py`
asserts the same figures (to 1e-6) from the one scoring path. Re-record only for an intended
change (a new shipped model, say), and say why in the commit:
    .venv/bin/python -m tests.embeddings_store.demo.quality_golden
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "quality-golden.json"
FIELDS = ("psm_zoom", "n_cells", "auc", "mean_auc", "hour_wins", "hour_wins_mean_only")


def report_fields(report: Any) -> dict[str, Any]:
    """The parts of a MapReport that depend on the model's fused cells (not the ideal ones)."""
    data = report.to_json()
    return {k: data[k] for k in FIELDS}


def main() -> None:
    """Build the quality test's store with the shipped model and write its map report."""
    from tests.embeddings_store.demo.test_quality_targets import (
        build_usa_store,
        load_shipped,
        map_report,
        world_layers,
        write_imagery,
    )

    shipped = load_shipped()
    layers = world_layers()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = build_usa_store(shipped, write_imagery(layers, folder), folder)
        report = map_report(shipped, store, layers, psm_zoom=1)
    GOLDEN.write_text(json.dumps(report_fields(report), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
