"""The command line: a thin layer over the same functions the notebooks call.

python -m vocproj sample --out DIR
python -m vocproj download [--dataset NAME] --root DIR [--mirror URL ...] [--archive PATH ...]
python -m vocproj train --profile sample --phase all
torchrun --nproc_per_node N -m vocproj train --profile sample   (DDP: training/distributed.py)
python -m vocproj evaluate --profile sample
python -m vocproj tta --profile voc2007-real [--modes none,hflip,five_crop,five_crop_flip]
python -m vocproj metrics SCORES.npz --out DIR
python -m vocproj data --profile voc2012
python -m vocproj init-profile DATA_DIR --name NAME
python -m vocproj probe --profile voc2007-real
python -m vocproj report --profile sample
python -m vocproj predict PATH... (--profile P | --checkpoint FILE | --onnx FILE)
python -m vocproj export --profile P --format onnx [--out FILE]

Nothing is imported at the top but what every command needs, so that `predict --onnx` runs
without PyTorch (a service with onnxruntime, numpy and Pillow).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from vocproj.errors import VocprojError
from vocproj.images import TTA_MODES

if TYPE_CHECKING:
    from vocproj.serving.predict import Engine, ModelCard

    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]


def add_command(
    commands: Subcommands, name: str, run: Callable[[argparse.Namespace], int | None], summary: str
) -> argparse.ArgumentParser:
    """The subcommand `name`'s parser, set to call `run` with the parsed arguments."""
    command = commands.add_parser(name, help=summary)
    command.set_defaults(run=run)
    return command


def add_profile_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--profile", default="sample", help="profile name or YAML path")


def add_no_progress_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_wait_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--wait", action="store_true",
        help="if another run of the profile holds its folder, wait for it instead of stopping",
    )  # fmt: skip


def add_sample(commands: Subcommands) -> None:
    sample = add_command(
        commands, "sample", cmd_sample, "write the synthetic VOC-format sample dataset"
    )
    sample.add_argument("--out", required=True, help="folder to hold VOCdevkit/VOC2012")
    sample.add_argument("--seed", type=int, help="random seed (default 0)")
    sample.add_argument("--train", type=int, help="train images (default 300)")
    sample.add_argument("--val", type=int, help="val images (default 200)")


def cmd_sample(args: argparse.Namespace) -> None:
    from vocproj.data.sample import write_sample_dataset

    sizes = {"seed": args.seed, "n_train": args.train, "n_val": args.val}
    given = {name: value for name, value in sizes.items() if value is not None}
    root = write_sample_dataset(args.out, **given, progress=True)
    print(f"sample dataset ready at {root}")


def add_download(commands: Subcommands) -> None:
    download = add_command(
        commands, "download", cmd_download, "fetch, verify and extract a VOC dataset"
    )
    download.add_argument(
        "--dataset",
        choices=("voc2012", "voc2007", "voc2007-real"),
        default="voc2012",
        help="voc2012: trainval; voc2007: trainval and test; voc2007-real: the test archive only, "
        "with vocproj's 2,000-photo train/val split of it (default: voc2012)",
    )
    download.add_argument("--root", required=True, help="folder to hold VOCdevkit/VOC<year>")
    download.add_argument(
        "--mirror",
        action="append",
        help="mirror folder URL to try; the archive's file name is appended (repeatable)",
    )
    download.add_argument(
        "--archive", action="append", help="an already downloaded VOC .tar to use (repeatable)"
    )


def cmd_download(args: argparse.Namespace) -> None:
    from vocproj.data.download import fetch_voc, fetch_voc2007_subset, subset_ids

    sources = {"mirrors": args.mirror, "archives": args.archive}
    if args.dataset == "voc2007-real":
        root = fetch_voc2007_subset(args.root, subset_ids(args.dataset), **sources)
    else:
        root = fetch_voc(args.root, int(args.dataset.removeprefix("voc")), **sources)
    print(f"{args.dataset} ready at {root}")


def add_train(commands: Subcommands) -> None:
    train = add_command(commands, "train", cmd_train, "train one phase or all phases of a profile")
    add_profile_option(train)
    train.add_argument("--phase", default="all", help="1, 2, 3 or all")
    train.add_argument("--retrain", action="store_true", help="retrain finished phases")
    add_no_progress_option(train)
    add_wait_option(train)


