"""The demo model's recipe, as data: model config name, world spec and training settings.

`recipe.json` beside this module is the recipe `make demo-model` trains with; why each value is
what it is (and what else was tried) is in docs/demo-model.md, "The training recipe".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embeddings_store.demo.spec import DemoWorldSpec
from model.errors import ConfigError
from model.train_config import TrainConfig

RECIPE_PATH = Path(__file__).with_name("recipe.json")


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that defines the demo model: world, architecture and optimisation."""

    config: str
    world: DemoWorldSpec
    train: TrainConfig

    @classmethod
    def load(cls, path: str | Path | None = None) -> DemoRecipe:
        """The recipe in `path` (default: the packaged recipe.json); ConfigError if unusable."""
        path = Path(path) if path is not None else RECIPE_PATH
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the demo recipe {path}: {exc}") from exc
        _check_keys(data, {"config", "world", "train"}, str(path))
        missing = sorted({"config", "world", "train"} - set(data))
        if missing:
            raise ConfigError(f"{path}: missing keys {missing}")
        _check_keys(data["world"], _field_names(DemoWorldSpec), f"{path} world")
        _check_keys(data["train"], _field_names(TrainConfig), f"{path} train")
        world = dict(data["world"])
        if "bbox" in world:
            world["bbox"] = tuple(float(v) for v in world["bbox"])
        try:
            spec = DemoWorldSpec(**world)
        except ValueError as exc:
            raise ConfigError(f"{path} world: {exc}") from exc
        return cls(str(data["config"]), spec, TrainConfig(**data["train"]))


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _check_keys(data: Any, allowed: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(allowed)}")
