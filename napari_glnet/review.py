"""Reviewing a label store in napari: edit a region, accept it, undo it.

The authoritative labels live in a :class:`glnet.store.labelstore.LabelStore`
(OME-Zarr on disk) and are shown as a read-only multiscale Labels layer
(napari cannot paint on multiscale data).  To correct a region, its level-0
labels are copied into an editable layer (:class:`~napari_glnet.edit_layer.EditLayer`:
the eraser restores the store's labels, every stroke is journaled so a crash
loses at most one).  Accepting writes the painted pixels back with
``store.write(..., edit=True)`` (journalled, with undo data; the store
rebuilds only the touched chunks of the coarser levels), off the GUI thread
when the region is large.

Nothing a person painted is dropped without asking: starting another edit,
removing the edit layer or closing asks ``ask(question, choices)`` (the dock
widget's dialog) to accept, discard or cancel; without ``ask`` the action is
refused, or the strokes stay in the journal and come back on the next edit.
Strokes a crashed session left in the journal are offered back when the
controller starts.

Embedding (the dock widget does this)::

    review = ReviewController(viewer, store, ask=dialog)   # binds the keys below
    review.edit(region)                                    # (top, left, bottom, right), level-0 px
    button.clicked.connect(review.accept)                  # also review.undo, review.mark_reviewed
    review.said.connect(status_label.setText)              # what each action did, in one line
    review.close()

Long because an edit's life (copied, journaled, asked about before strokes
could be lost, accepted off the GUI thread when large, undone) is one state
machine over one layer; its Qt-free helpers come first.

A problem the user can cause (bad region, labels outside the class table,
nothing to undo) is one napari notification and the method returns None.  No
Qt is imported here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.geometry import Region, as_region
from glnet.store.labelstore import LabelStore
from glnet.store.strokes import StrokeJournal
from napari_glnet.workers import Failed, notify

from .edit_layer import EDIT_LAYER_NAME, EditLayer, painted_box

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

log = logging.getLogger(__name__)

ACCEPT_KEY = "Shift+Enter"
"""Accept the edit layer into the store (free in napari 0.9.2's default keymaps)."""
NEXT_CLASS_KEY = "Shift+N"
"""Paint with the next class of the class table (free in napari 0.9.2)."""
UNDO_ACCEPT_KEY = "Shift+U"
"""Undo the last accepted region in the store (Ctrl+Z stays napari's brush-stroke undo)."""
OUTLINE_KEY = "Shift+O"
"""Show the edit layer filled or as outlines (free in napari 0.9.2)."""
MAX_EDIT_PIXELS = 8192 * 8192
"""Largest region copied into the in-memory edit layer: zoom in for more."""
SYNC_ACCEPT_PIXELS = 1 << 20
"""Accepting more pixels than this runs in a worker thread (0.1-0.3 s per 4 Mpx on the GUI thread otherwise)."""
UNACCEPTED = ("Accept", "Discard", "Cancel")

Ask = Callable[[str, Sequence[str]], str]


def find_store_layer(viewer: napari.Viewer, store: LabelStore) -> Labels | None:
    """The Labels layer showing ``store`` (ours record the store's path in
    ``layer.metadata["glnet_store"]``), or None."""
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
    import uuid

    import dask.array as da

    data = list(layer.data) if layer.multiscale else [layer.data]
    if any(isinstance(level, da.Array) for level in data):
        token = uuid.uuid4().hex[:8]
        fresh = [da.from_zarr(z, name=f"glnet-{store.name}-s{k}-{token}") for k, z in enumerate(store.levels)]
        layer.data = fresh if layer.multiscale else fresh[0]
    else:
        layer.refresh()


def describe_changes(changes: dict[str, int], classes: ClassTable, most: int = 3) -> str:
    """ "urban → forest 1,200 px; ..." for an edit-log entry's changes, largest first."""
    items = sorted(changes.items(), key=lambda kv: -kv[1])
    parts = []
    for key, n in items[:most]:
        old, new = (int(v) for v in key.split("->"))
        parts.append(f"{classes.names[old]} → {classes.names[new]} {n:,} px")
    if len(items) > most:
        parts.append(f"{len(items) - most} more")
    return "; ".join(parts)


@dataclass(frozen=True)
class Change:
    """What an accept or an undo did to the store: the region's labels before and after."""

    entry: dict
    region: Region
    before: np.ndarray
    after: np.ndarray
    undo: bool = False


def _write(store: LabelStore, region: Region, labels: np.ndarray) -> dict | Failed | None:
    try:
        return store.write(region, labels, edit=True)
    except GLNetError as exc:
        return Failed(str(exc))


class ReviewController:
    """Edit → accept → undo of label-store regions on a napari viewer (no layout).

    ``classes`` defaults to the store's class table; ``store_layer`` to the
    Labels layer showing the store (found by its metadata), which gives the
    edit layer its scale and offset and is refreshed after writes.  ``ask``
    (question, choices) -> choice is how a decision is asked for; ``defer``
    runs a callable after the current event (the widget passes a Qt timer)."""

    store_changed = Signal(object)
    """Emitted with the level-0 region (top, left, bottom, right) after accept or undo."""
    changed = Signal(object)
    """Emitted with a :class:`Change` after accept or undo (the IoU panel scores it)."""
    edit_changed = Signal(object)
    """Emitted with the edit layer (or None) when it is created, moved or removed."""
    reviewed = Signal(object)
    """Emitted with the region marked reviewed."""
    said = Signal(str)
    """What the last action did, in one line, for the widget."""

    def __init__(
        self,
        viewer: napari.Viewer,
        store: LabelStore,
        classes: ClassTable | None = None,
        *,
        store_layer: Labels | None = None,
        bind_keys: bool = True,
        ask: Ask | None = None,
        defer: Callable[[Callable[[], Any]], None] | None = None,
    ) -> None:
        self.viewer = viewer
        self.store = store
        self.classes = classes or store.classes
        if len(self.classes) != len(store.classes):
            raise GLNetError(
                f"the class table has {len(self.classes)} classes but the label store has {len(store.classes)}"
            )
        self.journal = StrokeJournal(store)
        self.ask = ask
        self._defer = defer or (lambda f: f())
        self._store_layer = store_layer
        self._edit: EditLayer | None = None
        self._keys: list[str] = []
        self.worker = None  # an accept running off the GUI thread
        viewer.layers.events.removed.connect(self._on_layer_removed)
        if bind_keys:
            self.bind_keys()

    # -- state ---------------------------------------------------------------------
    @property
    def edit_layer(self) -> Labels | None:
        """The in-memory Labels layer being edited, if any."""
        return self._edit.layer if self._edit is not None else None

    @property
    def region(self) -> Region | None:
        """The level-0 region (top, left, bottom, right) of the edit layer."""
        return self._edit.region if self._edit is not None else None  # type: ignore[return-value]

    @property
    def store_layer(self) -> Labels | None:
        """The read-only multiscale layer showing the store (None if not in the viewer)."""
        if self._store_layer is None or self._store_layer not in self.viewer.layers:
            self._store_layer = find_store_layer(self.viewer, self.store)
        return self._store_layer

    @property
    def dirty(self) -> bool:
        """True when the edit layer holds changes not yet accepted."""
        return self._edit is not None and self._edit.dirty

    @property
    def busy(self) -> bool:
        """True while an accept runs in a worker."""
        return self.worker is not None

    def overlay(self) -> tuple[Region, np.ndarray] | None:
        """(region, labels) of the edit layer as painted now, for live metrics."""
        if self._edit is None:
            return None
        return self._edit.region, self._edit.labels()  # type: ignore[return-value]

    def unaccepted_pixels(self) -> int:
        return int(self._edit.painted().sum()) if self._edit is not None else 0

    # -- resolving unaccepted strokes ---------------------------------------------------
    def resolve(self, doing: str) -> bool:
        """Before ``doing`` (e.g. "closing napari"): ask what becomes of unaccepted
        strokes.  True when the caller may go on (accepted, discarded or none),
        False to cancel (the strokes stay).  Without ``ask``: False while dirty."""
        if not self.dirty:
            return True
        if self.ask is None:
            notify(
                "warning",
                f"The GLNet edit layer has changes that are not accepted yet: accept them ({ACCEPT_KEY}) "
                f"or discard them before {doing}.",
            )
            return False
        n = self.unaccepted_pixels()
        choice = self.ask(
            f"The GLNet edit layer has {n:,} painted pixels that are not accepted into the label store yet.\n\n"
            f"Accept them before {doing}, discard them, or cancel?",
            UNACCEPTED,
        )
        if choice == "Accept":
            return self.accept(sync=True) is not None or not self.dirty
        if choice == "Discard":
            self.discard()
            return True
        self.said.emit(f"Kept the {n:,} unaccepted pixels in the edit layer")
        return False

    def offer_pending(self) -> bool:
        """Strokes an earlier session left unaccepted (a crash, a kill): offer
        them back (restored without ``ask``).  True when strokes were restored.
        The widget calls it once it listens to :attr:`said`; :meth:`edit` calls it too."""
        pending = self.journal.pending()
        if pending is None or self._edit is not None:
            return False
        n = int(pending.painted.sum())
        if self.ask is not None:
            choice = self.ask(
                f"An earlier session left {pending.strokes} unaccepted strokes ({n:,} px, started "
                f"{pending.started}) in the label store {self.store.path.name}.\n\nRestore them into an edit "
                "layer (then accept or discard them there), or discard them?",
                ("Restore", "Discard"),
            )
            if choice == "Discard":
                self.journal.clear()
                self.said.emit(f"Discarded {pending.strokes} unaccepted strokes of an earlier session")
                return False
        current = self.store.read(pending.region)
        self._show(pending.region, current, painted=pending.apply(current))
        self.said.emit(
            f"Restored {pending.strokes} unaccepted strokes ({n:,} px) of an earlier session: accept or discard them"
        )
        return True

    # -- actions -------------------------------------------------------------------
    def edit(self, region: Sequence[int], *, discard: bool = False) -> Labels | None:
        """Copy ``region`` of the store into the editable layer and select it.

        Unaccepted changes are not thrown away silently: ``ask`` decides, and
        without it the edit is refused unless ``discard=True``."""
        if self.dirty and not discard and not self.resolve("editing another region"):
            return None
        if self._edit is None and self.offer_pending():
            notify("warning", "Unaccepted strokes of an earlier edit were restored first: accept or discard them.")
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
        layer = self._show(box, labels)
        t, l, b, r = box
        self.said.emit(f"Editing rows {t}-{b}, columns {l}-{r}: paint, then Accept ({ACCEPT_KEY})")
        return layer

    def accept(self, sync: bool = False) -> dict | None:
        """Write the painted pixels into the store as a recorded edit; returns
        the edit-log entry (None if nothing changed, it failed, or it runs in a
        worker because the region is large: ``said``/``changed`` report it)."""
        if self.busy:
            notify("info", "An accept is still being written.")
            return None
        edit = self._edit
        if edit is None:
            notify("info", "Nothing to accept: edit a region first.")
            return None
        painted, mask = edit.labels(), edit.painted()
        # Only the painted pixels: the segmenter may have refined this region
        # since it was copied, and its newer labels elsewhere must stay.
        before = self.store.read(edit.region)  # type: ignore[arg-type]
        labels = np.where(mask, painted, before)
        if sync or labels.size <= SYNC_ACCEPT_PIXELS:
            return self._accepted(edit, _write(self.store, edit.region, labels), before, labels)  # type: ignore[arg-type]
        from napari.qt.threading import create_worker

        edit.layer.editable = False  # no painting while it is written
        self.said.emit(f"Accepting {int(mask.sum()):,} px...")
        worker = create_worker(_write, self.store, edit.region, labels, _progress={"desc": "Accepting edits"})
        worker.returned.connect(lambda result: self._accepted(edit, result, before, labels))
        worker.finished.connect(lambda: setattr(self, "worker", None))
        self.worker = worker
        worker.start()
        return None

    def _accepted(self, edit: EditLayer, result: Any, before: np.ndarray, labels: np.ndarray) -> dict | None:
        edit.layer.editable = True
        if isinstance(result, Failed):
            notify("error", f"Edits not accepted: {result}")
            return None
        edit.rebase(labels)  # show what the store holds now; the journal starts afresh
        if result is None:
            self.said.emit("No pixel changed: nothing to accept")
            return None
        n = sum(result["changes"].values())
        log.info("accepted edit %s: %d px changed in %s", result["id"], n, edit.region)
        self.said.emit(
            f"Accepted edit #{result['id']}: {n:,} px changed ({describe_changes(result['changes'], self.classes)})"
        )
        self._after_write(Change(result, edit.region, before, labels))  # type: ignore[arg-type]
        return result

    def undo(self) -> dict | None:
        """Undo the last accepted region in the store; returns its log entry."""
        if self.dirty:
            notify(
                "warning",
                "The GLNet edit layer has changes that are not accepted yet: accept or discard them "
                "(Ctrl+Z undoes brush strokes) before undoing an accepted region.",
            )
            return None
        log_now = self.store.edit_log()
        region = tuple(log_now[-1]["region"]) if log_now else None
        before = self.store.read(region) if region is not None else None  # type: ignore[arg-type]
        try:
            entry = self.store.undo()
        except GLNetError as exc:
            notify("error", f"Cannot undo: {exc}")
            return None
        if entry is None:
            notify("info", "Nothing to undo: no accepted edit is left in the store.")
            return None
        region = as_region(entry["region"])
        after = self.store.read(region)
        if self._edit is not None:  # show the restored labels
            self._edit.rebase(self.store.read(self._edit.region))  # type: ignore[arg-type]
        n = sum(entry["changes"].values())
        self.said.emit(f"Undid edit #{entry['id']}: {n:,} px back as they were")
        self._after_write(Change(entry, region, before, after, undo=True))
        return entry

    def discard(self) -> None:
        """Remove the edit layer, dropping unaccepted changes (the user asked to)."""
        edit, self._edit = self._edit, None
        self.journal.clear()
        if edit is not None:
            n = int(edit.painted().sum())
            edit.remove()
            self.said.emit(f"Discarded {n:,} unaccepted px" if n else "Closed the edit layer")
        self.edit_changed.emit(None)

    def mark_reviewed(self, region: Sequence[int] | None = None, note: str = "") -> Region | None:
        """Record ``region`` (default: the edit region) as checked, for export."""
        region = self.region if region is None else region
        if region is None:
            notify("info", "Nothing to mark: edit a region or pick one first.")
            return None
        try:
            box = as_region(region)
            self.store.mark_reviewed(box, note=note)
        except GLNetError as exc:
            notify("error", f"Cannot mark the region reviewed: {exc}")
            return None
        t, l, b, r = box
        n = len(self.store.reviewed_regions())
        self.said.emit(f"Marked rows {t}-{b}, columns {l}-{r} reviewed ({n} reviewed region{'s' * (n != 1)})")
        self.reviewed.emit(box)
        return box

    def next_class(self) -> int | None:
        """Select the next class (cycling) for painting; returns its index."""
        if self._edit is None:
            return None
        layer = self._edit.layer
        label = (int(layer.selected_label) + 1) % len(self.classes)
        layer.selected_label = label
        self.viewer.status = f"GLNet: painting class {label} ({self.classes.names[label]})"
        return label

    def toggle_outline(self) -> bool | None:
        """Edit layer filled <-> outlines; None without an edit layer."""
        if self._edit is None:
            return None
        outlined = self._edit.toggle_outline()
        self.said.emit(f"Edit layer shown {'as outlines' if outlined else 'filled'} ({OUTLINE_KEY})")
        return outlined

    # -- keys ----------------------------------------------------------------------
    def bind_keys(self) -> None:
        """Bind the accept, next-class, undo-accept and outline keys on the viewer."""
        actions = {
            ACCEPT_KEY: self.accept,
            NEXT_CLASS_KEY: self.next_class,
            UNDO_ACCEPT_KEY: self.undo,
            OUTLINE_KEY: self.toggle_outline,
        }
        for key, action in actions.items():
            self.viewer.bind_key(key, lambda _viewer, action=action: action(), overwrite=True)
            self._keys.append(key)

    def close(self) -> None:
        """Unbind the keys and stop following the viewer.  The edit layer stays;
        its unaccepted strokes stay in the journal (offered next time)."""
        for key in self._keys:
            self.viewer.bind_key(key, None)
        self._keys.clear()
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)
        if self._edit is not None:
            if not self._edit.dirty:
                self.journal.clear()
            self._edit.detach()

    # -- internals -----------------------------------------------------------------
    def _placement(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        """Scale and translate that put level-0 ``region`` over the store layer."""
        layer = self.store_layer
        if layer is None:
            return np.ones(2), np.array(region[:2], float)
        scale = np.asarray(layer.scale[-2:], float)
        return scale, np.asarray(layer.translate[-2:], float) + np.array(region[:2]) * scale

    def _show(self, region: Region, labels: np.ndarray, painted: np.ndarray | None = None) -> Labels:
        """A fresh edit layer over ``region`` (napari's brush-stroke undo history
        belongs to the old data, so the layer is replaced, keeping the brush)."""
        old, self._edit = self._edit, None
        like = old.layer if old is not None else None
        if old is not None:
            old.remove()  # first, so the new layer gets the plain name
        scale, translate = self._placement(region)
        edit = EditLayer(
            self.viewer,
            self.store,
            self.journal,
            region,
            labels,
            current=painted,
            scale=scale,
            translate=translate,
            like=like,
            defer=self._defer,
        )
        store_layer = self.store_layer
        if store_layer is not None and store_layer in self.viewer.layers:  # right above the labels it edits
            layers = self.viewer.layers
            layers.move(layers.index(edit.layer), layers.index(store_layer) + 1)
        self._edit = edit
        self.viewer.layers.selection.active = edit.layer
        self.edit_changed.emit(edit.layer)
        return edit.layer

    def _after_write(self, change: Change) -> None:
        layer = self.store_layer
        if layer is not None:
            refresh_store_layer(layer, self.store)
        self.store_changed.emit(change.region)
        self.changed.emit(change)

    def _on_layer_removed(self, event: Any) -> None:
        edit = self._edit
        if edit is None or event.value != edit.layer:  # != sees through napari's proxies
            return
        if edit.dirty and self.ask is not None:
            n = int(edit.painted().sum())
            choice = self.ask(
                f"The removed GLNet edit layer had {n:,} painted pixels that are not accepted yet.\n\n"
                "Accept them into the label store, discard them, or cancel (the layer comes back)?",
                UNACCEPTED,
            )
            if choice == "Cancel":
                layer, index = event.value, event.index
                self._defer(lambda: self._put_back(edit, layer, index))
                return
            if choice == "Accept":
                self.accept(sync=True)
            else:
                self.said.emit(f"Discarded {n:,} unaccepted px")
            self.journal.clear()
        elif edit.dirty:
            t, l, b, r = edit.region
            notify(
                "warning",
                f"The GLNet edit layer was removed with unaccepted changes in rows {t}-{b}, columns {l}-{r}: "
                "they are kept in the store's stroke journal and restored when you edit next.",
            )
        else:
            self.journal.clear()
        edit.detach()
        self._edit = None
        self.edit_changed.emit(None)

    def _put_back(self, edit: EditLayer, layer: Labels, index: int) -> None:
        if layer not in self.viewer.layers:
            self.viewer.layers.insert(min(index, len(self.viewer.layers)), layer)
        self.viewer.layers.selection.active = layer
        self.said.emit(f"Kept the {int(edit.painted().sum()):,} unaccepted pixels: the edit layer is back")


__all__ = [
    "ACCEPT_KEY",
    "EDIT_LAYER_NAME",
    "NEXT_CLASS_KEY",
    "OUTLINE_KEY",
    "UNDO_ACCEPT_KEY",
    "Change",
    "ReviewController",
    "describe_changes",
    "find_store_layer",
    "painted_box",
    "refresh_store_layer",
]
