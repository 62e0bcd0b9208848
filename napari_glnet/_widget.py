"""The GLNet dock widget: pick an image layer and a checkpoint, press Segment.

Thin on purpose: loading, patching and the model are the ``glnet``
library's.  What lives here is the napari side: the form, a generator
``thread_worker`` that runs ``ImageSession.run()`` off the GUI thread
(one ``yield`` per patch batch, so the progress bar ticks and Cancel stops
between batches), and the Labels layer drawn in the class colours.

Qt comes only through magicgui and qtpy, never a binding directly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from glnet.errors import GLNetError

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

MODES = ("global", "global2local", "local2global")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"


# -- the part that runs in the worker thread (no Qt, no layers) -------------
@dataclass(frozen=True)
class _Request:
    """What a run needs from the form; also the key of the cached Segmenter."""

    weights: str
    mtime: float
    mode: str
    global_weights: str | None
    device: str
    precision: str
    batch_size: int


@dataclass
class _Started:
    device: str  # "cpu" or "cuda"
    untrained: bool  # an untrained checkpoint was just loaded: say so once


@dataclass
class _Done:
    labels: np.ndarray
    classes: Any  # glnet.classes.ClassTable


@dataclass
class _Failed:
    message: str


def load_for_widget(weights: str, mode: str, global_weights: str | None):
    """Our checkpoints know their mode; the authors' files need the form's mode.

    Tries our format first and falls back to ``mode`` (a second read only
    for the authors' state_dicts, which happens in the worker thread)."""
    from glnet.checkpoint import load_checkpoint

    try:
        return load_checkpoint(weights)
    except GLNetError:
        return load_checkpoint(weights, mode=mode, global_path=global_weights)


def to_rgb8(data: Any) -> np.ndarray:
    """A 2D image layer's pixels as (H, W, 3) uint8 (grey is replicated, alpha dropped)."""
    a = np.asarray(data)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise GLNetError(f"GLNet segments 2D RGB or greyscale images; this layer's data has shape {a.shape}")
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        scale = 255.0 if a.size and float(np.nanmax(a)) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a) * scale, 0, 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        raise GLNetError(f"{a.dtype} pixels are not supported: convert the layer to 8- or 16-bit")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


class _Cache:
    """The loaded Segmenter and the last image session, reused between runs.

    Only one worker runs at a time (the Segment button is disabled while one
    does), so the worker thread may read and replace these."""

    def __init__(self) -> None:
        self.request: _Request | None = None
        self.segmenter = None
        self.session_key: tuple | None = None
        self.session = None
        self.session_data = None  # held so the id() in session_key cannot be reused

    def segmenter_for(self, request: _Request):
        """The Segmenter for this form, and whether it was (re)loaded just now."""
        if request != self.request:
            from glnet.engine import Segmenter

            self.segmenter = self.request = self.session = self.session_key = self.session_data = None
            ckpt = load_for_widget(request.weights, request.mode, request.global_weights)
            self.segmenter = Segmenter(ckpt, request.device, request.precision, request.batch_size)
            self.request = request
            return self.segmenter, True
        return self.segmenter, False

    def session_for(self, key: tuple, data: Any):
        """The session for this image, kept so a cancelled run resumes where it stopped."""
        if key != self.session_key or self.session is None or data is not self.session_data:
            self.session = self.session_key = self.session_data = None
            self.session = self.segmenter.open(to_rgb8(data))
            self.session_key, self.session_data = key, data
        return self.session


def segment_job(cache: _Cache, request: _Request, data: Any, image_key: tuple):
    """Generator run by the thread worker: yields _Started, then one Progress per batch.

    Returns _Done, or _Failed for the user's problems (a GLNetError, out of
    memory) so they reach the user as one line instead of a traceback."""
    from glnet.runtime import set_threads

    try:
        # Worker threads and containers often get a wrong default thread count.
        set_threads(None)
        seg, loaded = cache.segmenter_for(request)
        yield _Started(seg.device.type, loaded and bool(seg.checkpoint.extra.get("untrained")))
        session = cache.session_for((image_key, request), data)
        yield from session.run()
        return _Done(session.result().labels, seg.checkpoint.classes)
    except GLNetError as e:
        return _Failed(str(e))
    except MemoryError:
        return _Failed("out of memory: lower the batch size, or segment a smaller image")
    except RuntimeError as e:  # torch.OutOfMemoryError is a RuntimeError
        if "out of memory" in str(e).lower():
            return _Failed("out of GPU memory: lower the batch size or the precision (bf16/fp16), or use the CPU")
        raise


