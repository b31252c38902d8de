"""Dataset layouts: the exports annotation tools write, their class lists, and train/val splits.

Three layouts of Pascal VOC XML are read in place, never written to:

- ``devkit``: ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``: the VOC devkit
  (also nested as ``VOC<year>/`` or ``VOCdevkit/VOC<year>/``) and CVAT's "PASCAL VOC 1.1"
  export, with its ``labelmap.txt`` and, for a task without subsets, ``default.txt``. Without
  any split list, every XML of ``Annotations/`` joins one split, ``all``;
- ``flat``: images with their XML side by side, in one folder and its subfolders (labelImg);
  one split, ``all``;
- ``roboflow``: Roboflow's "Pascal VOC" export, one flat folder per split: ``train/``,
  ``valid/``, ``test/``.

An image's id is its split list's line (devkit), else its path inside the export without the
extension, with ``/`` between folders (``more/img_031``, ``train/IMG_0001_jpg.rf.3fa…``). An
XML's ``<filename>`` is followed when it names an image that exists (in the XML's folder, or
in ``JPEGImages/``), else the XML is paired with the image of its own stem. Images may be
``.jpg``, ``.jpeg`` or ``.png``, in any letter case.

An XML whose image does not exist is listed and left out. An image without XML is listed and
either left out or, as a negative (``data.images_without_xml: negative``), labelled absent for
every class: it stays in its split, so it joins the pool before vocproj draws train and val
from it, like any annotated image (`Export.images`).

When the export does not bring both the run's splits, `train_val_splits` draws them from the
export's one split by iterative stratification and writes the lists where they can be read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from vocproj.data.voc import (
    CLASSES,
    DIFFICULT_ONLY,
    PRESENT,
    Annotation,
    LabelledSplit,
    UnreadableAnnotation,
    check_class_names,
    labels_from_objects,
    read_annotation,
)
from vocproj.errors import DatasetError
from vocproj.files import read_text
from vocproj.io import atomic_write_text

Layout = Literal["devkit", "flat", "roboflow"]
ImagesWithoutXml = Literal["skip", "negative"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
LAYOUT_NAMES: dict[str, str] = {
    "devkit": "VOC devkit tree: Annotations/, JPEGImages/, ImageSets/Main/ (also CVAT's "
    "PASCAL VOC 1.1)",
    "flat": "images with their XML side by side (labelImg)",
    "roboflow": "Roboflow's Pascal VOC export: train/, valid/, test/ folders",
}
EXPECTED = (
    "expected a devkit tree (Annotations/, JPEGImages/, ImageSets/Main/: the VOC devkit or "
    "CVAT's PASCAL VOC 1.1 export), Roboflow's train/ valid/ test/ folders of images and XML, "
    "or images with their XML side by side (labelImg)"
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
ROBOFLOW_SPLITS = ("train", "valid", "test")
POOL = "all"  # the one split of a flat folder or of a devkit tree without split lists
LABELMAP = "labelmap.txt"
BACKGROUND = "background"  # CVAT's labelmap always lists the segmentation background first
SPLIT_RECORD = "split.json"
SPLIT_METHOD = (
    "iterative stratification (iterstrat MultilabelStratifiedShuffleSplit) of the present "
    "labels and a no-class column, pool sorted by id; then each class with 2+ positives "
    "given one in train and one in val"
)
LISTED = 10  # file names describe_export lists before "... and N more"

Objects = tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class AnnotatedImage:
    """One image of an export: its id, its file, its XML (None: it has none) and its objects."""

    id: str
    image_path: Path
    xml_path: Path | None
    objects: Objects = ()


@dataclass(frozen=True)
class Export:
    """An annotation tool's export as found on disk: its own splits, and what did not pair up.

    `splits` holds each split's annotated images, `unannotated` the images of the same split
    that have no XML; `root` is the folder the layout was read from (a devkit tree may sit in
    `folder/VOCdevkit/VOC<year>`).
    """

    folder: Path
    layout: Layout
    root: Path
    splits: dict[str, list[AnnotatedImage]]
    unannotated: dict[str, list[AnnotatedImage]]
    xml_without_image: list[Path]
    labelmap: tuple[str, ...] | None = None
    unreadable: tuple[tuple[Path, str], ...] = ()  # annotation files left out, with the reason

    @property
    def images_without_xml(self) -> list[Path]:
        return sorted({image.image_path for split in self.unannotated.values() for image in split})

    @property
    def annotated(self) -> list[AnnotatedImage]:
        """Every annotated image once (a devkit's trainval repeats its train and val), by id."""
        unique = {image.xml_path: image for split in self.splits.values() for image in split}
        return sorted(unique.values(), key=lambda image: image.id)

    @property
    def difficult_objects(self) -> int:
        return sum(difficult for image in self.annotated for _, difficult in image.objects)

    def images(self, split: str, negatives: bool = False) -> list[AnnotatedImage]:
        """A split's annotated images, and its images without XML when `negatives`, by id."""
        images = self.splits[split] + (self.unannotated[split] if negatives else [])
        return sorted(images, key=lambda image: image.id)


def _existing_folder(folder: str | os.PathLike[str]) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise DatasetError(
            f"export folder {path} does not exist. Point the profile's data.export_dir at the "
            f"folder the annotation tool exported (unzipped)."
        )
    return path


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_xml(path: Path) -> bool:
    return path.suffix.lower() == ".xml"


def _files(folder: Path) -> list[Path]:
    """Every file under `folder`, sorted, leaving out hidden ones and macOS zip leftovers."""
    found = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d != "__MACOSX")
        found += [Path(directory) / name for name in names if not name.startswith(".")]
    return sorted(found)


