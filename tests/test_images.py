"""Torch-free decoding and preprocessing, held to torchvision's eval preset on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vocproj.images import (
    IMAGENET,
    SYMMETRIC,
    ImageDecodeError,
    model_input,
    read_image,
    resized_shape,
)
from vocproj.transforms import build_transform
from vocproj.voc import read_devkit_split


def real_photos(real_voc: Path, count: int) -> list[Path]:
    """The first `count` val photos of ../shared's real VOC2007 tree (portrait and landscape)."""
    return list(read_devkit_split(real_voc, "val").image_paths[:count])


@pytest.mark.parametrize("size", [224, 97])
@pytest.mark.parametrize("normalisation", [IMAGENET, SYMMETRIC], ids=["imagenet", "symmetric"])
def test_model_input_is_torchvisions_eval_preset_on_real_photos(real_voc, size, normalisation):
    transform = build_transform("eval", size, normalisation=normalisation)
    photos = [read_image(path) for path in real_photos(real_voc, 24)]
    assert {photo.width > photo.height for photo in photos} == {True, False}, "both orientations"
    for photo in photos:
        ours = model_input(photo, size, normalisation)
        assert ours.shape == (3, size, size) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, transform(photo).numpy(), rtol=0, atol=1e-6)


def test_resized_shape_keeps_the_shorter_side_and_floors_the_longer():
    assert resized_shape(500, 375, 224) == (298, 224)  # 224 * 500 / 375 = 298.67
    assert resized_shape(375, 500, 224) == (224, 298)
    assert resized_shape(300, 300, 224) == (224, 224)
    assert resized_shape(100, 20, 10) == (50, 10)


def test_read_image_names_a_missing_file(tmp_path: Path):
    with pytest.raises(ImageDecodeError, match=r"gone\.jpg cannot be read \(No such file"):
        read_image(tmp_path / "gone.jpg")
