"""Reviewing a label store in napari: edit a region, accept it, undo it.

The authoritative labels live in a :class:`glnet.store.labelstore.LabelStore`
(OME-Zarr on disk) and are shown as a read-only multiscale Labels layer
(napari cannot paint on multiscale data).  To correct a region, its level-0
labels are copied into a small in-memory Labels layer, "GLNet edit", laid
exactly over the store layer, where napari's own brush, fill and eraser work.
Accepting writes it back with ``store.write(..., edit=True)`` (journalled,
with undo data; the store rebuilds only the touched chunks of the coarser
levels), so nothing accepted is lost if napari closes.

Embedding (the dock widget does this)::

    review = ReviewController(viewer, store)      # binds ACCEPT_KEY, NEXT_CLASS_KEY
    review.edit(region)                           # (top, left, bottom, right), level-0 px
    button.clicked.connect(review.accept)         # also review.undo, review.mark_reviewed
    review.store_changed.connect(on_change)       # (region) after accept/undo
    review.close()                                # unbinds the keys

Every method reports a problem the user can cause (bad region, labels outside
the class table, nothing to undo) as one napari notification and returns None;
it never raises for those.  No Qt is imported here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.geometry import Region, as_region
from glnet.store.labelstore import LabelStore
from napari_glnet.workers import notify

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

log = logging.getLogger(__name__)

EDIT_LAYER_NAME = "GLNet edit"
ACCEPT_KEY = "Shift+Enter"
"""Accept the edit layer into the store (free in napari 0.9.2's default keymaps)."""
NEXT_CLASS_KEY = "Shift+N"
"""Paint with the next class of the class table (free in napari 0.9.2)."""
UNDO_ACCEPT_KEY = "Shift+U"
"""Undo the last accepted region in the store (Ctrl+Z stays napari's brush-stroke undo)."""
MAX_EDIT_PIXELS = 8192 * 8192
"""Largest region copied into the in-memory edit layer: zoom in for more."""


def find_store_layer(viewer: napari.Viewer, store: LabelStore) -> Labels | None:
    """The Labels layer showing ``store`` (opened by our reader, which records
    the store's path in ``layer.metadata["glnet_store"]``), or None."""
    path = str(store.path)
    for layer in viewer.layers:
        if layer.__class__.__name__ == "Labels" and layer.metadata.get("glnet_store") == path:
            return layer
    return None


def refresh_store_layer(layer: Labels, store: LabelStore) -> None:
    """Show what is on disk now in a layer made of the store's levels.

    ``layer.refresh()`` alone is not enough for dask-backed levels (what our
    reader gives): napari keeps an opportunistic dask cache keyed by task name,
    so it would keep drawing the old chunks.  The levels are re-wrapped under
    fresh dask names instead (only the chunks in view are read again); plain
    zarr/numpy levels just get ``refresh()``.
    """
    import dask.array as da

    data = list(layer.data) if layer.multiscale else [layer.data]
    if any(isinstance(level, da.Array) for level in data):
        token = uuid.uuid4().hex[:8]
        fresh = [da.from_zarr(z, name=f"glnet-{store.name}-s{k}-{token}") for k, z in enumerate(store.levels)]
        layer.data = fresh if layer.multiscale else fresh[0]
    else:
        layer.refresh()


class ReviewController:
    """Edit → accept → undo of label-store regions on a napari viewer (no layout).

    ``classes`` defaults to the store's class table; ``store_layer`` to the
    Labels layer our reader made for the store (found by its metadata), which
    gives the edit layer its scale and offset and is refreshed after writes.
    """

    store_changed = Signal(object)
    """Emitted with the level-0 region (top, left, bottom, right) after accept or undo."""
    edit_changed = Signal(object)
    """Emitted with the edit layer (or None) when it is created, moved or removed."""
    reviewed = Signal(object)
    """Emitted with the region marked reviewed."""

    def __init__(
        self,
        viewer: napari.Viewer,
        store: LabelStore,
        classes: ClassTable | None = None,
        *,
        store_layer: Labels | None = None,
        bind_keys: bool = True,
    ) -> None:
        self.viewer = viewer
        self.store = store
        self.classes = classes or store.classes
        if len(self.classes) != len(store.classes):
            raise GLNetError(
                f"the class table has {len(self.classes)} classes but the label store has {len(store.classes)}"
            )
        self._store_layer = store_layer
        self._layer: Labels | None = None
        self._region: Region | None = None
        self._original: np.ndarray | None = None
        self._keys: list[str] = []
        viewer.layers.events.removed.connect(self._on_layer_removed)
        if bind_keys:
            self.bind_keys()

    # -- state ---------------------------------------------------------------------
    @property
    def edit_layer(self) -> Labels | None:
        """The in-memory Labels layer being edited, if any."""
        return self._layer

    @property
    def region(self) -> Region | None:
        """The level-0 region (top, left, bottom, right) of the edit layer."""
        return self._region

    @property
    def store_layer(self) -> Labels | None:
        """The read-only multiscale layer showing the store (None if not in the viewer)."""
        if self._store_layer is None or self._store_layer not in self.viewer.layers:
            self._store_layer = find_store_layer(self.viewer, self.store)
        return self._store_layer

    @property
    def dirty(self) -> bool:
        """True when the edit layer holds changes not yet accepted."""
        if self._layer is None or self._original is None:
            return False
        return not np.array_equal(np.asarray(self._layer.data), self._original)

    def overlay(self) -> tuple[Region, np.ndarray] | None:
        """(region, labels) of the edit layer as painted now, for live metrics."""
        if self._layer is None or self._region is None:
            return None
        return self._region, np.asarray(self._layer.data)

    # -- actions -------------------------------------------------------------------
    def edit(self, region: Sequence[int], *, discard: bool = False) -> Labels | None:
        """Copy ``region`` of the store into the editable layer and select it.

        Refuses (with a warning) while the current edit layer has unaccepted
        changes, unless ``discard=True``: nothing is thrown away silently.
        """
        if self.dirty and not discard:
            notify(
                "warning",
                f"The GLNet edit layer has changes that are not accepted yet: accept them ({ACCEPT_KEY}) "
                "or discard them before editing another region.",
            )
            return None
        try:
            box = as_region(region)
            if (box[2] - box[0]) * (box[3] - box[1]) > MAX_EDIT_PIXELS:
                raise GLNetError(
                    f"region {list(box)} is too large to edit at once (over {MAX_EDIT_PIXELS // 1_000_000} Mpx): zoom in"
                )
            labels = self.store.read(box)  # checks the region
        except GLNetError as exc:
            notify("error", f"Cannot edit: {exc}")
            return None
        return self._show(box, labels)

    def accept(self) -> dict | None:
        """Write the edit layer into the store as a recorded edit; returns the
        edit-log entry (None if nothing changed or it could not be written)."""
        if self._layer is None or self._region is None:
            notify("info", "Nothing to accept: edit a region first.")
            return None
        painted = np.array(self._layer.data)
        try:
            # Only the painted pixels: the segmenter may have refined this region
            # since it was copied, and its newer labels elsewhere must stay.
            current = self.store.read(self._region)
            labels = np.where(painted != self._original, painted, current) if self._original is not None else painted
            entry = self.store.write(self._region, labels, edit=True)
        except GLNetError as exc:
            notify("error", f"Edits not accepted: {exc}")
            return None
        if np.array_equal(labels, painted):
            self._original = labels
        else:  # show what the store holds now
            self._show(self._region, labels)
        if entry is None:
            notify("info", "No pixel changed: nothing to accept.")
            return None
        n = sum(entry["changes"].values())
        log.info("accepted edit %s: %d px changed in %s", entry["id"], n, self._region)
        self._after_write(self._region)
        return entry

    def undo(self) -> dict | None:
        """Undo the last accepted region in the store; returns its log entry."""
        if self.dirty:
            notify(
                "warning",
                "The GLNet edit layer has changes that are not accepted yet: accept or discard them "
                "(Ctrl+Z undoes brush strokes) before undoing an accepted region.",
            )
            return None
        try:
            entry = self.store.undo()
        except GLNetError as exc:
            notify("error", f"Cannot undo: {exc}")
            return None
        if entry is None:
            notify("info", "Nothing to undo: no accepted edit is left in the store.")
            return None
        region = as_region(entry["region"])
        if self._layer is not None and self._region is not None:  # show the restored labels
            self._show(self._region, self.store.read(self._region))
        self._after_write(region)
        return entry

    def discard(self) -> None:
        """Remove the edit layer, dropping unaccepted changes (the user asked to)."""
        layer, self._layer = self._layer, None
        self._region = self._original = None
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        self.edit_changed.emit(None)

    def mark_reviewed(self, region: Sequence[int] | None = None, note: str = "") -> Region | None:
        """Record ``region`` (default: the edit region) as checked, for export."""
        region = self._region if region is None else region
        if region is None:
            notify("info", "Nothing to mark: edit a region or pick one first.")
            return None
        try:
            box = as_region(region)
            self.store.mark_reviewed(box, note=note)
        except GLNetError as exc:
            notify("error", f"Cannot mark the region reviewed: {exc}")
            return None
        self.reviewed.emit(box)
        return box

    def next_class(self) -> int | None:
        """Select the next class (cycling) for painting; returns its index."""
        if self._layer is None:
            return None
        n = len(self.classes)
        label = (int(self._layer.selected_label) + 1) % n
        self._layer.selected_label = label
        self.viewer.status = f"GLNet: painting class {label} ({self.classes.names[label]})"
        return label

    # -- keys ----------------------------------------------------------------------
    def bind_keys(self) -> None:
        """Bind ACCEPT_KEY, NEXT_CLASS_KEY and UNDO_ACCEPT_KEY on the viewer."""
        actions = {ACCEPT_KEY: self.accept, NEXT_CLASS_KEY: self.next_class, UNDO_ACCEPT_KEY: self.undo}
        for key, action in actions.items():
            self.viewer.bind_key(key, lambda _viewer, action=action: action(), overwrite=True)
            self._keys.append(key)

    def close(self) -> None:
        """Unbind the keys and stop following the viewer (the edit layer stays)."""
        for key in self._keys:
            self.viewer.bind_key(key, None)
        self._keys.clear()
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)

    # -- internals -----------------------------------------------------------------
    def _placement(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        """Scale and translate that put level-0 ``region`` over the store layer."""
        layer = self.store_layer
        if layer is None:
            return np.ones(2), np.array(region[:2], float)
        scale = np.asarray(layer.scale[-2:], float)
        return scale, np.asarray(layer.translate[-2:], float) + np.array(region[:2]) * scale

    def _show(self, region: Region, labels: np.ndarray) -> Labels:
        """A fresh edit layer over ``region`` (napari's brush-stroke undo history
        belongs to the old data, so the layer is replaced, keeping the brush)."""
        from napari_glnet._reader import label_colormap

        old, self._layer = self._layer, None
        if old is not None and old in self.viewer.layers:
            self.viewer.layers.remove(old)  # first, so the new layer gets the plain name
        scale, translate = self._placement(region)
        layer = self.viewer.add_labels(
            labels,
            name=EDIT_LAYER_NAME,
            scale=scale,
            translate=translate,
            colormap=label_colormap(self.classes),
            opacity=0.7,
            metadata={"glnet_edit_of": str(self.store.path), "glnet_region": list(region)},
        )
        layer.selected_label = 1 if len(self.classes) > 1 else 0
        if old is not None:
            layer.selected_label, layer.brush_size, layer.opacity = old.selected_label, old.brush_size, old.opacity
        layer.mode = "paint"
        self._layer, self._region, self._original = layer, region, labels.copy()
        self.viewer.layers.selection.active = layer
        self.edit_changed.emit(layer)
        return layer

    def _after_write(self, region: Region) -> None:
        layer = self.store_layer
        if layer is not None:
            refresh_store_layer(layer, self.store)
        self.store_changed.emit(region)

    def _on_layer_removed(self, event: Any) -> None:
        if event.value is not self._layer or self._layer is None:
            return
        if self.dirty:
            notify(
                "warning", f"The GLNet edit layer was closed: its unaccepted changes in {list(self._region)} are lost."
            )
        self._layer = None
        self._region = self._original = None
        self.edit_changed.emit(None)