def _devkit_root(folder: Path) -> Path | None:
    """`folder` if it holds Annotations/, else the one VOC<year>/ or VOCdevkit/VOC<year>/ in it."""
    if (folder / "Annotations").is_dir():
        return folder
    nested = {*folder.glob("VOC*/Annotations"), *folder.glob("VOCdevkit/VOC*/Annotations")}
    trees = sorted(path.parent for path in nested if path.is_dir())
    if len(trees) > 1:
        raise DatasetError(
            f"{folder} holds several devkit trees ({', '.join(map(str, trees))}): point the "
            f"profile's data.export_dir at one of them."
        )
    return trees[0] if trees else None


def _in_roboflow_split(folder: Path, xml: Path) -> bool:
    parts = xml.relative_to(folder).parts
    return len(parts) == 2 and parts[0] in ROBOFLOW_SPLITS


def detect_layout(folder: str | os.PathLike[str]) -> Layout:
    """Which layout an export folder has: devkit, roboflow or flat (see the module's text)."""
    root = _existing_folder(folder)
    if _devkit_root(root) is not None:
        return "devkit"
    files = _files(root)
    if not files:
        raise DatasetError(
            f"export folder {root} is empty: unzip the annotation tool's export into it, or "
            f"point the profile's data.export_dir at the folder that holds it."
        )
    xmls = [path for path in files if _is_xml(path)]
    if not xmls:
        images = sum(map(_is_image, files))
        raise DatasetError(
            f"found no Pascal VOC XML in {root} ({len(files)} files, {images} images): {EXPECTED}. "
            f"Export the annotations in the Pascal VOC format, or point data.export_dir at them."
        )
    return "roboflow" if all(_in_roboflow_split(root, xml) for xml in xmls) else "flat"


def scan_export(folder: str | os.PathLike[str], layout: str = "auto") -> Export:
    """Read an export in place: pair each XML with its image, per split (see the module's text)."""
    root = _existing_folder(folder)
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"layout must be auto or one of {LAYOUTS}, got {layout!r}")
    found = detect_layout(root) if layout == "auto" else layout
    scan = {"devkit": _scan_devkit, "flat": _scan_flat, "roboflow": _scan_roboflow}[found]
    export = scan(root)
    if not any(export.splits.values()) and not any(export.unannotated.values()):
        raise DatasetError(
            f"found no images in {root} read as the {found} layout ({LAYOUT_NAMES[found]}); "
            f"{EXPECTED}. Check data.export_dir, or set data.layout: auto."
        )
    return export


def _stem_key(path: Path) -> Path:
    return path.parent / path.stem


def _image_index(images: Iterable[Path]) -> dict[Path, list[Path]]:
    """Images by their path without the extension."""
    index: dict[Path, list[Path]] = {}
    for image in sorted(images):
        index.setdefault(_stem_key(image), []).append(image)
    return index


