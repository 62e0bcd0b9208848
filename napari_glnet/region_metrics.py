"""Confusion matrices of a label store against a ground truth, over any region,
without ever holding the whole image.

The store's level 0 is cut into blocks (whole store chunks).  Each block's
confusion matrix is computed once with :class:`glnet.metrics.ConfusionMatrix`
and cached; a region's matrix is the merge of the cached matrices of the blocks
inside it, plus fresh counts over the parts of the blocks its border cuts.  An
accepted edit or an undo invalidates only the blocks it touches, so the whole
image IoU of a 20000 x 20000 store is updated after an edit by recounting a few
blocks, not 400 Mpx.  The live edit layer (painted but not accepted) is passed
as an *overlay* that replaces the store's labels in its region; blocks under it
are counted fresh every time and never cached.

Qt-free and thread-safe: the panel runs :meth:`StoreConfusion.matrix` in a
worker when there is a lot left to count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from glnet.errors import GLNetError
from glnet.geometry import Region, as_region, intersect
from glnet.metrics import ConfusionMatrix
from glnet.store.labelstore import LabelStore

Overlay = tuple[Region, np.ndarray]
CACHE_BYTES = 64 << 20  # block matrices kept at most (C*C int64 each)
MIN_BLOCK = 512


def _area(region: Region) -> int:
    return (region[2] - region[0]) * (region[3] - region[1])


class StoreConfusion:
    """Ground truth ``truth`` (an (H, W) array-like: numpy, dask or zarr, indexed
    lazily) against the level 0 of ``store``, block by block.

    Ground-truth values outside the class table are not counted (as
    ``ConfusionMatrix.update`` does); :attr:`out_of_range` counts them so the
    GUI can say the ground truth does not match the model's classes.
    """

    def __init__(self, store: LabelStore, truth: Any, *, ignore_index: int | None = None) -> None:
        shape = tuple(int(v) for v in truth.shape)
        if shape != tuple(store.shape):
            raise GLNetError(
                f"the ground truth is {' x '.join(map(str, shape))} px but the labels are "
                f"{store.shape[0]} x {store.shape[1]} px: load the mask of this image"
            )
        self.store = store
        self.truth = truth
        self.ignore_index = ignore_index
        self.num_classes = len(store.classes)
        self.block = self._block_size()
        self.out_of_range = 0
        self._cache: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
        self._generation: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def _block_size(self) -> int:
        """Whole store chunks, at least MIN_BLOCK px, few enough that all their
        matrices fit in CACHE_BYTES."""
        chunk = self.store.chunk
        block = chunk * -(-MIN_BLOCK // chunk)
        h, w = self.store.shape
        while -(-h // block) * -(-w // block) * self.num_classes**2 * 8 > CACHE_BYTES:
            block *= 2
        return block

    # -- blocks --------------------------------------------------------------------
    def blocks(self, region: Region) -> Iterator[tuple[tuple[int, int], Region]]:
        """(key, block region) of every block that ``region`` touches."""
        b = self.block
        h, w = self.store.shape
        for i in range(region[0] // b, -(-region[2] // b)):
            for j in range(region[1] // b, -(-region[3] // b)):
                yield (i, j), (i * b, j * b, min((i + 1) * b, h), min((j + 1) * b, w))

    def invalidate(self, region: Region | None = None) -> None:
        """Forget the cached counts of the blocks ``region`` touches (all by default)."""
        with self._lock:
            keys = list(self._cache) if region is None else [k for k, _ in self.blocks(region)]
            for key in keys:
                self._generation[key] = self._generation.get(key, 0) + 1
                self._cache.pop(key, None)

    def pending_pixels(self, region: Region, overlay: Overlay | None = None) -> int:
        """How many pixels :meth:`matrix` would have to read (the rest is cached)."""
        return sum(_area(part) for _, _, part, cached in self._plan(region, overlay) if not cached)

    def _plan(self, region: Region, overlay: Overlay | None) -> list[tuple[tuple[int, int], Region, Region, bool]]:
        """(key, block, part of the block in ``region``, cache usable) per touched block."""
        plan = []
        with self._lock:
            for key, block in self.blocks(region):
                part = intersect(block, region)
                if part is None:
                    continue
                cacheable = part == block and not (overlay is not None and intersect(block, overlay[0]))
                plan.append((key, block, part, cacheable and key in self._cache))
        return plan

    # -- counting ------------------------------------------------------------------
    def _count(self, part: Region, overlay: Overlay | None) -> tuple[ConfusionMatrix, int]:
        t, l, b, r = part
        pred = self.store.read(part)
        if overlay is not None:
            inside = intersect(part, overlay[0])
            if inside is not None:
                (ot, ol, _, _), labels = overlay
                it, il, ib, ir = inside
                pred[it - t : ib - t, il - l : ir - l] = labels[it - ot : ib - ot, il - ol : ir - ol]
        truth = np.asarray(self.truth[t:b, l:r])
        if truth.dtype.kind not in "iub":
            raise GLNetError(f"the ground truth must hold integer class indices, got {truth.dtype}")
        cm = ConfusionMatrix(self.num_classes, self.ignore_index)
        cm.update(truth, np.clip(pred, 0, self.num_classes - 1))  # the edit layer may hold any label
        outside = int(np.count_nonzero(truth >= self.num_classes)) if truth.dtype.kind != "b" else 0
        if truth.dtype.kind == "i":
            outside += int(np.count_nonzero(truth < 0))
        return cm, outside

    def matrix(
        self,
        region: Region | None = None,
        overlay: Overlay | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ConfusionMatrix | None:
        """The confusion matrix over ``region`` (the whole image by default),
        with ``overlay`` = (region, labels) replacing the store's labels there.

        Returns None if ``cancelled()`` became true between blocks.
        """
        box = (0, 0, *self.store.shape) if region is None else as_region(region)
        total = ConfusionMatrix(self.num_classes, self.ignore_index)
        outside = 0
        for key, block, part, _ in self._plan(box, overlay):
            if cancelled():
                return None
            with self._lock:
                cached = self._cache.get(key) if part == block else None
                generation = self._generation.get(key, 0)
            under_edit = overlay is not None and intersect(part, overlay[0]) is not None
            if cached is None or under_edit:
                cm, n_out = self._count(part, overlay)
                if part == block and not under_edit:
                    with self._lock:
                        if self._generation.get(key, 0) == generation:  # not changed while we counted
                            self._cache[key] = (cm, n_out)
            else:
                cm, n_out = cached
            total.merge(cm)
            outside += n_out
        self.out_of_range = outside
        return total
