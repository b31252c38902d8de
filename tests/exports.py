"""Exports written the way annotation tools write them: CVAT, labelImg, Roboflow, real photos.

Each writer plans its images first (the objects of each image, its file names, its split),
writes them as the tool does, and returns the plan as a `Truth`: tests compare what vocproj
reads with what was written, never with a second reading by the code under test.

The pictures are 64×48, and each class draws its own coloured shape on a grey, noisy
background (apple: a red disc, banana: a yellow bar, cherry: a purple triangle, date: a green
cross, elderberry: a blue ring), so that a small model can learn the classes.
`Faults` injects the bad input users' exports hold.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("apple", "banana", "cherry", "date", "elderberry")
LABELMAP_ORDER = ("elderberry", "cherry", "apple", "banana", "date")  # a CVAT task's own order
WIDTH, HEIGHT = 64, 48
COLOURS = {
    "apple": (220, 30, 30), "banana": (240, 210, 30), "cherry": (150, 30, 170),
    "date": (30, 150, 60), "elderberry": (30, 70, 210),
}  # fmt: skip
SHAPES = {
    "apple": "disc", "banana": "bar", "cherry": "triangle", "date": "cross", "elderberry": "ring"
}  # fmt: skip
# CVAT's labelmap.txt colours: the VOC colormap, index 0 the segmentation background.
VOC_COLOURS = ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128))
ROBOFLOW_WEIGHTS = {"train": 7, "valid": 2, "test": 1}  # Roboflow's default 70/20/10
# The shape of the "billion laughs" XML: entities that expand into each other
ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>img_004.jpg</filename><object><name>&lol3;</name></object></annotation>
"""

Objects = tuple[tuple[str, bool], ...]
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Faults:
    """Bad input to write: how many of each, or whether."""

    images_without_xml: int = 0
    xml_without_image: int = 0
    difficult: int = 0  # images given one more object, difficult, of a class they lack
    duplicate_id: bool = False
    malformed_xml: bool = False
    unknown_class: str | None = None


@dataclass(frozen=True)
class Planned:
    """One annotated image as written: its file, its XML and its objects."""

    image: Path
    xml: Path
    objects: Objects


