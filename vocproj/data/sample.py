"""The synthetic sample dataset: procedural pictures of the 20 classes in the exact VOC2012 layout.

`write_sample_dataset(out)` writes `out/VOCdevkit/VOC2012` with `JPEGImages/`, `Annotations/`
and `ImageSets/Main/` (split lists and per-class `<class>_<split>.txt` files) the way the real
devkit has them, so every later stage runs unchanged on it, offline and in seconds.

Each class is a small drawing with its own silhouette, colours and texture (stripes, dots,
checker, rings, gradients, windows...), large enough to survive resize + center-crop, placed
on a noisy gradient background that says nothing about the class. Class frequencies and
co-occurrences follow VOC's shape (person in about 40% of images, chairs around dining
tables, riders with horses and bikes), and the annotations carry VOC's variants: difficult,
truncated and occluded flags, person parts and actions, and a few decimal coordinates.

The output depends only on the arguments (same arguments → byte-identical files). The tree is
built in a hidden sibling folder, finished with its manifest (`sample.json`), and moved into
place in one rename, so an interrupted run never leaves something that looks complete.
"""

from __future__ import annotations

import colorsys
import io
import json
import os
import secrets
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from vocproj.data.voc import CLASSES, jpeg_path, labels_from_objects, write_class_files
from vocproj.errors import ConfigError, DatasetError
from vocproj.io import atomic_write_json
from vocproj.locks import owning

DEFAULT_SEED = 0
DEFAULT_N_TRAIN = 300
DEFAULT_N_VAL = 200
MANIFEST_NAME = "sample.json"
SPLITS = ("train", "val", "trainval")  # the ImageSets/Main split lists written
# Bump whenever the drawing or the annotation changes: older trees are then regenerated.
GENERATOR_VERSION = 2  # 2: per-class files in the devkit's values (1 / -1 / 0)

MARKER_NAME = ".vocproj-sample"  # written first: the tree was made by this module
_PARTIAL_PREFIX = ".VOC2012.partial-"
_STALE_PREFIX = ".VOC2012.stale-"
_JPEG_QUALITY = 90

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]

# ---------------------------------------------------------------------------------------------
# How each class looks. Coordinates are in "height units": y runs 0..1 down the object and
# x runs 0..aspect, so a circle stays round whatever the object's aspect ratio.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """How a part is coloured: a pattern of one or two colours with a period in height units."""

    pattern: str  # solid hstripes vstripes dstripes checker dots rings grid vgradient radial
    color: RGB
    second: RGB = (0, 0, 0)
    period: float = 0.15


@dataclass(frozen=True)
class Part:
    """One primitive of a drawing; `voc_part` names it as a VOC person part (head/hand/foot)."""

    shape: str  # ellipse rect rrect poly ring line
    coords: tuple[float, ...]
    fill: Fill
    width: float = 0.0  # stroke width of ring and line parts
    voc_part: str | None = None

    def box(self) -> tuple[float, float, float, float]:
        """The part's extent (x0, y0, x1, y1) in height units."""
        xs, ys = self.coords[0::2], self.coords[1::2]
        pad = self.width / 2
        return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


@dataclass(frozen=True)
class Style:
    """A class's drawing: its parts (painted in order) on a box `aspect` wide and 1 high."""

    aspect: float
    parts: tuple[Part, ...]
    facing: bool  # True when the drawing faces right, so a mirrored copy faces left


def _solid(color: RGB) -> Fill:
    return Fill("solid", color)


def _circle(cx: float, cy: float, r: float, fill: Fill, voc_part: str | None = None) -> Part:
    return Part("ellipse", (cx - r, cy - r, cx + r, cy + r), fill, voc_part=voc_part)


def _ring(cx: float, cy: float, r: float, width: float, fill: Fill) -> Part:
    return Part("ring", (cx - r, cy - r, cx + r, cy + r), fill, width=width)


def _box(shape: str, x0: float, y0: float, x1: float, y1: float, fill: Fill) -> Part:
    return Part(shape, (x0, y0, x1, y1), fill)


def _poly(points: Sequence[tuple[float, float]], fill: Fill) -> Part:
    return Part("poly", tuple(v for point in points for v in point), fill)


def _line(points: Sequence[tuple[float, float]], width: float, fill: Fill) -> Part:
    return Part("line", tuple(v for point in points for v in point), fill, width=width)


BLACK, WHITE, SILVER = (25, 25, 28), (240, 240, 236), (190, 196, 206)
RED, ORANGE, YELLOW = (210, 25, 30), (240, 120, 10), (245, 205, 20)
WOOD, DARK_WOOD, SKIN = (160, 95, 40), (95, 55, 20), (235, 180, 140)
NAVY, STEEL_BLUE, LIGHT_BLUE = (20, 35, 110), (60, 110, 190), (175, 215, 240)
DARK_GREEN, LEAF_GREEN, LIGHT_GREEN = (15, 85, 35), (35, 135, 45), (150, 220, 90)
SHIRTS: tuple[RGB, ...] = ((40, 80, 200), (95, 95, 105), (150, 30, 45))


def _style(aspect: float, facing: bool, *parts: Part) -> Style:
    return Style(aspect, parts, facing)


def _legs(xs: Sequence[float], top: float, width: float, fill: Fill) -> tuple[Part, ...]:
    """Vertical bars from `top` down to the bottom edge, one at each x."""
    return tuple(_box("rect", x, top, x + width, 1.0, fill) for x in xs)


def _windows(
    x0: float, step: float, count: int, y0: float, y1: float, fill: Fill
) -> tuple[Part, ...]:
    """A row of `count` window rectangles starting at `x0`, one every `step`."""
    return tuple(
        _box("rect", x0 + i * step, y0, x0 + i * step + step * 0.7, y1, fill) for i in range(count)
    )


def _person(shirt: RGB) -> Style:
    """A standing figure whose head, hands and feet are VOC person-layout parts."""
    cloth, skin = _solid(shirt), _solid(SKIN)
    trousers, shoes = _solid((45, 45, 70)), _solid((60, 35, 20))
    return _style(
        0.5,
        False,
        *_legs((0.14, 0.265), 0.58, 0.095, trousers),
        Part("ellipse", (0.06, 0.92, 0.24, 1.0), shoes, voc_part="foot"),
        Part("ellipse", (0.26, 0.92, 0.44, 1.0), shoes, voc_part="foot"),
        _box("rect", 0.02, 0.24, 0.11, 0.52, cloth),
        _box("rect", 0.39, 0.24, 0.48, 0.52, cloth),
        _box("rrect", 0.1, 0.22, 0.4, 0.62, cloth),
        _circle(0.065, 0.56, 0.055, skin, voc_part="hand"),
        _circle(0.435, 0.56, 0.055, skin, voc_part="hand"),
        _circle(0.25, 0.11, 0.11, skin, voc_part="head"),
        _box("ellipse", 0.15, 0.0, 0.35, 0.07, _solid((60, 40, 25))),
    )


