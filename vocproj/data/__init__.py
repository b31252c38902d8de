"""The data wing: a profile's photos and labels, from wherever they come, prepared once.

- `voc`: the devkit format (XML annotations, the per-class split lists, class lists) and the
  Dataset over a labelled split
- `layouts`: other exports (CVAT, labelImg, Roboflow), their class lists and drawn splits
- `init_profile`: a profile written for an export, from what it holds
- `sample`: the embedded sample dataset's generator
- `download`: the VOC archives and the voc2007-real subset, fetched and checked
- `cache`: each photo decoded and resized once into a uint8 array; augmentation on batches
- `transforms`: the study's preprocessing and augmentation presets
- `prepare`: the data stage: fetch or generate, resolve classes and splits, write the run's
  record; every later stage opens the splits it wrote
"""