def _find_image(
    index: dict[Path, list[Path]], folder: Path, filename: str | None, stem: Path
) -> Path | None:
    """The image `<filename>` names in `folder` if it exists, else the first one of `stem`."""
    if filename:
        for named in (folder / filename, folder / Path(filename).name):
            if named in index.get(_stem_key(named), ()):
                return named
    candidates = index.get(stem, [])
    return candidates[0] if candidates else None


def _claim(claimed: dict[Path, Path], image: Path, xml: Path) -> None:
    """Record that `xml` annotates `image`; two XML for one image is an error."""
    if image in claimed:
        raise DatasetError(
            f"{claimed[image]} and {xml} both annotate the image {image}: remove one of them, or "
            f"point its <filename> at its own image."
        )
    claimed[image] = xml


def _check_unique_ids(images: Iterable[AnnotatedImage]) -> None:
    seen: dict[str, Path] = {}
    for image in images:
        if image.id in seen:
            raise DatasetError(
                f"two images of the export have the id {image.id!r}: {seen[image.id]} and "
                f"{image.image_path}. An id is the file name without its extension, so each image "
                f"needs a name of its own: rename or remove one of them."
            )
        seen[image.id] = image.image_path


def _image_id(base: Path, image: Path) -> str:
    return _stem_key(image.relative_to(base)).as_posix()


@dataclass
class Pairing:
    """What pairing XML with images under a folder found."""

    annotated: list[AnnotatedImage]
    unannotated: list[AnnotatedImage]
    orphans: list[Path]  # XML without an image
    unreadable: list[tuple[Path, str]]  # XML left out (their images too), with the reason


def read_export_annotation(xml: Path, export_root: Path) -> Annotation:
    """read_annotation, refusing a `<filename>` that points outside the export."""
    annotation = read_annotation(xml)
    name = annotation.filename
    if name and (Path(name).is_absolute() or not _inside(xml.parent / name, export_root)):
        raise UnreadableAnnotation(xml, f"names <filename> {name!r}, outside the export")
    return annotation