def cmd_train(args: argparse.Namespace) -> None:
    """Train in this process, or, under torchrun, in this process as one rank of a DDP run."""
    from vocproj.config import load_profile
    from vocproj.training.distributed import process_group
    from vocproj.training.phases import train_phases
    from vocproj.training.runtime import select_device

    profile = load_profile(args.profile)
    count = len(profile.settings.train.phases)
    phases = range(1, count + 1) if args.phase == "all" else [int(args.phase)]
    started = time.perf_counter()
    train = profile.settings.train
    with process_group(select_device(train.device).type, train.timeout_s) as world:
        history = train_phases(profile, phases, retrain=args.retrain, progress=not args.no_progress)
    seconds = time.perf_counter() - started
    if history and world.is_main:
        last = history[-1]
        print(
            f"trained {profile.profile} phase(s) {args.phase} in {seconds:.0f} s; last epoch: "
            f"val loss {last['val_loss']:.4f}, val mAP {last['val_map']:.4f}"
        )


def add_evaluate(commands: Subcommands) -> None:
    evaluate = add_command(commands, "evaluate", cmd_evaluate, "score val with the best checkpoint")
    add_profile_option(evaluate)
    evaluate.add_argument("--split", default=None, help="split to score (default: val)")
    add_no_progress_option(evaluate)
    add_wait_option(evaluate)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vocproj.artifacts import LOSS_FIGURE, RunFiles, read_history
    from vocproj.config import load_profile
    from vocproj.evaluation.scoring import evaluate
    from vocproj.metrics.multilabel import load_scores
    from vocproj.reporting.plots import (
        plot_loss_history,
        write_calibration_figures,
        write_metric_figures,
    )

    profile = load_profile(args.profile)
    files = RunFiles.of(profile)
    split = args.split or profile.settings.data.val_split
    metrics = evaluate(profile, split, progress=not args.no_progress)
    plot_loss_history(read_history(files.history), files.figure(LOSS_FIGURE))
    write_metric_figures(load_scores(files.scores(split)), metrics, files.figures)
    write_calibration_figures(json.loads(files.calibration.read_text()), files.figures)
    print(f"{profile.profile}: mAP {metrics['map']:.4f}; metrics and figures in {files.report_dir}")


def tta_modes(text: str) -> list[str]:
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in TTA_MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(TTA_MODES)}, got {text!r}")
    return modes


def add_tta(commands: Subcommands) -> None:
    tta = add_command(
        commands, "tta", cmd_tta,
        "score val under each test-time augmentation: mAP and time (tta.json)",
    )  # fmt: skip
    add_profile_option(tta)
    tta.add_argument(
        "--modes",
        type=tta_modes,
        help=f"comma-separated, of {', '.join(TTA_MODES)} (default: evaluate.tta_compare)",
    )
    add_wait_option(tta)


def cmd_tta(args: argparse.Namespace) -> None:
    from vocproj.artifacts import RunFiles
    from vocproj.config import load_profile
    from vocproj.evaluation.scoring import compare_tta

    profile = load_profile(args.profile)
    summary = compare_tta(profile, args.modes)
    print(f"{profile.profile}: {summary['images']} {summary['split']} images")
    for mode, row in summary["modes"].items():
        print(
            f"  {mode:<15} {row['views']:>2} view(s)  mAP {row['map']:.4f}  "
            f"{row['seconds']:>7.1f} s  ({row['images_per_second']:.1f} images/s)"
        )
    print(f"written to {RunFiles.of(profile).tta}")


def add_metrics(commands: Subcommands) -> None:
    metrics = add_command(
        commands, "metrics", cmd_metrics, "metrics, top-50 and figures from scores.npz"
    )
    metrics.add_argument("scores", help="an .npz with arrays ids, scores, labels, classes")
    metrics.add_argument("--out", required=True, help="folder for metrics.json and top50.json")
    metrics.add_argument("--figures", default=None, help="figure folder (default OUT/figures)")


