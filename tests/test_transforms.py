"""The phase presets: rotation really within ±10°, jitter really limited, eval deterministic."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from vocproj.config import AugmentSettings
from vocproj.data.transforms import augmentations, build_transform, denormalise


def arrow_image(size: int = 96) -> Image.Image:
    """A white horizontal bar through the centre on black: its angle is easy to measure."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[size // 2 - 2 : size // 2 + 2, 8 : size - 8] = 255
    return Image.fromarray(pixels)


def bar_angle(image: torch.Tensor) -> float:
    """Angle in degrees of the bright bar, from the principal axis of its pixels."""
    bright = denormalise(image).mean(0) > 0.5
    ys, xs = torch.nonzero(bright, as_tuple=True)
    coords = torch.stack([xs.float() - xs.float().mean(), ys.float() - ys.float().mean()])
    cov = coords @ coords.T
    _, vectors = torch.linalg.eigh(cov)
    x, y = vectors[:, -1].tolist()
    angle = math.degrees(math.atan2(y, x))
    return (angle + 90) % 180 - 90


def test_resize_crop_and_eval_give_the_same_normalised_square():
    image = Image.new("RGB", (150, 100), (255, 0, 0))
    for preset in ("resize_crop", "eval"):
        out = build_transform(preset, 64)(image)
        assert out.shape == (3, 64, 64) and out.dtype == torch.float32
        assert torch.allclose(denormalise(out)[:, 32, 32], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)


def test_eval_preset_is_deterministic():
    image = arrow_image()
    transform = build_transform("eval", 64)
    assert torch.equal(transform(image), transform(image))


def test_rotation_stays_within_ten_degrees_and_uses_the_range():
    transform = build_transform("rotate", 96)
    torch.manual_seed(0)
    angles = [bar_angle(transform(arrow_image())) for _ in range(60)]
    assert max(abs(a) for a in angles) <= 10.5
    assert max(angles) > 6 and min(angles) < -6


def test_phase3_has_no_rotation_by_default_and_keeps_it_when_asked():
    default = [type(t) for t in augmentations("jitter_flip", AugmentSettings())]
    assert default == [v2.ColorJitter, v2.RandomHorizontalFlip]
    keep = AugmentSettings(phase3_keeps_rotation=True)
    assert v2.RandomRotation in [type(t) for t in augmentations("jitter_flip", keep)]


def test_jitter_is_limited_to_saturation_and_hue_005():
    (jitter, _) = augmentations("jitter_flip", AugmentSettings())
    assert jitter.brightness is None and jitter.contrast is None
    assert jitter.saturation == pytest.approx((0.95, 1.05)) and jitter.hue == pytest.approx(
        (-0.05, 0.05)
    )


def hue(rgb: torch.Tensor) -> float:
    return colorsys.rgb_to_hsv(*rgb.tolist())[0]


def test_jitter_flip_shifts_hue_by_at_most_005_and_flips_about_half():
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (200, 80, 40)  # an orange left half on black
    image = Image.fromarray(pixels)
    reference = hue(denormalise(build_transform("eval", 64)(image))[:, 32, 16])
    transform = build_transform("jitter_flip", 64)
    torch.manual_seed(0)
    flips, shifts = 0, []
    for _ in range(40):
        out = denormalise(transform(image))
        flipped = bool(out[:, :, 48].sum() > out[:, :, 16].sum())
        flips += int(flipped)
        shift = abs(hue(out[:, 32, 48] if flipped else out[:, 32, 16]) - reference)
        shifts.append(min(shift, 1 - shift))
    assert max(shifts) <= 0.05 + 0.01  # hue is a fraction of the colour circle
    assert max(shifts) > 0.02  # the jitter is really applied
    assert 10 <= flips <= 30


def test_presets_accept_uint8_tensors_like_pil_images():
    image = arrow_image(80)
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    transform = build_transform("eval", 64)
    assert torch.allclose(transform(image), transform(tensor), atol=1e-5)
