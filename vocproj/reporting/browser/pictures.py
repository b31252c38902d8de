"""What the tabs' Image widgets show: a photo fit for display, a Grad-CAM heatmap over it, JPEG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from vocproj.errors import CheckpointError
from vocproj.reporting.browser.classifier import Classifier

DISPLAY_SIZE = 384  # longest side of a shown image, in pixels


def gradcam_target_layer(model: nn.Module) -> nn.Module:
    """The backbone's last feature map: `layer4[-1]` of a ResNet, `features[-1]` of torchvision's
    other CNNs, the activated head convolution (`bn2`) of timm's EfficientNets."""
    for blocks in ("layer4", "features"):
        if hasattr(model, blocks):
            return getattr(model, blocks)[-1]
    if hasattr(model, "conv_head") and hasattr(model, "bn2"):
        return model.bn2
    raise CheckpointError(
        f"heatmaps need a ResNet-like (layer4), a features-based or an EfficientNet (conv_head) "
        f"backbone; {type(model).__name__} has none of them."
    )


def gradcam_map(classifier: Classifier, image: Image.Image, class_index: int) -> np.ndarray:
    """Grad-CAM of one class over the model's S×S input, scaled to [0, 1]."""
    layer = gradcam_target_layer(classifier.model)
    with GradCAM(model=classifier.model, target_layers=[layer]) as cam:
        maps = cam(
            input_tensor=classifier.preprocess(image),
            targets=[ClassifierOutputTarget(class_index)],
        )
    return maps[0]


def fit_for_display(image: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """Scale the image (up or down) so that its longest side is `size` pixels."""
    scale = size / max(image.size)
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(shape, Image.Resampling.LANCZOS)


def centre_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centred square box that the eval transform's resize + centre crop keeps."""
    width, height = size
    side = min(width, height)
    left, top = round((width - side) / 2), round((height - side) / 2)
    return left, top, left + side, top + side


def heatmap_overlay(classifier: Classifier, image: Image.Image, class_index: int) -> Image.Image:
    """The shown image with a class's Grad-CAM blended over the centre square the model sees.

    The rest of the image, which the centre crop drops, is dimmed.
    """
    shown = fit_for_display(image)
    box = centre_square(shown.size)
    side = box[2] - box[0]
    cam = Image.fromarray(gradcam_map(classifier, image, class_index).astype(np.float32), "F")
    mask = np.clip(np.asarray(cam.resize((side, side), Image.Resampling.BILINEAR)), 0, 1)
    crop = np.asarray(shown.crop(box), dtype=np.float32) / 255
    blended = Image.fromarray(show_cam_on_image(crop, mask, use_rgb=True, image_weight=0.55))
    result = ImageEnhance.Brightness(shown).enhance(0.4)
    result.paste(blended, box[:2])
    return result


def jpeg_bytes(image: Image.Image) -> bytes:
    """The image as the bytes of a JPEG file, for an Image widget."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
