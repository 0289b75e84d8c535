"""The imagery spec string: XYZ template checks and `#` options, refused in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from embeddings_store.imagery import ImageryError, XyzImagery, open_imagery


def test_xyz_template_and_option_errors(tmp_path: Path) -> None:
    cases = [
        ("xyz:https://host/{z}/{x}.png", "must contain"),
        ("xyz:https://host/{s}/{z}/{x}/{y}.png", r"unsupported placeholder\(s\) \{s\}"),
        ("xyz:ftp://host/{z}/{x}/{y}.png", "only http"),
        ("xyz:https:///{z}/{x}/{y}.png", "no host"),
        (f"xyz:{tmp_path}/nope/{{z}}/{{x}}/{{y}}.png", "does not exist"),
        ("xyz:https://host/{z}/{x}/{y}.png#maxzoom=3&minzoom=5", "minzoom <= maxzoom"),
        ("xyz:https://host/{z}/{x}/{y}.png#bounds=10,0,5,1", "west < east"),
        ("xyz:https://host/{z}/{x}/{y}.png#bounds=1,2", "4 comma-separated"),
        ("xyz:https://host/{z}/{x}/{y}.png#maxzoom=x", "not an integer"),
        ("xyz:https://host/{z}/{x}/{y}.png#scale=0,1", "unknown option"),
        ("xyz:", "empty XYZ template"),
    ]
    for spec, message in cases:
        with pytest.raises(ImageryError, match=message):
            open_imagery(spec)
    tms = XyzImagery("https://host/{z}/{x}/{-y}.png")
    assert tms._location(3, 1, 2) == "https://host/3/1/5.png"