def _build_styles() -> dict[str, tuple[Style, ...]]:
    """Every class's drawing variants: distinct in silhouette, colours and texture."""
    black, white, silver, red = _solid(BLACK), _solid(WHITE), _solid(SILVER), _solid(RED)
    orange, yellow, dark_wood = _solid(ORANGE), _solid(YELLOW), _solid(DARK_WOOD)
    fuselage = Fill("hstripes", WHITE, STEEL_BLUE, 0.07)
    frame = _solid((0, 150, 160))
    sail = Fill("hstripes", WHITE, RED, 0.1)
    glass = Fill("vgradient", DARK_GREEN, (70, 195, 90))
    window, pane = _solid((30, 50, 90)), _solid(LIGHT_BLUE)
    tabby = Fill("dstripes", ORANGE, (90, 45, 10), 0.16)
    wood = Fill("vstripes", WOOD, DARK_WOOD, 0.09)
    cow_hide = Fill("dots", BLACK, WHITE, 0.3)
    cloth = Fill("checker", RED, WHITE, 0.14)
    dog_coat, dog_leg = Fill("radial", (225, 180, 110), (120, 70, 30)), _solid((150, 95, 45))
    chestnut = _solid((135, 65, 25))
    leaves, pot = Fill("dots", LIGHT_GREEN, LEAF_GREEN, 0.12), _solid((190, 90, 50))
    wool = Fill("rings", (242, 236, 214), (185, 175, 150), 0.08)
    tufted, sofa_arm = Fill("grid", (125, 50, 155), (70, 20, 95), 0.17), _solid((95, 35, 120))
    screen, stand = Fill("hstripes", (40, 205, 235), (20, 85, 200), 0.06), _solid((110, 110, 115))
    wool_balls = ((0.35, 0.4, 0.22), (0.6, 0.32, 0.22), (0.85, 0.4, 0.22), (0.45, 0.58, 0.2))
    wool_balls += ((0.75, 0.58, 0.2), (0.22, 0.55, 0.17), (1.0, 0.55, 0.17))
    styles = {
        "aeroplane": _style(
            1.8,
            True,
            _poly([(0.85, 0.45), (1.2, 0.45), (0.8, 0.0), (0.66, 0.0)], silver),
            _poly([(0.85, 0.55), (1.2, 0.55), (0.8, 1.0), (0.66, 1.0)], silver),
            _poly([(0.02, 0.5), (0.3, 0.5), (0.12, 0.2), (0.0, 0.2)], red),
            _poly([(0.02, 0.5), (0.3, 0.5), (0.12, 0.8), (0.0, 0.8)], red),
            _box("ellipse", 0.0, 0.39, 1.8, 0.61, fuselage),
        ),
        "bicycle": _style(
            1.7,
            True,
            _ring(0.34, 0.66, 0.3, 0.07, black),
            _ring(1.36, 0.66, 0.3, 0.07, black),
            _line([(0.34, 0.66), (0.78, 0.66), (1.1, 0.3), (0.62, 0.3), (0.34, 0.66)], 0.07, frame),
            _line([(0.78, 0.66), (0.58, 0.16)], 0.07, frame),
            _line([(1.36, 0.66), (1.16, 0.12), (1.34, 0.08)], 0.07, frame),
            _line([(0.46, 0.14), (0.7, 0.14)], 0.08, black),
        ),
        "bird": _style(
            1.3,
            True,
            _poly([(0.0, 0.38), (0.38, 0.5), (0.38, 0.7), (0.0, 0.82)], _solid((200, 110, 0))),
            _line([(0.55, 0.85), (0.55, 1.0)], 0.04, orange),
            _line([(0.72, 0.85), (0.72, 1.0)], 0.04, orange),
            _box("ellipse", 0.2, 0.35, 1.0, 0.9, yellow),
            _poly([(0.34, 0.62), (0.8, 0.56), (0.48, 0.08)], _solid((225, 165, 0))),
            _circle(0.95, 0.38, 0.2, yellow),
            _poly([(1.1, 0.3), (1.3, 0.4), (1.1, 0.48)], orange),
            _circle(0.99, 0.33, 0.04, black),
        ),
        "boat": _style(
            1.5,
            True,
            _line([(0.75, 0.02), (0.75, 0.66)], 0.04, dark_wood),
            _poly([(0.79, 0.04), (0.79, 0.58), (1.32, 0.58)], sail),
            _poly([(0.71, 0.1), (0.71, 0.58), (0.28, 0.58)], white),
            _poly([(0.0, 0.62), (1.5, 0.62), (1.3, 0.96), (0.2, 0.96)], _solid(NAVY)),
        ),
        "bottle": _style(
            0.38,
            False,
            _box("rrect", 0.0, 0.32, 0.38, 1.0, glass),
            _box("ellipse", 0.0, 0.22, 0.38, 0.46, glass),
            _box("rect", 0.13, 0.04, 0.25, 0.3, glass),
            _box("rect", 0.12, 0.0, 0.26, 0.07, _solid((200, 160, 40))),
            _box("rect", 0.0, 0.55, 0.38, 0.75, _solid((245, 240, 215))),
        ),
        "bus": _style(
            2.1,
            True,
            _box("rrect", 0.0, 0.04, 2.1, 0.86, _solid((250, 170, 0))),
            *_windows(0.12, 0.3, 6, 0.17, 0.45, window),
            _box("rect", 1.92, 0.17, 2.04, 0.78, window),
            _box("rect", 0.0, 0.56, 2.1, 0.63, white),
            _circle(0.45, 0.86, 0.13, black),
            _circle(1.62, 0.86, 0.13, black),
        ),
        "car": _style(
            1.9,
            True,
            _poly([(0.45, 0.46), (0.66, 0.1), (1.3, 0.1), (1.58, 0.46)], red),
            _box("rrect", 0.0, 0.42, 1.9, 0.84, red),
            _poly([(0.6, 0.42), (0.76, 0.17), (0.93, 0.17), (0.93, 0.42)], pane),
            _poly([(1.01, 0.42), (1.01, 0.17), (1.26, 0.17), (1.44, 0.42)], pane),
            _circle(0.42, 0.84, 0.16, black),
            _circle(1.48, 0.84, 0.16, black),
            _circle(0.42, 0.84, 0.06, silver),
            _circle(1.48, 0.84, 0.06, silver),
            _box("ellipse", 1.78, 0.5, 1.9, 0.6, yellow),
        ),
        "cat": _style(
            1.0,
            False,
            _poly([(0.08, 0.5), (0.16, 0.0), (0.48, 0.26)], tabby),
            _poly([(0.92, 0.5), (0.84, 0.0), (0.52, 0.26)], tabby),
            _box("ellipse", 0.0, 0.14, 1.0, 1.0, tabby),
            _box("ellipse", 0.2, 0.44, 0.4, 0.62, _solid((130, 210, 40))),
            _box("ellipse", 0.6, 0.44, 0.8, 0.62, _solid((130, 210, 40))),
            _poly([(0.42, 0.7), (0.58, 0.7), (0.5, 0.8)], _solid((240, 140, 150))),
        ),
        "chair": _style(
            0.75,
            True,
            *_legs((0.02, 0.62), 0.62, 0.1, dark_wood),
            _box("rect", 0.0, 0.0, 0.18, 0.64, wood),
            _box("rect", 0.0, 0.48, 0.75, 0.64, wood),
        ),
        "cow": _style(
            1.6,
            True,
            *_legs((0.25, 0.42, 0.95, 1.12), 0.6, 0.12, white),
            _box("ellipse", 0.1, 0.18, 1.3, 0.8, cow_hide),
            _line([(0.14, 0.4), (0.02, 0.75)], 0.04, black),
            _box("rrect", 1.18, 0.08, 1.56, 0.52, white),
            _box("ellipse", 1.32, 0.36, 1.6, 0.58, _solid((240, 160, 170))),
            _line([(1.22, 0.1), (1.16, 0.0)], 0.05, stand),
            _line([(1.5, 0.1), (1.56, 0.0)], 0.05, stand),
        ),
        "diningtable": _style(
            1.8,
            False,
            *_legs((0.1, 1.56), 0.55, 0.14, dark_wood),
            _poly(
                [(0.18, 0.0), (1.62, 0.0), (1.8, 0.2), (1.8, 0.56), (0.0, 0.56), (0.0, 0.2)], cloth
            ),
        ),
        "dog": _style(
            1.5,
            True,
            *_legs((0.24, 0.4, 0.86, 1.0), 0.6, 0.11, dog_leg),
            _line([(0.2, 0.42), (0.02, 0.14)], 0.07, dog_leg),
            _box("ellipse", 0.15, 0.3, 1.15, 0.78, dog_coat),
            _box("ellipse", 0.98, 0.04, 1.46, 0.46, dog_coat),
            _box("ellipse", 0.98, 0.1, 1.14, 0.54, _solid((95, 55, 25))),
            _circle(1.44, 0.26, 0.05, black),
        ),
        "horse": _style(
            1.4,
            True,
            *_legs((0.22, 0.36, 0.8, 0.94), 0.55, 0.08, chestnut),
            _poly([(0.2, 0.38), (0.0, 0.78), (0.1, 0.82)], black),
            _box("ellipse", 0.15, 0.3, 1.05, 0.68, chestnut),
            _poly([(0.82, 0.46), (1.02, 0.02), (1.2, 0.06), (1.06, 0.52)], chestnut),
            _poly([(1.02, 0.0), (1.4, 0.18), (1.34, 0.3), (1.04, 0.16)], chestnut),
            _line([(0.88, 0.36), (1.04, 0.02)], 0.07, black),
        ),
        "motorbike": _style(
            1.7,
            True,
            _line([(1.1, 0.3), (1.22, 0.04), (1.38, 0.04)], 0.06, silver),
            _line([(0.35, 0.66), (0.9, 0.7)], 0.06, silver),
            _poly(
                [(0.42, 0.64), (0.68, 0.3), (1.16, 0.3), (1.32, 0.58), (0.9, 0.64)],
                _solid((200, 20, 60)),
            ),
            _box("rect", 0.52, 0.2, 0.96, 0.31, black),
            _circle(0.35, 0.68, 0.3, black),
            _circle(1.35, 0.68, 0.3, black),
            _circle(0.35, 0.68, 0.12, silver),
            _circle(1.35, 0.68, 0.12, silver),
        ),
        "pottedplant": _style(
            0.8,
            False,
            *(_circle(x, y, r, leaves) for x, y, r in ((0.4, 0.32, 0.3), (0.18, 0.42, 0.18))),
            *(_circle(x, y, r, leaves) for x, y, r in ((0.62, 0.42, 0.18), (0.4, 0.1, 0.1))),
            _poly([(0.15, 0.62), (0.65, 0.62), (0.57, 1.0), (0.23, 1.0)], pot),
            _box("rect", 0.1, 0.58, 0.7, 0.67, _solid((160, 70, 35))),
        ),
        "sheep": _style(
            1.4,
            True,
            *_legs((0.3, 0.45, 0.78, 0.92), 0.7, 0.07, black),
            *(_circle(x, y, r, wool) for x, y, r in wool_balls),
            _box("ellipse", 1.04, 0.24, 1.4, 0.6, _solid((45, 40, 38))),
            _circle(1.28, 0.36, 0.03, white),
        ),
        "sofa": _style(
            2.0,
            False,
            *_legs((0.1, 1.8), 0.84, 0.1, dark_wood),
            _box("rrect", 0.14, 0.04, 1.86, 0.62, tufted),
            _box("rect", 0.14, 0.5, 1.86, 0.86, tufted),
            _box("rrect", 0.0, 0.26, 0.3, 0.9, sofa_arm),
            _box("rrect", 1.7, 0.26, 2.0, 0.9, sofa_arm),
        ),
        "train": _style(
            2.6,
            True,
            _poly(
                [(0.0, 0.08), (2.2, 0.08), (2.6, 0.55), (2.6, 0.9), (0.0, 0.9)],
                _solid((20, 95, 55)),
            ),
            *_windows(0.14, 0.3, 7, 0.2, 0.45, _solid((200, 220, 230))),
            _poly([(2.24, 0.16), (2.47, 0.45), (2.24, 0.45)], _solid((200, 220, 230))),
            _box("rect", 0.0, 0.6, 2.6, 0.7, yellow),
            *(_circle(x, 0.92, 0.08, black) for x in (0.25, 0.5, 1.9, 2.15)),
        ),
        "tvmonitor": _style(
            1.25,
            False,
            _poly([(0.5, 0.8), (0.75, 0.8), (0.82, 0.94), (0.43, 0.94)], stand),
            _box("rect", 0.28, 0.92, 0.97, 1.0, stand),
            _box("rrect", 0.0, 0.0, 1.25, 0.82, black),
            _box("rect", 0.08, 0.07, 1.17, 0.74, screen),
        ),
    }
    variants = {name: (style,) for name, style in styles.items()}
    variants["person"] = tuple(_person(shirt) for shirt in SHIRTS)
    return {name: variants[name] for name in CLASSES}


