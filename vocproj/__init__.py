"""vocproj: multi-label PASCAL VOC classification, reproduced and surpassed.

The folder tree is the architecture. Each wing imports only the wings below it
(import-linter's contracts in pyproject.toml keep it so):

    __main__     the command line: a thin door onto the functions the notebooks call
    reporting/   pictures and prose from the numbers: figures, REPORT.md, the browser
    serving/     predict on files and folders, ONNX export and its torch-free runtime
    evaluation/  scores from the best checkpoint (and its test-time views), the linear probe
    training/    one phase at a time with resume and history; device, precision, DDP
    model/       backbones, head, ImageNet weights, checkpoints
    data/        devkit and other exports, class lists, splits, sample, downloads, cache,
                 transforms, and preparing a profile's data once
    metrics/     numbers only: AP, sweeps, thresholds, rankings, mistakes, calibration

On the ground, used by every wing: `config` (the profile), `artifacts` (the run's record of
its files), `io` (atomic writes), `files` (bounded reads of untrusted files), `locks` (one run
per folder), `images` (a photo as pixels, numpy and Pillow only) and `errors`.
"""

__version__ = "0.1.0"
