"""The class table: the names and display colours of the segmentation classes.

A class table travels with a model checkpoint and with every label file, so
that class index ``i`` always means the same thing and is drawn in the same
colour in napari, in colour masks and in metric reports.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from glnet.errors import GLNetError

# Index masks are stored as uint8 or uint16, so no table can be larger.
MAX_CLASSES = 65536


def _check_color(color: Any, where: str) -> tuple[int, int, int]:
    """Return ``color`` as a tuple of three ints in 0..255, or explain what is wrong."""
    if isinstance(color, (str, bytes)) or not isinstance(color, Iterable):
        raise GLNetError(f"{where}: colour must be a list of 3 integers 0..255, got {color!r}")
    values = list(color)
    if len(values) != 3 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v <= 255 for v in values
    ):
        raise GLNetError(f"{where}: colour must be 3 integers 0..255, got {color!r}")
    return (int(values[0]), int(values[1]), int(values[2]))


@dataclass(frozen=True)
class ClassInfo:
    """One class: a human-readable name and the RGB colour used to draw it."""

    name: str
    color: tuple[int, int, int]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise GLNetError(f"class name must be a string, got {self.name!r}")
        # Normalise lists and numpy ints to a plain tuple so tables compare and hash.
        object.__setattr__(self, "color", _check_color(self.color, f"class {self.name!r}"))


@dataclass(frozen=True)
class ClassTable:
    """An ordered list of classes; the position of a class is its index in label masks."""

    classes: tuple[ClassInfo, ...]

    def __post_init__(self) -> None:
        classes = tuple(self.classes)
        if not classes:
            raise GLNetError("the class table is empty: at least one class is needed")
        if len(classes) > MAX_CLASSES:
            raise GLNetError(f"the class table has {len(classes)} classes; at most {MAX_CLASSES} are supported")
        for i, info in enumerate(classes):
            if not isinstance(info, ClassInfo):
                raise GLNetError(f"class {i} is not a ClassInfo: {info!r}")
        # Colours must be unique, otherwise a colour mask cannot be decoded.
        seen: dict[tuple[int, int, int], int] = {}
        for i, info in enumerate(classes):
            if info.color in seen:
                raise GLNetError(
                    f"classes {seen[info.color]} and {i} ({info.name!r}) share the colour {list(info.color)}; "
                    "every class needs its own colour"
                )
            seen[info.color] = i
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        """Class names in index order."""
        return [c.name for c in self.classes]

    @property
    def colors(self) -> np.ndarray:
        """Class colours as a (C, 3) uint8 array, ready to index with a label mask."""
        return np.array([c.color for c in self.classes], dtype=np.uint8).reshape(len(self), 3)

    def to_list(self) -> list[dict[str, Any]]:
        """A JSON-friendly form, e.g. for checkpoints and config files."""
        return [{"name": c.name, "color": list(c.color)} for c in self.classes]

    @classmethod
    def from_list(cls, items: Iterable[Mapping[str, Any]]) -> ClassTable:
        """Build a table from ``[{"name": ..., "color": [r, g, b]}, ...]``, checking every entry."""
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise GLNetError(f"the class table must be a list of {{name, color}} entries, got {type(items).__name__}")
        classes = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or "name" not in item or "color" not in item:
                raise GLNetError(f"class table entry {i} must have a 'name' and a 'color', got {item!r}")
            if not isinstance(item["name"], str):
                raise GLNetError(f"class table entry {i}: name must be a string, got {item['name']!r}")
            color = _check_color(item["color"], f"class table entry {i} ({item['name']!r})")
            classes.append(ClassInfo(item["name"], color))
        return cls(tuple(classes))

    @classmethod
    def default(cls, n: int) -> ClassTable:
        """A table of ``n`` generic classes, for models trained without a class table.

        Seven classes get the DeepGlobe colours (the dataset GLNet was published
        on); other sizes get the PASCAL VOC colour map, whose colours are all
        distinct and which many existing palette masks already use.
        """
        if isinstance(n, bool) or not isinstance(n, Integral) or not 1 <= n <= MAX_CLASSES:
            raise GLNetError(f"number of classes must be an integer 1..{MAX_CLASSES}, got {n!r}")
        n = int(n)
        colors = DEEPGLOBE.colors.tolist() if n == 7 else [_voc_color(i) for i in range(n)]
        return cls(tuple(ClassInfo(f"class {i}", tuple(c)) for i, c in enumerate(colors)))


def _parse_color(value: Any, where: str) -> Any:
    """``"#rrggbb"`` -> (r, g, b); anything else is left for ``_check_color``."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) != 6:
            raise GLNetError(f"{where}: colour must be #rrggbb, got {value!r}")
        try:
            return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            raise GLNetError(f"{where}: colour must be #rrggbb, got {value!r}") from None
    return value


def read_class_table(path: str | os.PathLike[str]) -> ClassTable:
    """A class table from a file, the class index being the line/entry order.

    ``.json``: a list of ``{"name": ..., "color": [r, g, b] or "#rrggbb"}``
    (what ``ClassTable.to_list`` writes, so a checkpoint's or an export
    manifest's ``classes`` can be copied out); anything else is read as CSV
    lines ``name,#rrggbb`` (an optional ``name,color`` header is skipped).
    Used by ``glnet train/finetune --classes`` to train on another class set."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GLNetError(f"cannot read the class table {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise GLNetError(f"{path} is not valid JSON: {exc}") from None
        if isinstance(items, list):
            items = [
                {**item, "color": _parse_color(item.get("color"), f"{path} entry {i}")}
                if isinstance(item, Mapping)
                else item
                for i, item in enumerate(items)
            ]
        return ClassTable.from_list(items)
    items = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2:
            raise GLNetError(f"{path} line {n}: expected 'name,#rrggbb', got {','.join(row)!r}")
        name, color = row[0].strip(), row[1].strip()
        if not items and (name.lower(), color.lower()) == ("name", "color"):
            continue
        items.append({"name": name, "color": _parse_color(color, f"{path} line {n}")})
    if not items:
        raise GLNetError(f"{path} lists no classes")
    return ClassTable.from_list(items)


def _voc_color(i: int) -> tuple[int, int, int]:
    """Colour ``i`` of the PASCAL VOC colour map: the bits of ``i`` spread over R, G, B.

    The map is a bijection from 0..2**24-1 to colours, so colours never repeat.
    """
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= (i & 1) << shift
        g |= ((i >> 1) & 1) << shift
        b |= ((i >> 2) & 1) << shift
        i >>= 3
    return (r, g, b)


DEEPGLOBE = ClassTable(
    (
        ClassInfo("unknown", (0, 0, 0)),
        ClassInfo("urban", (0, 255, 255)),
        ClassInfo("agriculture", (255, 255, 0)),
        ClassInfo("rangeland", (255, 0, 255)),
        ClassInfo("forest", (0, 255, 0)),
        ClassInfo("water", (0, 0, 255)),
        ClassInfo("barren", (255, 255, 255)),
    )
)
