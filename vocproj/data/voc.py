"""The VOC annotation format: XML and the devkit's ImageSets → labels, and the Dataset.

The 20 PASCAL VOC class names are the default class list; a run may bring its own (see
`vocproj/data/layouts.py`), and everything here takes the list it is given.

Inside vocproj a label is 1 = at least one non-difficult object of the class, 0 = absent,
-1 = only difficult objects of the class. The devkit's per-class files
`ImageSets/Main/<class>_<split>.txt` write the same facts in their own values, 1 = present,
-1 = absent, 0 = only difficult objects; `read_class_file` and `write_class_file` convert at
that boundary, both ways, and nowhere else.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import numpy as np
import torch
from defusedxml import DefusedXmlException, ElementTree
from PIL import Image, UnidentifiedImageError

from vocproj.config import DIFFICULT_MODES, DifficultMode
from vocproj.errors import DatasetError, RefusedFile
from vocproj.files import (
    MAX_IMAGE_BYTES,
    MAX_TEXT_BYTES,
    first_non_utf8,
    read_regular_file,
    read_text,
)

CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def describe_classes(classes: Sequence[str] | None) -> str:
    """A class list for a message: all of it, in order."""
    if classes is None:
        return "no recorded classes"
    return f"{len(classes)} classes [{', '.join(classes)}]"


PRESENT, ABSENT, DIFFICULT_ONLY = 1, 0, -1
# The devkit's per-class file values (1 present, -1 absent, 0 difficult only) ↔ vocproj's labels.
DEVKIT_TO_LABEL: dict[int, int] = {1: PRESENT, -1: ABSENT, 0: DIFFICULT_ONLY}
LABEL_TO_DEVKIT: dict[int, int] = {label: flag for flag, label in DEVKIT_TO_LABEL.items()}

FIX_DATA_HINT = (
    "re-extract the VOC archive with `python -m vocproj download --dataset NAME --root DIR`, "
    "point the profile's data.root at a good devkit tree, or regenerate the sample data with "
    "`python -m vocproj sample --out DIR`"
)


def jpeg_path(voc_root: str | os.PathLike[str], image_id: str) -> Path:
    """Where a VOC tree keeps the picture of `image_id`."""
    return Path(voc_root) / "JPEGImages" / f"{image_id}.jpg"


def check_voc_root(voc_root: str | os.PathLike[str]) -> Path:
    """Return `voc_root` as a Path after checking it looks like a devkit VOC<year> directory."""
    root = Path(voc_root)
    if not root.is_dir():
        raise DatasetError(
            f"VOC root {root} does not exist. Point the profile's data.root at the folder that "
            f"holds VOCdevkit/{root.name} (and data.year at its year), or {FIX_DATA_HINT}."
        )
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        if not (root / sub).is_dir():
            raise DatasetError(
                f"{root} is not a VOC devkit directory: {root / sub} is missing; {FIX_DATA_HINT}."
            )
    return root


def read_split_ids(voc_root: str | os.PathLike[str], split: str) -> list[str]:
    """Read the image ids listed in `ImageSets/Main/<split>.txt`."""
    path = check_voc_root(voc_root) / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(
            f"split file {path} is missing. Use a split that exists (train, val, trainval) "
            f"or {FIX_DATA_HINT}."
        )
    ids = [line.split()[0] for line in read_text(path).splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"split file {path} lists no images; {FIX_DATA_HINT}.")
    return ids


def _text(element: Element, tag: str, xml_path: Path) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(
            f"annotation {xml_path} has an <object> without <{tag}>; {FIX_DATA_HINT}."
        )
    return child.text.strip()


def _is_difficult(obj: Element, xml_path: Path) -> bool:
    flag = obj.findtext("difficult", default="0").strip() or "0"
    try:
        return float(flag) != 0
    except ValueError:
        raise DatasetError(
            f"annotation {xml_path} has <difficult>{flag}</difficult>, expected 0 or 1; "
            f"{FIX_DATA_HINT}."
        ) from None


@dataclass(frozen=True)
class Annotation:
    """One annotation file: the image it names (`<filename>`, if any) and its objects."""

    path: Path
    filename: str | None
    objects: list[tuple[str, bool]]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.objects]


class UnreadableAnnotation(DatasetError):
    """An annotation file that is not a plain VOC XML: `reason` says why in a few words."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"annotation {path} {reason}; fix or remove the file, or {FIX_DATA_HINT}.")


