"""The viewer's inference session: GLNet on whatever part of an image is in view.

No Qt and no napari here (the controller is the napari glue), so all of it
runs and is tested without a screen.  A :class:`ViewSession` joins three
library pieces:

* a ``glnet.inference.scenes.SceneSession`` over the (lazy) image: an image no
  larger than one scene is one scene and gets exactly the core engine's
  result; finished patches and scenes are kept, so re-targeting the view
  never recomputes what is done;
* a fast **overview**: each scene's global-branch labels, sampled on a
  coarse canvas (about one canvas pixel per global-logit pixel), shown while
  the patches run;
* a ``glnet.store.labelstore.LabelStore`` that refined labels go into, tile by
  tile (so each tile appears as soon as it is done, and memory stays one
  tile's logits whatever the view size).  Predictions never overwrite a
  person's corrections (the store's recorded edit regions).

Which parts of the store hold current predictions is recorded in the store
(``attrs["view"]``), so :meth:`ViewSession.display_levels` can show
not-yet-segmented pixels as transparent instead of as class 0.

Long because the session joins the scenes, the overview and the store, and
its record of which tiles are current changes with each of them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from glnet.errors import GLNetError
from glnet.geometry import Region, intersect, level_region
from glnet.inference.engine import Segmenter
from glnet.inference.scenes import SceneGrid, SceneSession
from glnet.store.confidence import ConfidenceMap, confidence_from_logits
from glnet.store.labelstore import LabelStore

log = logging.getLogger(__name__)

TILE = 1024  # refined labels are written in tiles of 2 x 2 store chunks
STORE_CHUNK = 512
# Scenes whose global pass stays in memory: a 3 x 3 block, what a view at zoom 1
# spans, so the overview's global passes are the ones the refinement uses (with 4,
# a 9-scene view ran 20 global passes for its 9 scenes), within KEEP_BYTES: a scene
# holds about 9 MB with the demo model (all 9 kept), 117 MB with the authors'
# ResNet-50 (4 kept).
KEEP_SCENES = 9
KEEP_BYTES = 512 * 2**20


# -- choosing the store -------------------------------------------------------------
def image_identity(source: str | os.PathLike | None, data: Any, name: str = "") -> str:
    """A short key naming an image, for its default label store.

    A file is named by its absolute path and shape (not its mtime: a touched
    file must not lose its corrections); an in-memory array by a hash of its
    pixels; anything else (a lazy array without a file) by name and shape."""
    shape = tuple(int(v) for v in data.shape)
    if source:
        text = f"file|{Path(source).resolve()}|{shape}"
    elif isinstance(data, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(data).view(np.uint8).ravel(), digest_size=12).hexdigest()
        text = f"array|{shape}|{data.dtype}|{digest}"
    else:
        text = f"lazy|{name}|{shape}|{getattr(data, 'dtype', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _safe(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "image"


def default_store_path(identity: str, stem: str = "image", cache_dir: str | os.PathLike | None = None) -> Path:
    """Where an image's labels live unless the user picks a store:
    ``<cache>/labels/<stem>-<identity>.zarr`` beside the readers' pyramid cache."""
    from glnet.io.readers import cache_dir_default

    return Path(cache_dir or cache_dir_default()) / "labels" / f"{_safe(stem)}-{identity}.zarr"


def open_store(path: str | os.PathLike, shape: tuple[int, int], classes, stem: str = "image") -> LabelStore:
    """Open the label store at ``path`` for an image of ``shape``, creating it if missing.

    What a folder chooser gives is taken as meant: an empty folder becomes
    the store (a chooser can only pick existing folders); a folder that is
    not a store holds one, ``<stem>.zarr``.  A store made for another shape
    or class table is replaced only when nobody corrected or reviewed
    anything in it; otherwise this refuses (a GLNetError naming the store)
    and changes nothing."""
    path = Path(path)
    shape = (int(shape[0]), int(shape[1]))
    if path.is_dir() and not any(path.iterdir()):
        log.info("creating a label store in the empty folder %s", path)
        return LabelStore.create(path, shape, classes, chunk=STORE_CHUNK, overwrite=True)
    if path.is_dir() and not (path / ".glnet").is_dir():
        path = path / f"{_safe(stem)}.zarr"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return LabelStore.create(path, shape, classes, chunk=STORE_CHUNK)
    store = LabelStore.open(path)
    if store.shape == shape and store.classes == classes:
        return store
    what = "image size" if store.shape != shape else "class table"
    work = len(store.edit_log()) + len(store.reviewed_regions())
    if work:
        raise GLNetError(
            f"the label store {path} was made for another {what} and holds {work} corrections or reviews: "
            "it was left untouched; choose another label store"
        )
    log.info("replacing %s (made for another %s, no corrections in it)", path, what)
    return LabelStore.create(path, shape, classes, chunk=STORE_CHUNK, overwrite=True)


