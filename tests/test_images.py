"""Torch-free decoding and preprocessing, held to torchvision's eval preset on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torchvision.transforms import v2

from vocproj.data.transforms import build_transform, to_normalised_tensor
from vocproj.data.voc import read_devkit_split
from vocproj.images import (
    IMAGENET,
    SYMMETRIC,
    TTA_MODES,
    TTA_VIEWS,
    ImageDecodeError,
    five_crop_boxes,
    model_input,
    model_views,
    read_image,
    resized_shape,
)


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


def test_five_crop_boxes_are_torchvisions_corners_and_centre():
    # a 300×256 image, 224 crops: right edge 300 - 224 = 76, bottom 256 - 224 = 32, centre (38, 16)
    assert five_crop_boxes(300, 256, 224) == [
        (0, 0, 224, 224), (76, 0, 300, 224), (0, 32, 224, 256), (76, 32, 300, 256),
        (38, 16, 262, 240),
    ]  # fmt: skip
    # odd margins: 77 / 2 = 38.5 and 33 / 2 = 16.5 round half to even, as torchvision's int(round())
    assert five_crop_boxes(301, 257, 224)[4] == (38, 16, 262, 240)


@pytest.mark.parametrize("size", [224, 97])
def test_model_views_are_torchvisions_five_crops_and_their_mirror_images(real_voc, size):
    resized = round(size / 0.875)  # 256 for 224: ImageNet's 224 of 256
    crops = v2.Compose([v2.Resize(resized), v2.FiveCrop(size)])
    to_input = v2.Compose(to_normalised_tensor(IMAGENET))
    for path in real_photos(real_voc, 6):
        photo = read_image(path)
        expected = np.stack([to_input(crop).numpy() for crop in crops(photo)])
        views = model_views(photo, size, IMAGENET, "five_crop_flip")
        assert views.shape == (10, 3, size, size)
        np.testing.assert_allclose(views[:5], expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(views[5:], expected[:, :, :, ::-1])
        np.testing.assert_array_equal(model_views(photo, size, IMAGENET, "five_crop"), views[:5])


def test_no_and_flip_views_are_the_eval_input_and_its_mirror(real_voc):
    photo = read_image(real_photos(real_voc, 1)[0])
    plain = model_input(photo, 64, SYMMETRIC)
    np.testing.assert_array_equal(model_views(photo, 64, SYMMETRIC, "none"), plain[None])
    flipped = model_views(photo, 64, SYMMETRIC, "hflip")
    np.testing.assert_array_equal(flipped[0], plain)
    np.testing.assert_array_equal(flipped[1], plain[:, :, ::-1])
    assert {mode: len(model_views(photo, 64, SYMMETRIC, mode)) for mode in TTA_MODES} == TTA_VIEWS
    with pytest.raises(ValueError, match="unknown test-time augmentation 'ten_crop'"):
        model_views(photo, 64, SYMMETRIC, "ten_crop")