STYLES: Mapping[str, tuple[Style, ...]] = _build_styles()

# ---------------------------------------------------------------------------------------------
# What appears in an image: VOC-shaped class frequencies and co-occurrences.
# ---------------------------------------------------------------------------------------------

# How often each class is an image's main subject (normalised below); companions add more.
PRIMARY_WEIGHTS: Mapping[str, float] = {
    "aeroplane": 0.045,
    "bicycle": 0.035,
    "bird": 0.045,
    "boat": 0.035,
    "bottle": 0.035,
    "bus": 0.035,
    "car": 0.05,
    "cat": 0.055,
    "chair": 0.035,
    "cow": 0.035,
    "diningtable": 0.03,
    "dog": 0.06,
    "horse": 0.035,
    "motorbike": 0.035,
    "person": 0.2,
    "pottedplant": 0.03,
    "sheep": 0.035,
    "sofa": 0.03,
    "train": 0.04,
    "tvmonitor": 0.035,
}
# Given the main subject, each (class, probability) may join it, in this order, up to 4 objects.
COMPANIONS: Mapping[str, tuple[tuple[str, float], ...]] = {
    "aeroplane": (("aeroplane", 0.2), ("person", 0.1), ("car", 0.05)),
    "bicycle": (("person", 0.7), ("bicycle", 0.2), ("car", 0.1), ("motorbike", 0.05)),
    "bird": (("bird", 0.35), ("person", 0.15)),
    "boat": (("person", 0.45), ("boat", 0.3)),
    "bottle": (("person", 0.45), ("bottle", 0.35), ("diningtable", 0.3), ("chair", 0.2)),
    "bus": (("car", 0.4), ("person", 0.35), ("bus", 0.15)),
    "car": (("person", 0.35), ("car", 0.35), ("bus", 0.1), ("motorbike", 0.05)),
    "cat": (("cat", 0.15), ("person", 0.2), ("sofa", 0.12), ("chair", 0.08), ("dog", 0.06)),
    "chair": (
        ("diningtable", 0.45),
        ("person", 0.45),
        ("chair", 0.4),
        ("pottedplant", 0.1),
        ("tvmonitor", 0.1),
        ("sofa", 0.1),
        ("bottle", 0.1),
    ),
    "cow": (("cow", 0.55), ("person", 0.15), ("sheep", 0.05), ("horse", 0.05)),
    "diningtable": (
        ("chair", 0.8),
        ("person", 0.6),
        ("bottle", 0.35),
        ("chair", 0.4),
        ("pottedplant", 0.1),
    ),
    "dog": (("person", 0.4), ("dog", 0.15), ("sofa", 0.1), ("cat", 0.08), ("car", 0.05)),
    "horse": (("person", 0.7), ("horse", 0.3), ("cow", 0.05), ("car", 0.05)),
    "motorbike": (("person", 0.75), ("motorbike", 0.2), ("car", 0.15)),
    "person": (
        ("person", 0.4),
        ("chair", 0.12),
        ("bottle", 0.08),
        ("dog", 0.06),
        ("car", 0.05),
        ("sofa", 0.05),
        ("diningtable", 0.05),
        ("tvmonitor", 0.04),
        ("bicycle", 0.04),
        ("horse", 0.03),
        ("motorbike", 0.03),
    ),
    "pottedplant": (
        ("chair", 0.3),
        ("pottedplant", 0.3),
        ("person", 0.2),
        ("sofa", 0.2),
        ("tvmonitor", 0.1),
    ),
    "sheep": (("sheep", 0.6), ("person", 0.15), ("dog", 0.08), ("cow", 0.05)),
    "sofa": (
        ("person", 0.4),
        ("tvmonitor", 0.35),
        ("pottedplant", 0.3),
        ("chair", 0.2),
        ("cat", 0.1),
        ("dog", 0.1),
    ),
    "train": (("person", 0.3), ("train", 0.1), ("car", 0.05)),
    "tvmonitor": (
        ("person", 0.35),
        ("chair", 0.3),
        ("sofa", 0.25),
        ("bottle", 0.15),
        ("pottedplant", 0.1),
    ),
}
MAX_OBJECTS = 4
MAX_IMAGES_PER_SPLIT = 50_000
MIN_PRIMARY_PER_CLASS = 8  # each class is the main subject of at least this many images a split
SMALL_COMPANION_PROB = 0.14  # a companion drawn small and far away (annotated difficult)
GRAYSCALE_FRACTION = 0.03
DIFFICULT_ONLY_FRACTION = 0.01  # images whose single object is difficult
DECIMAL_BOX_FRACTION = 0.02  # images whose boxes are written with decimals
PERSON_LAYOUT_PROB = 0.15  # person objects annotated with head/hand/foot parts
PERSON_ACTION_PROB = 0.1  # person objects annotated with actions
ACTIONS = (
    "jumping",
    "other",
    "phoning",
    "playinginstrument",
    "reading",
    "ridingbike",
    "ridinghorse",
    "running",
    "takingphoto",
    "usingcomputer",
    "walking",
)
YEARS = (2007, 2008, 2009, 2010, 2011, 2012)