def labels_colormap(classes):
    """A napari DirectLabelColormap drawing class i in the table's colour i."""
    from napari.utils.colormaps import DirectLabelColormap

    rgba = {i: (*(c / 255.0), 1.0) for i, c in enumerate(classes.colors.astype(float))}
    return DirectLabelColormap(color_dict={**rgba, None: (0.0, 0.0, 0.0, 0.0)})


def _cpu_note(device: str) -> str:
    return "Running on the CPU (no CUDA GPU in use): big images take a while." if device == "cpu" else ""


# -- the widget -------------------------------------------------------------
class SegmentWidget(QWidget):
    """Dock widget: segment an image layer with a GLNet checkpoint."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self._cache = _Cache()
        self._worker = None

        self.image = ComboBox(label="Image", choices=self._image_choices, nullable=True)
        self.weights = FileEdit(label="Checkpoint", mode="r", filter=CHECKPOINT_FILTER)
        self.mode = ComboBox(
            label="Mode",
            choices=MODES,
            value="global2local",
            tooltip="Only for the authors' .pth files; our checkpoints record their own mode",
        )
        self.global_weights = FileEdit(label="Global ckpt", mode="r", filter=CHECKPOINT_FILTER, visible=False)
        self.global_weights.tooltip = "The authors' fpn_deepglobe_global.pth (their local2global needs it)"
        self.device = ComboBox(label="Device", choices=DEVICES, value="auto")
        self.precision = ComboBox(label="Precision", choices=PRECISIONS, value="fp32")
        self.batch_size = SpinBox(label="Batch size", value=4, min=1, max=256, tooltip="patches per batch")
        self.segment_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.note = Label(value="")
        self.status = Label(value="")
        self.note.native.setWordWrap(True)  # keep the dock narrow
        self._form = Container(
            widgets=[
                self.image,
                self.weights,
                self.mode,
                self.global_weights,
                self.device,
                self.precision,
                self.batch_size,
                Container(widgets=[self.segment_button, self.cancel_button], layout="horizontal", labels=False),
            ]
        )
        layout = QVBoxLayout()
        layout.addWidget(self._form.native)
        # Outside the form: a box layout gives wrapped text the height it needs.
        layout.addWidget(self.note.native)
        layout.addWidget(self.status.native)
        layout.addStretch(1)
        self.setLayout(layout)

        self.mode.changed.connect(self._on_mode)
        self.device.changed.connect(self._show_device_note)
        self.segment_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        events = self.viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            if hasattr(events, name):
                getattr(events, name).connect(self._refresh_images)
        self._refresh_images()
        self._show_device_note()

    # -- form helpers ------------------------------------------------------
    def _image_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_images(self, _event=None) -> None:
        current = self.image.value
        self.image.reset_choices()
        choices = [layer for _, layer in self._image_choices()]
        if current in choices:
            self.image.value = current
        elif choices:
            self.image.value = choices[-1]

    def _on_mode(self, mode: str) -> None:
        self.global_weights.visible = mode == "local2global"

    def _show_device_note(self, _value=None, actual: str | None = None) -> None:
        if actual is None:
            import torch

            wanted = self.device.value
            actual = "cpu" if wanted == "cpu" or (wanted == "auto" and not torch.cuda.is_available()) else "cuda"
        self.note.value = _cpu_note(actual)
        self.note.visible = bool(self.note.value)

    def set_checkpoint(self, path: str | os.PathLike) -> None:
        self.weights.value = Path(path)

    @staticmethod
    def _file(value, what: str) -> str:
        if value is None or str(value) in ("", "."):
            raise GLNetError(f"choose a {what} file first")
        path = Path(value).expanduser()
        if not path.is_file():
            raise GLNetError(f"{what} not found: {path}")
        return str(path)

    def _request(self) -> _Request:
        weights = self._file(self.weights.value, "checkpoint")
        mode = self.mode.value
        global_weights = None
        if mode == "local2global" and self.global_weights.value not in (None, Path(""), Path(".")):
            global_weights = self._file(self.global_weights.value, "global checkpoint")
        return _Request(
            weights,
            os.path.getmtime(weights),
            mode,
            global_weights,
            self.device.value,
            self.precision.value,
            int(self.batch_size.value),
        )

    # -- running -----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self):
        """Start segmenting the chosen layer; returns the worker, or None after showing an error."""
        from napari.qt.threading import thread_worker
        from napari.utils.notifications import show_error

        if self.running:
            return self._worker
        try:
            layer = self.image.value
            if layer is None:
                raise GLNetError("add an RGB image layer first (File > Open)")
            if getattr(layer, "multiscale", False):
                raise GLNetError("multiscale image layers are not supported by this widget yet")
            request = self._request()
        except GLNetError as e:
            show_error(str(e))
            return None

        target = _Target(f"{layer.name} GLNet", tuple(layer.scale[-2:]), tuple(layer.translate[-2:]))
        image_key = (id(layer), id(layer.data))
        make = thread_worker(segment_job, progress={"total": 0, "desc": f"GLNet {layer.name}"})
        worker = make(self._cache, request, layer.data, image_key)
        worker.yielded.connect(lambda item: self._on_yielded(worker, item))
        worker.returned.connect(lambda outcome: self._on_returned(target, outcome))
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.segment_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "loading the checkpoint..."
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop after the batch in progress (finished batches are kept for the next run)."""
        if self._worker is not None:
            self.status.value = "cancelling after this batch..."
            self._worker.quit()

    def _on_yielded(self, worker, item) -> None:
        from glnet.engine import Progress

        if isinstance(item, _Started):
            self._show_device_note(actual=item.device)
            self.status.value = f"segmenting on {item.device}..."
            if item.untrained:
                from napari.utils.notifications import show_warning

                show_warning("This checkpoint is UNTRAINED: it only exercises the pipeline; its classes are meaningless.")
        elif isinstance(item, Progress):
            self.status.value = f"{item.stage}: {item.done}/{item.total} patches"
            pbar = getattr(worker, "pbar", None)
            if pbar is not None and item.total:
                if pbar.total != item.total:
                    pbar.total = item.total
                if item.done > pbar.n:
                    pbar.update(item.done - pbar.n)

    def _on_returned(self, target: "_Target", outcome) -> None:
        from napari.utils.notifications import show_error

        if isinstance(outcome, _Failed):
            self.status.value = "failed"
            show_error(outcome.message)
        elif isinstance(outcome, _Done):
            self._show_labels(target, outcome)
            self.status.value = f"done: layer '{target.name}'"

    def _on_aborted(self) -> None:
        from napari.utils.notifications import show_info

        self.status.value = "cancelled (finished patches are reused by the next run)"
        show_info("GLNet segmentation cancelled")

    def _on_finished(self) -> None:
        self._worker = None
        self.segment_button.enabled = True
        self.cancel_button.enabled = False

    def _show_labels(self, target: "_Target", done: _Done) -> None:
        from napari.layers import Labels

        classes = done.classes
        features = {"index": np.arange(len(classes)), "class": list(classes.names)}
        colormap = labels_colormap(classes)
        layers = self.viewer.layers
        existing = next((lay for lay in layers if lay.name == target.name and isinstance(lay, Labels)), None)
        if existing is None:
            self.viewer.add_labels(
                done.labels,
                name=target.name,
                colormap=colormap,
                features=features,
                scale=target.scale,
                translate=target.translate,
                opacity=0.5,
            )
        else:
            existing.data = done.labels
            existing.scale = target.scale
            existing.translate = target.translate
            existing.colormap = colormap
            existing.features = features


@dataclass(frozen=True)
class _Target:
    name: str
    scale: tuple
    translate: tuple
