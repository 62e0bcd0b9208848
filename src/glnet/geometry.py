"""Rectangles of pixels and the levels of a pyramid: the geometry every part shares.

A ``Region`` is (top, left, bottom, right) in level-0 pixels, half-open, the
same in the engine, the scenes, the label store, the export and the plugin.
A pyramid level k is level 0 halved k times with sizes rounded up; the
readers' lazy levels, the pyramid writer, the label store and the synthetic
scenes all stop halving by the one rule of :func:`level_shapes`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from glnet.errors import GLNetError

Region = tuple[int, int, int, int]  # top, left, bottom, right; half-open, level-0 pixels

OVERVIEW_SIDE = 512  # pyramids stop halving once the longer side is under this


def as_region(value: Iterable) -> Region:
    """``value`` as four ints, or a one-line GLNetError."""
    try:
        t, l, b, r = (int(v) for v in value)
    except (TypeError, ValueError):
        raise GLNetError(f"a region must be four integers (top, left, bottom, right), got {value!r}") from None
    return (t, l, b, r)


def intersect(a: Region, b: Region) -> Region | None:
    """The overlap of two regions, None when they do not overlap."""
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[2], b[2]), min(a[3], b[3])
    return (top, left, bottom, right) if top < bottom and left < right else None


def overlaps_any(a: Region, regions: Iterable[Region]) -> bool:
    """Whether ``a`` overlaps any of ``regions``."""
    return any(intersect(a, r) is not None for r in regions)


def overlap(a: Region, b: Region) -> Region:
    """The overlap of two regions known to overlap (e.g. a scene that covers a block)."""
    box = intersect(a, b)
    if box is None:
        raise GLNetError(f"regions {a} and {b} do not overlap")
    return box


def shift(region: Region, dy: int, dx: int) -> Region:
    """``region`` moved by (dy, dx): into or out of a scene's own coordinates."""
    return region[0] + dy, region[1] + dx, region[2] + dy, region[3] + dx


def clip(region: Iterable | None, shape: tuple[int, int]) -> Region:
    """``region`` cut to an image of ``shape`` (H, W); the whole image for None.
    A region with no pixel in the image is a GLNetError."""
    h, w = int(shape[0]), int(shape[1])
    if region is None:
        return (0, 0, h, w)
    box = intersect(as_region(region), (0, 0, h, w))
    if box is None:
        raise GLNetError(f"region {region} does not overlap the {h}x{w} image")
    return box


def enclosing(corners: Iterable[Iterable[float]], shape: tuple[int, int]) -> Region | None:
    """The pixels of an image of ``shape`` that a set of (y, x) points spans
    (fractional points, e.g. a view's corners mapped into the image: floor and
    ceil), cut to the image; None when none is inside."""
    ys, xs = zip(*((float(y), float(x)) for y, x in corners))
    box = (math.floor(min(ys)), math.floor(min(xs)), math.ceil(max(ys)), math.ceil(max(xs)))
    return intersect(box, (0, 0, int(shape[0]), int(shape[1])))


def level_shapes(shape: tuple[int, int], overview: int = OVERVIEW_SIDE) -> list[tuple[int, int]]:
    """(H, W) of each pyramid level, level 0 first: each the one before halved
    (sizes rounded up) until the longer side is under ``overview`` px, so the
    coarsest level fits on one screen yet is not tiny (at least ``overview / 2``
    unless level 0 is smaller)."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) >= max(overview, 2):
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes


def level_region(region: Region, level: int) -> Region:
    """The pixels of ``level`` covering a level-0 ``region`` (floor/ceil)."""
    t, l, b, r = region
    f = 1 << level
    return (t >> level, l >> level, -(-b // f), -(-r // f))


__all__ = [
    "OVERVIEW_SIDE",
    "Region",
    "as_region",
    "clip",
    "enclosing",
    "intersect",
    "level_region",
    "level_shapes",
    "overlap",
    "shift",
]