# Sizes: the image's long side in pixels, an object's long side as a fraction of it.
IMAGE_LONG_SIDE = (150, 200)
OBJECT_SCALE: Mapping[str, tuple[float, float]] = {
    "main": (0.42, 0.65),
    "companion": (0.26, 0.45),
    "small": (0.09, 0.14),
}
TRUNCATION_PROB = 0.25  # companions allowed to reach past the image border
MAX_ROTATION_DEGREES = 10.0
OCCLUDED_BELOW = 0.9  # visible fraction under which an object is marked occluded
DIFFICULT_BELOW = 0.35  # ... and under which it is too hidden to recognise: difficult
MIN_VISIBLE_PIXELS = 16  # fewer and the object is dropped from the annotation

_SPLIT_STREAMS = {"train": 1, "val": 2}
_IDS_STREAM, _PLAN_STREAM, _RENDER_STREAM = 0, 1, 2


@dataclass(frozen=True)
class PlannedObject:
    name: str
    role: str  # "main", "companion", or "small" (drawn small on purpose: annotated difficult)


@dataclass(frozen=True)
class ImagePlan:
    image_id: str
    objects: tuple[PlannedObject, ...]  # painting order: the main subject comes last, on top
    grayscale: bool
    decimal_boxes: bool


@dataclass(frozen=True)
class ObjectAnnotation:
    """One `<object>`: VOC 1-based inclusive pixel box (xmin, ymin, xmax, ymax) and flags."""

    name: str
    pose: str
    truncated: bool
    occluded: bool
    difficult: bool
    box: Box
    parts: tuple[tuple[str, Box], ...] = ()
    action: str | None = None


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def sample_voc_root(out: str | os.PathLike[str]) -> Path:
    """Where `write_sample_dataset(out)` puts the VOC2012 directory."""
    return Path(out) / "VOCdevkit" / "VOC2012"


