"""What segmenting gives: ``Progress`` while it runs, a ``Segmentation`` (mean
logits and labels) of a region, and ``PatchResults``, the compact per-patch logits an image's
result is composed from.

``PatchResults`` is plain arrays, so a finished scene pickles (dask workers
return it), saves (the streaming writer's resume record) and composes any
region later without the model: nearest upsampling to the patch, mean where
patches overlap, argmax of the sum (the reference's arithmetic).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from glnet.errors import GLNetError
from glnet.geometry import Region
from glnet.inference.coarse import nearest_index as _nearest_index


@dataclass(frozen=True)
class Progress:
    """Reported after each unit of work; ``done``/``total`` count patches."""

    stage: str  # "global", "local", "refine"
    done: int
    total: int


@dataclass
class Segmentation:
    """A region's result: labels, and mean logits over overlapping patches on demand.

    The logits are built on first use: at full resolution they are C x h x w
    float32 (168 MB for a 2448 px DeepGlobe image), which most callers, who
    want labels only, should not pay for."""

    region: Region
    # float32 (C, h, w) mean over patches, or a function computing it on first use;
    # mode global: the whole image's (C, size_g/4, size_g/4) global logits
    _logits: np.ndarray | Callable[[], np.ndarray] = field(repr=False)
    labels: np.ndarray  # uint8 (h, w) class indices at full resolution
    patches_skipped: int = 0  # coarse-to-fine: patches over the region that took the global prediction

    @property
    def logits(self) -> np.ndarray:
        if callable(self._logits):
            self._logits = self._logits()
        return self._logits


def label_dtype(num_classes: int) -> type:
    return np.uint8 if num_classes <= 256 else np.uint16


@dataclass
class PatchResults:
    """Per-patch 1/4-scale logits of an image and how they compose into a
    full-resolution result: nearest upsampling to the patch, mean where
    patches overlap, argmax of the sum (the reference's arithmetic).

    Plain arrays only, so it pickles (dask workers return it) and saves."""

    size: tuple[int, int]  # image height, width (unpadded)
    origins: list[tuple[int, int]]  # top-left of each patch
    patch: tuple[int, int]  # patch height, width (global mode: the padded image)
    logits: np.ndarray  # float32 (n, C, h, w), one per origin
    skipped: np.ndarray | None = None  # bool (n,): coarse-to-fine filled these from the global prediction

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    def covers(self, region: Region) -> bool:
        top, left, bottom, right = region
        ph, pw = self.patch
        covered = np.zeros((bottom - top, right - left), bool)
        for t, l in self.origins:
            y0, y1, x0, x1 = max(t, top), min(t + ph, bottom), max(l, left), min(l + pw, right)
            if y0 < y1 and x0 < x1:
                covered[y0 - top : y1 - top, x0 - left : x1 - left] = True
        return bool(covered.all())

    def result(self, region: Region) -> Segmentation:
        """Labels over ``region`` (the argmax of the summed patch logits, as
        the reference) and its mean logits on demand.

        Nearest upsampling repeats each logit cell over a block of pixels, so
        along each axis the pixels fall into runs that every patch maps to
        the same cell: the sums are computed once per run (about 1/16 of the
        pixels for 508 px patches), with the same float additions in the
        same order as on a full-resolution canvas, and only the uint8 labels
        are expanded to full resolution."""
        top, left, bottom, right = region
        ph, pw = self.patch
        row_start, row_len = _runs([t for t, _ in self.origins], ph, self.logits.shape[2], top, bottom)
        col_start, col_len = _runs([l for _, l in self.origins], pw, self.logits.shape[3], left, right)
        rows_of = _nearest_index(self.logits.shape[2], ph)
        cols_of = _nearest_index(self.logits.shape[3], pw)
        sums = np.zeros((self.num_classes, len(row_start), len(col_start)), np.float32)
        count = np.zeros((len(row_start), len(col_start)), np.float32)
        skipped = np.zeros(len(self.origins), bool) if self.skipped is None else self.skipped
        n_skipped = 0
        for (t, l), logits, skip in zip(self.origins, self.logits, skipped):
            r0, r1 = np.searchsorted(row_start, (t, t + ph))  # the runs inside the patch
            c0, c1 = np.searchsorted(col_start, (l, l + pw))
            if r0 >= r1 or c0 >= c1:
                continue
            n_skipped += int(skip)
            cells = np.ix_(rows_of[row_start[r0:r1] - t], cols_of[col_start[c0:c1] - l])
            sums[:, r0:r1, c0:c1] += logits[:, cells[0], cells[1]]
            count[r0:r1, c0:c1] += 1
        if not count.all():
            raise GLNetError(f"region {region} is not covered by the computed patches")
        labels = sums.argmax(0).astype(label_dtype(self.num_classes))  # argmax of the sum, as the reference
        labels = labels.repeat(row_len, 0).repeat(col_len, 1)
        mean = functools.partial(_expand_mean, sums, count, row_len, col_len)
        return Segmentation(region, mean, labels, n_skipped)


def _runs(starts: list[int], patch: int, cells: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """First pixel and length of each run of pixels in [lo, hi) along one axis
    that every patch starting at ``starts`` maps to the same logit cell (or
    does not cover).  The index of the cell a pixel shows only grows with the
    pixel, so equal keys are consecutive."""
    src = _nearest_index(cells, patch)
    pixels = np.arange(lo, hi)
    key = np.full((len(set(starts)), hi - lo), -1)
    for k, s in enumerate(sorted(set(starts))):
        inside = (pixels >= s) & (pixels < s + patch)
        key[k, inside] = src[pixels[inside] - s]
    new = np.ones(hi - lo, bool)
    new[1:] = (key[:, 1:] != key[:, :-1]).any(0)
    first = np.flatnonzero(new)
    return first + lo, np.diff(first, append=hi - lo)


def _expand_mean(sums: np.ndarray, count: np.ndarray, row_len: np.ndarray, col_len: np.ndarray) -> np.ndarray:
    return (sums / count).repeat(row_len, 1).repeat(col_len, 2)


__all__ = ["PatchResults", "Progress", "Segmentation", "label_dtype"]
