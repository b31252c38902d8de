"""`make bench`: vocproj's training and evaluation throughput beside the study's pipeline.

On VOC-sized pictures (the sample generator's images upscaled to 500 px on the long side, with
sensor-like noise, saved as JPEG quality 90: VOC's typical 500×375 JPEG), with the
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

Every backbone, ResNet18 at `--size` and EfficientNet-Lite0, -Lite1 and -Lite2 each at its
native input size (224, 240, 260 px; each with its own input normalisation), goes through the
same measurements on the same images, one after the other, with the same numbers of images
(`--train-images`, `--val-images`, `--repeats` and `--backbones` change them). The one target
it checks is the loop's: vocproj's rate at least 0.9 of the model alone's, in training and
evaluation; the ratios to the study's pipeline are reported as measured.

The image cache's build on real photographs is measured too: the val split of the
voc2007-real tree (1,000 photos), at the same size, in single-process decode alone and in whole
cache builds (`ensure_cache`, into a temporary folder) with two JPEG decoders, PIL (the cache's
`decode_for_cache`) and torchvision's `decode_jpeg` on the file's bytes followed by the same
PIL geometry; each image-per-second figure is the median of interleaved repetitions, and the
largest pixel difference between the two decoders is recorded.

Prediction (benchmarks/prediction.py): for every backbone, PyTorch eager (channels-last, as
`predict --profile` runs it, and NCHW) beside ONNX Runtime (as `predict --onnx` runs it) on
the first 64 val photos of the real tree: images/s at batch 32, latency at batch 1, and
`predict_files` from JPEG files to labels.

reports/bench.json holds

  train, eval         ResNet18's results, where they were before (= backbones.resnet18's)
  backbones           {backbone: {image_size, train, eval, normalisation, seconds}}, train
                      and eval each with baseline_ips, vocproj_ips, model_only_ips,
                      ratio_vs_baseline, ratio_vs_model_only and repetitions_ips
  cache_decoding      {photos, split, size, build_processes, decode_ips: {pil, torchvision},
                      build_ips: {...}, repetitions, max_abs_difference: {decode, cache}, ...},
                      or {skipped: why} when the real photographs are not there
  prediction          {photos, image_sizes, repeats, latency_calls, torch_threads, onnxruntime,
                      backbones: {backbone: {batch32_ips, batch1_latency_ms, predict_files_ips
                      (each {pytorch, pytorch_nchw, onnxruntime}), onnxruntime_vs_pytorch,
                      max_abs_difference, seconds}}}, or {skipped: why}
  hardware, targets, setup
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

import vocproj.data.cache
from benchmarks.prediction import prediction_results, print_prediction
from vocproj.config import PARAMS_DIR, Profile, load_profile, profile_from_mapping
from vocproj.data.cache import build_processes, decode_for_cache, ensure_cache
from vocproj.data.prepare import open_split
from vocproj.data.sample import write_sample_dataset
from vocproj.data.transforms import geometry
from vocproj.data.voc import CLASSES, VOCClassification, open_devkit_split, open_rgb
from vocproj.errors import VocprojError
from vocproj.evaluation.scoring import predict
from vocproj.images import input_normalisation
from vocproj.io import atomic_write_json
from vocproj.model.efficientnet_lite import NATIVE_SIZE
from vocproj.model.network import build_model
from vocproj.training.batches import loader, predict_logits
from vocproj.training.phases import on_runtime, state_for_model, train_one_epoch
from vocproj.training.runtime import (
    Runtime,
    cpu_runs_bf16_natively,
    detect_cpu_flags,
    runtime_for,
    select_num_workers,
)

PROJECT_DIR = Path(__file__).resolve().parents[1]
VOC_LONG_SIDE = 500
NOISE_SIGMA = 8.0  # grey levels: gives the upscaled drawings a photo's fine texture
# The one target the project holds: the loop keeps the network busy (training and evaluation
# at ≥ 0.9 of the model alone). The ratios to the study's pipeline are measured, not targets: on
# a CPU they are bound by how much faster than float32 its bfloat16 arithmetic is.
TARGETS = {"vs_model_only": 0.9}
CONFIGS = ("baseline", "vocproj", "model_only")
BACKBONES = ("resnet18", *NATIVE_SIZE)
# The real-photo profiles' evaluation batch on a CPU. voc2012's 128 is sized for a GPU: on a
# 2-core CPU at 260 px, EfficientNet-Lite2 evaluated at 110 images/s in batches of 32, 55 in 128.
CPU_EVAL_BATCH = 32
REAL_PROFILE = "voc2007-real"  # its tree (read in place) holds the real photographs
REAL_SPLIT = "val"
DECODERS = ("pil", "torchvision")
Measure = Callable[[], int]  # runs one repetition, returns the number of images it processed

# torchvision 0.29 deprecates its image decoders (for TorchCodec) and warns at every call
warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-images", type=int, default=64, help="images per train epoch")
    parser.add_argument("--val-images", type=int, default=128, help="images per evaluation")
    parser.add_argument("--repeats", type=int, default=3, help="measured repetitions")
    parser.add_argument("--size", type=int, default=224,
                        help="image side in pixels of ResNet18 and the cache build (each "
                        "EfficientNet-Lite at its native size)")  # fmt: skip
    backbones = ", ".join(BACKBONES)
    parser.add_argument("--backbones", type=backbone_list, default=list(BACKBONES),
                        help=f"comma-separated, of {backbones} ('': none)")  # fmt: skip
    parser.add_argument("--real-root", type=Path, default=None,
                        help=f"VOC tree of real photos (default: {REAL_PROFILE}'s)")  # fmt: skip
    parser.add_argument("--real-images", type=int, default=1000,
                        help=f"photos of its {REAL_SPLIT} split to cache (0: none)")  # fmt: skip
    parser.add_argument("--decode-repeats", type=int, default=3, help="repetitions for those")
    parser.add_argument("--predict-photos", type=int, default=64,
                        help="real photos for the prediction rows (0: none)")  # fmt: skip
    parser.add_argument("--predict-backbones", type=backbone_list, default=list(BACKBONES),
                        help="comma-separated backbones for the prediction rows")  # fmt: skip
    parser.add_argument("--latency-calls", type=int, default=20, help="batch-1 calls timed")
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "reports" / "bench.json")
    return parser.parse_args(argv)


def backbone_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BACKBONES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backbone {unknown[0]}; known: {BACKBONES}")
    return names


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


def backbone_size(backbone: str, default: int) -> int:
    """The input size a backbone is measured at: a Lite model's native one, else `default`."""
    return NATIVE_SIZE.get(backbone, default)