def sample_manifest(voc_root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parameters a sample tree was generated with, or None when it has no manifest."""
    path = Path(voc_root) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"{path}: unreadable sample manifest ({exc}); delete {Path(voc_root)} and rerun "
            "`python -m vocproj sample --out DIR` to regenerate it"
        ) from exc
    if not isinstance(manifest, dict):
        raise DatasetError(
            f"{path}: the sample manifest is not a JSON object; delete {Path(voc_root)} and "
            "rerun `python -m vocproj sample --out DIR` to regenerate it"
        )
    return manifest


def write_sample_dataset(
    out: str | os.PathLike[str],
    *,
    seed: int = DEFAULT_SEED,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    progress: bool = False,
) -> Path:
    """Write (or reuse) the synthetic dataset under `out`; return `out/VOCdevkit/VOC2012`.

    A complete tree made with the same arguments is returned untouched. A tree made by this
    module with other arguments, or left incomplete, is replaced; any other non-empty folder
    at that place is refused with a DatasetError rather than deleted.
    """
    _check_count("seed", seed, minimum=0)
    _check_count("n_train", n_train, minimum=1, maximum=MAX_IMAGES_PER_SPLIT)
    _check_count("n_val", n_val, minimum=1, maximum=MAX_IMAGES_PER_SPLIT)
    wanted = _manifest_for(seed, n_train, n_val)
    root = sample_voc_root(out)
    try:
        with owning(Path(out), "generating the sample dataset"):  # one writer at a time
            if not _is_complete(root, wanted):
                _refuse_foreign_tree(root)
                _build(root, wanted, progress=progress)
    except OSError as exc:
        raise DatasetError(
            f"could not write the sample dataset at {root}: {exc}; check that {Path(out)} is a "
            "writable folder with a few MB free, or pick another one with --out"
        ) from exc
    return root


def _build(root: Path, manifest: Mapping[str, Any], *, progress: bool) -> None:
    """Write the tree into a hidden sibling folder, then swap it in for whatever `root` holds."""
    _remove_leftovers(root.parent)
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = root.parent / f"{_PARTIAL_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    partial.mkdir()
    try:
        _write_tree(partial, manifest, progress=progress)
        _swap_into_place(partial, root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_count(name: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        problem = "must be an integer"
    elif value < minimum:
        problem = f"must be at least {minimum}"
    elif maximum is not None and value > maximum:
        problem = f"must be at most {maximum}"
    else:
        return
    raise ConfigError(
        f"sample dataset: {name} {problem}, got {value!r}; fix it in the profile "
        "(params/<profile>.yaml) or on the command line"
    )


def _manifest_for(seed: int, n_train: int, n_val: int) -> dict[str, Any]:
    return {
        "generator": "vocproj.data.sample",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
    }


def _is_complete(root: Path, wanted: Mapping[str, Any]) -> bool:
    """True when `root` holds a finished tree made with exactly `wanted`."""
    try:
        manifest = sample_manifest(root)
    except DatasetError:
        return False
    if manifest != wanted:
        return False
    n_images = wanted["n_train"] + wanted["n_val"]
    main = root / "ImageSets" / "Main"
    return (
        sum(1 for _ in (root / "JPEGImages").glob("*.jpg")) == n_images
        and sum(1 for _ in (root / "Annotations").glob("*.xml")) == n_images
        and all((main / f"{name}_{split}.txt").is_file() for name in CLASSES for split in SPLITS)
    )


def _refuse_foreign_tree(root: Path) -> None:
    """Raise rather than delete a folder at `root` that this module did not write."""
    if not root.exists() and not root.is_symlink():
        return
    ours = root.is_dir() and ((root / MARKER_NAME).exists() or (root / MANIFEST_NAME).exists())
    if ours or (root.is_dir() and not root.is_symlink() and not any(root.iterdir())):
        return
    raise DatasetError(
        f"{root} exists and was not generated by vocproj's sample command, so it is left "
        "untouched; point --out (or the profile's data.root) at another folder, or move it away"
    )


def _remove_leftovers(devkit: Path) -> None:
    """Delete hidden build folders that an interrupted earlier run left beside VOC2012."""
    if not devkit.is_dir():
        return
    for path in devkit.iterdir():
        if path.name.startswith((_PARTIAL_PREFIX, _STALE_PREFIX)) and path.is_dir():
            shutil.rmtree(path)


def _swap_into_place(built: Path, root: Path) -> None:
    """Move the finished tree to `root`; the previous tree is renamed away first, then deleted."""
    if root.exists() or root.is_symlink():
        stale = Path(tempfile.mkdtemp(prefix=_STALE_PREFIX, dir=root.parent))
        os.replace(root, stale / "VOC2012")
        os.replace(built, root)
        shutil.rmtree(stale)
    else:
        os.replace(built, root)


# ---------------------------------------------------------------------------------------------
# Writing the tree
# ---------------------------------------------------------------------------------------------


def _write_tree(voc: Path, manifest: Mapping[str, Any], *, progress: bool) -> None:
    """Write the whole dataset into the empty folder `voc`, the manifest last."""
    seed = manifest["seed"]
    (voc / MARKER_NAME).write_text("generated by vocproj.data.sample; safe to delete\n")
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    train_ids, val_ids = _image_ids(seed, manifest["n_train"], manifest["n_val"])
    labels: dict[str, dict[str, np.ndarray]] = {}
    with tqdm(
        total=len(train_ids) + len(val_ids), desc="sample images", disable=not progress
    ) as bar:
        for split, ids in (("train", train_ids), ("val", val_ids)):
            plans = _plan_split(seed, split, ids)
            labels[split] = {}
            for index, plan in enumerate(plans):
                rng = np.random.default_rng([seed, _RENDER_STREAM, _SPLIT_STREAMS[split], index])
                image, objects = _render(plan, rng)
                jpeg_path(voc, plan.image_id).write_bytes(_jpeg_bytes(image))
                xml = _annotation_xml(plan, image.size, objects)
                (voc / "Annotations" / f"{plan.image_id}.xml").write_bytes(xml)
                labels[split][plan.image_id] = labels_from_objects(
                    [(obj.name, obj.difficult) for obj in objects]
                )
                bar.update()
    labels["trainval"] = {**labels["train"], **labels["val"]}
    for split in SPLITS:
        ids = sorted(labels[split])
        rows = np.stack([labels[split][image_id] for image_id in ids])
        write_class_files(voc / "ImageSets" / "Main", split, ids, rows)
    atomic_write_json(voc / MANIFEST_NAME, manifest)


def _image_ids(seed: int, n_train: int, n_val: int) -> tuple[list[str], list[str]]:
    """Distinct VOC-style ids (`2008_000123`), shuffled into a train and a val list, each sorted."""
    rng = np.random.default_rng([seed, _IDS_STREAM])
    years = rng.choice(YEARS, size=n_train + n_val)
    ids = []
    for year in YEARS:
        count = int((years == year).sum())
        counters = rng.choice(max(count, 9_999), size=count, replace=False) + 1
        ids += [f"{year}_{counter:06d}" for counter in counters]
    order = rng.permutation(len(ids))
    shuffled = [ids[i] for i in order]
    return sorted(shuffled[:n_train]), sorted(shuffled[n_train:])


def _primary_counts(n: int) -> dict[str, int]:
    """How many of `n` images have each class as main subject: proportional, with a floor."""
    floor = min(MIN_PRIMARY_PER_CLASS, n // len(CLASSES))
    total = sum(PRIMARY_WEIGHTS.values())
    share = {name: n * PRIMARY_WEIGHTS[name] / total for name in CLASSES}
    counts = {name: max(floor, round(share[name])) for name in CLASSES}
    while sum(counts.values()) > n:
        largest = max(CLASSES, key=lambda name: (counts[name] - floor, share[name]))
        counts[largest] -= 1
    while sum(counts.values()) < n:
        neediest = max(CLASSES, key=lambda name: share[name] - counts[name])
        counts[neediest] += 1
    return counts


def _plan_split(seed: int, split: str, ids: Sequence[str]) -> list[ImagePlan]:
    """Decide every image's objects: main subjects by quota, companions by co-occurrence."""
    rng = np.random.default_rng([seed, _PLAN_STREAM, _SPLIT_STREAMS[split]])
    n = len(ids)
    primaries = [name for name, count in _primary_counts(n).items() for _ in range(count)]
    primaries = [primaries[i] for i in rng.permutation(n)]
    grayscale = _pick(rng, n, GRAYSCALE_FRACTION)
    decimal = _pick(rng, n, DECIMAL_BOX_FRACTION)
    most_common = max(CLASSES, key=lambda name: (primaries.count(name), PRIMARY_WEIGHTS[name]))
    candidates = [i for i, name in enumerate(primaries) if name == most_common]
    k = min(len(candidates), max(1, round(DIFFICULT_ONLY_FRACTION * n)))
    difficult_only = {candidates[i] for i in rng.choice(len(candidates), size=k, replace=False)}
    plans = []
    for i, (image_id, primary) in enumerate(zip(ids, primaries, strict=True)):
        if i in difficult_only:
            objects: tuple[PlannedObject, ...] = (PlannedObject(primary, "small"),)
        else:
            objects = (*_companions(rng, primary), PlannedObject(primary, "main"))
        plans.append(ImagePlan(image_id, objects, i in grayscale, i in decimal))
    return plans


def _pick(rng: np.random.Generator, n: int, fraction: float) -> set[int]:
    """A random set of round(fraction * n) indices, at least one."""
    k = min(n, max(1, round(fraction * n)))
    return {int(i) for i in rng.choice(n, size=k, replace=False)}


def _companions(rng: np.random.Generator, primary: str) -> list[PlannedObject]:
    companions = []
    for name, probability in COMPANIONS[primary]:
        if len(companions) < MAX_OBJECTS - 1 and rng.random() < probability:
            role = "small" if rng.random() < SMALL_COMPANION_PROB else "companion"
            companions.append(PlannedObject(name, role))
    return companions


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Annotation XML
# ---------------------------------------------------------------------------------------------


def _annotation_xml(
    plan: ImagePlan, size: tuple[int, int], objects: Sequence[ObjectAnnotation]
) -> bytes:
    """The annotation as real VOC2012 writes it: tab-indented, no XML declaration."""
    year = plan.image_id[:4]
    root = ET.Element("annotation")
    _sub(root, "folder", "VOC2012")
    _sub(root, "filename", f"{plan.image_id}.jpg")
    source = _sub(root, "source")
    _sub(source, "database", f"The VOC{year} Database")
    _sub(source, "annotation", f"PASCAL VOC{year}")
    _sub(source, "image", "flickr")
    size_element = _sub(root, "size")
    _sub(size_element, "width", str(size[0]))
    _sub(size_element, "height", str(size[1]))
    _sub(size_element, "depth", "3")
    _sub(root, "segmented", "0")
    for obj in objects:
        _object_element(root, obj, size, plan.decimal_boxes)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _object_element(
    root: ET.Element, obj: ObjectAnnotation, size: tuple[int, int], decimal: bool
) -> None:
    element = _sub(root, "object")
    _sub(element, "name", obj.name)
    if obj.action is not None:
        actions = _sub(element, "actions")
        for action in ACTIONS:
            _sub(actions, action, str(int(action == obj.action)))
    _sub(element, "pose", obj.pose)
    _sub(element, "truncated", str(int(obj.truncated)))
    _sub(element, "occluded", str(int(obj.occluded)))
    _box_element(element, obj.box, size, decimal)
    _sub(element, "difficult", str(int(obj.difficult)))
    for part_name, part_box in obj.parts:
        part = _sub(element, "part")
        _sub(part, "name", part_name)
        _box_element(part, part_box, size, decimal)


def _box_element(parent: ET.Element, box: Box, size: tuple[int, int], decimal: bool) -> None:
    """A `<bndbox>`. With `decimal`, inner edges are written as the outer pixel boundary
    (`<xmin>47.5</xmin>` for pixel 48), as a few VOC2012 files use decimal coordinates."""
    bndbox = _sub(parent, "bndbox")
    xmin, ymin, xmax, ymax = box
    width, height = size
    for tag, value, shift, border in (
        ("xmin", xmin, -0.5, 1),
        ("ymin", ymin, -0.5, 1),
        ("xmax", xmax, 0.5, width),
        ("ymax", ymax, 0.5, height),
    ):
        _sub(bndbox, tag, str(value + shift if decimal and value != border else value))


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    """One drawn object before placement: straight-alpha RGBA, its VOC part masks, its pose."""

    image: Image.Image
    part_masks: tuple[tuple[str, Image.Image], ...]
    pose: str


@dataclass
class _Placed:
    """An object painted on the canvas; `visible` shrinks as later objects cover it."""

    planned: PlannedObject
    layer: _Layer
    origin: tuple[int, int]
    inside: np.ndarray  # its pixels inside the image (bool, image-sized)
    visible: np.ndarray
    truncated: bool

    def extent(self) -> Box:
        """The layer's rectangle on the canvas: (x0, y0, x1, y1), end-exclusive."""
        (x0, y0), (w, h) = self.origin, self.layer.image.size
        return x0, y0, x0 + w, y0 + h


def _render(
    plan: ImagePlan, rng: np.random.Generator
) -> tuple[Image.Image, list[ObjectAnnotation]]:
    """Paint the planned image; return it with the annotation of every visible object."""
    width, height = _image_size(rng)
    canvas = _background(rng, height, width)
    objects = _compose(canvas, plan.objects, rng)
    canvas += rng.normal(0.0, 4.0, canvas.shape).astype(np.float32)
    image = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))
    if plan.grayscale:
        image = image.convert("L")
    return image, objects


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    """A VOC-like (width, height): mostly 4:3 landscape, some portrait and other ratios."""
    long_side = int(rng.integers(IMAGE_LONG_SIDE[0], IMAGE_LONG_SIDE[1] + 1))
    ratio = float(rng.choice((0.75, 0.75, 0.75, 0.75, 0.667, 0.8, 0.6, 0.9)))
    short_side = round(long_side * ratio)
    if rng.random() < 0.7:
        return long_side, short_side
    return short_side, long_side


