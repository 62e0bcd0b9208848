"""The reference's patch grid: where GLNet's local patches sit in an image.

Per axis of length X and patch size p: n is the smallest count with
n * p >= X, raised until neighbouring patches overlap by at least 50 px;
origins are round(i * step) with step = (X - p) / (n - 1), the last one
X - p.  Rows and columns are independent, so rectangles work.  An axis
exactly one patch long has a single patch; shorter axes are padded by the
engine (the reference divides by zero on both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_OVERLAP = 50


def logit_size(patch: int) -> int:
    """Side of a patch's logits: the ResNet stem's stride-2 conv and stride-2 max-pool, each ceil(n / 2)."""
    after_conv = -(-patch // 2)
    return -(-after_conv // 2)


def axis_origins(length: int, patch: int) -> list[int]:
    if length < patch:
        raise ValueError(f"axis of {length} px is shorter than the {patch} px patch")
    n = max(1, -(-length // patch))
    if n == 1:
        return [0]
    while patch - (length - patch) / (n - 1) < MIN_OVERLAP:
        n += 1
    step = (length - patch) / (n - 1)
    return [round(i * step) for i in range(n - 1)] + [length - patch]


@dataclass(frozen=True)
class PatchGrid:
    """All patch origins of an image, row-major like the reference."""

    height: int
    width: int
    patch: int

    @property
    def rows(self) -> list[int]:
        return axis_origins(self.height, self.patch)

    @property
    def cols(self) -> list[int]:
        return axis_origins(self.width, self.patch)

    @property
    def origins(self) -> list[tuple[int, int]]:
        cols = self.cols
        return [(r, c) for r in self.rows for c in cols]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def intersecting(self, top: int, left: int, bottom: int, right: int) -> list[int]:
        """Indices (into ``origins``) of the patches that overlap the rectangle."""
        p, cols = self.patch, self.cols
        rows = [i for i, r in enumerate(self.rows) if r < bottom and r + p > top]
        keep = [j for j, c in enumerate(cols) if c < right and c + p > left]
        return [i * len(cols) + j for i in rows for j in keep]

    def coverage(self, axis: int, start: int, stop: int) -> np.ndarray:
        """How many patches cover each pixel of [start, stop) along an axis."""
        count = np.zeros(stop - start, dtype=np.int32)
        for o in self.rows if axis == 0 else self.cols:
            lo, hi = max(o, start), min(o + self.patch, stop)
            if lo < hi:
                count[lo - start : hi - start] += 1
        return count
