"""How sure the model was, pixel by pixel, beside a label store: what guides review.

``confidence`` is the largest class probability of the mean logits
(softmax), as ``round(p * 255)`` in uint8, at level-0 size in the store's
root group (what ``glnet segment --review`` writes, and what the plugin
writes as it refines).  It is at least ``255 / C`` wherever labels were
predicted, so 0 means "not predicted yet".  Coarser levels
(``confidence_levels/s1, s2, ...``, the label store's level shapes) hold
the mean over predicted pixels, so a viewer can show it zoomed out and the
least certain blocks of a 20000 px image are found by reading a small
level, not 400 Mpx.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import zarr

from glnet.geometry import Region, intersect, level_region
from glnet.store.labelstore import LabelStore

log = logging.getLogger(__name__)

LEVEL0 = "confidence"
LEVELS = "confidence_levels"


def confidence_from_logits(logits: np.ndarray) -> np.ndarray:
    """C x H x W mean logits -> H x W uint8: the largest softmax probability x 255, rounded."""
    z = logits - logits.max(0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(0, keepdims=True)
    return np.rint(p.max(0) * 255).astype(np.uint8)


def _mean_down(source: np.ndarray) -> np.ndarray:
    """2 x 2 mean of the non-zero (predicted) pixels, 0 where none; sizes rounded up.

    Summed in place in uint16 (4 x 255 fits): a copy per quad was half the time."""
    h, w = source.shape
    padded = np.pad(source, ((0, h % 2), (0, w % 2)))  # 0: not predicted, so not counted
    quads = [padded[0::2, 0::2], padded[0::2, 1::2], padded[1::2, 0::2], padded[1::2, 1::2]]
    total = np.zeros(quads[0].shape, np.uint16)
    count = np.zeros(quads[0].shape, np.uint16)
    for q in quads:
        total += q
        count += q > 0
    return ((total + count // 2) // np.maximum(count, 1)).astype(np.uint8)  # rounded; 0 / 1 where none


@dataclass(frozen=True)
class Block:
    """A block of the image and how sure the model was there."""

    region: Region
    confidence: float  # mean over predicted pixels, 0..1
    predicted: float  # share of the block's pixels predicted, 0..1


class ConfidenceMap:
    """The confidence arrays of ``store`` (created on first write when missing)."""

    def __init__(self, store: LabelStore, root: zarr.Group) -> None:
        self.store = store
        self._root = root
        self._lock = threading.Lock()
        self._levels: list[zarr.Array] | None = None  # opened once: opening reads each array's metadata

    @classmethod
    def open(cls, store: LabelStore, create: bool = True) -> ConfidenceMap | None:
        """The store's confidence map; None when it has none and ``create`` is False."""
        root = zarr.open_group(store.path, mode="r+" if create else "r")
        if LEVEL0 not in root:
            if not create:
                return None
            root.create_array(
                LEVEL0,
                shape=store.shape,
                chunks=(store.chunk, store.chunk),
                dtype="uint8",
                fill_value=0,
                dimension_names=["y", "x"],
            )
        if LEVELS not in root and create:
            group = root.create_group(LEVELS)
            for k, level in enumerate(store.levels[1:], start=1):
                group.create_array(
                    f"s{k}",
                    shape=level.shape,
                    chunks=level.chunks,
                    dtype="uint8",
                    fill_value=0,
                    dimension_names=["y", "x"],
                )
        return cls(store, root)

    def reset(self) -> None:
        """Forget every value (the labels are another model's from now on)."""
        with self._lock:
            for name in (LEVEL0, LEVELS):
                if name in self._root:
                    del self._root[name]
            self._levels = None
        ConfidenceMap.open(self.store)  # empty arrays again

    @property
    def levels(self) -> list[zarr.Array]:
        """Level 0 first; the coarser ones where the store has them."""
        if self._levels is None:
            self._levels = self._open_levels()
        return list(self._levels)

    def _open_levels(self) -> list[zarr.Array]:
        names = [LEVEL0] + [f"{LEVELS}/s{k}" for k in range(1, len(self.store.levels))]
        out = []
        for name in names:
            try:
                array = self._root[name]
            except KeyError:
                break
            if isinstance(array, zarr.Array):
                out.append(array)
        return out

    def read(self, region: Region | None = None, level: int = 0) -> np.ndarray:
        region = (0, 0, *self.store.shape) if region is None else region
        t, l, b, r = level_region(region, level)
        return np.asarray(self.levels[level][t:b, l:r])

    def write(self, region: Region, confidence: np.ndarray) -> None:
        """Level-0 ``confidence`` (uint8) of ``region``; the coarser levels are
        recomputed over the pixels it covers."""
        t, l, b, r = region
        levels = self.levels
        with self._lock:
            data = np.asarray(confidence, np.uint8)
            levels[0][t:b, l:r] = data
            written = (t, l, b, r)
            for k in range(1, len(levels)):
                # the level k-1 pixels that the level-k pixels over ``region`` are made of
                kt, kl, kb, kr = level_region(region, k)
                src = levels[k - 1]
                source = (2 * kt, 2 * kl, min(2 * kb, src.shape[0]), min(2 * kr, src.shape[1]))
                if source != written:  # pixels around the ones just written: read them back
                    st, sl, sb, sr = source
                    data = np.asarray(src[st:sb, sl:sr])
                written, data = (kt, kl, kb, kr), _mean_down(data)[: kb - kt, : kr - kl]
                levels[k][kt:kb, kl:kr] = data

    # -- guiding review ------------------------------------------------------------
    def blocks(self, block: int) -> list[Block]:
        """Every block (``block`` px squares, cut at the image edge) with its
        mean confidence, read from the coarsest level that still has a few
        pixels per block."""
        h, w = self.store.shape
        levels = self.levels
        k = 0
        while k + 1 < len(levels) and (block >> (k + 1)) >= 4:
            k += 1
        level = np.asarray(levels[k][...])
        out = []
        for top in range(0, h, block):
            for left in range(0, w, block):
                region = (top, left, min(top + block, h), min(left + block, w))
                t, l, b, r = level_region(region, k)
                cells = level[t:b, l:r]
                predicted = cells > 0
                if predicted.any():
                    out.append(Block(region, float(cells[predicted].mean()) / 255, float(predicted.mean())))
        return out


