import numpy as np
import pytest
import torch

from model.transforms import IMAGENET_MEAN, IMAGENET_STD, center_crop, prepare_image, zoom_transform


def quadrant_tile(tile=16, zoom=5):
    """A raw tile of zoom*tile px whose centre tile is white and everything else black."""
    px = zoom * tile
    img = np.zeros((px, px, 3), dtype=np.uint8)
    lo = (px - tile) // 2
    img[lo : lo + tile, lo : lo + tile] = 255
    return img


def test_zoom1_crops_the_central_tile():
    out = zoom_transform(quadrant_tile(), 1, 16)
    assert out.shape == (3, 16, 16)
    assert torch.allclose(out, torch.ones_like(out))


def test_zoom5_keeps_the_whole_tile_resized():
    out = zoom_transform(quadrant_tile(), 5, 16)
    assert out.shape == (3, 16, 16)
    assert 0.0 < out.mean().item() < 0.2  # mostly black, white centre shrunk


def test_prepare_image_normalises_to_imagenet_stats():
    out = prepare_image(np.full((48, 48, 3), 255, np.uint8), 3, 16, 32)
    assert out.shape == (3, 32, 32)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 0, 0], expected, rtol=1e-4, atol=1e-4)


def test_bad_zoom_is_rejected():
    with pytest.raises(ValueError, match="zoom"):
        zoom_transform(quadrant_tile(), 2, 16)


def test_center_crop_pads_small_images():
    assert center_crop(torch.ones(3, 4, 4), 8).shape == (3, 8, 8)


def _dihedral_views(img: torch.Tensor) -> list[torch.Tensor]:
    """The 8 turns and mirror images of a CHW image."""
    turns = [torch.rot90(img, k, dims=(-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


def test_dihedral_augmentation_keeps_every_pixel_and_reaches_all_eight_views():
    from model.transforms import dihedral_transform, eval_transform

    img = torch.arange(3 * 16 * 16, dtype=torch.float32).reshape(3, 16, 16) / (3 * 16 * 16)
    views = _dihedral_views(eval_transform(img, 16))
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        out = dihedral_transform(img, 16, gen)
        # The footprint is only turned or mirrored: the same pixel values, the centre kept.
        match = [k for k, v in enumerate(views) if torch.equal(out, v)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == set(range(8))


def test_reference_augmentation_crops_and_rescales():
    from model.transforms import train_transform

    img = torch.rand(3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    outs = [train_transform(img, 16, gen) for _ in range(20)]
    views = _dihedral_views(prepare_image(img, 1, 16, 16))
    assert any(all(not torch.allclose(o, v) for v in views) for o in outs)
