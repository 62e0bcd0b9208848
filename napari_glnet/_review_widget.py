"""The dock widget's review half: edit, accept, undo, guided review, retraining, score.

Layout only, like ``_widget.py``: the work is :class:`~napari_glnet.review.ReviewController`
(editable region layer over the label store), :class:`~napari_glnet.guided.GuidedReview`
(uncertainty layer, reviewed regions, next uncertain region, progress),
:class:`~napari_glnet._retrain_widget.RetrainBox` (export, fine-tune) and
:class:`~napari_glnet.iou_panel.IoUPanel` (live per-class IoU).  The label
store exists once the first segmentation ran, so the controllers are made
then (``set_store``), one per store.  Every action says what it did in the
line under the buttons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QCheckBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ._retrain_widget import RetrainBox
from .guard import ask_with_dialog, later
from .guided import NEXT_KEY, UNCERTAINTY_KEY, GuidedReview, describe_progress
from .iou_panel import IoUPanel
from .review import ACCEPT_KEY, NEXT_CLASS_KEY, OUTLINE_KEY, UNDO_ACCEPT_KEY, ReviewController
from .workers import notify

if TYPE_CHECKING:
    import napari

    from glnet.geometry import Region
    from glnet.store.labelstore import LabelStore


GUIDED_REFRESH_MS = 1500


class ReviewWidget(QWidget):
    """Buttons for the review loop, guided review, retraining and the IoU table.

    ``view_region()`` gives the pixels in view (the view controller's),
    ``image_layer()`` the image being reviewed and ``checkpoint()`` the
    checkpoint file in the form (for fine-tuning); ``on_new_model(path)`` is
    called with a fine-tuned checkpoint the user chose to switch to.
    :attr:`reset_requested` asks the view side to set the store aside."""

    reset_requested = Signal()

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
        self.guided: GuidedReview | None = None
        # while the segmenter writes tile after tile, the guided layers are redrawn at most
        # once per interval: each redraw reads the store on the GUI thread (about 1 s on 2 cores)
        self._guided_timer = QTimer(self)
        self._guided_timer.setSingleShot(True)
        self._guided_timer.setInterval(GUIDED_REFRESH_MS)
        self._guided_timer.timeout.connect(lambda: self.guided is not None and self.guided.refresh())
        self._view_region = view_region
        self._image_layer = image_layer
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
        self.reset_button = button(
            "Reset store…",
            "Start the label store afresh; the old one is renamed beside it, never deleted",
            self.reset_store,
        )
        self.next_button = button(
            "Next uncertain region",
            f"Jump to the least confident block nobody reviewed yet ({NEXT_KEY})",
            self.next_uncertain,
        )
        self.uncertainty_box = QCheckBox("Uncertainty")
        self.uncertainty_box.setToolTip(f"Show where the model was least sure, in red ({UNCERTAINTY_KEY})")
        self.uncertainty_box.setChecked(True)
        self.uncertainty_box.toggled.connect(self._uncertainty_toggled)
        self.reviewed_box = QCheckBox("Reviewed regions")
        self.reviewed_box.setToolTip("Outline the regions marked reviewed")
        self.reviewed_box.setChecked(True)
        self.reviewed_box.toggled.connect(lambda on: self.guided is not None and self.guided.set_reviewed_visible(on))
        self.progress = QLabel("")
        self.progress.setWordWrap(True)
        self.progress.setToolTip("Reviewed area, and how sure the model was about what is left to review")
        self.retrain = RetrainBox(self._store, image_layer, checkpoint, self.ask, on_new_model)
        self.retrain.said.connect(self.report.setText)
        self.iou = IoUPanel(viewer, view_region=view_region)

        grid = QGridLayout()
        for i, b in enumerate(
            (self.edit_button, self.accept_button, self.undo_button, self.reviewed_button, self.reset_button)
        ):
            grid.addWidget(b, i // 2, i % 2)
        guided = QGroupBox("Guided review")
        toggles = QHBoxLayout()
        toggles.addWidget(self.uncertainty_box)
        toggles.addWidget(self.reviewed_box)
        box = QVBoxLayout(guided)
        box.addWidget(self.next_button)
        box.addLayout(toggles)
        box.addWidget(self.progress)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Review</b>"))
        layout.addLayout(grid)
        layout.addWidget(self.report)
        layout.addWidget(guided)
        layout.addWidget(self.retrain)
        layout.addWidget(self.iou)

    # -- the store ------------------------------------------------------------------
    def _store(self) -> LabelStore | None:
        return self.review.store if self.review is not None else None

    def set_store(self, store: LabelStore | None, store_layer=None) -> None:
        """Review ``store`` from now on (a segmentation made or opened it; None: no store)."""
        if self.review is not None and store is not None and self.review.store.path == store.path:
            return
        self._drop_store()
        enabled = store is not None
        for b in (self.edit_button, self.accept_button, self.undo_button, self.reviewed_button):
            b.setEnabled(enabled)
        for b in (self.reset_button, self.next_button):
            b.setEnabled(enabled)
        self.retrain.set_enabled(enabled)
        self.iou.set_store(store)
        if store is None:
            self.progress.setText("")
            return
        self.review = ReviewController(self.viewer, store, store_layer=store_layer, ask=self.ask, defer=later)
        self.review.said.connect(lambda text: self.report.setText(text))
        self.iou.set_review(self.review)
        self.guided = GuidedReview(self.viewer, store, store_layer)
        self.guided.show_uncertainty = self.uncertainty_box.isChecked()
        self.guided.show_reviewed = self.reviewed_box.isChecked()
        self.guided.said.connect(lambda text: self.report.setText(text))
        self.guided.changed.connect(lambda progress: self.progress.setText(describe_progress(progress)))
        self.guided.bind_keys()
        self.review.reviewed.connect(lambda _region: self.guided.refresh())
        self.review.store_changed.connect(lambda _region: self.guided.refresh())
        self.guided.refresh()
        self.review.offer_pending()

    def _drop_store(self) -> None:
        """Stop reviewing the current store (its unaccepted strokes were resolved before)."""
        if self.review is not None:
            if self.review.edit_layer is not None and not self.review.dirty:
                self.review.discard()  # a clean edit layer of the old image would only mislead
            self.review.close()
        if self.guided is not None:
            self.guided.close()
        self.review = self.guided = None

    def resolve(self, doing: str) -> bool:
        """Unaccepted strokes are accepted, discarded or kept (False: do not go on with ``doing``)."""
        return self.review is None or self.review.resolve(doing)

    def labels_written(self, region: Region) -> None:
        """The segmenter wrote predictions (and their confidence) into ``region``."""
        self.iou.labels_changed(region)
        if self.guided is not None and not self._guided_timer.isActive():
            self._guided_timer.start()

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

    def mark_reviewed(self, region: Region | None = None) -> Region | None:
        """Mark ``region`` (default: the view) reviewed."""
        if self.review is None:
            notify("warning", "segment the image first: there is no label store yet")
            return None
        region = region or self._region()
        return self.review.mark_reviewed(region) if region is not None else None

    def next_uncertain(self) -> None:
        if self.guided is not None:
            self.guided.next_uncertain()

    def _uncertainty_toggled(self, on: bool) -> None:
        if self.guided is not None:
            self.guided.set_uncertainty_visible(on)

    def reset_store(self) -> bool:
        """Ask, then have the store set aside (never deleted); True when it was."""
        from glnet.store.reset import work_in

        store = self._store()
        if store is None or not self.resolve("resetting the label store"):
            return False
        choice = self.ask(
            f"Start the label store {store.path.name} afresh?\n\nIt holds {work_in(store)}. It is not deleted: it is "
            f"renamed beside itself ({store.path.parent}), and Segment view starts an empty store.",
            ("Reset", "Cancel"),
        )
        if choice != "Reset":
            return False
        self.reset_requested.emit()
        return True

    # -- retraining (the box's) -----------------------------------------------------------
    def export(self, out_dir: str | None = None) -> object:
        return self.retrain.export(out_dir)

    def finetune(self, data: str | None = None, output: str | None = None) -> object:
        return self.retrain.finetune(data, output)

    @property
    def worker(self):
        return self.retrain.worker

    def close_review(self) -> None:
        self._drop_store()
        self.iou.close_panel()
