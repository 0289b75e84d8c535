"""The demo recipe is data (recipe.json) and loads into exactly the settings the model was
trained with."""

from __future__ import annotations

import json

import pytest

from embeddings_store.demo.recipe import RECIPE_PATH, DemoRecipe
from embeddings_store.demo.spec import DemoWorldSpec
from model.errors import ConfigError
from model.train_config import TrainConfig


def test_packaged_recipe_is_the_shipped_models_recipe():
    recipe = DemoRecipe.load()
    assert recipe.config == "demo"
    assert recipe.world == DemoWorldSpec()  # the world's defaults are the demo world
    assert recipe.world.bbox == (-130.0, 20.0, -60.0, 55.0)
    assert recipe.train == TrainConfig(
        steps=5200, batch_size=128, lr=1e-3, weight_decay=0.05, restart_period=5200,
        warmup_steps=250, freeze_audio_at=2600, freeze_audio_head=False, checkpoint_every=50,
        cache_features=True, feature_workers=2, seed=56,
    )  # fmt: skip
    # The world's cache key (file names of rendered samples) does not depend on how it was read.
    assert recipe.world.key() == DemoWorldSpec().key()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(extra=1), "unknown keys \\['extra'\\]"),
        (lambda d: d["train"].update(learning_rate=1), "train: unknown keys \\['learning_rate'\\]"),
        (lambda d: d["world"].update(size=3), "world: unknown keys \\['size'\\]"),
        (lambda d: d.update(train=[1, 2]), "expected a JSON object"),
        (lambda d: d.pop("world"), "missing keys \\['world'\\]"),
        (lambda d: d["world"].update(mixture_secondaries="loud"), "world: mixture_secondaries"),
        (lambda d: d["world"].update(mixture_rate=1.5), "world: mixture_rate"),
    ],
)
def test_a_recipe_with_unknown_or_malformed_keys_is_refused(tmp_path, edit, message):
    data = json.loads(RECIPE_PATH.read_text())
    edit(data)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        DemoRecipe.load(path)


def test_an_unreadable_recipe_is_one_clear_error(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the demo recipe"):
        DemoRecipe.load(path)
