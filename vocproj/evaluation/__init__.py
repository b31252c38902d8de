"""The evaluation wing: scores from the best checkpoint.

- `scoring`: the val split scored (one view or test-time views), metrics and calibration
  written, and the test-time augmentations compared
- `probe`: logistic regression on frozen features, the yardstick fine-tuning must beat
"""
