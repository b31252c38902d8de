"""Each class's most confident mistakes (mistakes.json) against a hand-worked scores file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vocproj.artifacts import METRICS_FILE, MISTAKES_FILE, TOP_K_FILE
from vocproj.errors import VocprojError
from vocproj.metrics.multilabel import (
    Scores,
    compute_metrics,
    load_scores,
    mistakes,
    save_scores,
    write_metrics,
)

# Six images × three classes; every score is exact in float32, so a saved file reads back equal.
#
#   id   cat     dog    person   labels (cat, dog, person)
#   a    0.875   0.125  0.625     0  1  1
#   b    0.375   0.75   0.25      1  0 -1
#   c    0.375   0.25   0.9375    0  0  1
#   d    0.0625  0.125  0.5       1  1  0
#   e    0.75    0.25   0.125    -1  0  0
#   f    0.375   0.5    0.75      0  1  0
#
# cat:    without (0) a .875, c .375, f .375 (tied: c before f); e is difficult only, not a
#         false positive although it scores .75; with (1) b .375, d .0625 → missed d, b
# dog:    without b .75, c .25, e .25 (tied: c before e); with a .125, d .125 (tied: a before
#         d), f .5 → missed a, d, f
# person: without f .75, d .5, e .125; with a .625, c .9375 → missed a, c; b (difficult only,
#         .25) is not missed
IDS = ["a", "b", "c", "d", "e", "f"]
CLASSES = ("cat", "dog", "person")
SCORES = np.array([
    [0.875, 0.125, 0.625],
    [0.375, 0.75, 0.25],
    [0.375, 0.25, 0.9375],
    [0.0625, 0.125, 0.5],
    [0.75, 0.25, 0.125],
    [0.375, 0.5, 0.75],
])  # fmt: skip
LABELS = np.array(
    [[0, 1, 1], [1, 0, -1], [0, 0, 1], [1, 1, 0], [-1, 0, 0], [0, 1, 0]], dtype=np.int8
)
# At thresholds cat 0.5, dog 0.5, person 0.75 (inclusive), highest probability first:
PREDICTED = {"a": ["cat"], "b": ["dog"], "c": ["person"], "d": [], "e": ["cat"],
             "f": ["person", "dog"]}  # fmt: skip
THRESHOLDS = np.array([0.5, 0.5, 0.75])


def listed(result: dict, name: str, kind: str) -> list[tuple[int, str, float]]:
    return [(e["rank"], e["id"], e["score"]) for e in result["classes"][name][kind]]


def hand_mistakes(k: int = 10, thresholds: np.ndarray | None = THRESHOLDS) -> dict:
    return mistakes(IDS, SCORES, LABELS, CLASSES, k=k, thresholds=thresholds)


def test_false_positives_are_the_highest_scored_images_without_the_class():
    result = hand_mistakes()
    assert listed(result, "cat", "false_positives") == [(1, "a", 0.875), (2, "c", 0.375),
                                                        (3, "f", 0.375)]  # fmt: skip
    assert listed(result, "dog", "false_positives") == [(1, "b", 0.75), (2, "c", 0.25),
                                                        (3, "e", 0.25)]  # fmt: skip
    assert listed(result, "person", "false_positives") == [(1, "f", 0.75), (2, "d", 0.5),
                                                           (3, "e", 0.125)]  # fmt: skip


def test_missed_are_the_lowest_scored_images_with_the_class():
    result = hand_mistakes()
    assert listed(result, "cat", "missed") == [(1, "d", 0.0625), (2, "b", 0.375)]
    assert listed(result, "dog", "missed") == [(1, "a", 0.125), (2, "d", 0.125), (3, "f", 0.5)]
    assert listed(result, "person", "missed") == [(1, "a", 0.625), (2, "c", 0.9375)]


def test_k_cuts_each_list_after_the_stable_tie_order():
    result = hand_mistakes(k=2)
    assert result["k"] == 2
    assert [e["id"] for e in result["classes"]["cat"]["false_positives"]] == ["a", "c"]
    assert [e["id"] for e in result["classes"]["dog"]["false_positives"]] == ["b", "c"]
    assert [e["id"] for e in result["classes"]["dog"]["missed"]] == ["a", "d"]
    assert [e["id"] for e in hand_mistakes(k=1)["classes"]["person"]["missed"]] == ["a"]


def test_entries_carry_ground_truth_and_the_labels_predicted_at_the_thresholds():
    result = hand_mistakes()
    assert result["thresholds"] == {"cat": 0.5, "dog": 0.5, "person": 0.75}
    assert result["classes"]["person"]["false_positives"][0] == {
        "rank": 1, "id": "f", "score": 0.75, "labels": ["dog"], "difficult": [],
        "predicted": ["person", "dog"],
    }  # fmt: skip
    assert result["classes"]["cat"]["missed"][1] == {
        "rank": 2, "id": "b", "score": 0.375, "labels": ["cat"], "difficult": ["person"],
        "predicted": ["dog"],
    }  # fmt: skip
    entries = [e for lists in result["classes"].values() for kind in lists.values() for e in kind]
    assert {e["id"]: e["predicted"] for e in entries} == PREDICTED
    assert {e["id"]: e["difficult"] for e in entries if e["difficult"]} == {
        "b": ["person"],
        "e": ["cat"],
    }
    assert {e["id"]: e["labels"] for e in entries if e["id"] in ("a", "d", "e")} == {
        "a": ["dog", "person"],
        "d": ["cat", "dog"],
        "e": [],
    }


def test_default_threshold_is_the_f1_best_global_one_of_metrics_json():
    # Macro F1 at 0.0 and 0.05 (every score >= 0.0625 is predicted): cat 2·2/(2·2+3) = 4/7,
    # dog 2·3/(2·3+3) = 2/3, person 4/7, mean 38/63; at 0.1 cat loses d. Ties go lower: 0.0.
    result = hand_mistakes(thresholds=None)
    assert result["thresholds"] == {"cat": 0.0, "dog": 0.0, "person": 0.0}
    metrics = compute_metrics(Scores(IDS, SCORES, LABELS, list(CLASSES)))
    assert metrics["best_threshold_f1"] == {"threshold": 0.0, "macro_f1": pytest.approx(38 / 63)}
    person_false_positives = result["classes"]["person"]["false_positives"]
    assert [e["predicted"] for e in person_false_positives] == [
        ["person", "dog", "cat"],  # f: .75, .5, .375
        ["person", "dog", "cat"],  # d: .5, .125, .0625
        ["cat", "dog", "person"],  # e: .75, .25, .125
    ]


def test_without_any_positive_the_threshold_falls_back_to_one_half():
    no_positives = np.where(LABELS == 1, 0, LABELS).astype(np.int8)
    result = mistakes(IDS, SCORES, no_positives, CLASSES, thresholds=None)
    assert result["thresholds"] == {"cat": 0.5, "dog": 0.5, "person": 0.5}
    assert all(not lists["missed"] for lists in result["classes"].values())
    assert result["classes"]["cat"]["false_positives"][0]["predicted"] == ["cat", "person"]


@pytest.mark.parametrize(
    ("k", "thresholds", "phrase"),
    [
        (0, None, "k >= 1"),
        (5, [0.5, 0.5], "one finite threshold per class (3)"),
        (5, [0.5, np.nan, 0.5], "one finite threshold per class (3)"),
    ],
)
def test_bad_k_or_thresholds_are_refused(k, thresholds, phrase):
    with pytest.raises(VocprojError, match=re.escape(phrase)):
        mistakes(IDS, SCORES, LABELS, CLASSES, k=k, thresholds=thresholds)


# ---------------------------------------------------------------- mistakes.json


def saved_scores(tmp_path: Path) -> Path:
    path = tmp_path / "scores_val.npz"
    save_scores(path, IDS, SCORES, LABELS, CLASSES)
    return path


def test_write_metrics_writes_mistakes_json_beside_top50(tmp_path: Path):
    out = tmp_path / "report"
    write_metrics(saved_scores(tmp_path), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [METRICS_FILE, MISTAKES_FILE, TOP_K_FILE]
    )
    written = json.loads((out / MISTAKES_FILE).read_text())
    assert written == hand_mistakes(k=20, thresholds=None)
    assert written["k"] == 20 and list(written["classes"]) == list(CLASSES)
    scores = load_scores(tmp_path / "scores_val.npz")
    np.testing.assert_array_equal(scores.scores, SCORES)  # the hand values survive float32


def test_metrics_command_writes_mistakes_json(tmp_path: Path):
    scores, out = saved_scores(tmp_path), tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "vocproj", "metrics", str(scores), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / TOP_K_FILE).is_file()
    written = json.loads((out / MISTAKES_FILE).read_text())
    assert [e["id"] for e in written["classes"]["cat"]["false_positives"]] == ["a", "c", "f"]
    assert [e["id"] for e in written["classes"]["dog"]["missed"]] == ["a", "d", "f"]