def _inside(path: Path, folder: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


def _pair_side_by_side(base: Path, folder: Path) -> Pairing:
    """Annotated images, images without XML, XML without image and unreadable XML under
    `folder`; an image whose XML is unreadable is left out with it."""
    files = _files(folder)
    index = _image_index(path for path in files if _is_image(path))
    found = Pairing([], [], [], [])
    claimed: dict[Path, Path] = {}
    for xml in filter(_is_xml, files):
        try:
            annotation = read_export_annotation(xml, base)
        except UnreadableAnnotation as err:
            found.unreadable.append((xml, err.reason))
            for image in index.get(_stem_key(xml), []):
                claimed.setdefault(image, xml)
            continue
        image = _find_image(index, xml.parent, annotation.filename, _stem_key(xml))
        if image is None:
            found.orphans.append(xml)
            continue
        _claim(claimed, image, xml)
        objects = tuple(annotation.objects)
        found.annotated.append(AnnotatedImage(_image_id(base, image), image, xml, objects))
    found.unannotated = [
        AnnotatedImage(_image_id(base, image), image, None)
        for images in index.values()
        for image in images
        if image not in claimed
    ]
    _check_unique_ids(found.annotated + found.unannotated)
    return found


def _scan_flat(folder: Path) -> Export:
    found = _pair_side_by_side(folder, folder)
    return Export(
        folder, "flat", folder, {POOL: found.annotated}, {POOL: found.unannotated}, found.orphans,
        _read_labelmap(folder), tuple(found.unreadable),
    )  # fmt: skip


def _scan_roboflow(folder: Path) -> Export:
    splits, unannotated, orphans, unreadable = {}, {}, [], []
    for name in ROBOFLOW_SPLITS:
        if (folder / name).is_dir():
            found = _pair_side_by_side(folder, folder / name)
            splits[name], unannotated[name] = found.annotated, found.unannotated
            orphans += found.orphans
            unreadable += found.unreadable
    if not splits:
        raise DatasetError(
            f"{folder} has none of Roboflow's split folders train/, valid/, test/; {EXPECTED}. "
            f"Set data.layout: auto, or point data.export_dir at the unzipped Roboflow export."
        )
    return Export(folder, "roboflow", folder, splits, unannotated, orphans, None, tuple(unreadable))


def _scan_devkit(folder: Path) -> Export:
    root = _devkit_root(folder)
    if root is None:
        raise DatasetError(
            f"{folder} is not a devkit tree: {folder / 'Annotations'} is missing; {EXPECTED}. "
            f"Set data.layout: auto, or point data.export_dir at the tree."
        )
    jpeg = root / "JPEGImages"
    if not jpeg.is_dir():
        raise DatasetError(
            f"{root} has Annotations/ but no JPEGImages/: export again with the images (CVAT: "
            f"'Save images'), or copy them into {jpeg}."
        )
    index = _image_index(path for path in _files(jpeg) if _is_image(path))
    read = cache(lambda xml: read_export_annotation(xml, root))
    lists = _split_lists(root / "ImageSets" / "Main")
    splits, unannotated, orphans, unreadable = {}, {}, set(), {}
    for name, path in lists.items():
        found = _read_devkit_split(root, index, _read_list(path), path, read)
        splits[name], unannotated[name], missing, refused = found
        orphans.update(missing)
        unreadable.update(refused)
    if unreadable:  # listed in a split: the run cannot go on without them
        raise DatasetError(_listed_but_unreadable(unreadable, root))
    if not lists:
        annotations = root / "Annotations"
        ids = [_image_id(annotations, xml) for xml in _files(annotations) if _is_xml(xml)]
        annotated, _, missing, refused = _read_devkit_split(root, index, ids, None, read)
        claimed = {image.image_path for image in annotated}
        claimed |= {image for xml in refused for image in index.get(jpeg / xml.stem, [])}
        rest = [path for paths in index.values() for path in paths if path not in claimed]
        splits[POOL] = annotated
        unannotated[POOL] = [AnnotatedImage(_image_id(jpeg, p), p, None) for p in rest]
        _check_unique_ids(annotated + unannotated[POOL])
        orphans.update(missing)
        unreadable.update(refused)
    return Export(
        folder, "devkit", root, splits, unannotated, sorted(orphans), _read_labelmap(root),
        tuple(sorted(unreadable.items())),
    )  # fmt: skip


def _listed_but_unreadable(unreadable: Mapping[Path, str], root: Path) -> str:
    lines = [f"  {_relative(xml, root)}: {reason}" for xml, reason in sorted(unreadable.items())]
    return (
        f"{len(unreadable)} annotation file(s) of {root} that its split lists name cannot be "
        "used:\n" + "\n".join(lines) + "\nfix or replace them, or remove their ids from the "
        "lists in ImageSets/Main, then run again."
    )


def _split_lists(main: Path) -> dict[str, Path]:
    """ImageSets/Main's split lists by name, without the per-class `<class>_<split>.txt` files."""
    texts = {path.stem: path for path in sorted(main.glob("*.txt"))} if main.is_dir() else {}
    return {name: path for name, path in texts.items() if not _is_class_file(name, path, texts)}


def _is_class_file(name: str, path: Path, texts: dict[str, Path]) -> bool:
    """`<class>_<split>.txt` beside `<split>.txt` (CVAT's may be empty), or `<id> <flag>` lines."""
    head, _, split = name.rpartition("_")
    if head and split in texts:
        return True
    first = next((line for line in read_text(path).splitlines() if line.strip()), "")
    return len(first.split()) == 2 and first.split()[1] in ("1", "0", "-1")


def _read_list(path: Path) -> list[str]:
    """The ids of a split list, one a line; an id listed twice is an error."""
    lines: dict[str, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        image_id = line.strip()
        if image_id in lines:
            raise DatasetError(
                f"{path} lists the id {image_id!r} twice (lines {lines[image_id]} and {number}): "
                f"remove one of the lines."
            )
        if image_id:
            lines[image_id] = number
    return list(lines)


def _read_devkit_split(
    root: Path,
    index: dict[Path, list[Path]],
    ids: Sequence[str],
    source: Path | None,
    read: Callable[[Path], Annotation],
) -> tuple[list[AnnotatedImage], list[AnnotatedImage], list[Path], dict[Path, str]]:
    """Annotated images, images without XML, XML without image, and unreadable XML (with the
    reason) of a devkit split's ids."""
    jpeg = root / "JPEGImages"
    annotated, unannotated, orphans, claimed, unreadable = [], [], [], {}, {}
    for image_id in ids:
        xml = root / "Annotations" / f"{image_id}.xml"
        try:
            annotation = read(xml) if os.path.lexists(xml) else None
        except UnreadableAnnotation as err:
            unreadable[xml] = err.reason
            continue
        filename = annotation.filename if annotation else None
        image = _find_image(index, jpeg, filename, jpeg / image_id)
        if image is None and annotation is None:
            raise DatasetError(
                f"{source} lists the id {image_id!r}, but neither {xml} nor an image "
                f"{jpeg / image_id}.jpg/.jpeg/.png exists: remove the line or restore the files."
            )
        if image is None:
            orphans.append(xml)
        elif annotation is None:
            unannotated.append(AnnotatedImage(image_id, image, None))
        else:
            _claim(claimed, image, xml)
            annotated.append(AnnotatedImage(image_id, image, xml, tuple(annotation.objects)))
    return annotated, unannotated, orphans, unreadable


def _read_labelmap(root: Path) -> tuple[str, ...] | None:
    """The class names of CVAT's labelmap.txt (`name:r,g,b:parts:actions`), without background."""
    path = root / LABELMAP
    if not path.is_file():
        return None
    names: list[str] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name = line.split(":")[0].strip()
        if not name or name in names:
            problem = "has no label name" if not name else f"lists the label {name!r} again"
            raise DatasetError(f"{path}, line {number} {problem}: fix or remove the line.")
        names.append(name)
    return tuple(name for name in names if name != BACKGROUND)


def dataset_classes(export: Export) -> tuple[str, ...]:
    """labelmap.txt's names in its order when the export has one, else every `<name>`, sorted."""
    if export.labelmap:
        return export.labelmap
    names = sorted({name for image in export.annotated for name, _ in image.objects})
    if not names:
        raise DatasetError(
            f"the annotations of {export.folder} name no class: list the classes in the "
            f"profile's data.classes, or annotate some objects."
        )
    return tuple(names)


def check_names(images: Iterable[AnnotatedImage], classes: Sequence[str]) -> None:
    """Raise a DatasetError naming the XML when one names a class outside `classes`."""
    for image in images:
        if image.xml_path is not None:
            check_class_names(Annotation(image.xml_path, None, list(image.objects)), classes)


def resolve_classes(setting: str | Sequence[str], export: Export) -> tuple[str, ...]:
    """The run's class list from data.classes (voc, dataset or a list); every name must be in it."""
    if setting == "voc":
        classes = CLASSES
    elif setting == "dataset":
        classes = dataset_classes(export)
    elif isinstance(setting, str):
        raise ValueError(f"classes must be 'voc', 'dataset' or a list, got {setting!r}")
    else:
        classes = tuple(setting)
    check_names(export.annotated, classes)
    return classes


def train_val_splits(
    export: Export,
    train_split: str,
    val_split: str,
    val_fraction: float,
    seed: int,
    splits_dir: str | os.PathLike[str] | None,
    classes: Sequence[str],
    *,
    images_without_xml: ImagesWithoutXml = "skip",
) -> dict[str, list[AnnotatedImage]]:
    """The run's train and val images: the export's two splits of those names, or a drawn split.

    Without both, the export's one split is the pool: sorted by id, it is split by iterative
    stratification (`draw_split`), and unless `splits_dir` is None the lists are written to
    `splits_dir/<train_split>.txt`, `<val_split>.txt` and `split.json` (rewritten only when
    their content changes). With `images_without_xml="negative"`, images without XML belong
    to their split like any other, so they are drawn too.
    """
    if images_without_xml not in get_args(ImagesWithoutXml):
        raise ValueError(f"images_without_xml must be skip or negative, got {images_without_xml!r}")
    negatives = images_without_xml == "negative"
    if train_split == val_split:
        raise DatasetError(
            f"data.train_split and data.val_split are both {train_split!r}: name two splits."
        )
    if train_split in export.splits and val_split in export.splits:
        chosen = {name: export.images(name, negatives) for name in (train_split, val_split)}
        _check_splits(export, chosen)
        return chosen
    pool_name = _pool_name(export, train_split, val_split)
    pool = export.images(pool_name, negatives)
    check_names(pool, classes)
    if len(pool) < 2:
        raise DatasetError(
            f"split {pool_name!r} of {export.folder} has {len(pool)} image(s): vocproj needs at "
            f"least 2 to draw train and val from it."
        )
    train, val = draw_split(pool, classes, val_fraction, seed)
    drawn = {train_split: train, val_split: val}
    if splits_dir is not None:
        record = {
            "method": SPLIT_METHOD, "seed": seed, "val_fraction": val_fraction,
            "pool": pool_name, "images_without_xml": images_without_xml,
            "classes": list(classes), "images": {name: len(i) for name, i in drawn.items()},
            "positives": _positives(drawn, classes),
        }  # fmt: skip
        _write_split_files(Path(splits_dir), drawn, record)
    return drawn


def _check_splits(export: Export, chosen: dict[str, list[AnnotatedImage]]) -> None:
    """The export's two splits each hold images and share none."""
    (train_name, train), (val_name, val) = chosen.items()
    for name, images in chosen.items():
        if not images:
            raise DatasetError(
                f"split {name!r} of {export.folder} holds no images: choose another "
                f"data.train_split / data.val_split, or add images to it."
            )
    shared = sorted({image.id for image in train} & {image.id for image in val})
    if shared:
        raise DatasetError(
            f"splits {train_name!r} and {val_name!r} of {export.folder} share {len(shared)} "
            f"images (e.g. {shared[0]!r}): set data.train_split and data.val_split to two "
            f"splits without images in common."
        )


def _pool_name(export: Export, train_split: str, val_split: str) -> str:
    """The export's one split, which vocproj divides into train and val."""
    names = list(export.splits)
    if len(names) == 1:
        return names[0]
    raise DatasetError(
        f"{export.folder} has the splits {', '.join(names)}, but not both data.train_split "
        f"({train_split!r}) and data.val_split ({val_split!r}): set them to two of those splits "
        f"in the profile."
    )


def draw_split(
    pool: Sequence[AnnotatedImage], classes: Sequence[str], val_fraction: float, seed: int
) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """Split `pool` (in its order) into train and val by seeded iterative stratification.

    The stratified labels are the present ones of each class, plus one column for images of
    no class so negatives spread too; then each class with two positives or more is given one
    on each side (moving an image whose classes all keep a positive where it leaves).
    """
    labels = np.stack([labels_from_objects(image.objects, classes) for image in pool])
    present = labels == PRESENT
    targets = np.column_stack([present, ~present.any(axis=1)]).astype(int)
    splitter = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=val_fraction, random_state=seed
    )
    _, val_index = next(splitter.split(np.zeros(len(pool)), targets))
    in_val = np.zeros(len(pool), dtype=bool)
    in_val[val_index] = True
    for c in np.flatnonzero(present.sum(axis=0) >= 2):
        for to_val in (True, False):
            if not (present[:, c] & (in_val == to_val)).any():
                _move_one(present, in_val, c, to_val)
    train = [image for image, v in zip(pool, in_val, strict=True) if not v]
    val = [image for image, v in zip(pool, in_val, strict=True) if v]
    return train, val


def _move_one(present: np.ndarray, in_val: np.ndarray, c: int, to_val: bool) -> None:
    """Move one positive of class `c` to the side `to_val`, the one with the fewest classes."""
    source = in_val != to_val
    left = present[source].sum(axis=0)
    movable = [i for i in np.flatnonzero(source & present[:, c]) if (left[present[i]] >= 2).all()]
    if movable:
        in_val[min(movable, key=lambda i: (present[i].sum(), i))] = to_val


def _positives(
    splits: dict[str, list[AnnotatedImage]], classes: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Images with a present object, per class and split."""
    counts = {
        name: (labelled_split(name, images, classes).labels == PRESENT).sum(axis=0)
        for name, images in splits.items()
    }
    return {cls: {name: int(counts[name][c]) for name in splits} for c, cls in enumerate(classes)}


def _write_split_files(
    splits_dir: Path, drawn: dict[str, list[AnnotatedImage]], record: dict[str, object]
) -> None:
    """Write the drawn lists and their record, leaving files that already say the same."""
    texts = {f"{name}.txt": "".join(f"{i.id}\n" for i in images) for name, images in drawn.items()}
    texts[SPLIT_RECORD] = json.dumps(record, indent=2, sort_keys=True) + "\n"
    for name, text in texts.items():
        path = splits_dir / name
        if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
            atomic_write_text(path, text)


def labelled_split(
    name: str, images: Sequence[AnnotatedImage], classes: Sequence[str]
) -> LabelledSplit:
    """A LabelledSplit of `images`; an image without XML has no objects, so it is all absent."""
    check_names(images, classes)
    rows = [labels_from_objects(image.objects, classes) for image in images]
    labels = np.stack(rows) if rows else np.zeros((0, len(classes)), dtype=np.int8)
    ids, paths = [i.id for i in images], [i.image_path for i in images]
    return LabelledSplit(name, tuple(classes), ids, paths, [i.xml_path for i in images], labels)


def class_warnings(splits: Sequence[LabelledSplit]) -> list[str]:
    """One line for each class without a positive image in a split, naming both."""
    return [
        f"class {name!r} has no positive image in {split.name} ({len(split.ids)} images): "
        f"add images of it there, or choose or draw other splits"
        for split in splits
        for c, name in enumerate(split.classes)
        if not (split.labels[:, c] == PRESENT).any()
    ]


def describe_export(
    export: Export, classes: Sequence[str], splits: Mapping[str, Sequence[AnnotatedImage]]
) -> str:
    """What init-profile prints: the export, the run's splits, counts per class, what is off."""
    labelled = [labelled_split(name, images, classes) for name, images in splits.items()]
    own = ", ".join(
        f"{name} {len(images)}" + _without_xml(len(export.unannotated[name]))
        for name, images in export.splits.items()
    )
    negatives = any(image.xml_path is None for images in splits.values() for image in images)
    fate = "counted as negatives" if negatives else "left out"
    lines = [
        f"export: {export.folder}",
        f"layout: {export.layout} ({LAYOUT_NAMES[export.layout]})",
        f"export splits (images): {own}",
        f"run splits (images): {', '.join(f'{s.name} {len(s.ids)}' for s in labelled)}",
        f"classes ({len(classes)}): {', '.join(classes)}",
        "",
        *_class_table(labelled),
        "",
        f"difficult objects: {export.difficult_objects}",
        *_listing(f"images without XML, {fate}", export.images_without_xml, export.folder),
        *_listing("XML without an image, left out", export.xml_without_image, export.folder),
        *_reasons("unreadable XML, left out with their images", export.unreadable, export.folder),
    ]
    warnings = class_warnings(labelled)
    lines += ["warnings:", *(f"  {warning}" for warning in warnings)] if warnings else []
    return "\n".join(lines) + "\n"


def _without_xml(count: int) -> str:
    return f" (+{count} without XML)" if count else ""


def _class_table(splits: Sequence[LabelledSplit]) -> list[str]:
    """Per class and split: images with the class present, and with it difficult only."""
    classes = splits[0].classes
    headers = [h for s in splits for h in (s.name, f"{s.name} difficult-only")]
    columns = [
        (s.labels == value).sum(axis=0) for s in splits for value in (PRESENT, DIFFICULT_ONLY)
    ]
    width = max(len("class"), *map(len, classes))
    rows = [f"{'class':<{width}}  " + "  ".join(f"{h:>5}" for h in headers)]
    for c, name in enumerate(classes):
        cells = (
            f"{int(column[c]):>{max(len(h), 5)}}"
            for h, column in zip(headers, columns, strict=True)
        )
        rows.append(f"{name:<{width}}  " + "  ".join(cells))
    return rows


def _listing(title: str, paths: Sequence[Path], folder: Path) -> list[str]:
    """A titled list of files relative to `folder`: the first LISTED, then how many more."""
    if not paths:
        return [f"{title}: none"]
    return _titled(title, [_relative(path, folder) for path in paths])


def _reasons(title: str, files: Sequence[tuple[Path, str]], folder: Path) -> list[str]:
    """A titled list of files with why each was left out, one line each; nothing if none."""
    if not files:
        return []
    return _titled(title, [f"{_relative(path, folder)}: {reason}" for path, reason in files])


def _titled(title: str, lines: Sequence[str]) -> list[str]:
    """`title (N):`, then the first LISTED lines indented, then how many more."""
    more = [f"  ... and {len(lines) - LISTED} more"] if len(lines) > LISTED else []
    return [f"{title} ({len(lines)}):", *(f"  {line}" for line in lines[:LISTED]), *more]


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)
