"""The GLNet dock widget: the form, nothing else.

Layout only: what to segment (image layer), with what (checkpoint, mode for
the authors' files, device, precision, batch size, patch size,
coarse-to-fine, label store) and the buttons.  The work is the controller's (napari_glnet.controller: workers,
layers, camera, right-click menu, keys) and the session's
(napari_glnet.session: the glnet library on the view).  Qt comes only
through magicgui and qtpy.
"""

from __future__ import annotations

import contextlib
import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from glnet.constants import Mode, Precision
from glnet.errors import GLNetError
from glnet.inference.coarse import CoarseToFine
from glnet.inference.spec import ModelSpec

from ._review_widget import ReviewWidget
from .controller import KEYS, Settings, ViewController
from .guard import CloseGuard
from .view_layers import OWN_LAYERS

if TYPE_CHECKING:
    import napari

DEVICES = ("auto", "cpu", "cuda")
FROM_CHECKPOINT = ("from the checkpoint", "")  # the Mode choice for our checkpoints, which record theirs
CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"
PRELOAD_MS = 250  # the model is loaded this long after the last change of the form (one load for a burst)
CPU_NOTE = "Running on the CPU (no CUDA GPU in use): refining big views takes a while."


def class_table_html(classes) -> str:
    """The class table as coloured swatches and names (rich text for a QLabel)."""
    rows = []
    for i, info in enumerate(classes.classes):
        r, g, b = info.color
        swatch = f'<span style="background-color: rgb({r},{g},{b}); color: rgb({r},{g},{b});">&#9608;&#9608;</span>'
        rows.append(f"{swatch}&nbsp;{i}&nbsp;{html.escape(info.name)}")
    return "<br>".join(rows)


AUTHORS_HINT = (
    "For real aerial or satellite imagery, choose the authors' DeepGlobe checkpoints instead: "
    "fpn_deepglobe_global2local.pth with Mode global2local, or fpn_deepglobe_local2global.pth with "
    "Mode local2global and fpn_deepglobe_global.pth as Global ckpt (see the README)."
)


def model_card_html(ckpt) -> str:
    """The class table in colour, then what the checkpoint says about itself
    (``extra["trained_on"]``; a demo model also says where real models are)."""
    text = class_table_html(ckpt.classes)
    extra = ckpt.extra or {}
    notes = []
    if extra.get("trained_on"):
        notes.append(f"Trained on {html.escape(str(extra['trained_on']))}.")
    if extra.get("demo"):
        notes.append(html.escape(AUTHORS_HINT))
    if notes:
        text += "<br><i>" + "<br>".join(notes) + "</i>"
    return text


def _model_card_text(spec: ModelSpec) -> str:
    """The checkpoint's model card as rich text, or what is wrong with the file."""
    try:
        return model_card_html(spec.checkpoint())
    except GLNetError as e:
        return f'<span style="color: #e05050;">{html.escape(str(e))}</span>'


