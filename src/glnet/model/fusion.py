"""Global<->local feature exchange: cropping global maps for patches (G->L)
and merging patch maps into global-sized maps (L->G).

The arithmetic is the reference's: for a map of size H x W of an image of
size Himg x Wimg, a patch of size p at (top, left) covers rows
round(H * top/Himg) .. + round(H * p/Himg) (Python round, half to even), an
integer slice with no interpolation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from glnet.model.fpn import Features
from glnet.model.upsampled_conv import resize_matrix

Origin = tuple[int, int]


def crop_window(
    map_size: tuple[int, ...], image_size: tuple[int, int], origin: Origin, patch_size: int
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a patch's window in a global map.

    Differs from the reference only where the reference fails: a window of
    at least one pixel, shifted back inside the map when rounding would make
    it overhang (the reference then stacks mismatched crops and crashes)."""
    (H, W), (hi, wi) = map_size, image_size
    h = max(1, round(H * (patch_size / hi)))
    w = max(1, round(W * (patch_size / wi)))
    top = min(round((origin[0] / hi) * H), H - h)
    left = min(round((origin[1] / wi) * W), W - w)
    return top, left, h, w


def crop(fmap: Tensor, image_size: tuple[int, int], origins: list[Origin], patch_size: int) -> Tensor:
    """Crops of a (1, C, H, W) global map for a batch of patches: (B, C, h, w)."""
    windows = [crop_window(tuple(fmap.shape[-2:]), image_size, o, patch_size) for o in origins]
    return torch.cat([fmap[:, :, t : t + h, l : l + w] for t, l, h, w in windows])


def crop_features(g: Features, image_size: tuple[int, int], origins: list[Origin], patch_size: int) -> Features:
    return g.apply(lambda m: crop(m, image_size, origins, patch_size))


def coverage(map_size: tuple[int, ...], image_size: tuple[int, int], origins: list[Origin], patch_size: int) -> Tensor:
    """The full-resolution patch-count map, bilinearly resized to the map size.

    The count is separable (rows x columns), and so is bilinear resizing, so
    the full-resolution map is never built."""
    rows, cols = sorted({o[0] for o in origins}), sorted({o[1] for o in origins})
    if len(set(origins)) == len(rows) * len(cols):  # a (sub)grid: every row with every column
        axes = [
            _axis_coverage(map_size, image_size, axis, starts, patch_size) for axis, starts in ((0, rows), (1, cols))
        ]
        return torch.outer(axes[0], axes[1]).float()
    # a subset of the grid (coarse-to-fine): one separable term per patch
    total = torch.zeros(map_size, dtype=torch.float64)
    for top, left in sorted(set(origins)):
        total += torch.outer(
            _axis_coverage(map_size, image_size, 0, [top], patch_size),
            _axis_coverage(map_size, image_size, 1, [left], patch_size),
        )
    return total.float()


def _axis_coverage(map_size, image_size, axis: int, starts: list[int], patch_size: int) -> Tensor:
    """The count of patches starting at ``starts`` along one axis, resized to the map."""
    n = image_size[axis]
    count = torch.zeros(n, dtype=torch.float64)
    for start in starts:
        count[start : start + patch_size] += 1
    return resize_matrix((n, map_size[axis]), count) @ count


class LocalMerger:
    """Accumulates every patch's maps onto canvases the size of the global maps.

    Only global-sized canvases are kept (tens of MB), never the patches' maps."""

    def __init__(self, global_features: Features, image_size: tuple[int, int], origins: list[Origin], patch_size: int):
        self.image_size = image_size
        self.origins = list(origins)
        self.patch_size = patch_size
        self._canvas = [torch.zeros_like(m, dtype=torch.float32) for m in global_features.maps()]
        self._added: set[Origin] = set()

    def add(self, local: Features, origins: list[Origin]) -> None:
        for canvas, patch_maps in zip(self._canvas, local.maps()):
            for i, origin in enumerate(origins):
                t, l, h, w = crop_window(tuple(canvas.shape[-2:]), self.image_size, origin, self.patch_size)
                resized = F.interpolate(
                    patch_maps[i : i + 1].float(), size=(h, w), mode="bilinear", align_corners=False
                )
                canvas[:, :, t : t + h, l : l + w] += resized
        self._added.update(origins)

    @property
    def complete(self) -> bool:
        return self._added >= set(self.origins)

    def result(self) -> Features:
        if not self.complete:
            raise RuntimeError("local2global needs every patch merged before the global pass")
        out = []
        for canvas in self._canvas:
            size = tuple(canvas.shape[-2:])
            cov = coverage(size, self.image_size, self.origins, self.patch_size).to(canvas.device)
            # with a subset of the patches (coarse-to-fine) some cells have none: they stay zero
            # (elsewhere this is exactly canvas / cov)
            out.append(torch.where(cov > 0, canvas / cov.clamp_min(1e-12), 0.0))
        return Features.from_maps(out)
