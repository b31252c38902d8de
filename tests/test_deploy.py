"""Deployment: `predict` over files, folders and globs, `export` to ONNX, and ONNX without torch.

The suite's shared tiny real run (1 epoch per phase at 32 px on the small sample, fp32: conftest's
`tiny_yaml`) is copied once for this module, since export writes its model into the run folder;
the copy's model is exported with the real command. Parity on real photos uses the real-photo
backbone, EfficientNet-Lite0 with its ImageNet weights, at 224 px, and ResNet18.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from test_browser import converted_inputs, encoded
from test_faults import kill_when

from vocproj.__main__ import main
from vocproj.artifacts import RunFiles, read_record
from vocproj.config import PROJECT_DIR, Profile, load_profile
from vocproj.data.voc import CLASSES, read_devkit_split
from vocproj.evaluation.scoring import compare_tta, evaluate
from vocproj.images import TTA_VIEWS, decode_image, input_normalisation, model_input, read_image
from vocproj.metrics.multilabel import load_scores
from vocproj.metrics.thresholds import threshold_vector
from vocproj.model import efficientnet_lite
from vocproj.model.network import build_model
from vocproj.serving.export import (
    PARITY_TOLERANCE,
    export_onnx,
    export_run,
    run_model,
    torch_engine,
)
from vocproj.serving.onnx_runtime import load_onnx_model
from vocproj.serving.predict import (
    ModelCard,
    PredictError,
    choose_thresholds,
    find_images,
    predict_files,
)

from conftest import copy_of_run

# Imports vocproj's __main__ with every dependency of vocproj's but numpy, Pillow and onnxruntime
# made unimportable, then runs the command line given after the list.
WITHOUT_DEPENDENCIES = """
import importlib.abc, runpy, sys
blocked = set(sys.argv[1].split(","))
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"{name} is blocked: the ONNX path must not need it")
sys.meta_path.insert(0, Blocked())
sys.argv = ["vocproj", *sys.argv[2:]]
runpy.run_module("vocproj", run_name="__main__")
"""
SERVICE_DISTRIBUTIONS = {"numpy", "pillow", "onnxruntime"}


def vocproj(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vocproj", *args], capture_output=True, text=True, cwd=PROJECT_DIR
    )


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory: pytest.TempPathFactory, tiny_yaml: Path) -> str:
    """This module's copy of the suite's shared tiny run: export writes model.onnx into it."""
    return str(copy_of_run(tiny_yaml, tmp_path_factory.mktemp("deploy") / "project"))


@pytest.fixture(scope="module")
def tiny(tiny_yaml: str) -> Profile:
    return load_profile(tiny_yaml)


@pytest.fixture(scope="module")
def exported(tiny_yaml, tiny: Profile) -> tuple[Path, str]:
    """The tiny run exported by the command line: the model file and what the command printed."""
    result = vocproj("export", "--profile", tiny_yaml, "--format", "onnx")
    assert result.returncode == 0, result.stderr
    return RunFiles.of(tiny).onnx, result.stdout


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory, real_voc: Path) -> Path:
    """12 real val photos (two in a subfolder) with a corrupt JPEG, a text file named .jpg, a
    README.txt and a hidden file among them."""
    folder = tmp_path_factory.mktemp("photos")
    photos = read_devkit_split(real_voc, "val").image_paths[:12]
    (folder / "more").mkdir()
    for index, path in enumerate(photos):
        shutil.copy(path, folder / ("more" if index >= 10 else ".") / path.name)
    (folder / "corrupt.jpg").write_bytes(photos[0].read_bytes()[:3000])
    (folder / "not_a_photo.jpg").write_text("these are my holiday notes\n")
    (folder / "README.txt").write_text("photos from the trip\n")
    (folder / ".hidden.jpg").write_bytes(photos[1].read_bytes())
    return folder


def predictions_by_name(path: Path) -> dict[str, np.ndarray]:
    document = json.loads(path.read_text())
    return {
        Path(p["file"]).name: np.array([p["probabilities"][name] for name in document["classes"]])
        for p in document["predictions"]
    }


def blocked_modules() -> set[str]:
    """The import names of vocproj's dependencies (its efficientnet extra too), but the three
    a service has."""
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["efficientnet"]]
    names = {req.split(">")[0].split("=")[0].split("[")[0].strip().lower() for req in requirements}
    names -= SERVICE_DISTRIBUTIONS
    modules = {
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if {d.lower() for d in distributions} & names and not module.startswith("_")
    }
    assert {"torch", "torchvision", "timm", "yaml", "pydantic", "tqdm"} <= modules
    return modules


# ---------------------------------------------------------------- export


def test_export_writes_probabilities_a_batch_axis_and_the_card(tiny: Profile, exported):
    path, printed = exported
    model = onnx.load(path)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    metrics = json.loads(RunFiles.of(tiny).metrics.read_text())
    assert json.loads(metadata["classes"]) == list(read_record(RunFiles.of(tiny)).classes)
    assert json.loads(metadata["threshold"]) == metrics["best_threshold_f1"]["threshold"]
    assert json.loads(metadata["per_class_thresholds"]) == metrics["per_class_thresholds"]
    assert json.loads(metadata["image_size"]) == 32
    assert json.loads(metadata["normalisation"]) == {
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    assert metadata["profile"] == "tiny" and metadata["backbone"] == "resnet18"
    shapes = [
        [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in (model.graph.input[0], model.graph.output[0])
    ]
    assert shapes == [["batch", 3, 32, 32], ["batch", 20]]
    assert model.graph.node[-1].op_type == "Sigmoid", "the sigmoid is inside the graph"
    assert f"to {path}" in printed and "val photos" in printed
    assert float(printed.split("by at most ")[1].split()[0]) <= PARITY_TOLERANCE


@pytest.mark.parametrize("backbone", [*efficientnet_lite.BACKBONES, "resnet18"])
def test_onnx_probabilities_equal_pytorchs_on_real_photos(tmp_path, real_voc, backbone):
    torch.manual_seed(0)
    lite = backbone in efficientnet_lite.BACKBONES
    size = efficientnet_lite.NATIVE_SIZE[backbone] if lite else 224
    model = build_model(backbone, "imagenet" if lite else "none", len(CLASSES)).eval()
    card = ModelCard(CLASSES, size, input_normalisation(backbone), 0.5, {}, "test")
    path = export_onnx(model, card, tmp_path / "model.onnx", {})
    onnx_engine, onnx_card = load_onnx_model(path)
    assert onnx_card.classes == CLASSES and onnx_card.normalisation == card.normalisation
    photos = read_devkit_split(real_voc, "val").image_paths[:24]
    batch = np.stack([model_input(read_image(p), size, card.normalisation) for p in photos])
    expected = torch_engine(model)(batch)
    assert expected.std() > 1e-3, "the probabilities vary, so equality means something"
    difference = np.abs(onnx_engine(batch) - expected).max()
    single = np.abs(onnx_engine(batch[:1]) - expected[:1]).max()  # batch 1 on the dynamic axis
    print(f"{backbone}: largest |ONNX - PyTorch| over 24 real photos {difference:.2e}")
    assert difference <= PARITY_TOLERANCE and single <= PARITY_TOLERANCE


def test_export_refuses_a_run_that_was_not_evaluated(tiny_yaml, tiny, tmp_path: Path, capsys):
    files = RunFiles.of(tiny)
    metrics = files.metrics.read_bytes()
    files.metrics.unlink()
    try:
        code = main(["export", "--profile", tiny_yaml, "--out", str(tmp_path / "m.onnx")])
    finally:
        files.metrics.write_bytes(metrics)
    stderr = capsys.readouterr().err
    assert code == 2 and "No evaluation results yet" in stderr
    assert "metrics.json not found" in stderr and not (tmp_path / "m.onnx").exists()


def test_an_export_that_differs_from_pytorch_is_refused_and_the_old_file_kept(
    tiny, exported, monkeypatch
):
    import vocproj.serving.export

    path, _ = exported
    before = path.read_bytes()
    real_engine = vocproj.serving.export.torch_engine
    monkeypatch.setattr(  # as if the exported graph had lost its sigmoid's precision
        vocproj.serving.export, "torch_engine", lambda model: lambda b: real_engine(model)(b) + 2e-4
    )
    with pytest.raises(
        vocproj.serving.export.ExportError, match=r"differ from PyTorch's by up to 2\.0"
    ):
        vocproj.serving.export.export_run(tiny)
    assert path.read_bytes() == before, "the earlier export is left as it was"
    assert sorted(p.name for p in path.parent.glob(f".{path.name}*")) == [], "no temporary left"


def killed_when(ready, command: list[str], log: Path) -> None:
    """Start `python -m vocproj COMMAND` (its output into `log`) and SIGKILL it as soon as
    `ready()` holds."""
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "vocproj", *command], cwd=PROJECT_DIR,
                                   stdout=output, stderr=output, text=True)  # fmt: skip
    kill_when(ready, process)


@pytest.mark.slow
def test_sigkill_during_export_keeps_the_earlier_model_and_the_next_export_equals_it(
    tiny_yaml, tiny: Profile, exported, tmp_path: Path
):
    path, _ = exported
    before = path.read_bytes()
    export = ["export", "--profile", tiny_yaml, "--format", "onnx"]
    killed_when(lambda: any(path.parent.glob(f".{path.name}.*.tmp")), export, tmp_path / "log")
    assert path.read_bytes() == before, "the earlier export is left as it was"
    assert vocproj(*export).returncode == 0
    assert not list(path.parent.glob(f".{path.name}.*.tmp")), "the next export removed it"
    engine, card = load_onnx_model(path)
    batch = np.random.default_rng(0).random((4, 3, card.image_size, card.image_size), "float32")
    again = engine(batch)
    path.write_bytes(before)
    np.testing.assert_array_equal(load_onnx_model(path)[0](batch), again)


@pytest.mark.slow
def test_sigkill_during_predict_out_leaves_no_partial_file_and_the_rerun_equals_a_whole_run(
    tiny_yaml, tiny: Profile, tmp_path: Path
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for copy in range(10):  # 400 files, one a batch: seconds of predicting to be killed in
        for image in read_devkit_split(tiny.voc_root, "val").image_paths:
            shutil.copy(image, folder / f"{copy}_{image.name}")
    whole, killed, log = tmp_path / "whole.csv", tmp_path / "out" / "killed.csv", tmp_path / "log"
    command = ["predict", str(folder), "--profile", tiny_yaml, "--batch-size", "1"]
    assert vocproj(*command, "--out", str(whole), "--no-progress").returncode == 0
    predicting = re.compile(r"\| [1-9][0-9]*/400 ")  # the progress bar has moved
    killed_when(lambda: bool(predicting.search(log.read_text())), [*command, "--out", str(killed)],
                log)  # fmt: skip
    assert not killed.exists() and not list(killed.parent.glob(".*")), "nothing half-written"
    assert vocproj(*command, "--out", str(killed), "--no-progress").returncode == 0
    assert killed.read_text() == whole.read_text()


# ---------------------------------------------------------------- predict


def test_predict_with_the_run_reproduces_the_evaluations_scores(
    tiny_yaml, tiny: Profile, tmp_path: Path
):
    out = tmp_path / "val.json"
    val = read_devkit_split(tiny.voc_root, tiny.settings.data.val_split)
    folder = val.image_paths[0].parent
    code = main(["predict", str(folder), "--profile", tiny_yaml, "--out", str(out),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    predicted = predictions_by_name(out)
    scores = load_scores(RunFiles.of(tiny).scores(tiny.settings.data.val_split))
    for image_id, row in zip(scores.ids, scores.scores, strict=True):
        np.testing.assert_allclose(predicted[f"{image_id}.jpg"], row, rtol=0, atol=1e-5)


def test_onnx_predict_runs_without_torch_and_reports_bad_files(
    tiny_yaml, tiny: Profile, exported, photo_folder: Path, tmp_path: Path
):
    onnx_out, torch_out = tmp_path / "onnx.json", tmp_path / "torch.json"
    blocked = ",".join(sorted(blocked_modules()))
    command = ["predict", str(photo_folder), "--onnx", str(exported[0]), "--out", str(onnx_out)]
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_DEPENDENCIES, blocked, *command, "--no-progress"],
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
    )
    assert result.returncode == 1, result.stderr  # two files failed, the others were predicted
    lines = result.stdout.splitlines()
    failed = {line.split()[0]: line for line in lines if "FAILED:" in line}
    assert set(failed) == {str(photo_folder / "corrupt.jpg"), str(photo_folder / "not_a_photo.jpg")}
    assert "truncated or corrupt" in failed[str(photo_folder / "corrupt.jpg")]
    assert "is not an image" in failed[str(photo_folder / "not_a_photo.jpg")]
    assert any(line.startswith("left out 1 file") and "README.txt" in line for line in lines)
    assert "predicted 12 of 14 image file(s) (ONNX Runtime" in result.stdout
    document = json.loads(onnx_out.read_text())
    assert [Path(f["file"]).name for f in document["failures"]] == [
        "corrupt.jpg",
        "not_a_photo.jpg",
    ]
    assert main(["predict", str(photo_folder), "--profile", tiny_yaml,
                 "--out", str(torch_out), "--no-progress"]) == 1  # fmt: skip
    onnx_predictions, torch_predictions = (
        predictions_by_name(onnx_out),
        predictions_by_name(torch_out),
    )
    assert len(onnx_predictions) == 12 and onnx_predictions.keys() == torch_predictions.keys()
    for name, probabilities in onnx_predictions.items():
        np.testing.assert_allclose(probabilities, torch_predictions[name], rtol=0, atol=1e-4)
    threshold = document["thresholds"][CLASSES[0]]
    for entry in document["predictions"]:
        passed = [c for c in document["classes"] if entry["probabilities"][c] >= threshold]
        assert sorted(entry["labels"]) == sorted(passed)


def test_predict_over_a_folder_with_a_device_a_fifo_and_a_huge_file_predicts_the_rest(
    tiny_yaml: str, real_voc: Path, tmp_path: Path
):
    """Nothing in the folder takes predict down: each odd file is a FAILED row naming it."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in read_devkit_split(real_voc, "val").image_paths[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.jpg")
    with (folder / "huge.jpg").open("wb") as huge:  # sparse: 300 MB on paper, nothing on disk
        huge.truncate(300 * 2**20)
    out = tmp_path / "labels.json"
    command = ["predict", str(folder), "--profile", tiny_yaml, "--out", str(out), "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-m", "vocproj", *command], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr
    failed = {Path(line.split()[0]).name: line for line in result.stdout.splitlines()
              if "FAILED:" in line}  # fmt: skip
    assert set(failed) == {"zero.jpg", "fifo.jpg", "huge.jpg"}
    assert "is a character device, not a regular file" in failed["zero.jpg"]
    assert "is a named pipe (FIFO), not a regular file" in failed["fifo.jpg"]
    assert "is 300 MB, more than the 200 MB vocproj reads of one file" in failed["huge.jpg"]
    assert "predicted 3 of 6 image file(s)" in result.stdout
    assert len(json.loads(out.read_text())["predictions"]) == 3