def cmd_metrics(args: argparse.Namespace) -> None:
    from pathlib import Path

    from vocproj.metrics.multilabel import load_scores, write_metrics
    from vocproj.reporting.plots import write_metric_figures

    metrics = write_metrics(args.scores, args.out)
    figures = Path(args.out) / "figures" if args.figures is None else Path(args.figures)
    write_metric_figures(load_scores(args.scores), metrics, figures)
    print(f"mAP {metrics['map']:.4f}; metrics.json, top50.json and figures written to {args.out}")


def add_data(commands: Subcommands) -> None:
    data = add_command(commands, "data", cmd_data, "generate (sample) or download a profile's data")
    add_profile_option(data)
    add_wait_option(data)


def cmd_data(args: argparse.Namespace) -> None:
    from vocproj.config import load_profile
    from vocproj.data.prepare import prepare_data

    profile = load_profile(args.profile)
    record = prepare_data(profile)
    splits = ", ".join(f"{name} {count} images" for name, count in record.splits.items())
    print(
        f"{profile.profile} data ready at {record.data_dir} ({record.layout}; {splits}; "
        f"{len(record.classes)} classes: {', '.join(record.classes)})"
    )


def add_probe(commands: Subcommands) -> None:
    probe = add_command(
        commands, "probe", cmd_probe,
        "the linear-probe yardstick: frozen features + logistic regression",
    )  # fmt: skip
    add_profile_option(probe)
    probe.add_argument(
        "--c", type=float, default=None,
        help="inverse L2 strength (default: cross-validated on the train split)",
    )  # fmt: skip
    add_no_progress_option(probe)
    add_wait_option(probe)


def cmd_probe(args: argparse.Namespace) -> None:
    from vocproj.artifacts import RunFiles
    from vocproj.config import load_profile
    from vocproj.evaluation.probe import linear_probe

    profile = load_profile(args.profile)
    result = linear_probe(profile, c=args.c, progress=not args.no_progress)
    print(
        f"{profile.profile}: linear probe mAP {result['map']:.4f} (C = {result['C']:g}; "
        f"{result['n_train']} train, {result['n_val']} val images, {result['seconds']:.0f} s): "
        f"{RunFiles.of(profile).probe}"
    )


def add_init_profile(commands: Subcommands) -> None:
    init = add_command(
        commands, "init-profile", cmd_init_profile,
        "look at your own VOC-format export and write params/NAME.yaml",
    )  # fmt: skip
    init.add_argument(
        "data_dir",
        help="the export: a devkit tree (VOC, CVAT), a flat folder "
        "of images with XML (labelImg), or Roboflow's train/ valid/ test/",
    )
    init.add_argument("--name", required=True, help="the profile's name (params/NAME.yaml)")
    init.add_argument("--epochs", type=int, default=15, help="epochs per phase (the study: 15)")
    init.add_argument("--image-size", type=int, default=224, help="input size in px (224)")
    init.add_argument("--backbone", default="efficientnet_lite0", help="model.backbone")
    init.add_argument("--weights", default="imagenet", help="imagenet, none, or a file")
    init.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of val when vocproj draws the split (0.2)",
    )
    init.add_argument(
        "--images-without-xml",
        choices=("skip", "negative"),
        default="skip",
        help="images without XML: left out (listed), or negatives for every class",
    )
    init.add_argument("--seed", type=int, default=0, help="the profile's seed (and the split's)")
    init.add_argument("--force", action="store_true", help="replace an existing params file")


def cmd_init_profile(args: argparse.Namespace) -> None:
    from vocproj.data.init_profile import ProfileChoices, init_profile

    choices = ProfileChoices(
        name=args.name,
        epochs=args.epochs,
        image_size=args.image_size,
        backbone=args.backbone,
        weights=args.weights,
        val_fraction=args.val_fraction,
        images_without_xml=args.images_without_xml,
        seed=args.seed,
    )
    path, summary = init_profile(args.data_dir, choices, force=args.force)
    print(summary)
    print(
        f"wrote {path}; next: make report PROFILE={args.name}, then make browse PROFILE={args.name}"
    )


def add_report(commands: Subcommands) -> None:
    report = add_command(
        commands, "report", cmd_report, "write reports/<profile>/REPORT.md from the run"
    )
    add_profile_option(report)


def cmd_report(args: argparse.Namespace) -> None:
    from vocproj.config import load_profile
    from vocproj.reporting.report import write_report

    print(f"wrote {write_report(load_profile(args.profile))}")


