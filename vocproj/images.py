"""Decoding a photo and making the network's input from it, with Pillow and numpy alone.

One decoder serves every place a person hands vocproj a picture (the browser's upload,
`python -m vocproj predict`, the ONNX service): `decode_image` gives an upright RGB image
(EXIF orientation applied; CMYK, palette, grey and 16-bit converted; transparency composited
on white) and refuses decompression bombs. `model_input` is the evaluation preprocessing
(resize the shorter side, centre crop, scale to [0, 1], normalise) written out in numpy so that
it runs without PyTorch; it equals torchvision's `eval` preset of vocproj/data/transforms.py
(tests/test_images.py holds it to that on real photos). `model_views` adds test-time
augmentation: the input and its mirror image, torchvision's five crops (the four corners and
the centre of the image resized to S / 0.875, ImageNet's 224-of-256), or the five and their
mirror images; a prediction is the mean of the views' probabilities.

Nothing here imports torch: a service with onnxruntime, numpy and Pillow runs it.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Literal, NamedTuple, get_args

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vocproj.errors import RefusedFile, VocprojError
from vocproj.files import MAX_IMAGE_BYTES, read_regular_file

TTA = Literal["none", "hflip", "five_crop", "five_crop_flip"]
TTA_MODES: tuple[str, ...] = get_args(TTA)
TTA_VIEWS = {"none": 1, "hflip": 2, "five_crop": 5, "five_crop_flip": 10}  # views per image
FIVE_CROP_SCALE = 0.875  # the crop side over the resized shorter side: 224 of 256
SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class Normalisation(NamedTuple):
    """Per-channel mean and std that an input image in [0, 1] is normalised with."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET = Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
SYMMETRIC = Normalisation(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # inputs in [-1, 1]
# The TensorFlow-trained backbones take inputs in [-1, 1]; torchvision's take ImageNet's statistics.
SYMMETRIC_BACKBONES = frozenset({"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"})


def input_normalisation(backbone: str) -> Normalisation:
    """The mean and std that the backbone's ImageNet weights expect (and its random init gets)."""
    return SYMMETRIC if backbone in SYMMETRIC_BACKBONES else IMAGENET


class ImageDecodeError(VocprojError):
    """A file is empty, not an image, truncated, corrupt, too large to open, or unreadable."""


def decode_image(content: bytes, name: str) -> Image.Image:
    """A file's bytes as an upright RGB image (EXIF orientation applied, alpha on white)."""
    if not content:
        raise ImageDecodeError(f"{name} is empty; choose an image file (JPEG, PNG, ...).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(
            f"{name} is too large to open safely (over {Image.MAX_IMAGE_PIXELS:,} pixels); "
            f"scale it down and try again."
        ) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f"{name} is not an image Pillow can read; use a JPEG, PNG, GIF, BMP, TIFF or WebP file."
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(
            f"{name} cannot be decoded ({err}); the file may be truncated or corrupt."
        ) from None


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """`decode_image` of a file on disk (a regular file of at most MAX_IMAGE_BYTES); a missing,
    unreadable or refused one (a device, a pipe, a folder, a huge file) is an ImageDecodeError."""
    try:
        content = read_regular_file(path, MAX_IMAGE_BYTES)
    except RefusedFile as err:
        raise ImageDecodeError(str(err)) from None
    except OSError as err:
        raise ImageDecodeError(f"{path} cannot be read ({err.strerror or err}).") from None
    return decode_image(content, str(path))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: 16-bit scaled to 8-bit, transparency composited on white."""
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float64) / 257
        image = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), mode="L")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return image.convert("RGB")


def resized_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the shorter side `size` and the longer one scaled down to an integer,
    as torchvision's Resize(size) computes it."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_centre_crop(image: Image.Image, size: int) -> Image.Image:
    """The shorter side resized to `size` (bilinear, antialiased), then the centred square."""
    shape = resized_shape(image.width, image.height, size)
    if shape != image.size:
        image = image.resize(shape, Image.Resampling.BILINEAR)
    left = round((image.width - size) / 2.0)
    top = round((image.height - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def model_input(image: Image.Image, size: int, normalisation: Normalisation) -> np.ndarray:
    """One RGB image as the network's 3×S×S float32 input (the `eval` preset, in numpy)."""
    return normalised(np.asarray(resize_centre_crop(image, size)), normalisation)


def normalised(pixels: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """H×W×3 uint8 pixels as the network's 3×H×W float32 input."""
    scaled = pixels.astype(np.float32) * np.float32(1 / 255)
    mean = np.asarray(normalisation.mean, dtype=np.float32)
    std = np.asarray(normalisation.std, dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1))


def five_crop_boxes(width: int, height: int, size: int) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of torchvision's FiveCrop: top-left, top-right, bottom-left,
    bottom-right, centre."""
    right, bottom = width - size, height - size
    left, top = round(right / 2.0), round(bottom / 2.0)
    corners = [(0, 0), (right, 0), (0, bottom), (right, bottom), (left, top)]
    return [(x, y, x + size, y + size) for x, y in corners]


def five_crops(image: Image.Image, size: int) -> list[Image.Image]:
    """The five crops of `size` from the image resized to a shorter side of size / 0.875."""
    resized_side = round(size / FIVE_CROP_SCALE)
    shape = resized_shape(image.width, image.height, resized_side)
    resized = image.resize(shape, Image.Resampling.BILINEAR) if shape != image.size else image
    return [resized.crop(box) for box in five_crop_boxes(*resized.size, size)]


def model_views(
    image: Image.Image, size: int, normalisation: Normalisation, tta: str = "none"
) -> np.ndarray:
    """The V×3×S×S inputs of one image under a test-time augmentation (V = 1, 2, 5 or 10)."""
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; expected one of {TTA_MODES}")
    if tta in ("none", "hflip"):
        views = [model_input(image, size, normalisation)]
    else:
        views = [normalised(np.asarray(crop), normalisation) for crop in five_crops(image, size)]
    if tta in ("hflip", "five_crop_flip"):
        views += [np.ascontiguousarray(view[:, :, ::-1]) for view in views]
    return np.stack(views)