def bench_profile(data_root: Path, size: int, backbone: str = "resnet18") -> Profile:
    """The voc2012 profile on the benchmark's data, from random weights (nothing to download),
    its run's files beside the data (never a real voc2012 run's split lists in runs/)."""
    raw = yaml.safe_load((PARAMS_DIR / "voc2012.yaml").read_text())
    settings = raw["settings"]
    settings["data"]["root"] = str(data_root)
    settings.update(runs_dir=str(data_root / "runs"), reports_dir=str(data_root / "reports"))
    settings["model"].update(backbone=backbone, weights="none")
    settings["optim"]["lr"] = 0.002  # from random weights the study's 0.02 can diverge
    settings["train"].update(image_size=size, progress=False)
    if not torch.cuda.is_available():
        settings["train"]["eval_batch_size"] = CPU_EVAL_BATCH
    return profile_from_mapping(raw, source="benchmark profile")


def baseline_runtime(profile: Profile) -> Runtime:
    """The study's way on the same device: float32, NCHW, vocproj's workers for decoding."""
    device = runtime_for(profile).device
    workers = select_num_workers("auto", device, cached=False)
    return Runtime(device, autocast_dtype=None, channels_last=False, num_workers=workers)


def new_model(profile: Profile) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(profile.settings.model.backbone, "none", len(CLASSES))


def premade_batches(count: int, batch_size: int, size: int, runtime: Runtime) -> list[Any]:
    """Normalised batches already on the device in its memory format, with random labels."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        images = runtime.to_device(torch.randn(batch_size, 3, size, size, generator=generator))
        target = (torch.rand(batch_size, len(CLASSES), generator=generator) < 0.1).float()
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
        name: state_for_model(profile, 1, runtime, new_model(profile), CLASSES)
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


def backbone_results(profile: Profile, repeats: int) -> dict[str, Any]:
    """Training and evaluation rates of the profile's backbone, vocproj beside the study's way."""
    started = time.perf_counter()
    backbone = profile.settings.model.backbone
    vocproj, baseline = runtime_for(profile), baseline_runtime(profile)
    train = images_per_second(training_measures(profile, baseline, vocproj), repeats,
                              f"{backbone} train")  # fmt: skip
    evaluation = images_per_second(evaluation_measures(profile, baseline, vocproj), repeats,
                                   f"{backbone} eval")  # fmt: skip
    normalisation = input_normalisation(backbone)
    return {
        "image_size": profile.settings.train.image_size,
        "train": train,
        "eval": evaluation,
        "normalisation": {"mean": list(normalisation.mean), "std": list(normalisation.std)},
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------------------------------------
# The image cache's build on real photographs, with PIL's and torchvision's JPEG decoders
# ---------------------------------------------------------------------------------------------


def torchvision_rgb(path: Path) -> torch.Tensor:
    """The JPEG file decoded by torchvision's decode_jpeg: 3×H×W uint8 RGB, no EXIF turn."""
    data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    return decode_jpeg(data, mode=ImageReadMode.RGB)


