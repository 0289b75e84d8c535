"""Satellite image preprocessing: the PSM zoom transform and the eval/train transforms.

Implemented with torch only (torchvision is not installable beside our pinned torch); the
operations and their order follow `utilities/SatImage_transform.py` of the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PSM_ZOOM_LEVELS = (1, 3, 5)


def to_tensor(image: np.ndarray | Tensor) -> Tensor:
    """HWC uint8 (0..255) or CHW float array -> CHW float32 tensor in [0, 1]."""
    if isinstance(image, Tensor):
        t = image
    else:
        arr = np.ascontiguousarray(image)
        if not arr.flags.writeable:  # e.g. decoded tiles; torch refuses read-only buffers
            arr = arr.copy()
        t = torch.from_numpy(arr)
        if t.ndim == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
            t = t.permute(2, 0, 1)
    if t.dtype == torch.uint8:
        return t.to(torch.float32) / 255.0
    return t.to(torch.float32)


def center_crop(img: Tensor, size: int) -> Tensor:
    """Central size x size window (torchvision rounding); zero-pads images that are smaller."""
    h, w = img.shape[-2:]
    if size > h or size > w:
        pad_h, pad_w = max(size - h, 0), max(size - w, 0)
        img = F.pad(img, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        h, w = img.shape[-2:]
    top = round((h - size) / 2.0)
    left = round((w - size) / 2.0)
    return img[..., top : top + size, left : left + size]


def resize(img: Tensor, size: int) -> Tensor:
    """Bicubic antialiased resize of the shorter side to `size` (square stays square)."""
    h, w = img.shape[-2:]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    if (new_h, new_w) == (h, w):
        return img
    batched = img.unsqueeze(0) if img.ndim == 3 else img
    out = F.interpolate(
        batched, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
    )
    return out[0] if img.ndim == 3 else out


def normalize(img: Tensor) -> Tensor:
    """ImageNet mean/std normalisation."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=img.dtype, device=img.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=img.dtype, device=img.device).view(-1, 1, 1)
    return (img - mean) / std


def zoom_transform(image: np.ndarray | Tensor, zoom: int, tile_size: int) -> Tensor:
    """PSM zoom: centre crop `zoom * tile_size` px of the raw tile, resize back to `tile_size`."""
    if zoom not in PSM_ZOOM_LEVELS:
        raise ValueError(f"PSM zoom level must be one of {PSM_ZOOM_LEVELS}, got {zoom}")
    return resize(center_crop(to_tensor(image), zoom * tile_size), tile_size)


def eval_transform(img: Tensor, size: int) -> Tensor:
    """Resize to `size`, centre crop `size`, normalise."""
    return normalize(center_crop(resize(img, size), size))


def train_transform(img: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """RandomResizedCrop(size, scale 0.2..1, ratio 3/4..4/3) + horizontal flip + normalise."""
    h, w = img.shape[-2:]
    area = h * w
    top, left, ch, cw = 0, 0, h, w
    for _ in range(10):
        scale = 0.2 + 0.8 * torch.rand((), generator=generator).item()
        log_ratio = (math.log(3 / 4), math.log(4 / 3))
        r = (
            log_ratio[0]
            + (log_ratio[1] - log_ratio[0]) * torch.rand((), generator=generator).item()
        )
        aspect = math.exp(r)
        cw_try = round(math.sqrt(area * scale * aspect))
        ch_try = round(math.sqrt(area * scale / aspect))
        if 0 < cw_try <= w and 0 < ch_try <= h:
            ch, cw = ch_try, cw_try
            top = int(torch.randint(0, h - ch + 1, (), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            break
    crop = img[..., top : top + ch, left : left + cw].unsqueeze(0)
    out = F.interpolate(
        crop, size=(size, size), mode="bicubic", antialias=True, align_corners=False
    )[0]
    if torch.rand((), generator=generator).item() < 0.5:
        out = out.flip(-1)
    return normalize(out)


def dihedral_transform(img: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """The eval view turned by a random multiple of 90 degrees and mirrored half the time.

    Unlike the reference's random resized crop, every pixel stays: the footprint's centre (the
    sample's own place) is never cropped away and its scale (what GSDPE encodes) is kept.
    """
    out = eval_transform(img, size)  # turning and mirroring commute with the normalisation
    turns = int(torch.randint(0, 4, (), generator=generator))
    if turns:
        out = torch.rot90(out, turns, dims=(-2, -1))
    if torch.rand((), generator=generator).item() < 0.5:
        out = out.flip(-1)
    return out


# Training augmentations by name (TrainConfig.augment).
TRAIN_AUGMENTATIONS: dict[str, Callable[[Tensor, int, torch.Generator], Tensor]] = {
    "reference": train_transform,
    "dihedral": dihedral_transform,
}


def prepare_image(image: np.ndarray | Tensor, zoom: int, tile_size: int, size: int) -> Tensor:
    """Raw tile -> model input (eval): zoom transform then eval transform."""
    return eval_transform(zoom_transform(image, zoom, tile_size), size)


# Native imagery of the reference datasets: metres per pixel and tile size in pixels
# (SATMAE.py:18 and SatImage_transform.py:11 of the reference).
SAT_TYPES: dict[str, tuple[float, int]] = {
    "sentinel": (10.0, 256),
    "bingmap": (0.6, 300),
    "googleEarth": (0.2, 256),
}


def zoom_geometry(
    native_gsd: float, tile_size: int, zoom: int, input_size: int
) -> dict[str, float]:
    """Crop size, ground extent, the res passed to GSDPE, and true metres per input pixel."""
    crop_px = zoom * tile_size
    extent_m = crop_px * native_gsd
    return {
        "center_crop_px": crop_px,
        "resize_to": tile_size,
        "then_resize_to": input_size,
        "ground_extent_m": extent_m,
        "res_passed_to_GSDPE": zoom * native_gsd,
        "true_m_per_px_at_224": extent_m / input_size,
    }
