"""The dock widget's review half: edit, accept, undo, score, export, fine-tune.

Layout only, like ``_widget.py``: the work is :class:`~napari_glnet.review.ReviewController`
(editable region layer over the label store), :class:`~napari_glnet.iou_panel.IoUPanel`
(live per-class IoU), :func:`~napari_glnet.retrain.start_export` and
:func:`~napari_glnet.finetune.start_finetune`.  The label store exists once
the first segmentation ran, so the review controller is made then
(``set_store``), one per store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QFileDialog, QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from .guard import ask_with_dialog, later
from .iou_panel import IoUPanel
from .review import ACCEPT_KEY, NEXT_CLASS_KEY, OUTLINE_KEY, UNDO_ACCEPT_KEY, ReviewController
from .workers import notify

if TYPE_CHECKING:
    import napari

    from glnet.geometry import Region
    from glnet.store.labelstore import LabelStore


class ReviewWidget(QWidget):
    """Buttons for the review loop and the IoU table.

    ``view_region()`` gives the pixels in view (the view controller's),
    ``image_layer()`` the image being reviewed and ``checkpoint()`` the
    checkpoint file in the form (for fine-tuning); ``on_new_model(path)`` is
    called with a fine-tuned checkpoint the user chose to switch to."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        view_region: Callable[[], Region | None],
        image_layer: Callable[[], object],
        checkpoint: Callable[[], str],
        on_new_model: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.viewer = viewer
        self.review: ReviewController | None = None
        self._view_region = view_region
        self._image_layer = image_layer
        self._checkpoint = checkpoint
        self._on_new_model = on_new_model
        self.worker = None
        self.ask = ask_with_dialog(self)
        self.report = QLabel("")
        self.report.setWordWrap(True)
        self.report.setToolTip("What the last review action did")

        def button(text: str, tip: str, slot: Callable[[], object]) -> QPushButton:
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda _=False: slot())
            b.setEnabled(False)
            return b

        self.edit_button = button(
            "Edit view",
            "Copy the labels in view into an editable layer: paint with napari's brush/fill; "
            f"the eraser brings back the model's labels ({NEXT_CLASS_KEY}: next class, {OUTLINE_KEY}: outlines)",
            self.edit_view,
        )
        self.accept_button = button(
            "Accept", f"Write the painted corrections into the label store ({ACCEPT_KEY})", self.accept
        )
        self.undo_button = button("Undo accept", f"Undo the last accepted correction ({UNDO_ACCEPT_KEY})", self.undo)
        self.reviewed_button = button(
            "Mark reviewed", "Record the region in view as checked (exported for retraining)", self.mark_reviewed
        )
        self.export_button = button(
            "Export for retraining…",
            "Write the reviewed regions as DeepGlobe-layout tiles that  glnet train / glnet finetune --data DIR  read",
            self.export,
        )
        self.finetune_button = button(
            "Fine-tune…",
            "Fine-tune the checkpoint on an export folder in the background; reports validation mIoU before and after",
            self.finetune,
        )
        self.iou = IoUPanel(viewer, view_region=view_region)
        grid = QGridLayout()
        for i, b in enumerate(
            (
                self.edit_button,
                self.accept_button,
                self.undo_button,
                self.reviewed_button,
                self.export_button,
                self.finetune_button,
            )
        ):
            grid.addWidget(b, i // 2, i % 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Review</b>"))
        layout.addLayout(grid)
        layout.addWidget(self.report)
        layout.addWidget(self.iou)
        self.finetune_button.setEnabled(True)

    # -- the store ------------------------------------------------------------------
    def set_store(self, store: LabelStore, store_layer=None) -> None:
        """Review ``store`` from now on (called when a segmentation made or opened it)."""
        if self.review is not None and self.review.store.path == store.path:
            return
        if self.review is not None:
            self.review.close()
        self.review = ReviewController(self.viewer, store, store_layer=store_layer, ask=self.ask, defer=later)
        self.review.said.connect(lambda text: self.report.setText(text))
        self.iou.set_store(store)
        self.iou.set_review(self.review)
        for b in (self.edit_button, self.accept_button, self.undo_button, self.reviewed_button, self.export_button):
            b.setEnabled(True)
        self.review.offer_pending()

    def resolve(self, doing: str) -> bool:
        """Unaccepted strokes are accepted, discarded or kept (False: do not go on with ``doing``)."""
        return self.review is None or self.review.resolve(doing)

    def labels_written(self, region: Region) -> None:
        """The segmenter wrote predictions into ``region``: rescore it."""
        self.iou.labels_changed(region)

    # -- actions --------------------------------------------------------------------
    def _region(self) -> Region | None:
        region = self._view_region()
        if region is None:
            notify("warning", "no part of the image is in view")
        return region

    def edit_view(self) -> None:
        if self.review is not None and (region := self._region()) is not None:
            self.review.edit(region)

    def accept(self) -> None:
        if self.review is not None:
            self.review.accept()

    def undo(self) -> None:
        if self.review is not None:
            self.review.undo()

    def mark_reviewed(self) -> None:
        if self.review is not None and (region := self._region()) is not None:
            self.review.mark_reviewed(region)

    def export(self, out_dir: str | None = None) -> object:
        """Export the reviewed regions (asks for a folder unless given); returns the worker."""
        from .retrain import start_export

        if self.review is None:
            return None
        out_dir = out_dir or QFileDialog.getExistingDirectory(self, "Export for retraining into (an empty folder)")
        if not out_dir:
            return None
        self.worker = start_export(self.review.store, self._image_layer(), out_dir, which="reviewed")
        return self.worker

    def finetune(self, data: str | None = None, output: str | None = None) -> object:
        """Fine-tune the form's checkpoint on an export folder; returns the worker."""
        from .finetune import start_finetune

        try:
            source = self._checkpoint()
        except Exception as e:  # the form says what is missing
            notify("error", str(e))
            return None
        data = data or QFileDialog.getExistingDirectory(self, "Export folder to fine-tune on")
        if not data:
            return None
        if output is None:
            stem = Path(source)
            output, _ = QFileDialog.getSaveFileName(
                self,
                "Save the fine-tuned checkpoint as",
                str(stem.with_name(stem.stem + ".finetuned.pt")),
                "Checkpoints (*.pt)",
            )
        if not output:
            return None
        self.worker = start_finetune(source, data, output, on_done=self._finetuned)
        return self.worker

    def _finetuned(self, result) -> None:
        if result.output is not None and result.improved:
            self._on_new_model(str(result.output))

    def close_review(self) -> None:
        if self.review is not None:
            self.review.close()
        self.iou.close_panel()