def _random_color(rng: np.random.Generator) -> np.ndarray:
    """A background colour: any hue, muted saturation, mid brightness."""
    hue, saturation, value = rng.random(), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.9)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A gradient between two random colours, sometimes a wavy horizon, and blotchy noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    first, second = _random_color(rng), _random_color(rng)
    canvas = first + ramp[..., None] * (second - first)
    if rng.random() < 0.4:
        horizon = height * rng.uniform(0.4, 0.75) + 6 * np.sin(xs[0] / rng.uniform(10, 30))
        canvas[ys > horizon[None, :]] = _random_color(rng)
    shape = (int(rng.integers(3, 8)), int(rng.integers(3, 8)))
    blotches = rng.normal(0.0, rng.uniform(8, 30), (*shape, 3)).astype(np.float32)
    for channel in range(3):
        coarse = Image.fromarray(blotches[..., channel], mode="F")
        canvas[..., channel] += np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC))
    return canvas


def _compose(
    canvas: np.ndarray, planned: Sequence[PlannedObject], rng: np.random.Generator
) -> list[ObjectAnnotation]:
    """Paint `planned` onto `canvas` (float H×W×3) in order; annotate what stays visible."""
    height, width = canvas.shape[:2]
    placed: list[_Placed] = []
    for obj in planned:
        layer = _draw_object(obj, rng, (width, height))
        extents = [p.extent() for p in placed]
        origin = _place(rng, layer.image.size, (width, height), extents, central=obj.role == "main")
        alpha = np.asarray(layer.image)[..., 3]
        inside = _embed(alpha, origin, (width, height))
        _paint(canvas, layer.image, origin)
        for earlier in placed:
            earlier.visible &= ~inside
        truncated = int(inside.sum()) < int((alpha >= 128).sum())
        placed.append(_Placed(obj, layer, origin, inside, inside.copy(), truncated))
    shown = [p for p in placed if p.visible.sum() >= MIN_VISIBLE_PIXELS]
    names = {p.planned.name for p in shown}
    return [_annotate(p, names, (width, height), rng) for p in shown]