def hwc(image: torch.Tensor) -> np.ndarray:
    """decode_jpeg's 3×H×W result as the H×W×3 array it is a view of (no copy)."""
    return image.permute(1, 2, 0).numpy()


def torchvision_for_cache(path: Path, size: int) -> np.ndarray:
    """The cache's decode_for_cache with torchvision's decoder: the same PIL geometry after it."""
    return np.asarray(v2.Compose(geometry(size))(Image.fromarray(hwc(torchvision_rgb(path)))))


@contextlib.contextmanager
def cache_decoder(decoder: str) -> Iterator[None]:
    """Cache builds meanwhile decode with `decoder` (the build's forked processes too)."""
    chosen = torchvision_for_cache if decoder == "torchvision" else decode_for_cache
    vocproj.data.cache.decode_for_cache = chosen
    try:
        yield
    finally:
        vocproj.data.cache.decode_for_cache = decode_for_cache


def real_photos(root: Path | None, count: int) -> VOCClassification | str:
    """The first `count` photos of the real tree's split, or why there are none to measure."""
    try:
        photos = open_devkit_split(root or load_profile(REAL_PROFILE).voc_root, REAL_SPLIT)
    except VocprojError as err:
        return str(err)
    photos.ids = photos.ids[:count]  # all that a cache build reads
    return photos