def read_annotation(xml_path: str | os.PathLike[str]) -> Annotation:
    """Read a VOC annotation file: `<filename>` and (class name, difficult) per `<object>`.

    Parts (`<part>` of a person), `<actions>`, `<pose>`, `<truncated>`, `<occluded>`, CVAT's
    `<attributes>` and box coordinates are not needed for classification and are ignored. A file
    that is empty, not a regular file, too large, not UTF-8 (unless it declares its encoding),
    not well-formed, or that declares a DOCTYPE or entities raises UnreadableAnnotation.
    """
    path = Path(xml_path)
    try:
        root = parse_xml(path, read_regular_file(path, MAX_TEXT_BYTES))
    except FileNotFoundError:
        raise DatasetError(
            f"annotation {path} is missing; {FIX_DATA_HINT}, or remove its id from the split file."
        ) from None
    except RefusedFile as err:
        raise UnreadableAnnotation(path, f"cannot be read: {err}") from None
    objects = [
        (_text(obj, "name", path), _is_difficult(obj, path)) for obj in root.findall("object")
    ]
    filename = (root.findtext("filename") or "").strip() or None
    return Annotation(path, filename, objects)


XML_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*\bencoding\s*=", re.IGNORECASE)


def parse_xml(path: Path, content: bytes) -> Element:
    """The root element of an annotation's bytes, or UnreadableAnnotation saying why not."""
    if not content.strip():
        raise UnreadableAnnotation(path, "is empty")
    problem = None if XML_DECLARED_ENCODING.match(content) else first_non_utf8(content)
    if problem:
        raise UnreadableAnnotation(path, f"is not UTF-8 ({problem}) and declares no other encoding")
    try:
        return ElementTree.fromstring(content, forbid_dtd=True)
    except DefusedXmlException:
        raise UnreadableAnnotation(
            path, "declares a DOCTYPE or entities, which a VOC annotation has no use for and "
            "vocproj refuses (an entity bomb has that shape)"
        ) from None  # fmt: skip
    except ParseError as err:
        raise UnreadableAnnotation(path, f"is not well-formed XML ({err})") from None


def check_class_names(annotation: Annotation, classes: Sequence[str]) -> None:
    """Raise a DatasetError naming the file when it names a class outside `classes`."""
    known = set(classes)
    for name in annotation.names:
        if name not in known:
            raise DatasetError(
                f"annotation {annotation.path} names the class {name!r}, which is not in the "
                f"run's class list ({', '.join(classes)}). Add it to the profile's data.classes, "
                f"use data.classes: dataset, or fix the file."
            )


def parse_annotation(
    xml_path: str | os.PathLike[str], classes: Sequence[str] = CLASSES
) -> list[tuple[str, bool]]:
    """Return (class name, difficult) for each top-level `<object>`, every name in `classes`."""
    annotation = read_annotation(xml_path)
    check_class_names(annotation, classes)
    return annotation.objects


def labels_from_objects(
    objects: Sequence[tuple[str, bool]], classes: Sequence[str] = CLASSES
) -> np.ndarray:
    """Turn (class, difficult) pairs into one int8 row of 1 / -1 / 0 per class of `classes`."""
    index = {name: i for i, name in enumerate(classes)}
    row = np.zeros(len(classes), dtype=np.int8)
    for name, difficult in objects:
        c = index[name]
        if not difficult:
            row[c] = PRESENT
        elif row[c] == ABSENT:
            row[c] = DIFFICULT_ONLY
    return row