def add_predict(commands: Subcommands) -> None:
    predict = add_command(
        commands, "predict", cmd_predict,
        "label image files, folders (recursively) and globs with a trained model",
    )  # fmt: skip
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders, globs")
    model = predict.add_mutually_exclusive_group(required=True)
    model.add_argument("--profile", help="the profile whose best model and thresholds to use")
    model.add_argument("--checkpoint", help="a vocproj checkpoint file (its thresholds: --metrics)")
    model.add_argument("--onnx", help="a model written by `export` (runs without PyTorch)")
    predict.add_argument("--metrics", help="with --checkpoint: the metrics.json of its run")
    chosen = predict.add_mutually_exclusive_group()
    chosen.add_argument("--threshold", type=float, help="one threshold for every class")
    chosen.add_argument(
        "--per-class", action="store_true", help="each class's own F1-best threshold of the run"
    )
    predict.add_argument("--out", help="also write every probability to FILE.json or FILE.csv")
    predict.add_argument("--batch-size", type=int, default=32, help="images per batch (32)")
    predict.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation (default: the run's evaluate.tta, or the ONNX model's)",
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_predict(args: argparse.Namespace) -> int:
    """Exit code 1 when any file could not be predicted (the others are)."""
    from vocproj.serving.predict import check_output_path, choose_thresholds, predict_paths

    check_output_path(args.out)
    engine, card, engine_name = prediction_model(args)
    if args.tta is not None:
        card = dataclasses.replace(card, tta=args.tta)
    thresholds = choose_thresholds(card, args.threshold, args.per_class)
    return predict_paths(
        args.paths, engine, engine_name, card, thresholds,
        out=args.out, batch_size=args.batch_size, progress=not args.no_progress,
    )  # fmt: skip


def prediction_model(args: argparse.Namespace) -> tuple[Engine, ModelCard, str]:
    """(engine, card, engine description) of --onnx, --checkpoint or --profile."""
    if args.onnx is not None:
        from vocproj.serving.onnx_runtime import load_onnx_model

        return (*load_onnx_model(args.onnx), "ONNX Runtime")
    from vocproj.serving.export import checkpoint_model, run_model, torch_engine

    if args.checkpoint is not None:
        model, card = checkpoint_model(args.checkpoint, args.metrics)
    else:
        from vocproj.config import load_profile

        model, card = run_model(load_profile(args.profile))
    return torch_engine(model), card, "PyTorch"


def add_export(commands: Subcommands) -> None:
    export = add_command(commands, "export", cmd_export, "export a run's best model (ONNX)")
    add_profile_option(export)
    export.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the only one)")
    export.add_argument("--out", help="the model file (default runs/<profile>/model.onnx)")
    add_wait_option(export)


def cmd_export(args: argparse.Namespace) -> None:
    from vocproj.config import load_profile
    from vocproj.serving.export import PARITY_TOLERANCE, export_run

    exported = export_run(load_profile(args.profile), args.out)
    card, size = exported.card, exported.card.image_size
    megabytes = exported.path.stat().st_size / 1e6
    print(
        f"exported {card.source} to {exported.path} ({megabytes:.1f} MB): input images "
        f"[batch, 3, {size}, {size}] float32, output probabilities [batch, {len(card.classes)}] "
        f"(sigmoid inside); metadata: classes, thresholds, image size, normalisation. On "
        f"{exported.images} val photos its probabilities differ from PyTorch's by at most "
        f"{exported.largest_difference:.1e} (allowed {PARITY_TOLERANCE:g})."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vocproj", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add_subcommand in (
        add_sample, add_download, add_train, add_evaluate, add_tta, add_metrics, add_data,
        add_probe, add_init_profile, add_report, add_predict, add_export,
    ):  # fmt: skip
        add_subcommand(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "wait", False):
        from vocproj.locks import WAIT_VARIABLE

        os.environ[WAIT_VARIABLE] = "1"  # torchrun's processes inherit it
    run: Callable[[argparse.Namespace], int | None] = args.run
    try:
        code = run(args)
    except VocprojError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume.",
              file=sys.stderr)  # fmt: skip
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