def covered(region: Region, by: list[Region]) -> float:
    """The share of ``region`` that the rectangles ``by`` cover (overlaps counted once)."""
    parts = [p for p in (intersect(region, r) for r in by) if p is not None]
    if not parts:
        return 0.0
    ys = np.unique([v for p in parts for v in (p[0], p[2])])
    xs = np.unique([v for p in parts for v in (p[1], p[3])])
    inside = np.zeros((len(ys) - 1, len(xs) - 1), bool)  # the grid the rectangles' edges make
    for t, l, b, r in parts:
        inside[np.searchsorted(ys, t) : np.searchsorted(ys, b), np.searchsorted(xs, l) : np.searchsorted(xs, r)] = True
    area = float(np.diff(ys) @ inside @ np.diff(xs))
    t, l, b, r = region
    return area / ((b - t) * (r - l))


def uncertain_blocks(store: LabelStore, block: int = 512, reviewed_share: float = 0.5) -> list[Block]:
    """The predicted blocks that are not reviewed (less than ``reviewed_share``
    of them marked reviewed), least confident first: where a reviewer's time
    helps most.  Empty when the store has no confidence map."""
    cmap = ConfidenceMap.open(store, create=False)
    if cmap is None:
        return []
    reviewed = store.reviewed_regions()
    todo = [b for b in cmap.blocks(block) if covered(b.region, reviewed) < reviewed_share]
    return sorted(todo, key=lambda b: (b.confidence, b.region))


@dataclass(frozen=True)
class ReviewProgress:
    """How far the review of a store is."""

    reviewed: float  # share of the image marked reviewed, 0..1
    predicted: float  # share of the image with predictions (confidence known), 0..1
    remaining_confidence: float  # mean confidence of the predicted, unreviewed pixels (nan: none left)
    corrections: int  # accepted edits in the store


def review_progress(store: LabelStore) -> ReviewProgress:
    """Reviewed area, and how sure the model was about what is left to review."""
    h, w = store.shape
    reviewed = store.reviewed_regions()
    share = covered((0, 0, h, w), reviewed)
    cmap = ConfidenceMap.open(store, create=False)
    predicted, remaining = 0.0, float("nan")
    if cmap is not None:
        k = len(cmap.levels) - 1
        level = np.asarray(cmap.levels[k][...])
        mask = level > 0
        predicted = float(mask.mean())
        left = mask.copy()
        for region in reviewed:
            t, l, b, r = level_region(region, k)
            left[t:b, l:r] = False
        if left.any():
            remaining = float(level[left].mean()) / 255
    return ReviewProgress(share, predicted, remaining, len(store.edit_log()))


__all__ = [
    "Block",
    "ConfidenceMap",
    "ReviewProgress",
    "confidence_from_logits",
    "covered",
    "review_progress",
    "uncertain_blocks",
]