@dataclass(frozen=True)
class LabelledSplit:
    """One split of a dataset: ids, where each image and its annotation are, N×C int8 labels.

    An image without annotation (an export's image counted as a negative) has None there.
    """

    name: str
    classes: tuple[str, ...]
    ids: list[str]
    image_paths: list[Path]
    annotation_paths: list[Path | None]
    labels: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.ids), len(self.classes))
        lengths = {len(self.ids), len(self.image_paths), len(self.annotation_paths)}
        if len(lengths) != 1 or self.labels.shape != shape:
            raise ValueError(f"split {self.name}: ids, image paths and labels {shape} disagree")


def read_devkit_split(
    voc_root: str | os.PathLike[str],
    split: str,
    classes: Sequence[str] = CLASSES,
    *,
    check_class_files: bool = True,
) -> LabelledSplit:
    """A devkit tree's split: ids from ImageSets/Main/<split>.txt, labels from the XML.

    Where the devkit's per-class `<class>_<split>.txt` files exist they are checked against the
    XML, and the first disagreement raises a DatasetError.
    """
    root = check_voc_root(voc_root)
    ids = read_split_ids(root, split)
    annotations = [root / "Annotations" / f"{image_id}.xml" for image_id in ids]
    labels = np.stack(
        [labels_from_objects(parse_annotation(a, classes), classes) for a in annotations]
    )
    if check_class_files:
        verify_class_files(root, split, ids, labels, classes)
    paths = [jpeg_path(root, image_id) for image_id in ids]
    return LabelledSplit(split, tuple(classes), ids, paths, list(annotations), labels)


def read_labels(
    voc_root: str | os.PathLike[str],
    split: str,
    *,
    classes: Sequence[str] = CLASSES,
    check_class_files: bool = True,
) -> tuple[list[str], np.ndarray]:
    """A devkit split's ids and their N×C int8 labels (see `read_devkit_split`)."""
    labelled = read_devkit_split(voc_root, split, classes, check_class_files=check_class_files)
    return labelled.ids, labelled.labels


def read_class_file(path: Path) -> dict[str, int]:
    """Read one devkit `<class>_<split>.txt` file into {id: vocproj label} (1 / 0 / -1)."""
    labels = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("1", "0", "-1"):
            raise DatasetError(
                f"{path}, line {number}: expected '<id> <1|-1|0>' (the devkit's present / absent "
                f"/ difficult only), got {line!r}; {FIX_DATA_HINT}."
            )
        labels[fields[0]] = DEVKIT_TO_LABEL[int(fields[1])]
    return labels


def write_class_file(path: Path, ids: Sequence[str], labels: np.ndarray) -> None:
    """Write one `<class>_<split>.txt` in the devkit's values from a column of vocproj labels."""
    pairs = zip(ids, labels, strict=True)
    lines = (f"{image_id} {LABEL_TO_DEVKIT[int(label)]:2d}\n" for image_id, label in pairs)
    path.write_text("".join(lines))


