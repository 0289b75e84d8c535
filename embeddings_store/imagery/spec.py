"""The imagery spec string: options after `#`, raster locations, XYZ templates, URL redaction.

The syntax is described in `embeddings_store.imagery` (the package's docstring).
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from embeddings_store.imagery.base import ImageryError

# Object-store URLs go to GDAL's matching virtual file systems (credentials from GDAL's usual
# environment variables, e.g. AWS_ACCESS_KEY_ID).
OBJECT_STORES = {"s3://": "/vsis3/", "gs://": "/vsigs/", "az://": "/vsiaz/"}
REMOTE_VSI = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
              "/vsiwebhdfs")  # fmt: skip

RASTER_OPTIONS = ("bands", "scale")
XYZ_OPTIONS = ("minzoom", "maxzoom", "tile_size", "bounds")
# Query parameters that carry secrets: redacted in describe() (which goes into store attributes).
_SECRET_PARAM = re.compile(r"key|token|secret|sig|signature|password|passwd|auth|credential", re.I)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def resolve_raster_path(source: str | Path) -> tuple[str, bool, str]:
    """Spec location -> (GDAL path, is remote, display string without secrets)."""
    text = str(source)
    lower = text.lower()
    if lower.startswith(("http://", "https://")):
        return "/vsicurl/" + text, True, redact_url(text)
    for scheme, vsi in OBJECT_STORES.items():
        if lower.startswith(scheme):
            return vsi + text[len(scheme) :], True, text
    if lower.startswith("/vsi"):
        return text, lower.startswith(REMOTE_VSI), text
    if lower.startswith("file://"):
        text = urllib.request.url2pathname(urllib.parse.urlparse(text).path)
    elif "://" in text:
        raise ImageryError(
            f"unsupported raster location {redact_url(text)!r}: use a local path, an "
            "http(s):// URL, s3:// gs:// az://, a GDAL /vsi... path, or xyz:<template> for tiles"
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise ImageryError(
            f"imagery file not found: {path} (for XYZ tiles use xyz:<template with {{z}}/{{x}}/"
            "{y}>)"
        )
    if path.is_dir():
        raise ImageryError(
            f"{path} is a folder: give a raster file, or xyz:{path}/{{z}}/{{x}}/{{y}}.png for tiles"
        )
    return str(path), False, str(path)


def check_template(template: str) -> tuple[str, bool]:
    """Validate an XYZ template -> (template, is remote); local paths become absolute."""
    if not isinstance(template, str) or not template.strip():
        raise ImageryError("empty XYZ template: use xyz:https://host/{z}/{x}/{y}.png")
    template = template.strip()
    names = _PLACEHOLDER.findall(template)
    unknown = sorted(set(names) - {"z", "x", "y", "-y"})
    if unknown:
        raise ImageryError(
            f"XYZ template {template!r} has unsupported placeholder(s) "
            f"{', '.join('{' + u + '}' for u in unknown)}: only {{z}}, {{x}}, {{y}} and {{-y}}"
        )
    if "z" not in names or "x" not in names or ("y" in names) == ("-y" in names):
        raise ImageryError(
            f"XYZ template {template!r} must contain {{z}}, {{x}} and one of {{y}}/{{-y}}, "
            "e.g. xyz:https://host/{z}/{x}/{y}.png"
        )
    lower = template.lower()
    if lower.startswith(("http://", "https://")):
        if not urllib.parse.urlparse(template).netloc:
            raise ImageryError(f"XYZ template {template!r} has no host")
        return template, True
    if lower.startswith("file://"):
        template = urllib.request.url2pathname(urllib.parse.urlparse(template).path)
    elif "://" in template:
        raise ImageryError(
            f"XYZ template {redact_url(template)!r}: only http(s):// URLs, file:// URLs and "
            "local paths are supported"
        )
    path = os.path.abspath(os.path.expanduser(template))
    prefix = path[: path.index("{")]
    root = Path(prefix) if prefix.endswith(os.sep) else Path(prefix).parent
    if not root.is_dir():
        raise ImageryError(f"XYZ tile folder {root} does not exist (template {path})")
    return path, False


def split_options(spec: str) -> tuple[str, dict[str, str]]:
    """(location, {option: value}) of a spec: options follow the last `#` as k=v&k=v."""
    head, sep, tail = spec.rpartition("#")
    if not sep or not tail or not all("=" in p for p in tail.split("&")):
        return spec, {}
    options: dict[str, str] = {}
    for part in tail.split("&"):
        key, _, value = part.partition("=")
        options[key.strip().lower()] = value.strip()
    return head, options


def check_option_keys(options: dict[str, str], allowed: Sequence[str], spec: str) -> None:
    """ImageryError naming any option this kind of source does not take."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ImageryError(
            f"unknown option(s) {', '.join(unknown)} in imagery spec {redact_url(spec)!r}; "
            f"this kind of source takes: {', '.join(allowed)}"
        )


def parse_int(text: str, key: str) -> int:
    """An integer option value."""
    try:
        return int(text)
    except ValueError:
        raise ImageryError(f"option {key}: {text!r} is not an integer") from None


def parse_floats(text: str, key: str, count: int) -> list[float]:
    """`count` comma-separated finite numbers of an option value."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ImageryError(f"option {key}: need {count} comma-separated numbers, got {text!r}")
    return values


def redact_url(text: str) -> str:
    """Hide passwords and secret-looking query values (API keys) in a URL."""
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{k}=***" if _SECRET_PARAM.search(k) else (f"{k}={v}" if sep else k)
        for k, sep, v in (p.partition("=") for p in parts.query.split("&") if p)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