def cache_decoding(photos: VOCClassification, size: int, repeats: int) -> dict[str, Any]:
    """Decode-alone and cache-build rates of both decoders on the photos, and their difference."""
    started = time.perf_counter()
    paths = [photos.image_path(image_id) for image_id in photos.ids]
    decoders: dict[str, Callable[[Path], Any]] = {"pil": open_rgb, "torchvision": torchvision_rgb}
    print(f"cache decoding: warming up on {len(paths)} real photos", flush=True)
    decode_difference = 0  # the warm-up reads every file with both decoders and compares them
    for path in paths:
        pil, tv = np.asarray(open_rgb(path), np.int16), hwc(torchvision_rgb(path))
        decode_difference = max(decode_difference, int(np.abs(pil - tv).max()))
    rates: dict[str, dict[str, list[float]]] = {
        kind: {name: [] for name in DECODERS} for kind in ("decode", "build")
    }
    arrays: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="vocproj-bench-cache-") as scratch:
        for repeat in range(1, repeats + 1):
            for name in DECODERS:
                decode, began = decoders[name], time.perf_counter()
                for path in paths:
                    decode(path)
                rates["decode"][name].append(len(paths) / (time.perf_counter() - began))
            for name in DECODERS:
                folder = Path(scratch) / name
                shutil.rmtree(folder, ignore_errors=True)
                with cache_decoder(name):
                    began = time.perf_counter()
                    arrays[name] = ensure_cache(photos, size, folder, progress=False)
                    rates["build"][name].append(len(paths) / (time.perf_counter() - began))
            line = "; ".join(
                f"{kind} " + ", ".join(f"{name} {values[name][-1]:.0f}" for name in DECODERS)
                for kind, values in rates.items()
            )
            print(f"cache decoding {repeat}/{repeats}: {line} img/s", flush=True)
        pil, tv = (np.load(arrays[name], mmap_mode="r") for name in DECODERS)
        cached = np.abs(pil.astype(np.int16) - tv.astype(np.int16))
        cache_difference, cache_mean = int(cached.max()), float(cached.mean())
        del pil, tv, cached
    median = {
        kind: {name: statistics.median(values[name]) for name in DECODERS}
        for kind, values in rates.items()
    }
    return {
        "photos": len(paths),
        "voc_root": str(photos.labelled.image_paths[0].parents[1]),
        "split": photos.split,
        "image_size": size,
        "build_processes": build_processes(len(paths)),
        "decode_ips": median["decode"],
        "build_ips": median["build"],
        "torchvision_vs_pil": {k: v["torchvision"] / v["pil"] for k, v in median.items()},
        "max_abs_difference": {"decode": decode_difference, "cache": cache_difference},
        "mean_abs_difference_cache": cache_mean,
        "repeats": repeats,
        "repetitions_ips": rates,
        "seconds": round(time.perf_counter() - started, 1),
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
    if not result["backbones"]:
        return print_decoding(result["cache_decoding"])
    print(f"{'img/s':<31}{'px':>4}{'baseline':>10}{'vocproj':>10}{'model only':>12}   "
          f"{'vocproj / baseline':>18}   {'vocproj / model only'}")  # fmt: skip
    for backbone, results in result["backbones"].items():
        for task in ("train", "eval"):
            row = results[task]
            print(
                f"{backbone + ' ' + task:<31}{results['image_size']:>4}"
                f"{row['baseline_ips']:>10.1f}{row['vocproj_ips']:>10.1f}"
                f"{row['model_only_ips']:>12.1f}   {row['ratio_vs_baseline']:>18.2f}   "
                f"{verdict(row['ratio_vs_model_only'], TARGETS['vs_model_only'])}"
            )
    print()
    print_decoding(result["cache_decoding"])


def prediction(args: argparse.Namespace) -> dict[str, Any]:
    """The prediction rows on the real photos, or why they were skipped."""
    if args.predict_photos <= 0 or not args.predict_backbones:
        return {"skipped": "off"}
    photos = real_photos(args.real_root, args.predict_photos)
    if isinstance(photos, str):
        print(f"prediction: skipped ({photos})", flush=True)
        return {"skipped": photos}
    paths = list(photos.labelled.image_paths[: args.predict_photos])
    sizes = {backbone: backbone_size(backbone, args.size) for backbone in args.predict_backbones}
    return prediction_results(sizes, paths, args.repeats, args.latency_calls)


def print_decoding(decoding: dict[str, Any]) -> None:
    if "skipped" in decoding:
        print(f"cache build on real photos: skipped ({decoding['skipped']})")
        return
    print(f"cache build on {decoding['photos']} real photos ({decoding['split']}) at "
          f"{decoding['image_size']} px, img/s (medians of {decoding['repeats']})")  # fmt: skip
    print(f"{'decoder':<26}{'decode only':>12}{'cache build':>13}")
    print(f"{'':<26}{'(1 process)':>12}{'(' + str(decoding['build_processes']) + ' proc.)':>13}")
    for name in DECODERS:
        print(
            f"{name:<26}{decoding['decode_ips'][name]:>12.1f}{decoding['build_ips'][name]:>13.1f}"
        )
    ratio = decoding["torchvision_vs_pil"]
    print(f"{'torchvision / pil':<26}{ratio['decode']:>12.2f}{ratio['build']:>13.2f}")
    difference = decoding["max_abs_difference"]
    print(f"max |pil - torchvision| in grey levels: decoded {difference['decode']}, cached "
          f"{difference['cache']} (mean {decoding['mean_abs_difference_cache']:.3f})")  # fmt: skip
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    photos = real_photos(args.real_root, args.real_images) if args.real_images > 0 else "off"
    if isinstance(photos, str):
        print(f"cache build on real photos: skipped ({photos})", flush=True)
        decoding: dict[str, Any] = {"skipped": photos}
    else:
        decoding = cache_decoding(photos, args.size, args.decode_repeats)
    predicted = prediction(args)
    backbones: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vocproj-bench-") as tmp:
        profile = bench_profile(Path(tmp), args.size)
        jpeg_bytes, cache_seconds = [0], 0.0
        if args.backbones:
            print(f"writing {args.train_images} + {args.val_images} VOC-sized JPEGs", flush=True)
            voc = write_voc_sized_tree(Path(tmp), args.train_images, args.val_images)
            jpeg_bytes = [p.stat().st_size for p in (voc / "JPEGImages").glob("*.jpg")]
            cache_started = time.perf_counter()  # one cache serves both backbones
            for split in (profile.settings.data.train_split, profile.settings.data.val_split):
                open_split(profile, split, "eval", progress=True)
            cache_seconds = time.perf_counter() - cache_started
        for backbone in args.backbones:
            size = backbone_size(backbone, args.size)
            backbones[backbone] = backbone_results(
                bench_profile(Path(tmp), size, backbone), args.repeats
            )
    vocproj, baseline = runtime_for(profile), baseline_runtime(profile)
    tasks = ("train", "eval")  # ResNet18's also where the earlier reports had them
    earlier = (
        {task: backbones["resnet18"][task] for task in tasks} if "resnet18" in backbones else {}
    )
    result = {
        **earlier,
        "backbones": backbones,
        "cache_decoding": decoding,
        "prediction": predicted,
        "hardware": hardware(vocproj),
        "targets": TARGETS,
        "setup": {
            "image_size": args.size,
            "backbones": args.backbones,
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
    print_prediction(predicted)
    print(f"written to {args.out} in {result['setup']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
