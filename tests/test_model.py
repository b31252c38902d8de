"""The backbone + 20-way head, the three ways of choosing weights, and checkpoint files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from vocproj.errors import CheckpointError
from vocproj.model.network import (
    build_model,
    head_name,
    imagenet_weights_file,
    load_checkpoint,
    save_checkpoint,
)


@pytest.mark.parametrize(
    ("backbone", "head"),
    [
        ("resnet18", "fc"),
        ("mobilenet_v3_large", "classifier.3"),
        ("efficientnet_b0", "classifier.1"),
    ],
)
def test_backbones_get_a_twenty_way_head_returning_logits(backbone: str, head: str):
    torch.manual_seed(0)
    model = build_model(backbone, weights="none").eval()
    assert head_name(model) == head
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 20)
    assert (logits < 0).any() and (logits > 0).any()  # logits, not sigmoid probabilities


def test_resnet18_head_replaces_the_study_fc():
    model = build_model("resnet18", weights="none")
    assert model.fc.in_features == 512 and model.fc.out_features == 20


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(CheckpointError, match=r"unknown backbone 'resnet19'.*model\.backbone"):
        build_model("resnet19", weights="none")


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_imagenet_weights_load_from_the_torch_home_cache(torch_home: Path):
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert imagenet_weights_file("resnet18") == expected
    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18()  # a 1000-class model standing in for the real one
    expected.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), expected)
    model = build_model("resnet18", weights="imagenet")
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, imagenet.layer4[1].bn2.running_var)
    assert model.fc.out_features == 20


def test_imagenet_weights_offline_error_says_where_to_put_the_file(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.value,
        "url",
        "http://127.0.0.1:9/resnet18-f37072fd.pth",  # port 9 (discard) is closed: refused at once
    )
    with pytest.raises(CheckpointError) as info:
        build_model("resnet18", weights="imagenet")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(torch_home / "hub" / "checkpoints") in message
    assert "model.weights" in message


def test_weights_from_a_state_dict_file(tmp_path: Path):
    torch.manual_seed(2)
    source = torchvision.models.resnet18()
    path = tmp_path / "imagenet_like.pth"
    torch.save(source.state_dict(), path)
    model = build_model("resnet18", weights=str(path))
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert model.fc.out_features == 20


def test_weights_from_a_vocproj_checkpoint_keep_its_head(tmp_path: Path):
    trained = build_model("resnet18", weights="none")
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": trained.state_dict(), "epoch": 3})
    model = build_model("resnet18", weights=str(path))
    assert torch.equal(model.fc.weight, trained.fc.weight)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path: Path):
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"mobilenet\.pth does not fit a ResNet"):
        build_model("resnet18", weights=str(path))


def test_checkpoint_round_trip_is_weights_only(tmp_path: Path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "history": [{"epoch": 1}]})
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.ones(2)) and loaded["history"][0]["epoch"] == 1


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": Path("/etc/passwd")}, path)  # needs unpickling of arbitrary classes
    with pytest.raises(CheckpointError, match=r"evil\.pt cannot be loaded"):
        load_checkpoint(path)


def test_missing_and_corrupt_checkpoints(tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"nothing\.pt not found; run the training"):
        load_checkpoint(tmp_path / "nothing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(CheckpointError, match=r"corrupt\.pt cannot be loaded.*retrain"):
        load_checkpoint(corrupt)


def test_interrupted_checkpoint_write_keeps_the_old_one(tmp_path: Path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"epoch": 2, "bad": Unpicklable()})
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