# -- what the session reports -----------------------------------------------------
@dataclass(frozen=True)
class RefineProgress:
    """Reported after every patch batch and after every tile written."""

    tiles_done: int
    tiles_total: int
    fraction: float  # of the region, counting the tile in progress by its patches
    written: Region | None = None  # the tile just written to the store, if any
    stage: str = "local"
    reused: bool = False  # the tile was refined before: its labels were in the store already


@dataclass(frozen=True)
class Overview:
    """Global-branch labels on a coarse canvas: canvas pixel (i, j) is the
    image pixel (i * step + step // 2, j * step + step // 2); ``no_label``
    where no scene's overview is computed yet."""

    labels: np.ndarray
    step: int
    no_label: int


def _split_owners(starts: list[int], size: int, length: int) -> list[tuple[int, int]]:
    """Per scene along one axis, the pixels it owns in the overview: overlaps
    are split at their middle, so every pixel has one owner."""
    bounds = [0] + [(starts[k + 1] + starts[k] + size) // 2 for k in range(len(starts) - 1)] + [length]
    return list(pairwise(bounds))


def _rect_mask(block: Region, rects: list[Region]) -> np.ndarray:
    top, left, bottom, right = block
    mask = np.zeros((bottom - top, right - left), bool)
    for r in rects:
        hit = intersect(block, r)
        if hit is not None:
            t, l, b, rr = hit
            mask[t - top : b - top, l - left : rr - left] = True
    return mask


# -- the session --------------------------------------------------------------------
class ViewSession:
    """One image in the viewer, segmented where and when the user looks.

    ``image`` is anything sliceable as image[top:bottom, left:right] giving
    (h, w, 3) uint8 (a numpy array or level 0 of a lazy pyramid).  Use it from
    one thread at a time (the controller's worker); the store may be read
    from others."""

    def __init__(
        self,
        segmenter: Segmenter,
        image: Any,
        store: LabelStore,
        *,
        scene_size: int | None = None,
        overlap: int | None = None,
        tile: int = TILE,
        keep_sessions: int = KEEP_SCENES,
    ):
        self.image = image
        self.store = store
        self.tile = int(tile)
        self.scenes = SceneSession(
            segmenter, image, scene_size, overlap, keep_sessions=keep_sessions, keep_bytes=KEEP_BYTES
        )
        if tuple(store.shape) != self.scenes.shape:
            raise GLNetError(f"the label store is {store.shape} px but the image is {self.scenes.shape} px")
        if store.classes != segmenter.checkpoint.classes:
            raise GLNetError("the label store's class table is not the checkpoint's: choose another label store")
        self.batches = 0  # patch batches run by this session (tests check cancelling with it)
        grid = self.grid
        scene = min(grid.scene, max(grid.height, grid.width))  # what one global view covers
        self.overview_step = max(1, round(scene / max(1, self.seg.size_g // 4)))
        dtype = store.levels[0].dtype
        self.no_label = int(np.iinfo(dtype).max) if len(self.classes) <= np.iinfo(dtype).max else -1
        h, w = self.shape
        s = self.overview_step
        self._canvas = np.full((-(-h // s), -(-w // s)), max(self.no_label, 0), dtype)
        self._overview_done: set[int] = set()
        self._model_key = self._key(segmenter)
        view = store.attrs.get("view") or {}
        self.confidence = ConfidenceMap.open(store)
        if view.get("model") != self._model_key:  # predictions of another model: stale, hidden, redone
            store.update_attrs(view={"model": self._model_key, "refined": []})
            self.confidence.reset()
        self._refined: list[Region] = [tuple(r) for r in (store.attrs.get("view") or {}).get("refined", [])]

    # -- basics ------------------------------------------------------------------
    @property
    def seg(self) -> Segmenter:
        return self.scenes.seg

    @property
    def grid(self) -> SceneGrid:
        return self.scenes.grid

    @property
    def shape(self) -> tuple[int, int]:
        return self.scenes.shape

    @property
    def classes(self):
        return self.seg.checkpoint.classes

    @staticmethod
    def _key(seg: Segmenter) -> str:
        c, ctf = seg.checkpoint, seg.coarse_to_fine
        key = f"{c.source}|{seg.mode}|{seg.size_g}|{seg.size_p}|{c.scene_size}|{len(c.classes)}"
        return key if ctf is None else f"{key}|coarse-to-fine {ctf.margin} {list(ctf.background)}"

    def clip(self, region: Region | None) -> Region:
        """``region`` clipped to the image (the whole image for None)."""
        return self.scenes._clip(region)

    def set_segmenter(self, segmenter: Segmenter) -> None:
        """Continue on another Segmenter (smaller batches, or the CPU after a
        GPU ran out of memory): finished scenes are kept, scenes in progress
        start again (a failed batch may have left them half-updated)."""
        self.scenes = self.scenes.on(segmenter)

    # -- the overview ------------------------------------------------------------
    def run_overview(self, region: Region | None = None) -> Iterator[int]:
        """Add the global-branch overview of every scene covering ``region``
        to the canvas, yielding each scene's index when it is on the canvas."""
        grid, s = self.grid, self.overview_step
        rows_owned = _split_owners(grid.rows, grid.scene, grid.height)
        cols_owned = _split_owners(grid.cols, grid.scene, grid.width)
        for i in grid.covering(self.clip(region)):
            if i in self._overview_done:
                continue
            top, left, _, _ = grid.boxes[i]
            (y0, y1), (x0, x1) = rows_owned[i // len(grid.cols)], cols_owned[i % len(grid.cols)]
            ci, cj = np.arange(self._canvas.shape[0]), np.arange(self._canvas.shape[1])
            ys, xs = np.minimum(ci * s + s // 2, grid.height - 1), np.minimum(cj * s + s // 2, grid.width - 1)
            ci, ys = ci[(ys >= y0) & (ys < y1)], ys[(ys >= y0) & (ys < y1)]
            cj, xs = cj[(xs >= x0) & (xs < x1)], xs[(xs >= x0) & (xs < x1)]
            if len(ci) and len(cj):
                labels = self.scenes.global_labels(i, ys - top, xs - left)
                self._canvas[np.ix_(ci, cj)] = labels
            self._overview_done.add(i)
            yield i

    def overview(self, region: Region | None = None) -> Overview:
        """The overview canvas with every scene covering ``region`` on it (a copy)."""
        for _ in self.run_overview(region):
            pass
        return self.current_overview()

    def current_overview(self) -> Overview:
        """The overview so far (a copy), blank where the store already shows labels,
        so the two layers never draw over each other."""
        labels = self._canvas.copy()
        if self.no_label >= 0:
            s = self.overview_step
            ys = np.minimum(np.arange(labels.shape[0]) * s + s // 2, self.shape[0] - 1)
            xs = np.minimum(np.arange(labels.shape[1]) * s + s // 2, self.shape[1] - 1)
            for t, l, b, r in self.shown_regions():
                rows, cols = np.flatnonzero((ys >= t) & (ys < b)), np.flatnonzero((xs >= l) & (xs < r))
                if len(rows) and len(cols):
                    labels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = self.no_label
        return Overview(labels, self.overview_step, self.no_label)

    # -- refining --------------------------------------------------------------------
    def tiles(self, region: Region | None = None) -> list[Region]:
        """The write tiles of ``region`` (the TILE grid cut to it), ordered so
        tiles needing the same scenes follow each other (no scene thrash)."""
        top, left, bottom, right = self.clip(region)
        t = self.tile
        out = []
        for y in range(top - top % t, bottom, t):
            for x in range(left - left % t, right, t):
                out.append((max(y, top), max(x, left), min(y + t, bottom), min(x + t, right)))
        return sorted(out, key=lambda b: (self.grid.covering(b), b))

    def refine(self, region: Region | None = None) -> Iterator[RefineProgress]:
        """Segment ``region`` at full resolution into the store, tile by tile,
        yielding after every patch batch and after every tile written, with
        the per-pixel confidence beside the labels (glnet.store.confidence).

        Progress counts tiles and only moves forward: inside a tile, the part
        done is (scenes of the tile done + the patch share of the scene in
        progress) / its scenes.  Stopping early (not exhausting the generator)
        loses at most the batch in progress: finished patches are kept and
        reused by the next call, written tiles stay written.  Labels equal
        ``SceneSession.result`` (and for an image of one scene,
        ``Segmenter.segment``) for the region."""
        tiles = self.tiles(region)
        n = len(tiles)
        for k, tile in enumerate(tiles):
            if self._is_refined(tile):
                yield RefineProgress(k + 1, n, (k + 1) / n, reused=True)
                continue
            pending = [i for i in self.grid.covering(tile) if i not in self.scenes.finished]
            order = {scene: j for j, scene in enumerate(pending)}
            for scene, p in self.scenes.run(tile):
                if p.stage == "local":
                    self.batches += 1
                part = (order.get(scene, 0) + (p.done / p.total if p.total else 1.0)) / max(1, len(pending))
                yield RefineProgress(k, n, (k + min(part, 1.0)) / n, stage=p.stage)
            result = self.scenes.result(tile)
            self._write_predictions(tile, result.labels)
            self.confidence.write(tile, confidence_from_logits(result.logits))
            yield RefineProgress(k + 1, n, (k + 1) / n, written=tile)

    def tiles_to_refine(self, region: Region | None = None) -> list[Region]:
        """The tiles of ``region`` the store does not hold current labels of."""
        return [t for t in self.tiles(region) if not self._is_refined(t)]

    def segment(self, region: Region | None = None) -> np.ndarray:
        """Refine ``region`` to the end and return its labels from the store."""
        for _ in self.refine(region):
            pass
        return self.store.read(self.clip(region))

    def _is_refined(self, tile: Region) -> bool:
        return bool(_rect_mask(tile, self._refined).all())

    def _write_predictions(self, tile: Region, labels: np.ndarray) -> None:
        """Write model labels, keeping whatever a person corrected there."""
        edited = _rect_mask(tile, self.store.corrected_regions())
        if edited.any():
            labels = labels.copy()
            labels[edited] = self.store.read(tile)[edited]
        refined = [list(r) for r in [*self._refined, tile]]
        # the record of refined tiles commits with the labels, in the write's one state write
        self.store.write(tile, labels, edit=False, attrs={"view": {"model": self._model_key, "refined": refined}})
        self._refined.append(tile)

    # -- what the viewer shows ---------------------------------------------------------
    def shown_regions(self) -> list[Region]:
        """Regions of the store holding current labels: refined or corrected."""
        return list(self._refined) + self.store.corrected_regions()

    def display_levels(self, token: str = "") -> list:
        """The store's levels as lazy dask arrays for a multiscale Labels
        layer, with ``no_label`` (drawn transparent) where nothing is refined
        or corrected yet.  ``token`` names the graph: pass a new one after
        writes so a dask cache never serves old chunks."""
        import dask.array as da

        shown = self.shown_regions()
        levels = []
        for k, z in enumerate(self.store.levels):
            a = da.from_zarr(z, name=f"glnet-view-{k}-{token}", inline_array=True)
            if self.no_label >= 0:
                rects = [level_region(r, k) for r in shown]
                a = a.map_blocks(
                    _mask_block, rects=rects, no_label=self.no_label, dtype=a.dtype, name=f"glnet-shown-{k}-{token}"
                )
            levels.append(a)
        return levels

    # -- helpers for the menu -----------------------------------------------------------
    def block_at(self, y: float, x: float) -> Region:
        """The patch under image pixel (y, x): of the scene whose centre is
        nearest, the patch whose centre is nearest (what "Segment region
        here" segments)."""
        from glnet.inference.grid import PatchGrid

        h, w = self.shape
        y, x = min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)
        grid = self.grid

        def centre(box) -> float:  # squared distance from (y, x) to the box's centre
            return ((box[0] + box[2]) / 2 - y) ** 2 + ((box[1] + box[3]) / 2 - x) ** 2

        i = min(grid.covering((y, x, y + 1, x + 1)), key=lambda j: centre(grid.boxes[j]))
        top, left, bottom, right = grid.boxes[i]
        p = self.seg.size_p
        patches = PatchGrid(max(bottom - top, p), max(right - left, p), p)
        t, l = min(((top + r, left + c) for r, c in patches.origins), key=lambda o: centre((*o, o[0] + p, o[1] + p)))
        return self.clip((t, l, t + p, l + p))

    def mark_reviewed(self, region: Region, note: str = "") -> Region:
        region = self.clip(region)
        self.store.mark_reviewed(region, note)
        return region


def _mask_block(block: np.ndarray, rects: list[Region], no_label: int, block_info=None) -> np.ndarray:
    (t, b), (l, r) = block_info[0]["array-location"]
    mask = _rect_mask((t, l, b, r), rects)
    if mask.all():
        return block
    out = np.array(block, copy=True)
    out[~mask] = no_label
    return out


# -- the overview and the store in napari's coordinates --------------------------------
def overview_placement(step: int, scale: tuple[float, float], translate: tuple[float, float]) -> dict:
    """scale/translate that put overview canvas pixel (i, j) on image pixel
    (i * step + step // 2, j * step + step // 2) of a layer with ``scale`` and ``translate``."""
    return {
        "scale": tuple(float(s) * step for s in scale),
        "translate": tuple(float(t) + float(s) * (step // 2) for s, t in zip(scale, translate)),
    }


__all__ = [
    "Overview",
    "RefineProgress",
    "ViewSession",
    "default_store_path",
    "image_identity",
    "open_store",
    "overview_placement",
]
