"""The helpers of benchmarks/gpu.sh: pack what a GPU machine needs, write its profile, sum up.

    python benchmarks/gpu.py pack SHARED_TREE CARRY     (here: photos and lists into CARRY)
    python benchmarks/gpu.py profile CARRY WORK         (there: WORK/params/voc2007-real-lite0.yaml)
    python benchmarks/gpu.py summary BENCH_JSON WORK SECONDS_JSON OUT_MD

So that what is copied to the GPU machine stays small (about 50 MB), `pack` keeps of each of
the study's 2,000 photos only what the Lite0 study (`voc2007-real-lite0`, at 224 px) reads:
the image cache holds the short side resized to 224 px and centre-cropped, so that 224×224 image
(`vocproj.data.cache.decode_for_cache`), as JPEG quality 85 (about 13 KB). The study's numbers on
these differ slightly from those on the original JPEGs (one more JPEG round trip); its speed
does not.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import tarfile
from pathlib import Path

import yaml
from PIL import Image

from vocproj.data.cache import decode_for_cache
from vocproj.data.voc import jpeg_path, read_split_ids

PROJECT_DIR = Path(__file__).resolve().parents[1]
SIDE = 224
STUDY = "voc2007-real-lite0"  # the profile whose input size SIDE is
QUALITY = 85
FULL_STUDY = {"train_images": 5717, "val_images": 5823, "epochs": 45}  # VOC2012, 3 x 15 epochs


def pack(shared_tree: Path, carry: Path) -> None:
    """Crops of the train and val photos, the devkit lists and the annotations (as .tar.gz)."""
    voc = shared_tree / "VOCdevkit" / "VOC2007"
    target = carry / "voc2007-real" / "VOCdevkit" / "VOC2007"
    shutil.rmtree(carry / "voc2007-real", ignore_errors=True)
    (target / "JPEGImages").mkdir(parents=True)
    shutil.copytree(voc / "ImageSets", target / "ImageSets")
    ids = read_split_ids(voc, "train") + read_split_ids(voc, "val")
    for image_id in ids:
        crop = Image.fromarray(decode_for_cache(jpeg_path(voc, image_id), SIDE))
        crop.save(target / "JPEGImages" / f"{image_id}.jpg", quality=QUALITY)
    with tarfile.open(carry / "annotations.tar.gz", "w:gz") as archive:
        for image_id in ids:
            archive.add(voc / "Annotations" / f"{image_id}.xml", f"Annotations/{image_id}.xml")
    print(f"packed {len(ids)} photos ({SIDE} px centre crops) into {carry}")


def write_profile(carry: Path, work: Path) -> Path:
    """The study's profile reading the carried photos, with its files under `work`."""
    raw = yaml.safe_load((PROJECT_DIR / "params" / f"{STUDY}.yaml").read_text())
    settings = raw["settings"]
    settings["data"].update(root=str(work / "data"), prefer_roots=[str(carry / "voc2007-real")])
    settings["train"]["progress"] = False
    settings.update(runs_dir=str(work / "runs"), reports_dir=str(work / "reports"))
    path = work / "params" / f"{STUDY}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def phase_rates(history: Path) -> dict[int, float]:
    """Median training images/s of each phase's epochs."""
    rates: dict[int, list[float]] = {}
    with history.open() as rows:
        for row in csv.DictReader(rows):
            rates.setdefault(int(row["phase"]), []).append(float(row["train_images_per_second"]))
    return {phase: statistics.median(values) for phase, values in rates.items()}


def summary(bench_json: Path, work: Path, seconds_json: Path, out: Path) -> None:
    """The GPU table: bench rates, the study's wall time and mAP, the full study projected."""
    bench = json.loads(bench_json.read_text())
    seconds = json.loads(seconds_json.read_text())
    metrics = json.loads((work / "reports" / STUDY / "metrics.json").read_text())
    lines = ["| | images/s |", "|---|---:|"]
    for backbone, result in bench["backbones"].items():
        for stage in ("train", "eval"):
            for config in ("baseline", "vocproj", "model_only"):
                rate = result[stage][f"{config}_ips"]
                lines.append(f"| {backbone} {stage} {config} | {rate:.0f} |")
    resnet = bench["backbones"]["resnet18"]
    train_ips, eval_ips = resnet["train"]["vocproj_ips"], resnet["eval"]["vocproj_ips"]
    projected = FULL_STUDY["epochs"] * (
        FULL_STUDY["train_images"] / train_ips + FULL_STUDY["val_images"] / eval_ips
    )
    rates = phase_rates(work / "runs" / STUDY / "history.csv")
    lines += [
        "",
        f"{STUDY} study (EfficientNet-Lite0, 2,000 photos as 224 px crops): training "
        f"{seconds['train']:.0f} s, evaluation {seconds['evaluate']:.0f} s, mAP "
        f"{metrics['map']:.4f}; training images/s by phase: "
        + ", ".join(f"{phase}: {rate:.0f}" for phase, rate in sorted(rates.items())),
        f"Full VOC2012 study projected (ResNet18, 3 x 15 epochs over 5,717 train images, each "
        f"epoch evaluated on 5,823 val images, at the bench's vocproj rates): "
        f"{projected / 60:.1f} min",
        f"Hardware: {bench.get('hardware')}",
    ]
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack")
    packing.add_argument("shared_tree", type=Path)
    packing.add_argument("carry", type=Path)
    profile = commands.add_parser("profile")
    profile.add_argument("carry", type=Path)
    profile.add_argument("work", type=Path)
    summing = commands.add_parser("summary")
    for name in ("bench_json", "work", "seconds_json", "out"):
        summing.add_argument(name, type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.shared_tree, args.carry)
    elif args.command == "profile":
        print(write_profile(args.carry.resolve(), args.work.resolve()))
    else:
        summary(args.bench_json, args.work, args.seconds_json, args.out)


if __name__ == "__main__":
    main()
