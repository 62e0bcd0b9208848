"""What segmenting gives: ``Progress`` while it runs, a ``Segmentation`` (mean
logits and labels) of a region, and ``PatchResults``, the compact per-patch logits an image's
result is composed from.

``PatchResults`` is plain arrays, so a finished scene pickles (dask workers
return it), saves (the streaming writer's resume record) and composes any
region later without the model: nearest upsampling to the patch, mean where
patches overlap, argmax of the sum (the reference's arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """A region's result: mean logits over overlapping patches and labels."""

    region: Region
    logits: (
        np.ndarray
    )  # float32 (C, h, w) mean over patches; mode global: the whole image's (C, size_g/4, size_g/4) global logits
    labels: np.ndarray  # uint8 (h, w) class indices at full resolution
    patches_skipped: int = 0  # coarse-to-fine: patches over the region that took the global prediction


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
        top, left, bottom, right = region
        ph, pw = self.patch
        rows_of = _nearest_index(self.logits.shape[2], ph)
        cols_of = _nearest_index(self.logits.shape[3], pw)
        canvas = np.zeros((self.num_classes, bottom - top, right - left), np.float32)
        count = np.zeros((bottom - top, right - left), np.float32)
        skipped = np.zeros(len(self.origins), bool) if self.skipped is None else self.skipped
        n_skipped = 0
        for (t, l), logits, skip in zip(self.origins, self.logits, skipped):
            y0, y1 = max(t, top), min(t + ph, bottom)
            x0, x1 = max(l, left), min(l + pw, right)
            if y0 >= y1 or x0 >= x1:
                continue
            n_skipped += int(skip)
            up = logits[:, rows_of[y0 - t : y1 - t]][:, :, cols_of[x0 - l : x1 - l]]
            canvas[:, y0 - top : y1 - top, x0 - left : x1 - left] += up
            count[y0 - top : y1 - top, x0 - left : x1 - left] += 1
        if not count.all():
            raise GLNetError(f"region {region} is not covered by the computed patches")
        labels = canvas.argmax(0).astype(label_dtype(self.num_classes))  # argmax of the sum, as the reference
        canvas /= count
        return Segmentation(region, canvas, labels, n_skipped)


__all__ = ["PatchResults", "Progress", "Segmentation", "label_dtype"]