def _annotate(
    placed: _Placed, names: set[str], size: tuple[int, int], rng: np.random.Generator
) -> ObjectAnnotation:
    """The `<object>` of a placed object, its box around the pixels left visible."""
    fraction = float(placed.visible.sum()) / max(float(placed.inside.sum()), 1.0)
    difficult = placed.planned.role == "small" or fraction < DIFFICULT_BELOW
    person = placed.planned.name == "person" and not difficult
    parts: tuple[tuple[str, Box], ...] = ()
    if person and rng.random() < PERSON_LAYOUT_PROB:
        parts = _part_boxes(placed, size)
    action = None
    if person and rng.random() < PERSON_ACTION_PROB:
        action = _action(rng, names)
    return ObjectAnnotation(
        name=placed.planned.name,
        pose=placed.layer.pose,
        truncated=placed.truncated,
        occluded=fraction < OCCLUDED_BELOW,
        difficult=difficult,
        box=_mask_box(placed.visible),
        parts=parts,
        action=action,
    )


def _part_boxes(placed: _Placed, size: tuple[int, int]) -> tuple[tuple[str, Box], ...]:
    """Boxes of the person's head, hands and feet, those that lie inside the image."""
    boxes = []
    for name, mask in placed.layer.part_masks:
        inside = _embed(np.asarray(mask), placed.origin, size)
        if inside.any():
            boxes.append((name, _mask_box(inside)))
    return tuple(boxes)


def _action(rng: np.random.Generator, names: set[str]) -> str:
    """A VOC2012 action for a person, matching what else is in the picture."""
    if "horse" in names:
        return "ridinghorse"
    if names & {"bicycle", "motorbike"}:
        return "ridingbike"
    return str(rng.choice([a for a in ACTIONS if a not in ("ridinghorse", "ridingbike")]))


def _mask_box(mask: np.ndarray) -> Box:
    """The VOC box (1-based, inclusive) around the true pixels of a non-empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1


def _clip(
    layer_size: tuple[int, int], origin: tuple[int, int], image_size: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(image rows, cols) and (layer rows, cols) slices where a layer at `origin` lands."""
    (w, h), (x0, y0), (width, height) = layer_size, origin, image_size
    left, top = max(x0, 0), max(y0, 0)
    right, bottom = max(min(x0 + w, width), left), max(min(y0 + h, height), top)
    return (
        (slice(top, bottom), slice(left, right)),
        (slice(top - y0, bottom - y0), slice(left - x0, right - x0)),
    )


