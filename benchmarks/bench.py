"""`make bench`: vocproj's training and evaluation throughput beside the study's pipeline.

On VOC-sized pictures (the sample generator's images upscaled to 500 px on the long side, with
sensor-like noise, saved as JPEG quality 90: VOC's typical 500×375 JPEG) at 224 px, with the
voc2012 profile's batch sizes, it measures images per second of

  (a) baseline   the study's straightforward pipeline: every item decoded with PIL, resized and
                 augmented at every epoch, float32, NCHW (vocproj with data.cache false,
                 precision fp32, channels_last false);
  (b) vocproj    vocproj's defaults: the uint8 image cache with batches augmented on the device,
                 `auto` precision, channels-last, `auto` loader workers;
  (c) model only vocproj's settings on batches made in advance: no loading at all.

A training repetition is one epoch of each phase preset over the train images, an evaluation
repetition one pass over the val images, through vocproj's own training and prediction loops.
After a warm-up, the configurations take turns (a, b, c, a, b, c, ...) so that a machine busy
with something else slows them alike, and the median repetition counts. The table goes to the
terminal and everything to reports/bench.json. The cache build is timed apart: it happens once.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from vocproj.config import PARAMS_DIR, Profile, profile_from_mapping
from vocproj.data import open_split
from vocproj.evaluate import predict
from vocproj.io import atomic_write_json
from vocproj.model import build_model
from vocproj.runtime import (
    Runtime,
    cpu_runs_bf16_natively,
    detect_cpu_flags,
    runtime_for,
    select_num_workers,
)
from vocproj.sample import write_sample_dataset
from vocproj.train import loader, on_runtime, predict_logits, state_for_model, train_one_epoch
from vocproj.voc import NUM_CLASSES

PROJECT_DIR = Path(__file__).resolve().parents[1]
VOC_LONG_SIDE = 500
NOISE_SIGMA = 8.0  # grey levels: gives the upscaled drawings a photo's fine texture
TARGETS = {"train_vs_baseline": 3.0, "eval_vs_baseline": 2.0, "vs_model_only": 0.9}
CONFIGS = ("baseline", "vocproj", "model_only")
Measure = Callable[[], int]  # runs one repetition, returns the number of images it processed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-images", type=int, default=192, help="images per train epoch")
    parser.add_argument("--val-images", type=int, default=256, help="images per evaluation")
    parser.add_argument("--repeats", type=int, default=5, help="measured repetitions")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "reports" / "bench.json")
    return parser.parse_args(argv)


def write_voc_sized_tree(root: Path, n_train: int, n_val: int) -> Path:
    """The sample dataset with every JPEG upscaled to VOC's size, with noise like a photo's."""
    voc = write_sample_dataset(root, seed=0, n_train=n_train, n_val=n_val)
    rng = np.random.default_rng(0)
    for path in sorted((voc / "JPEGImages").glob("*.jpg")):
        with Image.open(path) as small:
            scale = VOC_LONG_SIDE / max(small.size)
            size = (round(small.width * scale), round(small.height * scale))
            pixels = np.asarray(small.convert("RGB").resize(size, Image.BICUBIC), np.float32)
        noisy = pixels + rng.normal(0.0, NOISE_SIGMA, pixels.shape)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
    return voc


def bench_profile(data_root: Path, size: int) -> Profile:
    """The voc2012 profile on the benchmark's data, from random weights (nothing to download)."""
    raw = yaml.safe_load((PARAMS_DIR / "voc2012.yaml").read_text())
    settings = raw["settings"]
    settings["data"]["root"] = str(data_root)
    settings["model"]["weights"] = "none"
    settings["optim"]["lr"] = 0.002  # from random weights the study's 0.02 can diverge
    settings["train"].update(image_size=size, progress=False)
    return profile_from_mapping(raw, source="benchmark profile")


