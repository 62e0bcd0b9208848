"""The napari glue of the GLNet plugin: viewer events in, layers out.

The controller owns one :class:`~napari_glnet.session.ViewSession` and runs
it in a napari generator ``thread_worker``: the worker yields after every
patch batch, so Cancel (the button, Shift+H, the activity dock's Cancel, or a
new view) stops it within one batch, and it touches no layer: the main thread
draws what it yields (the overview, then each refined tile as the store is
re-read).  One worker at a time: a new request waits for the old worker to
stop, since a ``SceneSession`` is not thread-safe.

What it listens to:

* the camera (debounced): with auto-refine on, the new visible region is
  refined (only while it spans at most ``MAX_AUTO_SCENES`` scenes; farther out
  the overview alone is updated, a 20000 px image has hundreds of patches in view);
* a right-click without drag on the canvas (``viewer.mouse_drag_callbacks``,
  since napari has no canvas context menu): "Segment region here",
  "Segment visible view", "Segment selected rectangle", "Mark region reviewed";
* keys: ``KEYS`` below.  ``RESERVED_KEYS`` are the review side's.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from glnet.errors import GLNetError
from glnet.geometry import Region, enclosing
from glnet.inference.spec import ModelSpec

from ._reader import label_colormap
from .guided import NEXT_KEY, REVIEWED_NAME, UNCERTAINTY_KEY, UNCERTAINTY_NAME
from .layers import camera, level0, to_data, visible_region
from .review import ACCEPT_KEY, EDIT_LAYER_NAME, NEXT_CLASS_KEY, OUTLINE_KEY, UNDO_ACCEPT_KEY
from .session import (
    Overview,
    RefineProgress,
    ViewSession,
    overview_placement,
)
from .view_worker import (
    MAX_AUTO_SCENES,
    Done,
    Loaded,
    Preload,
    Ready,
    Request,
    Runner,
    Settings,
    Warn,
    layer_pixels,
    load_job,
    view_job,
)
from .workers import Failed, notify

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

LABELS_NAME = "GLNet labels"
OVERVIEW_NAME = "GLNet overview"
# GLNet's layers, bottom to top, kept directly above their image
OWN_LAYERS = (UNCERTAINTY_NAME, OVERVIEW_NAME, LABELS_NAME, EDIT_LAYER_NAME, REVIEWED_NAME)
KEYS = {"segment_view": "Shift-G", "cancel": "Shift-H"}  # free in napari 0.9.2's default keymap
# what the review side binds (napari_glnet.review): this side leaves them alone
RESERVED_KEYS = {
    "accept": ACCEPT_KEY,
    "next_class": NEXT_CLASS_KEY,
    "undo_accept": UNDO_ACCEPT_KEY,
    "outline": OUTLINE_KEY,
}
GUIDED_KEYS = {"next_uncertain": NEXT_KEY, "uncertainty": UNCERTAINTY_KEY}  # the guided review's (napari_glnet.guided)
DEBOUNCE_MS = 300
STATUS_EVERY_S = 0.5  # the status line follows patch batches at most this often (each tile written: always)
CLICK_TOLERANCE_PX = 4  # a right press and release closer than this is a click, not a drag


@dataclass
class _Tally:
    """What one request did so far, for the status line (main thread)."""

    total: int = 0  # tiles to refine in the region
    written: int = 0  # tiles newly written
    reused: int = 0  # tiles the store held already
    done: int = 0  # tiles finished, written or reused
    ended: bool = False  # the worker returned (rather than being stopped)
    cancelled: bool = False  # the user pressed Cancel
    said: float = 0.0  # time.monotonic() of the last status line


# -- the controller -----------------------------------------------------------------
class ViewController:
    """Segments what the viewer shows; the widget is only its form.

    ``get_settings`` (set by the widget) returns the current :class:`Settings`
    or raises GLNetError saying what is missing; ``get_layer`` the image layer
    chosen (default: the active image layer, else the top one), which the
    geometry needs before any checkpoint is chosen."""

    status = Signal(str)
    busy = Signal(bool)
    device = Signal(str)  # "cpu" or "cuda", once a model is loaded
    store_ready = Signal(object, object)  # (LabelStore, its labels layer) once layers show a session's store
    labels_written = Signal(object)  # the region (top, left, bottom, right) of new predictions in the store
    progress = Signal(int, int)  # (tiles done, tiles in the region): only moves forward within a request

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        get_settings: Callable[[], Settings] | None = None,
        get_layer: Callable[[], Any] | None = None,
    ):
        from qtpy.QtCore import QTimer

        from glnet.runtime import available_cpus

        self.viewer = viewer
        self.get_settings = get_settings
        self.get_layer = get_layer or self._default_layer
        self.auto_refine = False
        # One core stays with the GUI thread where there are cores to spare.
        self.threads = max(1, available_cpus() - 1) if available_cpus() > 2 else available_cpus()
        self.session: ViewSession | None = None
        self.worker = None
        self.last_menu = None  # the last context menu opened (tests trigger its actions)
        self._runner = Runner()
        self._pending: Request | Preload | None = None
        self._preloading = False  # the running worker only loads the model (nothing to cancel)
        self._pbar = None
        self._tally = _Tally()
        self.image = None  # the image layer the session's layers belong to
        self._request_layer = None
        self._restacking = False
        # asked before work moves to another image (the widget: unaccepted strokes are resolved)
        self.may_switch: Callable[[str], bool] = lambda _doing: True
        self.on_mark_reviewed: Callable[[Region | None], Any] | None = None  # the review side's, when there is one
        self._placement: dict = {"scale": (1.0, 1.0), "translate": (0.0, 0.0)}
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._on_view_settled)
        self.camera.events.center.connect(self._on_camera)
        self.camera.events.zoom.connect(self._on_camera)
        viewer.mouse_drag_callbacks.append(self._on_mouse_drag)
        viewer.bind_key(KEYS["segment_view"], self._key_segment_view, overwrite=True)
        viewer.bind_key(KEYS["cancel"], self._key_cancel, overwrite=True)
        for name in ("inserted", "moved", "reordered"):
            getattr(viewer.layers.events, name).connect(self._restack)
        viewer.layers.events.removed.connect(self._on_layer_removed)

    def close(self) -> None:
        """Stop work and let go of the viewer (the dock widget was closed)."""
        self._pending = None
        self.cancel()
        self._timer.stop()
        self.camera.events.center.disconnect(self._on_camera)
        self.camera.events.zoom.disconnect(self._on_camera)
        if self._on_mouse_drag in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse_drag)
        for key in KEYS.values():
            self.viewer.bind_key(key, None)
        for name in ("inserted", "moved", "reordered"):
            getattr(self.viewer.layers.events, name).disconnect(self._restack)
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)

    # -- geometry --------------------------------------------------------------------
    @property
    def camera(self):
        """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
        return camera(self.viewer)

    def visible_region(self, layer=None) -> Region | None:
        """The image pixels in view (see ``napari_glnet.layers.visible_region``);
        None when none is in view.  Without a canvas (a ViewerModel) the whole image."""
        layer = layer if layer is not None else self._layer()
        if layer is None:
            return None
        return visible_region(self.viewer, layer, self._image_shape(layer))

    def data_position(self, world_position) -> tuple[float, float] | None:
        """World coordinates (event.position) -> image pixel (y, x), None off the image."""
        layer = self._layer()
        if layer is None:
            return None
        y, x = to_data(self.viewer, layer, np.asarray(world_position, float)[-2:])
        h, w = self._image_shape(layer)
        return (float(y), float(x)) if 0 <= y < h and 0 <= x < w else None

    @staticmethod
    def _image_shape(layer) -> tuple[int, int]:
        data = level0(layer)
        return int(data.shape[0]), int(data.shape[1])

    def _layer(self):
        return self.get_layer()

    def _default_layer(self):
        from napari.layers import Image

        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            return active
        return next((layer for layer in reversed(self.viewer.layers) if isinstance(layer, Image)), None)

    def rectangle_region(self) -> Region | None:
        """The selected (else the last) rectangle of the active Shapes layer, in image pixels."""
        from napari.layers import Shapes

        shapes = self.viewer.layers.selection.active
        layer = self._layer()
        if not isinstance(shapes, Shapes) or layer is None or not len(shapes.data):
            return None
        rects = [i for i, t in enumerate(shapes.shape_type) if t == "rectangle"]
        chosen = [i for i in rects if i in shapes.selected_data] or rects[-1:]
        if not chosen:
            return None
        corners = np.asarray(shapes.data[chosen[0]])[:, -2:]
        world = [shapes.data_to_world(np.r_[np.zeros(shapes.ndim - 2), c]) for c in corners]
        return enclosing([to_data(self.viewer, layer, np.asarray(w)[-2:]) for w in world], self._image_shape(layer))

    # -- requests ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def segment_view(self) -> None:
        """Overview, then refine the visible region (the "Segment view" button)."""
        self._request(None)

    def segment_region(self, region: Region, refine: bool | None = True) -> None:
        """Overview and refinement of an image-pixel region (``refine=None``:
        refine only if it spans at most MAX_AUTO_SCENES scenes)."""
        self._request(region, refine)

    def segment_block_at(self, y: float, x: float) -> None:
        """Segment the patch block under image pixel (y, x) ("Segment region here")."""
        self._request(None, point=(float(y), float(x)))

    def cancel(self) -> None:
        """Stop after the patch batch in progress (finished patches are kept)."""
        self._pending = None
        if self.worker is not None and not self._preloading:
            self._tally.cancelled = True
            self.status.emit("cancelling after this batch...")
            self.worker.quit()

    def mark_reviewed(self, region: Region | None = None) -> Region | None:
        """Record ``region`` (default: the visible view) as checked by a person."""
        if self.on_mark_reviewed is not None:
            return self.on_mark_reviewed(region or self.visible_region())
        if self.session is None:
            notify("warning", "segment the image first: there is no label store yet")
            return None
        region = region or self.visible_region()
        if region is None:
            notify("warning", "no part of the image is in view")
            return None
        region = self.session.mark_reviewed(region)
        notify("info", f"marked rows {region[0]}-{region[2]}, columns {region[1]}-{region[3]} as reviewed")
        return region

    def reset_store(self) -> str | None:
        """Set the session's label store aside (renamed, never deleted) so the
        next segmentation starts an empty one; returns its new path, None when
        it cannot (work running, no store)."""
        from glnet.store.reset import set_aside

        if self.session is None:
            return None
        if self.worker is not None:
            self.status.emit("cancel the segmentation first (Cancel), then reset the store")
            return None
        path = self.session.store.path
        try:
            kept = set_aside(path)
        except (GLNetError, OSError) as e:
            self.status.emit(f"the store was not reset: {e}")
            return None
        self._runner.session = self._runner.key = None
        self.session = None
        for layer in self.viewer.layers:
            if layer.name in OWN_LAYERS:
                layer.visible = False
        self.status.emit(f"label store reset: the old one is kept as {kept}; Segment view starts an empty store")
        return str(kept)

    def _request(
        self,
        region: Region | None,
        refine: bool | None = True,
        point: tuple[float, float] | None = None,
        quiet: bool = False,
    ) -> None:
        """Start (or queue behind the running worker) one request.  ``quiet``
        (requests the camera made): form problems go to the status line, not
        to a notification on every pan."""
        try:
            if self.get_settings is None:
                raise GLNetError("open the GLNet widget first")
            settings = self.get_settings()
            if region is None and point is None:
                region = self.visible_region(settings.layer)
                if region is None:
                    raise GLNetError("no part of the image is in view: pan or zoom to it")
        except GLNetError as e:
            if quiet:
                self.status.emit(str(e))
            else:
                notify("error", str(e))
            return
        if self.image is not None and settings.layer != self.image and not self.may_switch("segmenting another image"):
            return
        region = None if region is None else tuple(int(v) for v in region)
        settings = replace(settings, model=settings.model.replace(threads=self.threads))  # one core for the GUI
        request = Request(settings, region, point, refine, self.threads)
        if self.worker is not None:  # the old view's work stops at its next batch; then this starts
            self._pending = request
            if not self._preloading:  # a model being loaded is waited for: the request needs it
                self.worker.quit()
            return
        self._start(request)

    def preload(self, model: ModelSpec, mtime: float) -> None:
        """Load ``model`` in the background now (the widget calls this at start
        and when the checkpoint or its settings change), so that Segment view
        finds it in memory; a request made meanwhile waits for it."""
        job = Preload(model.replace(threads=self.threads), mtime, self.threads)
        if self._runner.has(job.model, job.mtime):
            return
        if self.worker is not None:  # after the work in progress (a queued view request goes first)
            if not isinstance(self._pending, Request):
                self._pending = job
            return
        self._start(job)

    def _start_preload(self, job: Preload) -> None:
        from napari.qt.threading import create_worker

        worker = create_worker(load_job, self._runner, job, _start_thread=False)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(lambda: self._on_finished(worker))
        self.worker, self._preloading = worker, True
        self._tally = _Tally()
        self.status.emit("loading the checkpoint...")
        worker.start()

    def _start(self, request: Request | Preload) -> None:
        from napari.qt.threading import create_worker

        if isinstance(request, Preload):
            if not self._runner.has(request.model, request.mtime):  # a view request may have loaded it meanwhile
                self._start_preload(request)
            else:
                self.busy.emit(False)
            return
        self._preloading = False
        try:
            pixels = layer_pixels(request.settings.layer)
        except GLNetError as e:
            notify("error", str(e))
            self.busy.emit(False)
            return
        layer = request.settings.layer
        self._placement = {"scale": tuple(layer.scale[-2:]), "translate": tuple(layer.translate[-2:])}
        worker = create_worker(view_job, self._runner, request, level0(layer), pixels, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(lambda: self._on_finished(worker))
        self.worker = worker
        self._tally = _Tally()
        self._pbar = _open_progress(self.cancel)
        self._request_layer = layer
        self.busy.emit(True)
        self.status.emit("loading the checkpoint..." if self._runner.segmenter is None else "segmenting...")
        worker.start()

    # -- what the worker reports (main thread) -------------------------------------------
    def _on_yielded(self, item) -> None:
        if isinstance(item, RefineProgress):
            self._on_progress(item)
        elif isinstance(item, Overview):
            self._show_overview(item)
            self.status.emit("overview shown; refining...")
        elif isinstance(item, Ready):
            self._on_ready(item)
        elif isinstance(item, Warn):
            notify("warning", item.message)

    def _on_progress(self, item: RefineProgress) -> None:
        """Progress in one unit, tiles, and only forward (napari's bar follows
        update()).  The bar comes last: napari's bar processes Qt events, so the
        worker's later messages (even its return) may be handled inside it."""
        tally = self._tally
        tally.total = item.tiles_total
        if item.tiles_done > tally.done:
            tally.done = item.tiles_done
            tally.reused += item.reused
            tally.written += item.written is not None
        self.progress.emit(tally.done, tally.total)
        now = time.monotonic()
        if not tally.ended and (item.written is not None or now - tally.said >= STATUS_EVERY_S):
            # every repaint of the window costs the GUI thread (software OpenGL: the CPUs the model needs)
            tally.said = now
            self.status.emit(f"refining: {tally.done} of {tally.total} tiles ({max(item.fraction, 0):.0%})")
        if item.written is not None:
            self.refresh_labels()
            self.labels_written.emit(item.written)
        if self._pbar is not None:
            if self._pbar.total != tally.total:
                self._pbar.total = tally.total
            if tally.done > self._pbar.n:
                self._pbar.update(tally.done - self._pbar.n)

    def _on_ready(self, ready: Ready) -> None:
        self.device.emit(ready.device)
        self._warn_untrained(ready.untrained)
        layers = self.viewer.layers
        if ready.new or self.session is not ready.session or LABELS_NAME not in layers or OVERVIEW_NAME not in layers:
            self.session = ready.session
            self.image = self._request_layer
            self._make_layers()
        self.status.emit(f"segmenting on {ready.device} into {ready.session.store.path}")

    def _on_returned(self, outcome) -> None:
        self._tally.ended = True
        if isinstance(outcome, Failed):
            self.status.emit(f"failed: {outcome}")
            if not self._preloading:  # a bad checkpoint's preload: the model card says what is wrong
                notify("error", str(outcome))
        elif isinstance(outcome, Done):
            self.refresh_labels()
            self.status.emit(self._done_text(outcome))
        elif isinstance(outcome, Loaded):
            self.device.emit(outcome.device)
            self._warn_untrained(outcome.untrained)
            self.status.emit(f"checkpoint loaded ({outcome.device}): ready to segment")

    @staticmethod
    def _warn_untrained(untrained: bool) -> None:
        if untrained:
            notify(
                "warning", "This checkpoint is UNTRAINED: it only exercises the pipeline; its classes are meaningless."
            )

    def _done_text(self, done: Done) -> str:
        t, l, b, r = done.region
        tally = self._tally
        if not done.refined:
            return f"overview only: the view spans more than {MAX_AUTO_SCENES} scenes (zoom in to refine)"
        if tally.total and tally.reused == tally.total:
            return (
                f"already refined: rows {t}-{b}, columns {l}-{r} were in the label store "
                "(nothing recomputed; Reset store… to start over)"
            )
        again = f"; {tally.reused} already refined" if tally.reused else ""
        return (
            f"done: refined rows {t}-{b}, columns {l}-{r} ({tally.written} new tile{'s' * (tally.written != 1)}{again})"
        )

    def _cancelled_text(self) -> str:
        tally = self._tally
        kept = f"{tally.written} new tile{'s' * (tally.written != 1)} written and kept"
        if tally.total:
            kept += f" ({tally.done} of {tally.total} tiles done)"
        return f"cancelled: {kept}; finished patches are kept and reused next time"

    def _on_finished(self, worker) -> None:
        if worker is not self.worker:
            return
        self.worker = None
        preloaded, self._preloading = self._preloading, False
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if not self._tally.ended and self._pending is None and not preloaded:
            self.status.emit(self._cancelled_text() if self._tally.cancelled else "failed: see the error message")
        pending, self._pending = self._pending, None
        if pending is not None:
            self._start(pending)
        else:
            self.busy.emit(False)

    # -- layers (main thread only) -------------------------------------------------------
    def _make_layers(self, start: int = 0) -> None:
        """Show the session's overview and store, reusing our layers where they
        fit (removing a napari layer triggers a full gc.collect: seconds in a
        process holding a model).  Making a napari layer costs the GUI thread
        0.3-0.5 s, so a layer made is drawn before the next is made (the
        overview first): two shorter freezes instead of one long one."""
        from qtpy.QtCore import QTimer

        session = self.session
        if session is None:
            return
        colormap = label_colormap(session.classes)
        features = {"index": np.arange(len(session.classes)), "class": list(session.classes.names)}
        metadata = {"glnet_classes": session.classes.to_list(), "glnet_store": str(session.store.path)}
        overview = session.current_overview()
        levels = session.display_levels(self._token())
        shown = [
            (
                OVERVIEW_NAME,
                overview.labels,
                False,
                overview_placement(overview.step, self._placement["scale"], self._placement["translate"]),
            ),
            (LABELS_NAME, _layer_data(levels), len(levels) > 1, self._placement),
        ]
        for k, (name, data, multiscale, place) in enumerate(shown):
            if k < start:
                continue
            layer = self._reusable(name, multiscale)
            made = layer is None
            if layer is None:
                layer = self.viewer.add_labels(
                    data,
                    name=name,
                    multiscale=multiscale,
                    colormap=colormap,
                    features=features,
                    opacity=0.5,
                    metadata=metadata,
                    **place,
                )
            else:
                layer.data, layer.colormap, layer.features, layer.metadata = data, colormap, features, metadata
                layer.scale, layer.translate = place["scale"], place["translate"]
            layer.editable = False  # views of the store and of the model: corrections go through the review layer
            layer.visible = True
            if made and k + 1 < len(shown):
                self._restack()
                QTimer.singleShot(0, lambda nxt=k + 1: self.session is session and self._make_layers(nxt))
                return
        self._restack()
        self.store_ready.emit(session.store, self.viewer.layers[LABELS_NAME])
        image = self._layer()
        if image is not None and image in self.viewer.layers:  # keep the image selected: its keys and mode stay
            self.viewer.layers.selection.active = image

    def _restack(self, _event=None) -> None:
        """Keep GLNet's layers directly above their image, in the order
        the model's confidence (under the labels being reviewed), overview,
        labels, then the review's (edit, reviewed regions): a layer added
        later (another image) never covers them."""
        if self._restacking or self.image is None:
            return
        layers = self.viewer.layers
        ours = [layer for layer in layers if layer.name in OWN_LAYERS]
        image = _index(layers, self.image)
        if image is None or not ours:
            return
        ours.sort(key=lambda layer: OWN_LAYERS.index(layer.name))
        own = {id(layer) for layer in ours}
        wanted = [layer for layer in layers if id(layer) not in own]
        at = wanted.index(layers[image]) + 1
        wanted[at:at] = ours
        if [id(x) for x in wanted] == [id(x) for x in layers]:
            return
        self._restacking = True
        try:
            for target, layer in enumerate(wanted):
                current = _index(layers, layer)
                if current != target:
                    layers.move(current, target)
        finally:
            self._restacking = False

    def _on_layer_removed(self, event) -> None:
        """The image went: its GLNet layers are hidden (and reused for the next image)."""
        if self.image is None or event.value != self.image:
            return
        self.image = None
        for layer in self.viewer.layers:
            if layer.name in OWN_LAYERS:
                layer.visible = False
        self.status.emit("the image was closed: its GLNet layers are hidden (its labels stay in the label store)")

    def _reusable(self, name: str, multiscale: bool):
        """Our layer ``name`` if it can take the new data in place, else None (removed if it cannot)."""
        from napari.layers import Labels

        layers = self.viewer.layers
        if name not in layers:
            return None
        layer = layers[name]
        if isinstance(layer, Labels) and bool(layer.multiscale) == multiscale:
            return layer
        layers.remove(name)
        return None

    @staticmethod
    def _token() -> str:
        """A name never used before for the store's dask graph: napari's dask
        cache must not serve chunks read before a write."""
        return uuid.uuid4().hex

    def refresh_labels(self) -> None:
        """Re-read the store into the labels layer (after a write), and hide
        the overview where labels now are."""
        if self.session is None or LABELS_NAME not in self.viewer.layers:
            return
        layer = self.viewer.layers[LABELS_NAME]
        layer.data = _layer_data(self.session.display_levels(self._token()))
        layer.editable = False  # a single-level store is not multiscale, and napari would let it be painted
        self._show_overview(self.session.current_overview())

    def _show_overview(self, overview: Overview) -> None:
        if OVERVIEW_NAME in self.viewer.layers:
            layer = self.viewer.layers[OVERVIEW_NAME]
            layer.data = overview.labels
            layer.editable = False

    # -- viewer events -----------------------------------------------------------------
    def _on_camera(self, _event=None) -> None:
        if self.auto_refine:
            self._timer.start()  # restarts: fires DEBOUNCE_MS after the last move

    def _on_view_settled(self) -> None:
        if self.auto_refine:
            self._request(None, refine=None, quiet=True)

    def _key_segment_view(self, _viewer=None) -> None:
        self.segment_view()

    def _key_cancel(self, _viewer=None) -> None:
        self.cancel()

    def _painting(self) -> bool:
        from napari.layers import Labels

        active = self.viewer.layers.selection.active
        return isinstance(active, Labels) and str(active.mode) not in ("pan_zoom", "transform")

    def _on_mouse_drag(self, _viewer, event):
        """Right-click without drag (and not while painting) opens the GLNet menu."""
        if event.button != 2 or self._painting():
            return
        start = np.asarray(event.pos, float)
        position = tuple(event.position)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = moved or float(np.hypot(*(np.asarray(event.pos, float) - start))) > CLICK_TOLERANCE_PX
            yield
        if not moved:
            self.open_context_menu(position)

    # -- the context menu -------------------------------------------------------------------
    def context_actions(self, world_position) -> list[tuple[str, Callable[[], Any] | None, str]]:
        """(text, callback or None when disabled, tooltip) for a right-click at ``world_position``."""
        at = self.data_position(world_position)
        rect = self.rectangle_region()
        return [
            (
                "Segment region here",
                (lambda: self.segment_block_at(*at)) if at is not None else None,
                "the patch block under the cursor",
            ),
            ("Segment visible view", self.segment_view, f"{KEYS['segment_view']}"),
            (
                "Segment selected rectangle",
                (lambda: self.segment_region(rect)) if rect else None,
                "the selected (or last) rectangle of the active Shapes layer",
            ),
            (
                "Mark region reviewed",
                (lambda: self.mark_reviewed(rect)) if self.session is not None else None,
                "the selected rectangle, else the visible view: ready for retraining",
            ),
        ]

    def open_context_menu(self, world_position):
        """Build the menu for a click at ``world_position`` and pop it up at the cursor."""
        from qtpy.QtGui import QCursor

        self.last_menu = build_menu(self.context_actions(world_position))
        self.last_menu.popup(QCursor.pos())
        return self.last_menu


def _index(layers, layer) -> int | None:
    """Position of ``layer`` (compared with ==: napari's proxies are not the layers themselves)."""
    return next((i for i, x in enumerate(layers) if x == layer), None)


def _layer_data(levels: list):
    return levels if len(levels) > 1 else levels[0]


def build_menu(actions: list[tuple[str, Callable[[], Any] | None, str]], parent=None):
    """A QMenu with one action per entry (disabled where the callback is None);
    showing it is the caller's business."""
    from qtpy.QtWidgets import QMenu

    menu = QMenu(parent)
    menu.setToolTipsVisible(True)
    for text, callback, tip in actions:
        action = menu.addAction(text)
        action.setToolTip(tip)
        action.setEnabled(callback is not None)
        if callback is not None:
            action.triggered.connect(lambda _checked=False, cb=callback: cb())
    return menu


def _open_progress(on_cancel: Callable[[], None]):
    """An activity-dock progress bar (0..1000) whose Cancel button stops the worker."""
    from napari.utils import cancelable_progress

    class _Progress(cancelable_progress):
        def cancel(self) -> None:  # napari's calls the callback only when iterating
            super().cancel()
            on_cancel()

    return _Progress(total=1000, desc="GLNet")