@dataclass
class Truth:
    """What a writer wrote, by split and id; `bad` holds the files each fault's error names."""

    folder: Path
    classes: tuple[str, ...]
    splits: dict[str, dict[str, Planned]] = field(default_factory=dict)
    without_xml: dict[str, dict[str, Path]] = field(default_factory=dict)
    xml_without_image: list[Path] = field(default_factory=list)
    bad: dict[str, tuple[Path, ...]] = field(default_factory=dict)

    @property
    def images_without_xml(self) -> list[Path]:
        return sorted(path for split in self.without_xml.values() for path in split.values())

    def labels(self, split: str, classes: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """Each image's expected labels: 1 present, -1 only difficult objects, 0 absent."""
        return {
            image_id: expected_labels(planned.objects, classes)
            for image_id, planned in self.splits[split].items()
        }


def expected_labels(objects: Objects, classes: Sequence[str]) -> tuple[int, ...]:
    """The labels the plan means, worked out here rather than by vocproj."""
    row = []
    for name in classes:
        flags = [difficult for cls, difficult in objects if cls == name]
        row.append(0 if not flags else -1 if all(flags) else 1)
    return tuple(row)


def plan_objects(n: int, rng: np.random.Generator, faults: Faults) -> list[list[tuple[str, bool]]]:
    """Objects per image: a class in turn, sometimes a second one, every 12th image empty."""
    plans: list[list[tuple[str, bool]]] = []
    for i in range(n):
        names = [CLASSES[i % len(CLASSES)]]
        if rng.random() < 0.4:
            names.append(CLASSES[int(rng.integers(len(CLASSES)))])
        plans.append([] if i % 12 == 11 else [(name, False) for name in dict.fromkeys(names)])
    for objects in plans[: faults.difficult]:
        lacking = next(name for name in CLASSES if name not in {cls for cls, _ in objects})
        objects.append((lacking, True))
    if faults.unknown_class:
        plans[1].append((faults.unknown_class, False))
    return plans


def draw_picture(objects: Objects, rng: np.random.Generator) -> tuple[Image.Image, list[Box]]:
    """A grey, noisy picture with each object's shape drawn in its class's colour; the boxes."""
    pixels = rng.normal(190, 12, (HEIGHT, WIDTH, 3)).clip(0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels)
    draw = ImageDraw.Draw(picture)
    boxes = []
    for name, difficult in objects:
        size = int(rng.integers(8, 11) if difficult else rng.integers(14, 22))
        x, y = int(rng.integers(0, WIDTH - size)), int(rng.integers(0, HEIGHT - size))
        box = (x, y, x + size, y + size)
        _draw_shape(draw, SHAPES.get(name, "square"), COLOURS.get(name, (90, 90, 90)), box)
        boxes.append(box)
    return picture, boxes


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, colour: tuple[int, ...], box: Box) -> None:
    x0, y0, x1, y1 = box
    third = (y1 - y0) // 3
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "bar":
        draw.rectangle((x0, y0 + third, x1, y1 - third), fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "cross":
        draw.rectangle((x0, y0 + third, x1, y1 - third), fill=colour)
        draw.rectangle((x0 + third, y0, x1 - third, y1), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=3)
    else:
        draw.rectangle(box, fill=colour)


def save_picture(picture: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, **({"quality": 90} if path.suffix.lower() != ".png" else {}))


Tree = list[tuple[str, "str | Tree"]]


def _xml(tag: str, content: str | Tree, indent: str, depth: int = 0) -> str:
    """An element as pretty-printed XML: children one a line, indented by `indent`."""
    pad = indent * depth
    if isinstance(content, str):
        return f"{pad}<{tag}>{escape(content)}</{tag}>\n"
    inner = "".join(_xml(child, text, indent, depth + 1) for child, text in content)
    return f"{pad}<{tag}>\n{inner}{pad}</{tag}>\n"


def write_xml(path: Path, tree: Tree, indent: str, *, malformed: bool = False) -> None:
    """Write an `<annotation>`; `malformed` cuts the file off halfway, as a crash would."""
    text = _xml("annotation", tree, indent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[: len(text) // 2] if malformed else text, encoding="utf-8")


def cvat_tree(filename: str, image_id: str, objects: Objects, boxes: Sequence[Box]) -> Tree:
    """CVAT's PASCAL VOC 1.1 XML (datumaro): float boxes, empty depth, CVAT's attributes."""
    folder = image_id[: image_id.find("_")] if "_" in image_id else ""
    size: Tree = [("width", str(WIDTH)), ("height", str(HEIGHT)), ("depth", "")]
    tree: Tree = [
        ("folder", folder), ("filename", filename),
        ("source", [("database", "Unknown"), ("annotation", "Unknown"), ("image", "Unknown")]),
        ("size", size), ("segmented", "0"),
    ]  # fmt: skip
    for (name, difficult), (x0, y0, x1, y1) in zip(objects, boxes, strict=True):
        bndbox: Tree = [("xmin", f"{x0:.1f}"), ("ymin", f"{y0:.1f}"),
                        ("xmax", f"{x1:.1f}"), ("ymax", f"{y1:.1f}")]  # fmt: skip
        attributes: Tree = [
            ("attribute", [("name", "occluded"), ("value", "false")]),
            ("attribute", [("name", "rotation"), ("value", "0.0")]),
        ]
        tree.append(("object", [
            ("name", name), ("truncated", "0"), ("occluded", "0"),
            ("difficult", str(int(difficult))), ("bndbox", bndbox), ("attributes", attributes),
        ]))  # fmt: skip
    return tree


def labelimg_tree(
    filename: str, folder: str, path: str, objects: Objects, boxes: Sequence[Box],
    size: tuple[int, int, int] = (WIDTH, HEIGHT, 3),
) -> Tree:  # fmt: skip
    """labelImg's XML: folder, filename, the absolute path it was labelled at, Unspecified pose."""
    tree: Tree = [
        ("folder", folder), ("filename", filename), ("path", path),
        ("source", [("database", "Unknown")]),
        ("size", [("width", str(size[0])), ("height", str(size[1])), ("depth", str(size[2]))]),
        ("segmented", "0"),
    ]  # fmt: skip
    for (name, difficult), (x0, y0, x1, y1) in zip(objects, boxes, strict=True):
        bndbox: Tree = [("xmin", str(x0)), ("ymin", str(y0)), ("xmax", str(x1)), ("ymax", str(y1))]
        tree.append(("object", [
            ("name", name), ("pose", "Unspecified"), ("truncated", "0"),
            ("difficult", str(int(difficult))), ("bndbox", bndbox),
        ]))  # fmt: skip
    return tree


def roboflow_tree(filename: str, objects: Objects, boxes: Sequence[Box]) -> Tree:
    """Roboflow's Pascal VOC XML: empty folder, no path, boxes as xmin, xmax, ymin, ymax."""
    tree: Tree = [
        ("folder", ""), ("filename", filename), ("source", [("database", "roboflow.com")]),
        ("size", [("width", str(WIDTH)), ("height", str(HEIGHT)), ("depth", "3")]),
        ("segmented", "0"),
    ]  # fmt: skip
    for (name, difficult), (x0, y0, x1, y1) in zip(objects, boxes, strict=True):
        bndbox: Tree = [("xmin", str(x0)), ("xmax", str(x1)), ("ymin", str(y0)), ("ymax", str(y1))]
        tree.append(("object", [
            ("name", name), ("pose", "Unspecified"), ("truncated", "0"),
            ("difficult", str(int(difficult))), ("occluded", "0"), ("bndbox", bndbox),
        ]))  # fmt: skip
    return tree


def write_cvat_export(
    folder: Path,
    n: int = 48,
    *,
    seed: int = 0,
    subsets: Sequence[str] = ("default",),
    faults: Faults = Faults(),
) -> Truth:
    """CVAT's "PASCAL VOC 1.1" export: the devkit folders at the top, labelmap.txt, subsets.

    With two subsets the second holds every fifth image. Images keep their own extension
    (.jpg, .png, .jpeg); the per-class `<label>_<subset>.txt` files are empty, as CVAT writes
    them for a task of boxes; ids without their XML stay in the subset list.
    """
    folder = Path(folder)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main", "SegmentationClass",
                "SegmentationObject"):  # fmt: skip
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = Truth(folder, LABELMAP_ORDER)
    lists: dict[str, list[str]] = {subset: [] for subset in subsets}
    suffixes = (".jpg", ".jpg", ".png", ".jpeg")
    for i, objects in enumerate(plan_objects(n, rng, faults)):
        image_id = f"photo_{i:04d}"
        subset = subsets[-1] if i % 5 == 4 else subsets[0]
        lists[subset].append(image_id)
        image = folder / "JPEGImages" / f"{image_id}{suffixes[i % len(suffixes)]}"
        picture, boxes = draw_picture(tuple(objects), rng)
        save_picture(picture, image)
        xml = folder / "Annotations" / f"{image_id}.xml"
        malformed = faults.malformed_xml and i == 2
        write_xml(xml, cvat_tree(image.name, image_id, tuple(objects), boxes), "  ",
                  malformed=malformed)  # fmt: skip
        truth.splits.setdefault(subset, {})[image_id] = Planned(image, xml, tuple(objects))
        _record_fault(truth, faults, i, xml, malformed)
    for j in range(faults.images_without_xml):
        image_id = f"unlabelled_{j:02d}"
        image = folder / "JPEGImages" / f"{image_id}.jpg"
        save_picture(draw_picture((), rng)[0], image)
        lists[subsets[0]].append(image_id)
        truth.without_xml.setdefault(subsets[0], {})[image_id] = image
    for j in range(faults.xml_without_image):
        image_id = f"lost_{j:02d}"
        xml = folder / "Annotations" / f"{image_id}.xml"
        write_xml(xml, cvat_tree(f"{image_id}.jpg", image_id, (), []), "  ")
        lists[subsets[0]].append(image_id)
        truth.xml_without_image.append(xml)
    main = folder / "ImageSets" / "Main"
    if faults.duplicate_id:
        lists[subsets[0]].append(lists[subsets[0]][0])
        truth.bad["duplicate_id"] = (main / f"{subsets[0]}.txt",)
    for subset, ids in lists.items():
        (main / f"{subset}.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
        for label in ("background", *LABELMAP_ORDER):
            (main / f"{label}_{subset}.txt").write_text("")
    labels = ("background", *LABELMAP_ORDER)
    lines = "".join(
        f"{label}:{','.join(map(str, colour))}::\n"
        for label, colour in zip(labels, VOC_COLOURS, strict=True)
    )
    (folder / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n" + lines)
    return truth


def _record_fault(truth: Truth, faults: Faults, i: int, xml: Path, malformed: bool) -> None:
    """Note the XML an error about a fault planned in image `i` will name."""
    if malformed:
        truth.bad["malformed_xml"] = (xml,)
    if faults.unknown_class and i == 1:
        truth.bad["unknown_class"] = (xml,)


def write_labelimg_export(
    folder: Path,
    n: int = 48,
    *,
    seed: int = 0,
    renamed: int = 3,
    rare: Mapping[str, int] | None = None,
    faults: Faults = Faults(),
) -> Truth:
    """labelImg's folder: each image with its XML, .jpg/.jpeg/.png/.JPG, the last quarter in more/.

    The first `renamed` XML have a stem of their own (`ann_000.xml` for `img_000.jpg`), and the
    next one names an image that was renamed since (`<filename>` names no file: the XML's stem
    finds it). `rare` adds classes with exactly that many positive images.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    rare = dict(rare or {})
    truth = Truth(folder, tuple(sorted({*CLASSES, *rare})))
    plans = plan_objects(n, rng, faults)
    for k, (name, count) in enumerate(rare.items()):
        for i in range(count):
            plans[renamed + 1 + k + 2 * i].append((name, False))
    suffixes = (".jpg", ".jpeg", ".png", ".JPG")
    twin = n // 2
    for i, objects in enumerate(plans):
        sub = "more" if i >= n * 3 // 4 else ""
        directory = folder / sub
        stem = f"img_{i:03d}"
        image = directory / f"{stem}{suffixes[i % len(suffixes)]}"
        picture, boxes = draw_picture(tuple(objects), rng)
        save_picture(picture, image)
        xml = directory / f"{'ann' if i < renamed else 'img'}_{i:03d}.xml"
        filename = f"IMG_old_{i:03d}.jpg" if i == renamed else image.name
        label_path = f"/home/user/{directory.name}/{filename}"
        tree = labelimg_tree(filename, directory.name, label_path, tuple(objects), boxes)
        malformed = faults.malformed_xml and i == 2
        write_xml(xml, tree, "\t", malformed=malformed)
        image_id = f"{sub}/{stem}" if sub else stem
        truth.splits.setdefault("all", {})[image_id] = Planned(image, xml, tuple(objects))
        _record_fault(truth, faults, i, xml, malformed)
        if faults.duplicate_id and i == twin:
            other = image.with_suffix(".jpg" if image.suffix == ".png" else ".png")
            save_picture(picture, other)
            truth.bad["duplicate_id"] = (image, other)
    for j in range(faults.images_without_xml):
        image = folder / f"unlabelled_{j:02d}.jpg"
        save_picture(draw_picture((), rng)[0], image)
        truth.without_xml.setdefault("all", {})[image.stem] = image
    for j in range(faults.xml_without_image):
        xml = folder / f"deleted_{j:02d}.xml"
        write_xml(xml, labelimg_tree(xml.with_suffix(".jpg").name, folder.name, "", (), []), "\t")
        truth.xml_without_image.append(xml)
    return truth


def write_roboflow_export(
    folder: Path,
    n: int = 48,
    *,
    seed: int = 0,
    splits: Sequence[str] = ("train", "valid", "test"),
    faults: Faults = Faults(),
) -> Truth:
    """Roboflow's "Pascal VOC" export: train/ valid/ test/, `IMG_0001_jpg.rf.<hash>` names, READMEs.

    Roboflow writes every image as .jpg (the original extension stays in the name), 70/20/10
    over the splits asked for; the faults land in the first split.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    truth = Truth(folder, tuple(sorted(CLASSES)))
    pattern = [split for split in splits for _ in range(ROBOFLOW_WEIGHTS.get(split, 1))]
    for i, objects in enumerate(plan_objects(n, rng, faults)):
        split = pattern[i % len(pattern)]
        original = f"IMG_{i:04d}_{'png' if i % 3 == 2 else 'jpg'}"
        stem = f"{original}.rf.{_roboflow_hash(seed, i)}"
        image = folder / split / f"{stem}.jpg"
        picture, boxes = draw_picture(tuple(objects), rng)
        save_picture(picture, image)
        xml = image.with_suffix(".xml")
        malformed = faults.malformed_xml and i == 2
        write_xml(xml, roboflow_tree(image.name, tuple(objects), boxes), "\t", malformed=malformed)
        truth.splits.setdefault(split, {})[f"{split}/{stem}"] = Planned(image, xml, tuple(objects))
        _record_fault(truth, faults, i, xml, malformed)
        if faults.duplicate_id and i == 0:
            save_picture(picture, image.with_suffix(".png"))
            truth.bad["duplicate_id"] = (image, image.with_suffix(".png"))
    first = folder / splits[0]
    for j in range(faults.images_without_xml):
        image = first / f"IMG_9{j:03d}_jpg.rf.{_roboflow_hash(seed, 9000 + j)}.jpg"
        save_picture(draw_picture((), rng)[0], image)
        truth.without_xml.setdefault(splits[0], {})[f"{splits[0]}/{image.stem}"] = image
    for j in range(faults.xml_without_image):
        xml = first / f"IMG_8{j:03d}_jpg.rf.{_roboflow_hash(seed, 8000 + j)}.xml"
        write_xml(xml, roboflow_tree(xml.with_suffix(".jpg").name, (), []), "\t")
        truth.xml_without_image.append(xml)
    (folder / "README.dataset.txt").write_text("# fruit > 2024-05-01\n\nProvided by a user\n")
    (folder / "README.roboflow.txt").write_text(
        "\nfruit - v1 2024-05-01\n==============================\n\nThis dataset was exported "
        "via roboflow.com\n\nThe dataset includes 48 images.\nFruit are annotated in Pascal VOC "
        "format.\n"
    )
    return truth


def _roboflow_hash(seed: int, i: int) -> str:
    return hashlib.md5(f"{seed}-{i}".encode()).hexdigest()


# The real photos' classes folded into three (the tests' relabelled export)
RELABEL = {"cat": "pet", "dog": "pet", "car": "vehicle", "bus": "vehicle", "person": "person"}


def write_relabelled_real_export(
    folder: Path,
    voc_root: Path,
    mapping: Mapping[str, str],
    *,
    n: int = 300,
    split: str = "train",
) -> Truth:
    """A labelImg folder of the first `n` real photos of a devkit split, classes renamed.

    Each photo is hard-linked (or copied) beside a labelImg XML whose objects are the original
    ones of a class in `mapping`, under their new name and with their difficult flag; objects
    of other classes are dropped (an image left with none is a negative).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth = Truth(folder, tuple(sorted(set(mapping.values()))))
    ids = (voc_root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
    for image_id in ids:
        root = ElementTree.parse(voc_root / "Annotations" / f"{image_id}.xml").getroot()
        kept = [o for o in root.findall("object") if o.findtext("name", "").strip() in mapping]
        objects = tuple(
            (mapping[o.findtext("name", "").strip()], o.findtext("difficult", "0").strip() == "1")
            for o in kept
        )
        corners = ("xmin", "ymin", "xmax", "ymax")
        boxes = [tuple(int(float(o.findtext(f"bndbox/{k}", "0"))) for k in corners) for o in kept]
        size = tuple(int(root.findtext(f"size/{k}", "0")) for k in ("width", "height", "depth"))
        image = folder / f"{image_id}.jpg"
        _link_or_copy(voc_root / "JPEGImages" / f"{image_id}.jpg", image)
        xml = folder / f"{image_id}.xml"
        path = f"/home/user/{folder.name}/{image.name}"
        tree = labelimg_tree(image.name, folder.name, path, objects, boxes, size)  # type: ignore[arg-type]
        write_xml(xml, tree, "\t")
        truth.splits.setdefault("all", {})[image_id] = Planned(image, xml, objects)
    return truth


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
