"""The packaged demo checkpoint (`packaged_checkpoint`) matches the `demo` config and size limit."""

from __future__ import annotations

from embeddings_store.demo.build import packaged_checkpoint
from model.checkpoint import read_header
from model.config import ModelConfig, load_config

MAX_CHECKPOINT_BYTES = 25 * 1024 * 1024


def test_shipped_checkpoint_was_trained_with_the_current_demo_config():
    path = packaged_checkpoint()
    assert path.exists(), f"{path} is missing: train it with `make demo-model`"
    shipped = ModelConfig.model_validate_json(read_header(path)["config"])
    # A changed demo.json without retraining would leave `make demo` serving an older model.
    assert shipped == load_config("demo"), "retrain with `make demo-model` after editing demo.json"


def test_shipped_checkpoint_fits_the_size_limit():
    assert packaged_checkpoint().stat().st_size <= MAX_CHECKPOINT_BYTES


def test_demo_objective_keeps_every_pcmepp_term():
    # Issue 4 asks for PCME++ with pseudo-positives and VIB; the demo lowers the pseudo-positive
    # weight (README, "The demo world") but must not switch either term off.
    loss, reference = load_config("demo").loss, load_config("paper").loss
    assert loss.type == "pcmepp"
    assert 0 < loss.pseudo_match_alpha < reference.pseudo_match_alpha
    assert loss.vib_beta == reference.vib_beta > 0