def test_the_onnx_path_really_is_blocked_from_torch(exported, photo_folder: Path):
    """The harness above fails a run that imports torch (so its passing means something)."""
    code = WITHOUT_DEPENDENCIES.replace("runpy.run_module", "import torch\nrunpy.run_module")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "torch",
            "predict",
            str(photo_folder),
            "--onnx",
            str(exported[0]),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "torch is blocked" in result.stderr


def test_csv_output_and_the_three_threshold_rules(
    tiny_yaml, tiny: Profile, photo_folder: Path, tmp_path
):
    model, card = run_model(tiny)
    files = sorted((photo_folder / "more").glob("*.jpg"))
    engine = torch_engine(model)
    for threshold, per_class, expected in [
        (0.3, False, np.full(20, 0.3)),
        (None, False, np.full(20, card.threshold)),
        (None, True, threshold_vector(card.classes, card.threshold, card.per_class_thresholds)),
    ]:
        chosen = choose_thresholds(card, threshold, per_class)
        np.testing.assert_array_equal(chosen.values, expected)
        for result in predict_files(files, engine, card, chosen, batch_size=1):
            passed = {
                c for c, p, t in zip(CLASSES, result.probabilities, expected, strict=True) if p >= t
            }
            assert {name for name, _ in result.labels} == passed
    out = tmp_path / "more.csv"
    assert main(["predict", str(photo_folder / "more" / "*.jpg"), "--profile", tiny_yaml,
                 "--threshold", "0.3", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    header, *rows = [line.split(",") for line in out.read_text().splitlines()]
    assert header == ["file", "labels", "error", *CLASSES] and len(rows) == 2
    for row in rows:
        probabilities = np.array(row[3:], dtype=float)
        assert set(filter(None, row[1].split(";"))) == {
            c for c, p in zip(CLASSES, probabilities, strict=True) if p >= 0.3
        }


def test_awkward_files_are_predicted_as_the_browser_decodes_them(
    tiny: Profile, real_voc: Path, tmp_path: Path
):
    """EXIF-rotated, CMYK, 16-bit and transparent files: one decoder for browser and predict."""
    model, card = run_model(tiny)
    photo = read_image(read_devkit_split(real_voc, "val").image_paths[2])
    cases = {name: content for name, (content, _, _) in converted_inputs(photo).items()}
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    cases["rotated.jpg"] = encoded(photo, "JPEG", quality=95, exif=exif)
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    chosen = choose_thresholds(card, 0.5, False)
    results = list(predict_files(sorted(tmp_path.iterdir()), torch_engine(model), card, chosen))
    assert len(results) == len(cases)
    for result in results:
        name = Path(result.file).name
        image = decode_image(cases[name], name)
        expected = torch_engine(model)(
            model_input(image, card.image_size, card.normalisation)[None]
        )
        np.testing.assert_allclose(result.probabilities, expected[0], rtol=0, atol=1e-6)
    rotated = decode_image(cases["rotated.jpg"], "rotated.jpg")
    assert (rotated.height, rotated.width) == (photo.width, photo.height)


def test_find_images_walks_folders_expands_globs_and_names_what_matched_nothing(photo_folder):
    inputs = find_images([
        str(photo_folder), str(photo_folder / "more" / "*.jpg"), str(photo_folder / "nope.jpg"),
        str(photo_folder / "*.png"),
    ])  # fmt: skip
    names = [path.name for path in inputs.files]
    assert len(names) == 14 and len(set(names)) == 14, "each file once, hidden ones ignored"
    assert names[-2:] == sorted(p.name for p in (photo_folder / "more").iterdir())
    assert inputs.unmatched == [str(photo_folder / "nope.jpg"), str(photo_folder / "*.png")]
    assert [path.name for path in inputs.left_out] == ["README.txt"]


def test_predict_errors_are_clear_and_come_before_any_work(tiny, exported, tmp_path, capsys):
    """In-process (main() is what `python -m vocproj` runs; test_cli.py runs the subprocesses)."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(encoded(Image.new("RGB", (40, 30), "red"), "JPEG"))
    run = RunFiles.of(tiny).final_best
    cases = [
        (
            ["--onnx", str(exported[0]), "--out", str(tmp_path / "p.txt")],
            "must end in .json or .csv",
        ),
        (["--checkpoint", str(run)], "comes without a chosen threshold"),
        (["--onnx", str(tmp_path / "none.onnx")], "none.onnx not found"),
        (["--onnx", str(photo)], "is not an ONNX model"),
        (["--onnx", str(exported[0]), "--threshold", "1.5"], "not a probability in [0, 1]"),
    ]
    for options, phrase in cases:
        code = main(["predict", str(photo), *options])
        stderr = capsys.readouterr().err
        assert code == 2 and stderr.startswith("error: ") and phrase in stderr, (options, stderr)
    assert not (tmp_path / "p.txt").exists()
    assert main(["predict", str(tmp_path / "empty_folder*"), "--onnx", str(exported[0])]) == 2
    assert "nothing to predict" in capsys.readouterr().err
    metrics = RunFiles.of(tiny).metrics
    code = main(["predict", str(photo), "--checkpoint", str(run), "--metrics", str(metrics)])
    assert code == 0 and capsys.readouterr().out.startswith(f"{photo}  ")


def test_an_onnx_file_without_vocproj_metadata_is_refused(tmp_path: Path):
    card = ModelCard(CLASSES, 32, input_normalisation("resnet18"), 0.5, {}, "test")
    model = build_model("resnet18", "none", len(CLASSES)).eval()
    path = export_onnx(model, card, tmp_path / "plain.onnx", {})
    stripped = onnx.load(path)
    del stripped.metadata_props[:]
    onnx.save(stripped, path)
    with pytest.raises(PredictError, match="has no vocproj metadata"):
        load_onnx_model(path)


def test_an_interrupted_predict_keeps_the_files_done(
    tiny_yaml, tiny, photo_folder, tmp_path, monkeypatch
):
    import vocproj.serving.export

    real_engine = vocproj.serving.export.torch_engine

    def engine_interrupted_on_the_second_batch(model):
        run, calls = real_engine(model), []

        def interrupted(batch):
            calls.append(len(batch))
            if len(calls) == 2:
                raise KeyboardInterrupt
            return run(batch)

        return interrupted

    monkeypatch.setattr(
        vocproj.serving.export, "torch_engine", engine_interrupted_on_the_second_batch
    )
    out = tmp_path / "partial.json"
    code = main(["predict", str(photo_folder), "--profile", tiny_yaml, "--batch-size", "4",
                 "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 130
    assert len(json.loads(out.read_text())["predictions"]) == 4


def test_a_card_goes_through_onnx_metadata_unchanged():
    card = ModelCard(("a", "b"), 96, input_normalisation("efficientnet_lite0"), 0.35,
                     {"a": 0.2, "b": None}, "x.onnx")  # fmt: skip
    assert ModelCard.from_metadata(card.to_metadata(), "x.onnx") == card


# ---------------------------------------------------------------- test-time augmentation


def with_tta(tiny: Profile, folder: Path, tta: str) -> Profile:
    """The tiny run with `evaluate.tta` set, in fresh runs/reports folders holding its best.pt."""
    files = RunFiles.of(tiny)
    settings = tiny.settings.model_copy(update={
        "runs_dir": str(folder / "runs"), "reports_dir": str(folder / "reports"),
        "evaluate": tiny.settings.evaluate.model_copy(update={"tta": tta}),
    })  # fmt: skip
    profile = tiny.model_copy(update={"settings": settings})
    best = RunFiles.of(profile).final_best
    best.parent.mkdir(parents=True)
    best.symlink_to(files.final_best)
    return profile


def test_evaluation_with_flip_tta_averages_each_image_and_its_mirror(tiny: Profile, tmp_path):
    profile = with_tta(tiny, tmp_path, "hflip")
    metrics = evaluate(profile, progress=False)
    scores = load_scores(RunFiles.of(profile).scores(profile.settings.data.val_split))
    model, card = run_model(profile)
    assert card.tta == "hflip" and metrics["n_images"] == len(scores.ids) == 40
    engine = torch_engine(model)
    val = read_devkit_split(tiny.voc_root, tiny.settings.data.val_split)
    for path, row in zip(val.image_paths[:6], scores.scores[:6], strict=True):
        plain = model_input(read_image(path), card.image_size, card.normalisation)[None]
        mirrored = np.ascontiguousarray(plain[:, :, :, ::-1])
        expected = (engine(plain)[0] + engine(mirrored)[0]) / 2
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e-5)
    assert np.abs(scores.scores - load_scores(RunFiles.of(tiny).scores("val")).scores).max() > 1e-4


def test_compare_tta_reports_each_augmentations_map_and_time(tiny: Profile, tmp_path: Path):
    profile = with_tta(tiny, tmp_path, "none")
    summary = compare_tta(profile)
    assert json.loads(RunFiles.of(profile).tta.read_text()) == summary
    assert summary["chosen"] == "none" and summary["images"] == 40
    assert {mode: row["views"] for mode, row in summary["modes"].items()} == TTA_VIEWS
    assert all(row["seconds"] > 0 and 0 <= row["map"] <= 1 for row in summary["modes"].values())
    cached = json.loads(RunFiles.of(tiny).metrics.read_text())["map"]
    assert summary["modes"]["none"]["map"] == pytest.approx(cached, abs=1e-3)
    assert len({round(row["map"], 6) for row in summary["modes"].values()}) > 1


def test_predict_and_the_onnx_model_follow_the_runs_tta(tiny: Profile, tmp_path: Path, capsys):
    profile = with_tta(tiny, tmp_path, "five_crop")
    evaluate(profile, progress=False)
    scores = load_scores(RunFiles.of(profile).scores(profile.settings.data.val_split))
    exported = export_run(profile)
    engine, card = load_onnx_model(exported.path)
    assert card.tta == "five_crop" and exported.card.tta == "five_crop"
    val = read_devkit_split(tiny.voc_root, tiny.settings.data.val_split)
    photos = list(val.image_paths[:5])
    chosen = choose_thresholds(card, 0.5, False)
    results = list(predict_files(photos, engine, card, chosen))
    for result, row in zip(results, scores.scores[: len(photos)], strict=True):
        np.testing.assert_allclose(result.probabilities, row, rtol=0, atol=1e-4)
    out = tmp_path / "plain.json"
    assert main(["predict", *map(str, photos), "--onnx", str(exported.path), "--tta", "none",
                 "--threshold", "0.5", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    plain = predictions_by_name(out)
    untouched = load_scores(RunFiles.of(tiny).scores("val"))
    for name, probabilities in plain.items():
        row = untouched.scores[untouched.ids.index(Path(name).stem)]
        np.testing.assert_allclose(probabilities, row, rtol=0, atol=1e-4)
    assert "test-time augmentation" not in capsys.readouterr().out
