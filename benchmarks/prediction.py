"""`make bench`'s prediction rows: PyTorch eager beside ONNX Runtime on this machine's CPU.

For each backbone (random weights: speed does not depend on them) the network is exported with
vocproj's own `export_onnx` into a temporary folder, then three engines take turns on the same
inputs, made from real photos by `model_input` as `predict` makes them:

  pytorch        what `python -m vocproj predict --profile` runs: eager, fp32, channels-last
  pytorch_nchw   plain eager fp32 in PyTorch's default NCHW layout (the straightforward way)
  onnxruntime    what `predict --onnx` runs: ONNX Runtime's CPU provider, default threads

It reports, each a median over interleaved repetitions, images per second at batch 32,
latency at batch 1 (one image per call), and `predict_files` from JPEG files to labels at
batch 32 (decoding and preprocessing included), with the largest probability difference
between the engines on the batch.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from vocproj.data.voc import CLASSES
from vocproj.images import input_normalisation, model_input, read_image
from vocproj.model.network import build_model
from vocproj.serving.export import export_onnx, torch_engine
from vocproj.serving.onnx_runtime import load_onnx_model
from vocproj.serving.predict import Engine, ModelCard, Thresholds, choose_thresholds, predict_files

ENGINES = ("pytorch", "pytorch_nchw", "onnxruntime")
BATCH = 32


def nchw_engine(model: torch.nn.Module) -> Engine:
    """Eager PyTorch in the default memory format."""

    @torch.no_grad()
    def run(batch: np.ndarray) -> np.ndarray:
        return torch.sigmoid(model(torch.from_numpy(batch))).numpy()

    return run


def engines_of(backbone: str, size: int, folder: Path) -> tuple[dict[str, Engine], ModelCard]:
    """The three engines over one network with random weights, and its card."""
    torch.manual_seed(0)
    card = ModelCard(CLASSES, size, input_normalisation(backbone), 0.5, {}, backbone)
    exported = export_onnx(
        build_model(backbone, "none", len(CLASSES)).eval(), card, folder / "model.onnx", {}
    )
    torch.manual_seed(0)  # the same weights again, in two memory formats
    nchw = build_model(backbone, "none", len(CLASSES)).eval()
    torch.manual_seed(0)
    channels_last = build_model(backbone, "none", len(CLASSES)).eval()
    engines = {
        "pytorch": torch_engine(channels_last),
        "pytorch_nchw": nchw_engine(nchw),
        "onnxruntime": load_onnx_model(exported)[0],
    }
    return engines, card


def interleaved_medians(work: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Each engine's value (one call of its work), engines in turns, the median of `repeats`."""
    values: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(repeats):
        for name, measure in work.items():
            values[name].append(measure())
    return {name: statistics.median(found) for name, found in values.items()}


def seconds_of(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def batch_rate(engine: Engine, batch: np.ndarray) -> Callable[[], float]:
    """Images per second of one call on the batch."""
    return lambda: len(batch) / seconds_of(lambda: engine(batch))


def latency(engine: Engine, single: np.ndarray) -> Callable[[], float]:
    """Milliseconds of one call on a batch of one."""
    return lambda: 1000 * seconds_of(lambda: engine(single))


def files_rate(
    engine: Engine, photos: Sequence[Path], card: ModelCard, thresholds: Thresholds
) -> Callable[[], float]:
    """Files per second of `predict_files` over the photos: decoding and labels included."""
    return lambda: (
        len(photos)
        / seconds_of(lambda: list(predict_files(photos, engine, card, thresholds, BATCH)))
    )


def backbone_prediction(
    backbone: str, photos: Sequence[Path], size: int, repeats: int, latency_calls: int
) -> dict[str, Any]:
    """The rows of one backbone (see the module docstring)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vocproj-bench-onnx-") as folder:
        engines, card = engines_of(backbone, size, Path(folder))
        inputs = np.stack([model_input(read_image(p), size, card.normalisation) for p in photos])
        batch, single = inputs[:BATCH], inputs[:1]
        outputs = {name: engine(batch) for name, engine in engines.items()}  # also the warm-up
        for engine in engines.values():
            engine(single)
        print(f"{backbone} predict: timing {', '.join(ENGINES)}", flush=True)
        thresholds = choose_thresholds(card, None, False)
        batch_ips = interleaved_medians(
            {name: batch_rate(engine, batch) for name, engine in engines.items()}, repeats
        )
        latency_ms = interleaved_medians(
            {name: latency(engine, single) for name, engine in engines.items()}, latency_calls
        )
        files = {name: files_rate(e, photos, card, thresholds) for name, e in engines.items()}
        predict_ips = interleaved_medians(files, repeats)
    reference = outputs["pytorch"]
    return {
        "batch32_ips": batch_ips,
        "batch1_latency_ms": latency_ms,
        "predict_files_ips": predict_ips,
        "onnxruntime_vs_pytorch": {
            "batch32": batch_ips["onnxruntime"] / batch_ips["pytorch"],
            "batch1": latency_ms["pytorch"] / latency_ms["onnxruntime"],
            "predict_files": predict_ips["onnxruntime"] / predict_ips["pytorch"],
        },
        "max_abs_difference": {
            name: float(np.abs(output - reference).max()) for name, output in outputs.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def prediction_results(
    sizes: dict[str, int], photos: Sequence[Path], repeats: int, latency_calls: int
) -> dict[str, Any]:
    """bench.json's `prediction`: the setup and each backbone's rows, at its size in `sizes`."""
    return {
        "photos": len(photos),
        "image_sizes": sizes,
        "repeats": repeats,
        "latency_calls": latency_calls,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "backbones": {
            backbone: backbone_prediction(backbone, photos, size, repeats, latency_calls)
            for backbone, size in sizes.items()
        },
    }


def print_prediction(prediction: dict[str, Any]) -> None:
    if "skipped" in prediction:
        print(f"prediction: skipped ({prediction['skipped']})")
        return
    print(f"prediction on {prediction['photos']} real photos (each backbone at its size), "
          f"fp32, medians of {prediction['repeats']} ({prediction['latency_calls']} for "
          f"latency); PyTorch threads {prediction['torch_threads']}, ONNX Runtime "
          f"{prediction['onnxruntime']}")  # fmt: skip
    print(f"{'':<34}{'px':>4}{'batch 32 img/s':>16}{'batch 1 ms':>12}{'files→labels img/s':>21}")
    for backbone, rows in prediction["backbones"].items():
        size = prediction["image_sizes"][backbone]
        for engine in ENGINES:
            print(
                f"{backbone + ' ' + engine:<34}{size:>4}{rows['batch32_ips'][engine]:>16.1f}"
                f"{rows['batch1_latency_ms'][engine]:>12.1f}"
                f"{rows['predict_files_ips'][engine]:>21.1f}"
            )
        ratio = rows["onnxruntime_vs_pytorch"]
        print(
            f"{backbone + ' ORT / PyTorch':<38}{ratio['batch32']:>15.2f}×{ratio['batch1']:>11.2f}×"
            f"{ratio['predict_files']:>20.2f}×   (max |ORT - PyTorch| "
            f"{rows['max_abs_difference']['onnxruntime']:.1e})"
        )
    print()
