"""The metrics wing: numbers only, from scores and labels (numpy; never a picture or a model).

- `multilabel`: VOC average precision, threshold sweeps, the chosen thresholds, top-k
  rankings, mistakes, and the files that hold them (scores_val.npz, metrics.json, ...)
- `calibration`: reliability, ECE and NLL, temperature scaling
- `thresholds`: the decision rule shared with the browser and the torch-free service
"""