class SegmentWidget(QWidget):
    """Dock widget: segment the visible part of an image layer with a GLNet checkpoint."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._classes_worker = None
        self._closed = False
        self.image = ComboBox(label="Image", choices=self._image_choices, nullable=True)
        self.weights = FileEdit(label="Checkpoint", mode="r", filter=CHECKPOINT_FILTER)
        self.mode = ComboBox(
            label="Mode",
            choices=[FROM_CHECKPOINT, *((m, m) for m in Mode.choices())],
            value=FROM_CHECKPOINT[1],
            tooltip="The authors' .pth files need it; our checkpoints record their own mode",
        )
        self.global_weights = FileEdit(label="Global ckpt", mode="r", filter=CHECKPOINT_FILTER, visible=False)
        self.global_weights.tooltip = "The authors' fpn_deepglobe_global.pth (their local2global needs it)"
        self.device = ComboBox(label="Device", choices=DEVICES, value="auto")
        self.precision = ComboBox(label="Precision", choices=Precision.choices(), value=Precision.FP32.value)
        self.batch_size = SpinBox(label="Batch size", value=4, min=1, max=256, tooltip="patches per batch")
        self.patch_size = SpinBox(
            label="Patch size", value=0, min=0, max=4096, step=4, tooltip="px per side of a local patch"
        )
        self.patch_size.native.setSpecialValueText("checkpoint's")  # 0: the size the model was trained with
        self.coarse_to_fine = CheckBox(text="Coarse-to-fine", value=False)
        self.coarse_to_fine.tooltip = (
            "Binary, imbalanced tasks: refine only the patches near the global prediction's foreground "
            "(class != 0); the others keep the global prediction"
        )
        self.store = FileEdit(
            label="Label store",
            mode="d",
            tooltip="OME-Zarr label store the labels go into; empty: one per image in the cache",
        )
        self.segment_button = PushButton(text="Segment view")
        self.segment_button.tooltip = (
            f"Overview, then refine the visible region at full resolution ({KEYS['segment_view']}); "
            "or right-click the image for more"
        )
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.cancel_button.tooltip = (
            f"Stop after the patch batch in progress ({KEYS['cancel']}); finished patches are kept"
        )
        self.auto = CheckBox(text="Refine on pan/zoom", value=False)
        self.auto.tooltip = "Re-target the work to the view after each pan or zoom (old work is cancelled)"
        self.classes = Label(value="")
        self.note = Label(value="")
        self.status = Label(value="")
        for label in (self.classes, self.note, self.status):
            label.native.setWordWrap(True)  # keep the dock narrow
        self._form = Container(
            widgets=[
                self.image,
                self.weights,
                self.mode,
                self.global_weights,
                self.device,
                self.precision,
                self.batch_size,
                self.patch_size,
                self.coarse_to_fine,
                self.store,
                Container(widgets=[self.segment_button, self.cancel_button], layout="horizontal", labels=False),
                self.auto,
            ]
        )
        layout = QVBoxLayout()
        layout.addWidget(self._form.native)
        for label in (self.classes, self.note, self.status):  # a box layout gives wrapped text its height
            layout.addWidget(label.native)
        self.controller = ViewController(napari_viewer, self.settings, lambda: self.image.value)
        self.review = ReviewWidget(
            napari_viewer,
            self.controller.visible_region,
            lambda: self.image.value,
            lambda: self._file(self.weights.value, "checkpoint"),
            self.set_checkpoint,
        )
        layout.addWidget(self.review)
        layout.addStretch(1)
        self.setLayout(layout)
        self._guard = CloseGuard(self.review.resolve, self._shut_down)
        self.controller.may_switch = self.review.resolve
        self.controller.on_mark_reviewed = self.review.mark_reviewed
        self.review.reset_requested.connect(self._reset_store)
        self.controller.store_ready.connect(self._on_store_ready)
        self.controller.labels_written.connect(self.review.labels_written)
        self.controller.status.connect(self._set_status)
        self.controller.busy.connect(self._on_busy)
        self.controller.device.connect(lambda device: self._show_device_note(actual=device))
        self.mode.changed.connect(self._on_mode)
        self.device.changed.connect(self._show_device_note)
        self.weights.changed.connect(self._show_classes)
        self.segment_button.clicked.connect(self.controller.segment_view)
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.auto.changed.connect(self._on_auto)
        events = self.viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            if hasattr(events, name):
                getattr(events, name).connect(self._refresh_images)
        self.viewer.layers.selection.events.active.connect(self._on_active)
        self._refresh_images()
        self._show_device_note()
        self._preload_timer = QTimer(self)
        self._preload_timer.setSingleShot(True)
        self._preload_timer.setInterval(PRELOAD_MS)
        self._preload_timer.timeout.connect(self._preload)
        model_fields = (self.weights, self.mode, self.global_weights, self.device, self.precision)
        for field in (*model_fields, self.batch_size, self.patch_size, self.coarse_to_fine):
            field.changed.connect(lambda _value=None: self._preload_timer.start())
        self._preload_timer.start()  # a checkpoint already in the form

    # -- the form ----------------------------------------------------------------
    def _image_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        # GLNet's own image layers (the uncertainty map) are never what to segment
        return [(x.name, x) for x in self.viewer.layers if isinstance(x, Image) and x.name not in OWN_LAYERS]

    def _refresh_images(self, event=None) -> None:
        """The image choices follow the layer list; an image just opened
        (File > Open, drag and drop, a script) becomes the one to segment."""
        current = self.image.value
        self.image.reset_choices()
        choices = [layer for _, layer in self._image_choices()]
        added = event.value if event is not None and getattr(event, "type", "") == "inserted" else None
        opened = next((c for c in choices if added is not None and c == added), None)
        if opened is not None:
            self.image.value = opened
        elif current in choices:
            self.image.value = current
        elif choices:
            self.image.value = choices[-1]

    def _on_active(self, event=None) -> None:
        """Selecting an image layer makes it the one to segment."""
        active = self.viewer.layers.selection.active
        choice = next((c for _, c in self._image_choices() if active is not None and c == active), None)
        if choice is not None and choice != self.image.value:
            self.image.value = choice

    def image_in_view(self):
        """The image to segment: the chosen one while it is visible, else the
        topmost visible image (chosen from then on); None without one."""
        layer = self.image.value
        if layer is not None and layer.visible:
            return layer
        shown = [c for _, c in self._image_choices() if c.visible]
        if shown:
            self.image.value = shown[-1]
            return shown[-1]
        return None

    def _on_mode(self, mode: str) -> None:
        self.global_weights.visible = mode == Mode.LOCAL2GLOBAL
        self._show_classes()

    def _on_auto(self, value: bool) -> None:
        self.controller.auto_refine = bool(value)

    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.enabled = busy

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _show_device_note(self, _value=None, actual: str | None = None) -> None:
        if actual is None:
            import torch

            wanted = self.device.value
            actual = "cpu" if wanted == "cpu" or (wanted == "auto" and not torch.cuda.is_available()) else "cuda"
        self.note.value = CPU_NOTE if actual == "cpu" else ""
        self.note.visible = bool(self.note.value)

    def _show_classes(self, _value=None) -> None:
        """Read the checkpoint's class table off the GUI thread and show it in colour."""
        from napari.qt.threading import create_worker

        try:
            spec = ModelSpec(
                weights=self._file(self.weights.value, "checkpoint"),
                mode=self.mode.value or None,
                global_weights=self._global_weights(),
            )
        except GLNetError:
            self.classes.value = ""
            return
        self.classes.value = "reading the class table..."
        worker = create_worker(_model_card_text, spec, _start_thread=False)

        def show(text: str) -> None:
            if self._classes_worker is worker:  # the card of a checkpoint chosen later wins
                with contextlib.suppress(RuntimeError):  # the widget was closed meanwhile
                    self.classes.value = text

        def done() -> None:
            if self._classes_worker is worker:
                self._classes_worker = None

        worker.returned.connect(show)
        worker.finished.connect(done)
        self._classes_worker = worker
        worker.start()

    def set_checkpoint(self, path: str | os.PathLike) -> None:
        self.weights.value = Path(path)

    @staticmethod
    def _file(value, what: str) -> str:
        if value is None or str(value) in ("", "."):
            raise GLNetError(f"choose a {what} file first")
        path = Path(value).expanduser()
        if not path.exists():
            raise GLNetError(f"{what} not found: {path}")
        return str(path)  # a folder or a device: the library says what it is

    def _global_weights(self) -> str | None:
        if self.mode.value == Mode.LOCAL2GLOBAL and str(self.global_weights.value) not in ("", "."):
            return self._file(self.global_weights.value, "global checkpoint")
        return None

    def settings(self) -> Settings:
        """What the controller needs for a request; GLNetError says what is missing."""
        layer = self.image_in_view()
        if layer is None:
            if self.image.value is not None:
                raise GLNetError(f"the image '{self.image.value.name}' is hidden: show it (or another image) first")
            raise GLNetError("add an RGB image layer first (File > Open)")
        model = self.model_spec()
        store = str(self.store.value) if str(self.store.value) not in ("", ".") else None
        return Settings(model, layer, store, os.path.getmtime(model.weights or ""))

    def model_spec(self) -> ModelSpec:
        """The model the form describes; GLNetError says what is missing."""
        return ModelSpec(
            weights=self._file(self.weights.value, "checkpoint"),
            mode=self.mode.value or None,
            global_weights=self._global_weights(),
            device=self.device.value,
            precision=self.precision.value,
            batch_size=int(self.batch_size.value),
            size_p=int(self.patch_size.value) or None,
            coarse_to_fine=CoarseToFine() if self.coarse_to_fine.value else None,
        )

    def _preload(self) -> None:
        """Load the form's model in the background (PRELOAD_MS after the last
        change of the checkpoint or its settings), so Segment view finds it."""
        if self._closed:
            return
        try:
            spec = self.model_spec()
            mtime = os.path.getmtime(spec.weights or "")
        except (GLNetError, OSError):
            return
        self.controller.preload(spec, mtime)

    def _on_store_ready(self, store, layer) -> None:
        before = self.review.review
        self.review.set_store(store, layer)
        if self.review.review is not before:  # accepted edits also hide the overview there
            self.review.review.store_changed.connect(lambda _region: self.controller.refresh_labels())

    def _reset_store(self) -> None:
        if self.controller.reset_store() is not None:
            self.review.set_store(None)
            self.review.report.setText(self.status.value)

    # -- for scripts and tests ---------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.controller.running

    def start(self):
        """Press "Segment view"; returns the worker, or None after showing an error."""
        self.controller.segment_view()
        return self.controller.worker

    def cancel(self) -> None:
        self.controller.cancel()

    def showEvent(self, event) -> None:  # docked: napari's window and the dock's close button exist now
        self._guard.watch(self)
        super().showEvent(event)

    def _shut_down(self) -> None:
        """Stop listening to the viewer (the dock is being closed)."""
        if self._closed:
            return
        self._closed = True
        self._preload_timer.stop()
        self._guard.release()
        self.viewer.layers.selection.events.active.disconnect(self._on_active)
        for name in ("inserted", "removed", "moved", "reordered"):
            getattr(self.viewer.layers.events, name).disconnect(self._refresh_images)
        self.controller.close()
        self.review.close_review()

    def closeEvent(self, event) -> None:
        self._shut_down()
        super().closeEvent(event)
