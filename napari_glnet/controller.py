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
* a right-click without drag on the canvas (napari has no canvas context
  menu: :mod:`napari_glnet.context_menu`): "Segment region here",
  "Segment visible view", "Segment selected rectangle", "Mark region reviewed";
* keys: ``KEYS`` below.  ``RESERVED_KEYS`` are the review side's.

How the results show is :mod:`napari_glnet.view_layers`; the menu itself
:mod:`napari_glnet.context_menu`; the worker's side :mod:`napari_glnet.view_worker`.
Long because it is the one place that sequences a request (queued behind the
running worker or a model being loaded, the worker's messages, the status
line and progress a user reads): split, the order would be hidden.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from glnet.errors import GLNetError
from glnet.geometry import Region, enclosing
from glnet.inference.spec import ModelSpec

from .context_menu import Action, RightClickMenu
from .guided import NEXT_KEY, UNCERTAINTY_KEY
from .layers import camera, level0, to_data, visible_region
from .review import ACCEPT_KEY, NEXT_CLASS_KEY, OUTLINE_KEY, UNDO_ACCEPT_KEY
from .session import Overview, RefineProgress, ViewSession
from .view_layers import LABELS_NAME, ViewLayers
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
        self.worker = None
        self._runner = Runner()
        self._pending: Request | Preload | None = None
        self._preloading = False  # the running worker only loads the model (nothing to cancel)
        self._pbar = None
        self._tally = _Tally()
        self._request_layer = None
        self.layers = ViewLayers(viewer, self._on_shown, self.status.emit)
        # asked before work moves to another image (the widget: unaccepted strokes are resolved)
        self.may_switch: Callable[[str], bool] = lambda _doing: True
        self.on_mark_reviewed: Callable[[Region | None], Any] | None = None  # the review side's, when there is one
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._on_view_settled)
        self.camera.events.center.connect(self._on_camera)
        self.camera.events.zoom.connect(self._on_camera)
        self.menu = RightClickMenu(viewer, self.context_actions)
        viewer.bind_key(KEYS["segment_view"], self._key_segment_view, overwrite=True)
        viewer.bind_key(KEYS["cancel"], self._key_cancel, overwrite=True)

    def close(self) -> None:
        """Stop work and let go of the viewer (the dock widget was closed)."""
        self._pending = None
        self.cancel()
        self._timer.stop()
        self.camera.events.center.disconnect(self._on_camera)
        self.camera.events.zoom.disconnect(self._on_camera)
        self.menu.close()
        for key in KEYS.values():
            self.viewer.bind_key(key, None)
        self.layers.close()

    @property
    def session(self) -> ViewSession | None:
        """The session whose labels the viewer shows (None before the first segmentation, or after a reset)."""
        return self.layers.session

    @property
    def image(self):
        """The image layer GLNet's layers belong to (None before the first segmentation)."""
        return self.layers.image

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
        self.layers.hide()
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
        self.layers.placement = {"scale": tuple(layer.scale[-2:]), "translate": tuple(layer.translate[-2:])}
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
            self.layers.show_overview(item)
            self.status.emit("overview shown; refining...")
        elif isinstance(item, Ready):
            self._on_ready(item)
        elif isinstance(item, Warn):
            notify("warning", item.message)

    def _on_progress(self, item: RefineProgress) -> None:
        """Progress in one unit, tiles, and only forward (napari's bar follows
        update()).  The bar moves in an event-loop turn of its own: napari's bar
        processes Qt events, which paints the canvas (0.1-0.2 s with software
        OpenGL) and may handle the worker's later messages (even its return), so
        inside this handler it would add a paint to the tile's redraw."""
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
        if self._pbar is not None and tally.done > self._pbar.n:
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self._move_bar)

    def _move_bar(self) -> None:
        bar, tally = self._pbar, self._tally
        if bar is None:
            return
        if bar.total != tally.total:
            bar.total = tally.total
        if tally.done > bar.n:
            bar.update(tally.done - bar.n)

    def _on_ready(self, ready: Ready) -> None:
        self.device.emit(ready.device)
        self._warn_untrained(ready.untrained)
        if ready.new or not self.layers.shows(ready.session):
            self.layers.show(ready.session, self._request_layer)
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
    def _on_shown(self, session: ViewSession) -> None:
        self.store_ready.emit(session.store, self.viewer.layers[LABELS_NAME])
        image = self._layer()
        if image is not None and image in self.viewer.layers:  # keep the image selected: its keys and mode stay
            self.viewer.layers.selection.active = image

    def refresh_labels(self) -> None:
        """Re-read the store into the labels layer (after a write)."""
        self.layers.refresh()

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

    # -- the context menu -------------------------------------------------------------------
    @property
    def last_menu(self):
        """The last context menu opened."""
        return self.menu.last

    def context_actions(self, world_position) -> list[Action]:
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
        """Pop the menu up as a right-click at ``world_position`` does."""
        return self.menu.open(world_position)


def _open_progress(on_cancel: Callable[[], None]):
    """An activity-dock progress bar (0..1000) whose Cancel button stops the
    worker, with the window's animations paused while it is open (see
    :func:`_pause_animations`)."""
    from napari.utils import cancelable_progress

    class _Progress(cancelable_progress):
        def cancel(self) -> None:  # napari's calls the callback only when iterating
            super().cancel()
            on_cancel()

        def close(self) -> None:
            super().close()
            resume()

    bar = _Progress(total=1000, desc="GLNet")
    resume = _pause_animations()
    return bar


def _pause_animations() -> Callable[[], None]:
    """Pause the animated images of the application's windows (napari's activity
    indicator, a GIF started with every progress bar) and return what resumes them.

    Each frame of the GIF (about 27 a second) makes Qt recompose the whole
    window, which holds an OpenGL canvas: on a software-rendered display (no
    GPU: Xvfb, virtual machines, remote desktops) that took 0.6 CPU s per second,
    the third of a 2-core machine that the model needed (refining a 2448 px
    view 8.8 s -> 6.7 s).  The indicator stays shown, still; the progress bar moves."""
    from qtpy.QtGui import QMovie
    from qtpy.QtWidgets import QApplication, QLabel

    labels = [label for window in QApplication.topLevelWidgets() for label in window.findChildren(QLabel)]
    movies = [label.movie() for label in labels if label.movie() is not None]
    running = [movie for movie in movies if movie.state() == QMovie.MovieState.Running]
    for movie in running:
        movie.setPaused(True)

    def resume() -> None:
        for movie in running:
            with contextlib.suppress(RuntimeError):  # the window (and its movie) is gone
                if movie.state() == QMovie.MovieState.Paused:
                    movie.setPaused(False)

    return resume
