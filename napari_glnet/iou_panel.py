"""The per-class IoU panel: the label store against a ground truth, live.

Rows: class colour, name, IoU, ground-truth pixels; below, the mIoU (class 0
"unknown" left out of the mean by default, as DeepGlobe scores it) and the
pixel accuracy.  Scope: the current view or the whole image.  The ground truth
is any Labels layer of the same size, or a colour/index mask file loaded into
one.  The numbers are ``glnet.metrics`` scores of a confusion matrix that
:class:`napari_glnet.region_metrics.StoreConfusion` keeps per block, so an edit
on a 20000 x 20000 store recounts a few blocks, not the image; large counts run
in a worker thread.

Embedding (the dock widget does this)::

    panel = IoUPanel(viewer, store, review=review_controller)
    dock_layout.addWidget(panel)            # a QWidget
    panel.set_store(other_store)            # when the widget opens another store

Long because it is one QWidget with its table, its scope and ground-truth
choosers and its refresh scheduling (debounced, large counts in a worker);
the counting itself is ``region_metrics``.

The panel follows on its own: painting on the edit layer (``events.paint``,
debounced), accept/undo (``review.store_changed``), camera moves in "current
view" scope, and Labels layers being added or removed.  ``updated`` is emitted
after every refresh of the numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from glnet.errors import GLNetError
from glnet.geometry import Region
from glnet.metrics import ConfusionMatrix, Scores
from glnet.store.labelstore import LabelStore
from napari_glnet.layers import level0, visible_region
from napari_glnet.region_metrics import StoreConfusion
from napari_glnet.review import EDIT_LAYER_NAME, ReviewController, find_store_layer, painted_box
from napari_glnet.score_delta import DeltaColumn
from napari_glnet.workers import Failed, notify

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

log = logging.getLogger(__name__)

SCOPES = ("current view", "whole image")
DEBOUNCE_MS = 250
SYNC_PIXELS = 1_000_000
"""Counts up to this many uncached pixels run on the GUI thread (~40 ms); more go to a worker."""
MASK_FILTER = "Label masks (*.png *.tif *.tiff);;All files (*)"


def _same(a: Any, b: Any) -> bool:
    """The same layer, seen through napari's proxies (the widget's viewer is a
    ``PublicOnlyProxy``: its layers are proxies, ``is`` fails, ``==`` does not)."""
    return a is b or (a is not None and b is not None and a == b)


class IoUPanel(QWidget):
    """Per-class IoU of the label store against a ground-truth Labels layer."""

    updated = Signal()

    def __init__(
        self,
        viewer: napari.Viewer,
        store: LabelStore | None = None,
        *,
        review: ReviewController | None = None,
        view_region: Callable[[], Region | None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.store: LabelStore | None = None
        self.review = review
        self._view_region = view_region
        self._confusion: StoreConfusion | None = None
        self._truth_layer: Labels | None = None
        self._worker: Any = None
        self._counted_region: Region | None = None  # the region whose numbers the table shows
        self._again = False
        self._warned_range = False
        self.scores: Scores | None = None
        self.confusion: ConfusionMatrix | None = None
        self._matrix_dialog: QDialog | None = None

        self._build()
        self.deltas = DeltaColumn(self)  # how much each accept changed the score
        self.updated.connect(self.deltas.show)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.refresh_now)

        viewer.layers.events.inserted.connect(self._layers_changed)
        viewer.layers.events.removed.connect(self._layers_changed)
        viewer.scene.camera.events.center.connect(self._camera_moved)
        viewer.scene.camera.events.zoom.connect(self._camera_moved)
        if review is not None:
            self.set_review(review)
        if store is not None:
            self.set_store(store)
        self._layers_changed()

    # -- layout ----------------------------------------------------------------------
    def _build(self) -> None:
        self.truth_combo = QComboBox()
        self.truth_combo.setToolTip("Ground truth: any Labels layer the size of the image")
        self.truth_combo.currentIndexChanged.connect(self._truth_chosen)
        self.load_button = QPushButton("Load mask…")
        self.load_button.setToolTip("Load a DeepGlobe colour mask or an index mask (PNG/TIFF) as ground truth")
        self.load_button.clicked.connect(self._load_dialog)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(SCOPES)
        self.scope_combo.setToolTip("Score the pixels in view, or the whole image (counted block by block)")
        self.scope_combo.currentIndexChanged.connect(lambda _: self.schedule())
        self.exclude_box = QCheckBox("exclude class 0 from mIoU")
        self.exclude_box.setChecked(True)
        self.exclude_box.setToolTip("DeepGlobe scores without its 'unknown' class")
        self.exclude_box.toggled.connect(lambda _: self._show())
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["", "class", "IoU", "GT pixels"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, 18)
        self.summary = QLabel("no ground truth")
        self.matrix_button = QPushButton("Confusion matrix")
        self.matrix_button.setToolTip("Rows: ground truth, columns: labels; shaded by the share of the row")
        self.matrix_button.clicked.connect(self.show_confusion_matrix)

        top = QHBoxLayout()
        top.addWidget(QLabel("Ground truth"))
        top.addWidget(self.truth_combo, 1)
        top.addWidget(self.load_button)
        scope = QHBoxLayout()
        scope.addWidget(self.scope_combo)
        scope.addWidget(self.exclude_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(scope)
        layout.addWidget(self.table)
        layout.addWidget(self.summary)
        layout.addWidget(self.matrix_button)

    # -- public API ------------------------------------------------------------------
    def set_store(self, store: LabelStore | None) -> None:
        """Score ``store`` (the labels being reviewed) from now on."""
        self.store = store
        self.table.setRowCount(0 if store is None else len(store.classes))
        if store is not None:
            for i, info in enumerate(store.classes.classes):
                swatch = QTableWidgetItem()
                swatch.setBackground(QColor(*info.color))
                self.table.setItem(i, 0, swatch)
                self.table.setItem(i, 1, QTableWidgetItem(f"{i} {info.name}"))
        self._layers_changed()
        self._rebuild_confusion()

    def set_review(self, review: ReviewController) -> None:
        """Follow ``review``'s edit layer and accepted edits (its store must be this panel's)."""
        self.review = review
        review.store_changed.connect(self.labels_changed)
        review.edit_changed.connect(self._edit_changed)
        review.changed.connect(self.deltas.edit_written)
        self._edit_changed(review.edit_layer)

    def labels_changed(self, region: Region) -> None:
        """The store's labels changed in ``region`` (an accepted edit, new predictions): rescore."""
        if self._confusion is not None:
            self._confusion.invalidate(region)
        self.schedule()

    def set_scope(self, scope: str) -> None:
        """ "current view" or "whole image"."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.scope_combo.setCurrentIndex(SCOPES.index(scope))

    def set_ground_truth(self, layer: Labels | None) -> bool:
        """Use ``layer`` (a Labels layer in the viewer) as ground truth; False
        (with a notification) when it does not fit the store."""
        candidates = self._candidates()
        index = next((i + 1 for i, c in enumerate(candidates) if _same(c, layer)), 0)
        if layer is not None and not index:
            notify("error", f"{layer.name!r} cannot be the ground truth: it is not a Labels layer in this viewer")
            return False
        self._layers_changed()
        self.truth_combo.setCurrentIndex(index)  # -> _truth_chosen
        return _same(self._truth_layer, layer)

    def load_ground_truth(self, path: str | Path) -> Labels | None:
        """Read a colour or index mask file into a Labels layer and use it."""
        from glnet.io.labels import read_label
        from napari_glnet._reader import label_colormap

        if self.store is None:
            notify("warning", "Open or create a label store before loading a ground truth.")
            return None
        try:
            truth = read_label(path, self.store.classes)
        except GLNetError as exc:
            notify("error", f"Cannot use {Path(path).name} as ground truth: {exc}")
            return None
        if truth.shape != self.store.shape:
            notify(
                "error",
                f"Cannot use {Path(path).name} as ground truth: it is {truth.shape[0]} x "
                f"{truth.shape[1]} px but the labels are {self.store.shape[0]} x {self.store.shape[1]} px",
            )
            return None
        store_layer = find_store_layer(self.viewer, self.store)
        placement = {} if store_layer is None else {"scale": store_layer.scale, "translate": store_layer.translate}
        layer = self.viewer.add_labels(
            truth,
            name=f"ground truth {Path(path).stem}",
            colormap=label_colormap(self.store.classes),
            opacity=0.4,
            visible=False,
            metadata={"glnet_ground_truth": str(path)},
            **placement,
        )
        self.set_ground_truth(layer)
        return layer

    def schedule(self, *_: Any) -> None:
        """Recount after DEBOUNCE_MS (repeated calls restart the wait)."""
        self._timer.start()

    def refresh_now(self) -> None:
        """Recount now: on this thread when little is left to count, else in a worker."""
        self._timer.stop()
        if self._worker is not None:  # one count at a time; redo when it ends
            self._again = True
            return
        if self._confusion is None:
            self._show()
            return
        region = self._scope_region()
        if region is None:
            self.scores = self.confusion = None
            self._show()
            return
        overlay = self.review.overlay() if self.review is not None else None
        if overlay is not None:
            overlay = (overlay[0], np.array(overlay[1]))  # a snapshot: the user keeps painting
        confusion = self._confusion
        if confusion.pending_pixels(region, overlay) <= SYNC_PIXELS:
            self._counted(confusion, region, self._count(confusion, region, overlay))
            return
        from napari.qt.threading import create_worker

        if region != self._counted_region:  # the table holds another region's numbers: never shown as this one's
            self._blank(f"counting the {self.scope_combo.currentText()}…")
        worker = create_worker(self._count, confusion, region, overlay, _progress={"desc": "IoU"})
        worker.returned.connect(lambda cm: self._counted(confusion, region, cm))
        worker.finished.connect(self._worker_finished)
        self._worker = worker
        worker.start()

    def show_confusion_matrix(self) -> QDialog | None:
        """A dialog with the confusion matrix as a heat-map table."""
        if self.confusion is None or self.store is None:
            notify("warning", "No confusion matrix yet: choose a ground truth first.")
            return None
        m = self.confusion.matrix
        names = [f"{i} {n}" for i, n in enumerate(self.store.classes.names)]
        rows = m.sum(axis=1, keepdims=True)
        share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
        table = QTableWidget(*m.shape)
        table.setHorizontalHeaderLabels(names)
        table.setVerticalHeaderLabels(names)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                item = QTableWidgetItem(f"{m[i, j]:,}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                level = int(255 - 200 * share[i, j])
                item.setBackground(QColor(level, level, 255) if i != j else QColor(level, 255, level))
                item.setForeground(QColor(0, 0, 0))
                item.setToolTip(f"{share[i, j]:.1%} of ground-truth {names[i]} labelled {names[j]}")
                table.setItem(i, j, item)
        table.resizeColumnsToContents()
        dialog = QDialog(self)
        dialog.setWindowTitle("Confusion matrix (rows: ground truth, columns: labels)")
        QVBoxLayout(dialog).addWidget(table)
        dialog.resize(120 + 110 * m.shape[1], 80 + 30 * m.shape[0])
        dialog.show()
        self._matrix_dialog = dialog
        return dialog

    def close_panel(self) -> None:
        """Stop following the viewer (call before removing the panel)."""
        self._timer.stop()
        self.viewer.layers.events.inserted.disconnect(self._layers_changed)
        self.viewer.layers.events.removed.disconnect(self._layers_changed)
        self.viewer.scene.camera.events.center.disconnect(self._camera_moved)
        self.viewer.scene.camera.events.zoom.disconnect(self._camera_moved)
        if self.review is not None:
            self.review.store_changed.disconnect(self.labels_changed)
            self.review.edit_changed.disconnect(self._edit_changed)
            self.review.changed.disconnect(self.deltas.edit_written)
        self._watch_truth(None)

    # -- internals -------------------------------------------------------------------
    @staticmethod
    def _count(confusion: StoreConfusion, region: Region, overlay: Any) -> tuple[ConfusionMatrix | None, int] | Failed:
        """Runs on the GUI thread or in a worker: a user-caused problem is returned, not raised."""
        try:
            return confusion.matrix(region, overlay), confusion.out_of_range
        except GLNetError as exc:
            return Failed(exc)

    def _counted(
        self, confusion: StoreConfusion, region: Region, result: tuple[ConfusionMatrix | None, int] | Failed
    ) -> None:
        if confusion is not self._confusion:  # the ground truth or the store changed meanwhile
            return
        if isinstance(result, Failed):
            notify("error", f"IoU not updated: {result}")
            return
        self.confusion, out_of_range = result
        self._counted_region = region
        if out_of_range and not self._warned_range and self.store is not None:
            self._warned_range = True
            n = len(self.store.classes)
            notify(
                "warning",
                f"The ground truth has {out_of_range:,} pixels with classes outside 0..{n - 1} "
                f"(the labels have {n} classes): they are not counted.",
            )
        self._show()

    def _worker_finished(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self.refresh_now()

    def _scope_region(self) -> Region | None:
        assert self.store is not None
        if self.scope_combo.currentText() == "whole image":
            return (0, 0, *self.store.shape)
        if self._view_region is not None:
            return self._view_region()
        return visible_region(self.viewer, find_store_layer(self.viewer, self.store), self.store.shape)

    def _show(self) -> None:
        cm = self.confusion if self._confusion is not None else None
        if cm is None or self.store is None:
            self._blank("no ground truth" if self._confusion is None else "nothing in view")
            return
        exclude = (0,) if self.exclude_box.isChecked() and len(self.store.classes) > 1 else ()
        scores = cm.scores(exclude=exclude)
        self.scores = scores
        for i in range(len(scores.iou)):
            iou = "–" if math.isnan(scores.iou[i]) else f"{scores.iou[i]:.4f}"
            for col, text in ((2, iou), (3, f"{int(scores.support[i]):,}")):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, col, item)
        miou = "–" if math.isnan(scores.mean_iou) else f"{scores.mean_iou:.4f}"
        acc = "–" if math.isnan(scores.pixel_accuracy) else f"{scores.pixel_accuracy:.4f}"
        note = " (class 0 excluded)" if exclude else ""
        self.summary.setText(f"mIoU {miou}{note}   pixel accuracy {acc}")
        self.updated.emit()

    def _blank(self, summary: str) -> None:
        for i in range(self.table.rowCount()):
            for col in (2, 3):
                self.table.setItem(i, col, QTableWidgetItem(""))
        self.summary.setText(summary)
        self.scores = None
        self._counted_region = None
        self.updated.emit()

    def _candidates(self) -> list[Labels]:
        own = str(self.store.path) if self.store is not None else None
        return [
            layer
            for layer in self.viewer.layers
            if layer.__class__.__name__ == "Labels"
            and layer.name != EDIT_LAYER_NAME
            and (own is None or layer.metadata.get("glnet_store") != own)
            and layer.metadata.get("glnet_edit_of") is None
        ]

    def _layers_changed(self, *_: Any) -> None:
        candidates = self._candidates()
        keep = self._truth_layer is not None and any(_same(layer, self._truth_layer) for layer in candidates)
        self.truth_combo.blockSignals(True)
        self.truth_combo.clear()
        self.truth_combo.addItems(["(none)"] + [layer.name for layer in candidates])
        self.truth_combo.setCurrentIndex(candidates.index(self._truth_layer) + 1 if keep else 0)
        self.truth_combo.blockSignals(False)
        if not keep and self._truth_layer is not None:  # the ground-truth layer was removed
            self._watch_truth(None)
            self._rebuild_confusion()

    def _truth_chosen(self, index: int) -> None:
        candidates = self._candidates()
        layer = candidates[index - 1] if 0 < index <= len(candidates) else None
        if not _same(layer, self._truth_layer):
            self._watch_truth(layer)
            self._rebuild_confusion()

    def _watch_truth(self, layer: Labels | None) -> None:
        if self._truth_layer is not None:
            self._truth_layer.events.paint.disconnect(self._truth_painted)
            self._truth_layer.events.data.disconnect(self._truth_replaced)
        self._truth_layer = layer
        if layer is not None:
            layer.events.paint.connect(self._truth_painted)
            layer.events.data.connect(self._truth_replaced)

    def _rebuild_confusion(self) -> None:
        self._confusion = None
        self._counted_region = None  # the table's numbers were another ground truth's
        self.confusion = None
        self._warned_range = False
        layer = self._truth_layer
        if layer is not None and self.store is not None:
            try:
                self._confusion = StoreConfusion(self.store, level0(layer))
            except GLNetError as exc:
                notify("error", f"Cannot use {layer.name!r} as ground truth: {exc}")
                self.truth_combo.blockSignals(True)
                self.truth_combo.setCurrentIndex(0)
                self.truth_combo.blockSignals(False)
                self._watch_truth(None)
        self.refresh_now()

    def _truth_painted(self, event: Any) -> None:
        if self._confusion is not None:
            self._confusion.invalidate(painted_box(event))  # None: everything
        self.schedule()

    def _truth_replaced(self, *_: Any) -> None:
        self._rebuild_confusion()

    def _edit_changed(self, layer: Labels | None) -> None:
        if layer is not None:
            layer.events.paint.connect(self.schedule)
            layer.events.data.connect(self.schedule)
        self.schedule()

    def _camera_moved(self, *_: Any) -> None:
        if self.scope_combo.currentText() == "current view":
            self.schedule()

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Ground-truth mask", "", MASK_FILTER)
        if path:
            self.load_ground_truth(path)