def _embed(alpha: np.ndarray, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """An image-sized boolean mask of the layer pixels at `origin` that are at least half opaque."""
    width, height = size
    into, take = _clip((alpha.shape[1], alpha.shape[0]), origin, size)
    mask = np.zeros((height, width), dtype=bool)
    mask[into] = alpha[take] >= 128
    return mask


def _paint(canvas: np.ndarray, layer: Image.Image, origin: tuple[int, int]) -> None:
    """Alpha-blend the RGBA layer onto the canvas with its top-left corner at `origin`."""
    into, take = _clip(layer.size, origin, (canvas.shape[1], canvas.shape[0]))
    pixels = np.asarray(layer, dtype=np.float32)[take]
    opacity = pixels[..., 3:] / 255.0
    canvas[into] = pixels[..., :3] * opacity + canvas[into] * (1.0 - opacity)


def _place(
    rng: np.random.Generator,
    layer_size: tuple[int, int],
    image_size: tuple[int, int],
    earlier: Sequence[Box],
    *,
    central: bool,
) -> tuple[int, int]:
    """A top-left corner for the layer that covers as little of the earlier objects as it can.

    A `central` layer stays inside the middle square that a center crop keeps; others may
    go anywhere, some reaching past the border (truncated).
    """
    (w, h), (width, height) = layer_size, image_size
    side = min(width, height) if central else None
    reach = 0.35 if not central and rng.random() < TRUNCATION_PROB else 0.0
    x_span = _span(width, w, side or width, reach)
    y_span = _span(height, h, side or height, reach)
    best, best_cover = (0, 0), float("inf")
    for _ in range(12):
        x0, y0 = round(rng.uniform(*x_span)), round(rng.uniform(*y_span))
        cover = max(
            (_covered_fraction((x0, y0, x0 + w, y0 + h), box) for box in earlier), default=0
        )
        if cover < best_cover:
            best, best_cover = (x0, y0), cover
        if cover < 0.2:
            break
    return best


def _span(full: int, size: int, area: int, reach: float) -> tuple[float, float]:
    """Where a layer of `size` may start along one axis to lie in the centred `area` of `full`,
    reaching out by `reach` of itself; centred when it does not fit."""
    low = (full - area) / 2 - reach * size
    high = (full + area) / 2 - size + reach * size
    if low >= high:
        return (full - size) / 2, (full - size) / 2
    return low, high


def _covered_fraction(top: Box, below: Box) -> float:
    """The fraction of box `below` (x0, y0, x1, y1) that box `top` covers."""
    dx = min(top[2], below[2]) - max(top[0], below[0])
    dy = min(top[3], below[3]) - max(top[1], below[1])
    area = (below[2] - below[0]) * (below[3] - below[1])
    return max(dx, 0) * max(dy, 0) / max(area, 1)


def _draw_object(
    obj: PlannedObject, rng: np.random.Generator, image_size: tuple[int, int]
) -> _Layer:
    """Draw one instance of the class at a random size, colour shade, mirroring and tilt."""
    styles = STYLES[obj.name]
    style = styles[int(rng.integers(len(styles)))]
    unit = _unit_pixels(style.aspect, rng.uniform(*OBJECT_SCALE[obj.role]), image_size)
    size = (max(round(style.aspect * unit), 2), max(round(unit), 2))
    pixels, alpha, part_masks = _rasterize(style, size, unit)
    shade = rng.uniform(0.85, 1.12) * np.ones(3) + rng.uniform(-0.06, 0.06, 3)
    pixels = np.clip(pixels * shade, 0, 255)
    rgba = np.dstack([pixels, alpha * 255.0]).astype(np.uint8)
    image = Image.fromarray(rgba)
    masks = [(name, Image.fromarray(mask.astype(np.uint8) * 255)) for name, mask in part_masks]
    mirrored = bool(rng.random() < 0.5)
    if mirrored:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        masks = [(name, m.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) for name, m in masks]
    angle = rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
    image = image.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    masks = [(name, m.rotate(angle, Image.Resampling.BILINEAR, expand=True)) for name, m in masks]
    return _Layer(image, tuple(masks), _pose(rng, style, mirrored))


def _unit_pixels(aspect: float, scale: float, image_size: tuple[int, int]) -> float:
    """Pixels per height unit so the object's long side is `scale` of the image's long side."""
    width, height = image_size
    unit = scale * max(image_size) / max(aspect, 1.0)
    return min(unit, 0.95 * height, 0.95 * width / aspect)


def _pose(rng: np.random.Generator, style: Style, mirrored: bool) -> str:
    """VOC's pose: Left/Right for drawings that face a side, else Frontal; sometimes unknown."""
    if rng.random() < 0.25:
        return "Unspecified"
    if not style.facing:
        return "Frontal"
    return "Left" if mirrored else "Right"


def _rasterize(
    style: Style, size: tuple[int, int], unit: float
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, np.ndarray]]]:
    """Paint the style's parts at `unit` pixels per height unit: RGB, coverage, VOC part masks."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) / unit
    pixels = np.zeros((height, width, 3), dtype=np.float32)
    alpha = np.zeros((height, width), dtype=bool)
    part_masks = []
    for part in style.parts:
        mask = _part_mask(part, size, unit)
        pixels[mask] = _texture(part, xs, ys)[mask]
        alpha |= mask
        if part.voc_part is not None:
            part_masks.append((part.voc_part, mask))
    return pixels, alpha, part_masks


def _part_mask(part: Part, size: tuple[int, int], unit: float) -> np.ndarray:
    """The pixels covered by one primitive."""
    mask = Image.new("L", size)
    draw = ImageDraw.Draw(mask)
    points = [v * unit for v in part.coords]
    stroke = max(round(part.width * unit), 1)
    if part.shape == "ellipse":
        draw.ellipse(points, fill=255)
    elif part.shape == "rect":
        draw.rectangle(points, fill=255)
    elif part.shape == "rrect":
        radius = 0.25 * min(points[2] - points[0], points[3] - points[1])
        draw.rounded_rectangle(points, radius=radius, fill=255)
    elif part.shape == "poly":
        draw.polygon(points, fill=255)
    elif part.shape == "ring":
        draw.ellipse(points, outline=255, width=stroke)
    elif part.shape == "line":
        draw.line(points, fill=255, width=stroke, joint="curve")
    else:
        raise ValueError(f"unknown part shape {part.shape!r}")
    return np.asarray(mask) >= 128


def _texture(part: Part, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The part's fill over the whole layer (xs, ys in height units): H×W×3 float."""
    fill = part.fill
    color, second = np.array(fill.color, np.float32), np.array(fill.second, np.float32)
    x0, y0, x1, y1 = part.box()
    cx, cy, radius = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2
    period = fill.period
    if fill.pattern == "vgradient":
        return color + ys[..., None] * (second - color)
    if fill.pattern == "radial":
        distance = np.hypot(xs - cx, ys - cy) / radius
        return color + np.clip(distance, 0, 1)[..., None] * (second - color)
    first_color = {
        "solid": lambda: np.ones_like(xs, dtype=bool),
        "hstripes": lambda: (ys / period) % 1 < 0.5,
        "vstripes": lambda: (xs / period) % 1 < 0.5,
        "dstripes": lambda: ((xs + ys) / period) % 1 < 0.5,
        "checker": lambda: (np.floor(xs / period) + np.floor(ys / period)) % 2 == 0,
        "dots": lambda: np.hypot(xs % period - period / 2, ys % period - period / 2) < 0.3 * period,
        "rings": lambda: (np.hypot(xs - cx, ys - cy) / period) % 1 < 0.5,
        "grid": lambda: ((xs % period) > 0.15 * period) & ((ys % period) > 0.15 * period),
    }[fill.pattern]()
    return np.where(first_color[..., None], color, second)
