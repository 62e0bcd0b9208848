"""Scenes: GLNet on images larger than the ones it was trained on.

GLNet's global branch sees the whole training image shrunk to size_g (a
DeepGlobe 2448 px image at 508 px, a 0.21x view).  Shrinking a 20000 px
image to 508 px would show the model a view 8x coarser than it ever saw, so
a large image is tiled into overlapping *scenes* of the training size, each
segmented as one image (its own global context), and the scenes' mean
logits are blended with weights that fall linearly to zero across each
overlap, so there are no seams.  An image no larger than a scene is one
scene and gets exactly the core engine's result.

Every output pixel is a pure function of the scenes covering it, summed in
scene order: results do not depend on processing order, on which region
was asked first, or on how many workers computed the scenes.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from glnet.errors import GLNetError
from glnet.geometry import Region, clip, overlap, shift
from glnet.inference.engine import ImageSession, Segmenter
from glnet.inference.results import PatchResults, Progress, Segmentation

log = logging.getLogger(__name__)


def scene_origins(length: int, scene: int, overlap: int) -> list[int]:
    """Evenly spaced scene starts covering [0, length), neighbours
    overlapping by at least ``overlap`` px."""
    if length <= scene:
        return [0]
    n = math.ceil((length - overlap) / (scene - overlap))
    step = (length - scene) / (n - 1)
    return [round(i * step) for i in range(n)]


def _axis_weight(starts: list[int], k: int, size: int, length: int, lo: int, hi: int) -> np.ndarray:
    """Blending weight along one axis for pixels [lo, hi) of the k-th scene:
    1 inside, a linear ramp across each overlap with a neighbour (the two
    ramps of an overlap sum to 1), none at the image border."""
    start, stop = starts[k], min(starts[k] + size, length)
    x = np.arange(lo, hi, dtype=np.float64) + 0.5
    w = np.ones(hi - lo)
    if k > 0:
        w = np.minimum(w, (x - start) / (starts[k - 1] + size - start))
    if k + 1 < len(starts):
        w = np.minimum(w, (stop - x) / (stop - starts[k + 1]))
    return w.astype(np.float32)


@dataclass(frozen=True)
class SceneGrid:
    """Where the scenes of an image sit."""

    height: int
    width: int
    scene: int
    overlap: int

    def __post_init__(self) -> None:
        if self.scene < 32:
            raise GLNetError(f"scene size must be at least 32 px, got {self.scene}")
        if not 0 <= self.overlap <= self.scene // 2:
            raise GLNetError(
                f"scene overlap must be between 0 and half the scene ({self.scene // 2} px), got {self.overlap}"
            )

    # cached: the streaming writer asks for the covering scenes of every block after every scene
    @cached_property
    def rows(self) -> list[int]:
        return scene_origins(self.height, self.scene, self.overlap)

    @cached_property
    def cols(self) -> list[int]:
        return scene_origins(self.width, self.scene, self.overlap)

    @cached_property
    def boxes(self) -> list[Region]:
        rows, cols = self.rows, self.cols
        return [(t, l, min(t + self.scene, self.height), min(l + self.scene, self.width)) for t in rows for l in cols]

    def __len__(self) -> int:
        return len(self.boxes)

    def covering(self, region: Region) -> list[int]:
        top, left, bottom, right = region
        return [i for i, (t, l, b, r) in enumerate(self.boxes) if t < bottom and b > top and l < right and r > left]

    def weight(self, index: int, region: Region) -> np.ndarray:
        """Un-normalised blending weights of scene ``index`` over ``region``
        (which must lie inside the scene)."""
        rows, cols = self.rows, self.cols
        top, left, bottom, right = region
        wy = _axis_weight(rows, index // len(cols), self.scene, self.height, top, bottom)
        wx = _axis_weight(cols, index % len(cols), self.scene, self.width, left, right)
        return np.outer(wy, wx)


def blend(grid: SceneGrid, region: Region, parts: dict[int, Segmentation]) -> Segmentation:
    """Combine the covering scenes' results (in image coordinates) over
    ``region``.  Pixels only one scene covers keep that scene's labels
    exactly; elsewhere labels are the argmax of the weighted mean logits."""
    order = sorted(parts)
    if len(order) == 1:
        return replace(parts[order[0]], region=region)  # its logits stay lazy
    top, left, bottom, right = region
    first = parts[order[0]]
    logits = np.zeros((first.logits.shape[0], bottom - top, right - left), np.float32)
    total = np.zeros((bottom - top, right - left), np.float32)
    covers = np.zeros((bottom - top, right - left), np.int32)
    owner = np.zeros((bottom - top, right - left), first.labels.dtype)
    for i in order:
        part = parts[i]
        t, l, b, r = part.region
        win = (slice(t - top, b - top), slice(l - left, r - left))
        w = grid.weight(i, part.region)
        logits[(slice(None), *win)] += part.logits * w
        total[win] += w
        covers[win] += 1
        owner[win] = part.labels
    logits /= total
    labels = logits.argmax(0).astype(first.labels.dtype)
    single = covers == 1
    labels[single] = owner[single]  # one scene there: its own labels, untouched by the division
    return Segmentation(region, logits, labels, sum(p.patches_skipped for p in parts.values()))


class SceneSession:
    """An image of any size being segmented scene by scene.

    ``image`` is anything sliceable as image[top:bottom, left:right] giving
    (h, w, 3) uint8 (a numpy array, or level 0 of a lazy pyramid): only the
    scenes a request needs are read.  Region requests run only the patches
    they need; finished scenes are kept as compact ``PatchResults``."""

    def __init__(
        self,
        segmenter: Segmenter,
        image,
        scene_size: int | None = None,
        overlap: int | None = None,
        keep_sessions: int = 2,
        keep_bytes: int | None = None,
    ):
        if len(image.shape) != 3 or image.shape[2] != 3:
            raise GLNetError(f"expected an RGB image of shape (H, W, 3), got {tuple(image.shape)}")
        self.seg = segmenter
        self.image = image
        scene = scene_size or segmenter.checkpoint.scene_size
        self.grid = SceneGrid(
            int(image.shape[0]), int(image.shape[1]), scene, scene // 8 if overlap is None else overlap
        )
        self.keep_sessions = keep_sessions
        self.keep_bytes = keep_bytes  # also at most this much memory in kept sessions (one is always kept)
        self._sessions: OrderedDict[int, ImageSession] = OrderedDict()
        self.finished: dict[int, PatchResults] = {}
        self._partial: dict[int, PatchResults] = {}  # the patches of the last region run per scene

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.height, self.grid.width

    def on(self, segmenter: Segmenter) -> SceneSession:
        """This session on another Segmenter (smaller batches, or the CPU after
        running out of memory; see ``glnet.inference.memory``): finished scenes
        are kept, scenes in progress start again (a failed batch may have left
        them half-updated).  ``self`` when it is the same Segmenter."""
        if segmenter is self.seg:
            return self
        other = SceneSession(
            segmenter, self.image, self.grid.scene, self.grid.overlap, self.keep_sessions, self.keep_bytes
        )
        other.finished.update(self.finished)
        return other

    def _clip(self, region: Region | None) -> Region:
        return clip(region, self.shape)

    def read_scene(self, index: int) -> np.ndarray:
        t, l, b, r = self.grid.boxes[index]
        pixels = self.image[t:b, l:r]
        if hasattr(pixels, "compute"):  # a lazy (dask) image: read here, even inside a dask worker
            pixels = pixels.compute(scheduler="threads")
        return np.ascontiguousarray(pixels, dtype=np.uint8)

    def _session(self, index: int) -> ImageSession:
        if index in self._sessions:
            self._sessions.move_to_end(index)
        else:
            self._sessions[index] = self.seg.open(self.read_scene(index))
            self._evict()
        return self._sessions[index]

    def _evict(self) -> None:
        """Forget the least recently used sessions beyond ``keep_sessions`` or ``keep_bytes``."""
        while len(self._sessions) > self.keep_sessions or (
            self.keep_bytes is not None
            and len(self._sessions) > 1
            and sum(s.nbytes for s in self._sessions.values()) > self.keep_bytes
        ):
            self._sessions.popitem(last=False)

    def global_labels(self, index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Scene ``index``'s global-branch labels at its pixels ``rows`` x
        ``cols`` (scene coordinates): a fast overview, one global pass per
        scene, shared with the scene's later patch work while its session is kept."""
        labels = self._session(index).global_labels(rows, cols)
        self._evict()  # the session now holds its global context
        return labels

    def run_scene(self, index: int) -> Iterator[Progress]:
        """Segment a whole scene and keep its compact result."""
        if index in self.finished:
            return
        session = self._session(index)
        yield from session.run()
        self.finished[index] = session.finished()
        self._sessions.pop(index, None)

    def run(self, region: Region | None = None) -> Iterator[tuple[int, Progress]]:
        """Compute what ``result(region)`` needs, scene by scene, yielding
        (scene index, progress) after every patch batch."""
        box = self._clip(region)
        for i in self.grid.covering(box):
            if i in self.finished:
                continue
            t, l, _, _ = self.grid.boxes[i]
            sub = shift(overlap(box, self.grid.boxes[i]), -t, -l)
            session = self._session(i)
            for p in session.run(sub):
                yield i, p
            if session.complete:
                self.finished[i] = session.finished()
                self._sessions.pop(i, None)
            else:  # keep what this region needs, small, in case the session is evicted
                self._partial[i] = session.region_results(sub)

    def result(self, region: Region | None = None) -> Segmentation:
        """Blended mean logits and labels inside ``region``."""
        box = self._clip(region)
        parts = {}
        for i in self.grid.covering(box):
            t, l, _, _ = self.grid.boxes[i]
            sub = overlap(box, self.grid.boxes[i])
            local = shift(sub, -t, -l)
            if i in self.finished:
                seg = self.finished[i].result(local)
            elif i in self._partial and self._partial[i].covers(local):
                seg = self._partial[i].result(local)
            else:
                raise GLNetError(f"scene {i} has not been computed yet: iterate run(region) to the end first")
            parts[i] = replace(seg, region=sub)
        return blend(self.grid, box, parts)