def baseline_runtime(profile: Profile) -> Runtime:
    """The study's way on the same device: float32, NCHW, vocproj's workers for decoding."""
    device = runtime_for(profile).device
    workers = select_num_workers("auto", device, cached=False)
    return Runtime(device, autocast_dtype=None, channels_last=False, num_workers=workers)


def new_model(profile: Profile) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(profile.settings.model.backbone, "none", NUM_CLASSES)


def premade_batches(count: int, batch_size: int, size: int, runtime: Runtime) -> list[Any]:
    """Normalised batches already on the device in its memory format, with random labels."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        images = runtime.to_device(torch.randn(batch_size, 3, size, size, generator=generator))
        target = (torch.rand(batch_size, NUM_CLASSES, generator=generator) < 0.1).float()
        batches.append((images, target, torch.ones_like(target), [""] * batch_size))
    return batches


def training_measures(profile: Profile, baseline: Runtime, vocproj: Runtime) -> dict[str, Measure]:
    """One repetition per configuration: an epoch of each phase preset (model only: as many)."""
    settings = profile.settings
    split, batch = settings.data.train_split, settings.train.batch_size
    presets = [phase.preset for phase in settings.train.phases]
    splits = {
        "baseline": [open_split(profile, split, p, cache=False) for p in presets],
        "vocproj": [open_split(profile, split, p, progress=True) for p in presets],
    }
    runtimes = {"baseline": baseline, "vocproj": vocproj, "model_only": vocproj}
    states = {
        name: state_for_model(profile, 1, runtime, new_model(profile))
        for name, runtime in runtimes.items()
    }
    per_epoch = len(splits["vocproj"][0]) // batch
    premade = premade_batches(per_epoch, batch, settings.train.image_size, vocproj)

    def epochs(name: str) -> int:
        images = 0
        for seed, dataset in enumerate(splits[name]):
            batches = loader(dataset, batch, runtimes[name], seed)
            state = states[name]
            images += train_one_epoch(state, state.model, batches, runtimes[name], name, False)[1]
        return images

    def model_only() -> int:
        state = states["model_only"]
        return sum(
            train_one_epoch(state, state.model, premade, vocproj, "model only", False)[1]
            for _ in presets
        )

    return {"baseline": lambda: epochs("baseline"), "vocproj": lambda: epochs("vocproj"),
            "model_only": model_only}  # fmt: skip


def evaluation_measures(
    profile: Profile, baseline: Runtime, vocproj: Runtime
) -> dict[str, Measure]:
    """One repetition per configuration: a prediction pass over the val images."""
    settings = profile.settings
    split, batch = settings.data.val_split, settings.train.eval_batch_size
    datasets = {
        "baseline": open_split(profile, split, "eval", cache=False),
        "vocproj": open_split(profile, split, "eval", progress=True),
    }
    runtimes = {"baseline": baseline, "vocproj": vocproj, "model_only": vocproj}
    models = {name: on_runtime(new_model(profile), rt).eval() for name, rt in runtimes.items()}
    count = -(-len(datasets["vocproj"]) // batch)
    premade = premade_batches(count, batch, settings.train.image_size, vocproj)

    def prediction(name: str) -> int:
        ids, _ = predict(models[name], datasets[name], runtimes[name], batch)
        return len(ids)

    def model_only() -> int:
        return len(predict_logits(models["model_only"], premade, vocproj)[0])

    return {"baseline": lambda: prediction("baseline"), "vocproj": lambda: prediction("vocproj"),
            "model_only": model_only}  # fmt: skip


def images_per_second(measures: dict[str, Measure], repeats: int, label: str) -> dict[str, Any]:
    """Warm up each configuration, then time them in turns; medians and their ratios."""
    for name in CONFIGS:
        print(f"{label}: warming up {name}", flush=True)
        measures[name]()
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for repeat in range(1, repeats + 1):
        for name in CONFIGS:
            started = time.perf_counter()
            images = measures[name]()
            rates[name].append(images / (time.perf_counter() - started))
        line = ", ".join(f"{name} {rates[name][-1]:.1f}" for name in CONFIGS)
        print(f"{label} {repeat}/{repeats}: {line} img/s", flush=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "baseline_ips": median["baseline"],
        "vocproj_ips": median["vocproj"],
        "model_only_ips": median["model_only"],
        "ratio_vs_baseline": median["vocproj"] / median["baseline"],
        "ratio_vs_model_only": median["vocproj"] / median["model_only"],
        "repetitions_ips": rates,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(runtime: Runtime) -> dict[str, Any]:
    cuda = runtime.device.type == "cuda"
    return {
        "device": str(runtime.device),
        "gpu": torch.cuda.get_device_name(runtime.device) if cuda else None,
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "cpu_native_bf16": cpu_runs_bf16_natively(detect_cpu_flags()),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def describe(runtime: Runtime, cache: bool) -> dict[str, Any]:
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return {
        "cache": cache,
        "precision": precision[runtime.autocast_dtype],
        "channels_last": runtime.channels_last,
        "workers": runtime.num_workers,
    }


def verdict(value: float, target: float) -> str:
    return f"{value:5.2f} (target ≥ {target}: {'met' if value >= target else 'MISSED'})"


def print_table(result: dict[str, Any]) -> None:
    print()
    print(f"{'img/s at ' + str(result['setup']['image_size']) + ' px':<16}"
          f"{'baseline':>10}{'vocproj':>10}{'model only':>12}   "
          f"{'vocproj / baseline':<32}{'vocproj / model only'}")  # fmt: skip
    for task, target in (("train", "train_vs_baseline"), ("eval", "eval_vs_baseline")):
        row = result[task]
        print(
            f"{task:<16}{row['baseline_ips']:>10.1f}{row['vocproj_ips']:>10.1f}"
            f"{row['model_only_ips']:>12.1f}   "
            f"{verdict(row['ratio_vs_baseline'], TARGETS[target]):<32}"
            f"{verdict(row['ratio_vs_model_only'], TARGETS['vs_model_only'])}"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vocproj-bench-") as tmp:
        print(f"writing {args.train_images} + {args.val_images} VOC-sized JPEGs", flush=True)
        voc = write_voc_sized_tree(Path(tmp), args.train_images, args.val_images)
        jpeg_bytes = [p.stat().st_size for p in (voc / "JPEGImages").glob("*.jpg")]
        profile = bench_profile(Path(tmp), args.size)
        vocproj, baseline = runtime_for(profile), baseline_runtime(profile)
        cache_started = time.perf_counter()
        for split in (profile.settings.data.train_split, profile.settings.data.val_split):
            open_split(profile, split, "eval", progress=True)
        cache_seconds = time.perf_counter() - cache_started
        train = images_per_second(training_measures(profile, baseline, vocproj), args.repeats,
                                  "train")  # fmt: skip
        evaluation = images_per_second(evaluation_measures(profile, baseline, vocproj),
                                       args.repeats, "eval")  # fmt: skip
    result = {
        "train": train,
        "eval": evaluation,
        "hardware": hardware(vocproj),
        "targets": TARGETS,
        "setup": {
            "image_size": args.size,
            "train_images_per_epoch": args.train_images,
            "val_images": args.val_images,
            "presets": [phase.preset for phase in profile.settings.train.phases],
            "batch_size": profile.settings.train.batch_size,
            "eval_batch_size": profile.settings.train.eval_batch_size,
            "repeats": args.repeats,
            "source_jpeg_mean_kib": round(statistics.mean(jpeg_bytes) / 1024, 1),
            "source_long_side_px": VOC_LONG_SIDE,
            "cache_build_seconds": round(cache_seconds, 2),
            "baseline": describe(baseline, cache=False),
            "vocproj": describe(vocproj, cache=profile.settings.data.cache),
            "seconds": round(time.perf_counter() - started, 1),
        },
    }
    atomic_write_json(args.out, result)
    print_table(result)
    print(f"written to {args.out} in {result['setup']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
