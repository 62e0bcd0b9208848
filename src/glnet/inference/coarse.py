"""Coarse-to-fine: the global prediction chooses which patches the local branch sees.

The paper's variant for binary, imbalanced tasks (buildings vs background,
lesions on skin): foreground covers a small part of a huge image, and the
global branch alone already says where it is not.  Patches that do not come
within ``margin`` pixels of proposed foreground skip the local branch (the
expensive part) and take the global prediction instead, nearest-upsampled
as in mode global.  When every patch touches foreground nothing changes:
the result is exactly the normal one.

Training with the same option runs the local branch only on the patches
inference would run, plus those near true foreground (which a poor global
model might miss), so the local branch learns on what it will be shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from glnet.errors import GLNetError
from glnet.inference.grid import logit_size

Origin = tuple[int, int]


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel under F.interpolate(mode='nearest')."""
    src = torch.arange(n_in, dtype=torch.float64).view(1, 1, n_in)
    return F.interpolate(src, size=n_out, mode="nearest")[0, 0].long().numpy()


@dataclass(frozen=True)
class CoarseToFine:
    """Which classes are background, and how far around proposed foreground
    (in full-resolution pixels) the local branch still runs.

    The margin lets the local branch see the context around the foreground
    and catch foreground the coarse 1/4-of-size_g map shrank or shifted."""

    margin: int = 64
    background: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise GLNetError(f"the coarse-to-fine margin must be >= 0 px, got {self.margin}")
        if not self.background:
            raise GLNetError("coarse-to-fine needs at least one background class")

    def foreground(self, labels: np.ndarray) -> np.ndarray:
        """Boolean map of the pixels whose class is not background."""
        return ~np.isin(labels, self.background)

    def near(self, fg: np.ndarray, image_size: tuple[int, int], origins: list[Origin], patch_size: int) -> list[bool]:
        """For each patch: does it come within ``margin`` px of foreground?

        ``fg`` may have any resolution (the global map, or full resolution);
        it covers the whole image and is read the way the global prediction
        is upsampled (nearest), so a skipped patch is one whose
        nearest-upsampled global labels, dilated by the margin (a square),
        hold no foreground."""
        (height, width), (h, w), m = image_size, fg.shape, self.margin
        rows, cols = nearest_index(h, height), nearest_index(w, width)
        table = np.zeros((h + 1, w + 1), np.int64)  # summed-area table: any() of a window in O(1)
        table[1:, 1:] = np.cumsum(np.cumsum(fg, axis=0), axis=1)
        out = []
        for top, left in origins:
            t, b = max(0, top - m), min(height, top + patch_size + m)
            l, r = max(0, left - m), min(width, left + patch_size + m)
            y0, y1, x0, x1 = rows[t], rows[b - 1] + 1, cols[l], cols[r - 1] + 1
            out.append(bool(table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0] > 0))
        return out


def skipped_logits(g: torch.Tensor, image_size: tuple[int, int], origin: Origin, patch: int) -> torch.Tensor:
    """A skipped patch's logits at the patches' 1/4 scale: the global logits
    ``g`` (C, h, w) nearest-sampled at the full-resolution pixels the patch's
    logit cells stand for (the global-mode upsampling)."""
    q = logit_size(patch)
    t, l = origin
    cell = nearest_index(q, patch)  # patch pixel -> the logit cell it shows
    bounds = np.searchsorted(cell, np.arange(q + 1))  # each cell's first pixel, and the patch size
    middle = (bounds[:-1] + bounds[1:] - 1) // 2
    rows = nearest_index(g.shape[1], image_size[0])[t + middle]
    cols = nearest_index(g.shape[2], image_size[1])[l + middle]
    return g[:, rows][:, :, cols]


def as_coarse_to_fine(value: CoarseToFine | bool | None) -> CoarseToFine | None:
    """``True`` -> the default settings, ``False``/``None`` -> off."""
    if value is True:
        return CoarseToFine()
    if value is False or value is None:
        return None
    if not isinstance(value, CoarseToFine):
        raise GLNetError(f"coarse_to_fine must be True, False or a CoarseToFine, got {value!r}")
    return value


__all__ = ["CoarseToFine", "as_coarse_to_fine", "nearest_index"]
