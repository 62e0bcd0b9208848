"""The editable region: napari's brush, fill and eraser over a copy of the store's labels.

A plain in-memory Labels layer ("GLNet edit") laid over the store layer,
with three things added for correction work:

* **The eraser restores the store's labels** (the model's prediction, or a
  correction accepted earlier) instead of painting class 0.  The layer's
  background value is :data:`ERASED`, a value no class has, so napari's
  eraser paints it; after every stroke the erased pixels get the store's
  current labels back.  Painting class 0 ("unknown") stays an ordinary class.
* **Every stroke is journaled** (:class:`glnet.store.strokes.StrokeJournal`)
  when napari commits it (``events.paint``, once per stroke), and again after
  napari's own Ctrl+Z / Ctrl+Shift+Z, so a crash loses at most the stroke in
  progress.
* **Readable over the imagery**: filled at :data:`OPACITY`, or outlines only
  (:meth:`EditLayer.toggle_outline`, bound to ``OUTLINE_KEY`` by the review
  controller).

No Qt here; napari only through the layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from glnet.store.labelstore import LabelStore, Region
from glnet.store.strokes import StrokeJournal

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

log = logging.getLogger(__name__)

EDIT_LAYER_NAME = "GLNet edit"
OPACITY = 0.5
OUTLINE = 2  # contour thickness (px) in outline display


def painted_box(event: Any) -> Region | None:
    """Bounding box (2D) of a ``Labels.events.paint`` payload, in both its forms:
    napari ≥ 0.8 mask atoms with ``slice_key``, and the older
    ``(indices, old_values, new_values)`` tuples."""
    boxes = []
    for atom in getattr(event, "value", None) or []:
        key = getattr(atom, "slice_key", None)
        if key is not None:
            (ys, xs) = key[-2:]
            boxes.append((ys.start or 0, xs.start or 0, ys.stop, xs.stop))
        elif isinstance(atom, tuple) and atom and len(atom[0]) >= 2:
            ys, xs = (np.asarray(i) for i in atom[0][-2:])
            if ys.size:
                boxes.append((int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1))
    if not boxes or any(v is None for box in boxes for v in box):
        return None
    a = np.array(boxes)
    return (int(a[:, 0].min()), int(a[:, 1].min()), int(a[:, 2].max()), int(a[:, 3].max()))


def _union(a: Region | None, b: Region) -> Region:
    if a is None:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _apply_atoms(content: np.ndarray, event: Any, box: Region) -> np.ndarray:
    """``content`` (the layer's pixels in ``box``) with a paint event's atoms
    applied: napari emits the event of a single programmatic ``paint()`` before
    it writes the pixels (a mouse stroke's after), so the event is the truth."""
    t, l = box[:2]
    for atom in getattr(event, "value", None) or []:
        key = getattr(atom, "slice_key", None)
        if key is not None:
            ys, xs = key[-2:]
            sub = content[(ys.start or 0) - t : ys.stop - t, (xs.start or 0) - l : xs.stop - l]
            if atom.mask is None:
                sub[...] = atom.new_value
            else:
                sub[np.asarray(atom.mask).reshape(sub.shape)] = atom.new_value
        elif isinstance(atom, tuple) and atom and len(atom[0]) >= 2:
            ys, xs = (np.asarray(i) for i in atom[0][-2:])
            content[ys - t, xs - l] = atom[2]
    return content


def erased_value(store: LabelStore) -> tuple[int, np.dtype]:
    """(value, dtype) of the edit layer: the largest value of a dtype wide
    enough that no class has it."""
    dtype = np.dtype(store.levels[0].dtype)
    if len(store.classes) > np.iinfo(dtype).max:
        dtype = np.dtype(np.uint16 if dtype == np.uint8 else np.uint32)
    return int(np.iinfo(dtype).max), dtype


class EditLayer:
    """One edit of ``region`` of ``store`` in ``viewer`` (see the module docstring).

    ``labels`` are the store's labels of the region when the edit began;
    ``painted`` (optional, region-sized) marks pixels already painted (strokes
    restored from the journal), so the layer starts dirty."""

    def __init__(
        self,
        viewer: napari.Viewer,
        store: LabelStore,
        journal: StrokeJournal,
        region: Region,
        original: np.ndarray,
        *,
        current: np.ndarray | None = None,
        scale: Any = (1.0, 1.0),
        translate: Any = (0.0, 0.0),
        like: Labels | None = None,
        defer: Callable[[Callable[[], Any]], None] | None = None,
    ) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        from napari_glnet._reader import label_colormap

        self.viewer, self.store, self.journal = viewer, store, journal
        self._defer = defer or (lambda f: f())
        self.region = tuple(int(v) for v in region)
        self.erased, dtype = erased_value(store)
        self.original = np.asarray(original).astype(dtype)
        data = self.original.copy() if current is None else np.asarray(current).astype(dtype)
        colors = {**label_colormap(store.classes), self.erased: (0.0, 0.0, 0.0, 0.0)}
        self.layer: Labels = viewer.add_labels(
            data,
            name=EDIT_LAYER_NAME,
            scale=scale,
            translate=translate,
            colormap=DirectLabelColormap(color_dict=colors, background_value=self.erased),
            opacity=OPACITY,
            metadata={"glnet_edit_of": str(store.path), "glnet_region": list(self.region)},
        )
        layer = self.layer
        layer.selected_label = 1 if len(store.classes) > 1 else 0
        if like is not None:
            layer.selected_label, layer.brush_size = like.selected_label, like.brush_size
            layer.opacity, layer.contour = like.opacity, like.contour
        layer.mode = "paint"
        self._journaled: Region | None = None  # union of the boxes journaled since begin
        journal.begin(self.region)
        if current is not None:
            self._record((0, 0, *self.original.shape))
        layer.events.paint.connect(self._on_stroke)
        self._napari_undo, self._napari_redo = layer.undo, layer.redo
        layer.undo, layer.redo = self._undo, self._redo  # Ctrl+Z changes pixels without a paint event

    # -- state ---------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """True while the layer holds pixels that differ from the store's labels at the start."""
        return not np.array_equal(np.asarray(self.layer.data), self.original)

    def labels(self) -> np.ndarray:
        """The labels as painted (erased pixels, if any slipped through, as the store has them)."""
        data = np.array(self.layer.data)
        erased = data == self.erased
        if erased.any():
            data[erased] = self.store.read(self.region)[erased]
        return data.astype(self.store.levels[0].dtype)

    def painted(self) -> np.ndarray:
        """Region-sized bool mask of the pixels painted (differing from the start)."""
        return np.asarray(self.layer.data) != self.original

    # -- display -------------------------------------------------------------------
    def toggle_outline(self) -> bool:
        """Filled <-> outlines only (the imagery shows through); True when outlined now."""
        self.layer.contour = 0 if self.layer.contour else OUTLINE
        return bool(self.layer.contour)

    def remove(self) -> None:
        """Take the layer out of the viewer (the journal is the caller's business)."""
        self.detach()
        if self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)

    def detach(self) -> None:
        """Stop journaling this layer (it was removed, accepted or replaced)."""
        self.layer.events.paint.disconnect(self._on_stroke)
        self.layer.undo, self.layer.redo = self._napari_undo, self._napari_redo

    def reattach(self) -> None:
        """Journal this layer again (it was put back into the viewer)."""
        self.layer.events.paint.connect(self._on_stroke)
        self.layer.undo, self.layer.redo = self._undo, self._redo

    def rebase(self, labels: np.ndarray) -> None:
        """The store now holds ``labels`` here (an accept, an undo): show them, nothing painted."""
        self.original = np.asarray(labels).astype(self.original.dtype)
        self.layer.data = self.original.copy()
        self.journal.begin(self.region)
        self._journaled = None

    # -- strokes -------------------------------------------------------------------
    def _on_stroke(self, event: Any) -> None:
        h, w = self.original.shape
        box = painted_box(event) or (0, 0, h, w)
        box = (max(0, box[0]), max(0, box[1]), min(h, box[2]), min(w, box[3]))
        if box[0] >= box[2] or box[1] >= box[3]:
            return
        t, l, b, r = box
        content = _apply_atoms(np.array(self.layer.data[t:b, l:r]), event, box)
        erased = content == self.erased
        if erased.any():  # the eraser brings back what the store holds
            rt, rl = self.region[:2]
            current = self.store.read((rt + t, rl + l, rt + b, rl + r)).astype(content.dtype)
            content[erased] = current[erased]
            self.layer.data[t:b, l:r] = content
            self.layer.refresh()
            # napari writes a single programmatic paint() after its event: look again then
            self._defer(lambda: self._restore_erased(box))
        self._record(box, content)

    def _restore_erased(self, box: Region) -> None:
        t, l, b, r = box
        data = np.asarray(self.layer.data)
        erased = data[t:b, l:r] == self.erased
        if not erased.any():
            return
        rt, rl = self.region[:2]
        current = self.store.read((rt + t, rl + l, rt + b, rl + r)).astype(data.dtype)
        data[t:b, l:r][erased] = current[erased]
        self.layer.refresh()

    def _record(self, box: Region, data: np.ndarray | None = None) -> None:
        t, l, b, r = box
        data = np.asarray(self.layer.data)[t:b, l:r] if data is None else data
        try:
            self.journal.record(box, data, data != self.original[t:b, l:r])
        except OSError as exc:  # a full disk must not stop the painting: the strokes are still in memory
            log.warning("could not journal a stroke in %s: %s", self.journal.path, exc)
        self._journaled = _union(self._journaled, box)

    def _undo(self) -> None:
        self._napari_undo()
        self._after_history()

    def _redo(self) -> None:
        self._napari_redo()
        self._after_history()

    def _after_history(self) -> None:
        if self._journaled is not None:  # what undo/redo can touch is what strokes touched
            self._restore_erased(self._journaled)
            self._record(self._journaled)


__all__ = ["EDIT_LAYER_NAME", "OPACITY", "EditLayer", "erased_value", "painted_box"]