def write_class_files(
    main: Path,
    split: str,
    ids: Sequence[str],
    labels: np.ndarray,
    classes: Sequence[str] = CLASSES,
) -> None:
    """Write `<split>.txt` and every `<class>_<split>.txt` of a split into ImageSets/Main."""
    (main / f"{split}.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
    for c, name in enumerate(classes):
        write_class_file(main / f"{name}_{split}.txt", ids, labels[:, c])


DEVKIT_MEANING = {1: "present", -1: "absent", 0: "difficult only"}


def verify_class_files(
    root: Path,
    split: str,
    ids: Sequence[str],
    labels: np.ndarray,
    classes: Sequence[str] = CLASSES,
) -> None:
    """Check the per-class split files that exist agree with labels parsed from the XML."""
    for c, name in enumerate(classes):
        path = root / "ImageSets" / "Main" / f"{name}_{split}.txt"
        if not path.is_file():
            continue
        found_labels = read_class_file(path)
        for i, image_id in enumerate(ids):
            expected = int(labels[i, c])
            found = found_labels.get(image_id)
            if found != expected:
                raise DatasetError(
                    f"{path} disagrees with {root / 'Annotations' / (image_id + '.xml')}: "
                    f"image {image_id}, class {name}: {_devkit_words(found)} in the class file, "
                    f"{_devkit_words(expected)} in the XML. One of them is corrupt; "
                    f"{FIX_DATA_HINT}."
                )


def _devkit_words(label: int | None) -> str:
    """A label as the devkit writes it, with its meaning: `-1 (absent)`; `no line` if missing."""
    if label is None:
        return "no line"
    flag = LABEL_TO_DEVKIT[label]
    return f"{flag} ({DEVKIT_MEANING[flag]})"


def loss_targets(labels: np.ndarray, difficult: DifficultMode = "ignore") -> tuple[Any, Any]:
    """Return (target, mask) float32 arrays for the loss under a difficult-handling mode."""
    if difficult not in DIFFICULT_MODES:
        raise ValueError(f"difficult must be one of {DIFFICULT_MODES}, got {difficult!r}")
    present = labels == PRESENT
    if difficult == "ignore":
        return present.astype(np.float32), (labels != DIFFICULT_ONLY).astype(np.float32)
    target = (labels != ABSENT) if difficult == "positive" else present
    return target.astype(np.float32), np.ones_like(labels, dtype=np.float32)


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file fully decoded as RGB (grayscale, CMYK, palette and alpha converted)."""
    try:
        content = read_regular_file(path, MAX_IMAGE_BYTES)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                image.load()
                return image.convert("RGB")
    except RefusedFile as err:
        raise DatasetError(str(err)) from None
    except FileNotFoundError:
        raise DatasetError(
            f"image {path} is missing; {FIX_DATA_HINT}, or remove its id from the split file."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # fmt: skip
        raise DatasetError(
            f"image {path} cannot be read ({err}); {FIX_DATA_HINT}, or remove its id from the "
            f"split file."
        ) from None


class VOCClassification(torch.utils.data.Dataset):
    """A labelled split as (image, C-vector target, loss mask, id) items."""

    def __init__(
        self,
        labelled: LabelledSplit,
        transform: Callable[[Image.Image], Any] | None = None,
        difficult: DifficultMode = "ignore",
    ) -> None:
        self.labelled = labelled
        self.split = labelled.name
        self.classes = labelled.classes
        self.ids, self.labels = labelled.ids, labelled.labels
        self.transform = transform
        self.difficult = difficult
        self.targets, self.masks = loss_targets(self.labels, difficult)
        self._paths = dict(zip(labelled.ids, labelled.image_paths, strict=True))
        self._check_images_exist()

    def _check_images_exist(self) -> None:
        for image_id, path in self._paths.items():
            if not path.is_file():
                raise DatasetError(
                    f"image {path} is missing for id {image_id} of split {self.split}; "
                    f"{FIX_DATA_HINT}, or remove the id from the split file."
                )

    def image_path(self, image_id: str) -> Path:
        return self._paths[image_id]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor, torch.Tensor, str]:
        image_id = self.ids[index]
        image: Any = open_rgb(self.image_path(image_id))
        if self.transform is not None:
            image = self.transform(image)
        target = torch.from_numpy(self.targets[index])
        mask = torch.from_numpy(self.masks[index])
        return image, target, mask, image_id


def open_devkit_split(
    voc_root: str | os.PathLike[str],
    split: str,
    transform: Callable[[Image.Image], Any] | None = None,
    difficult: DifficultMode = "ignore",
    classes: Sequence[str] = CLASSES,
) -> VOCClassification:
    """The Dataset of a devkit tree's split (the 20 VOC classes unless told otherwise)."""
    return VOCClassification(read_devkit_split(voc_root, split, classes), transform, difficult)
