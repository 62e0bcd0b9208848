"""How much each accepted edit changed the score against the ground truth.

A reviewer correcting the worst regions first wants to see that it pays:
after every accept (or undo) the IoU table gets a column with the change of
each class's IoU over the whole image, and a line with the change of the
mIoU.  The whole image's confusion matrix *before* the edit is the one the
store has now with the edited region's old labels laid over it (the
:class:`~napari_glnet.region_metrics.StoreConfusion` overlay the live
painting uses), so both counts reuse the cached blocks and only the edited
region is read twice; an image too large to count on the GUI thread is
counted in a worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QTableWidgetItem

from glnet.errors import GLNetError
from glnet.geometry import Region
from glnet.metrics import ConfusionMatrix
from napari_glnet.region_metrics import StoreConfusion
from napari_glnet.workers import Failed, notify

if TYPE_CHECKING:
    from napari_glnet.iou_panel import IoUPanel
    from napari_glnet.review import Change

COLUMN = 4
"""The IoU table's column for the change of the last accept (after class colour, name, IoU, GT pixels)."""
HISTORY = 20
"""Accepts listed in the summary's tooltip, newest first."""


@dataclass(frozen=True)
class ScoreDelta:
    """The whole image's confusion matrices before and after one accepted edit (or undo)."""

    edit: int
    undo: bool
    region: Region
    before: ConfusionMatrix
    after: ConfusionMatrix

    def iou(self, exclude: tuple[int, ...] = ()) -> np.ndarray:
        """Per-class IoU after minus before (NaN for a class seen on neither side)."""
        return self.after.scores(exclude).iou - self.before.scores(exclude).iou

    def mean_iou(self, exclude: tuple[int, ...] = ()) -> tuple[float, float]:
        """The mIoU before and after."""
        return self.before.scores(exclude).mean_iou, self.after.scores(exclude).mean_iou

    def describe(self, exclude: tuple[int, ...] = ()) -> str:
        before, after = self.mean_iou(exclude)
        what = f"undo of edit #{self.edit}" if self.undo else f"edit #{self.edit}"
        if math.isnan(before) or math.isnan(after):
            return f"{what}: mIoU –"
        return f"{what}: mIoU {after - before:+.4f} ({before:.4f} → {after:.4f})"


def score_delta(confusion: StoreConfusion, change: Change) -> ScoreDelta:
    """The whole image's score before and after ``change`` (the store holds the
    after already); runs on any thread."""
    confusion.invalidate(change.region)
    after = confusion.matrix()
    before = confusion.matrix(overlay=(change.region, np.asarray(change.before)))
    assert before is not None and after is not None  # never cancelled
    return ScoreDelta(int(change.entry["id"]), change.undo, change.region, before, after)


def _compute(confusion: StoreConfusion, change: Change) -> ScoreDelta | Failed:
    try:
        return score_delta(confusion, change)
    except GLNetError as exc:
        return Failed(exc)


class DeltaColumn:
    """The IoU panel's "Δ last accept" column and line; ``history`` holds every
    delta since the ground truth was chosen, oldest first."""

    def __init__(self, panel: IoUPanel) -> None:
        self.panel = panel
        self.history: list[ScoreDelta] = []
        self.line = QLabel("")
        self.line.setToolTip("How much the last accepted edit changed the whole image's score")
        self._confusion: StoreConfusion | None = None
        self._worker: Any = None
        table = panel.table
        table.setColumnCount(COLUMN + 1)
        table.setHorizontalHeaderLabels(["", "class", "IoU", "GT pixels", "Δ accept"])
        table.horizontalHeaderItem(COLUMN).setToolTip("Change of each class's IoU (whole image) by the last accept")
        layout = panel.layout()
        layout.insertWidget(layout.indexOf(panel.summary) + 1, self.line)

    @property
    def last(self) -> ScoreDelta | None:
        return self.history[-1] if self.history else None

    def edit_written(self, change: Change) -> None:
        """An accept or undo wrote ``change`` into the store: score it against the ground truth."""
        from napari_glnet import iou_panel

        confusion = self.panel._confusion
        if confusion is None:
            return
        if confusion.pending_pixels((0, 0, *confusion.store.shape)) <= iou_panel.SYNC_PIXELS:  # as the panel counts
            self._scored(confusion, _compute(confusion, change))
            return
        from napari.qt.threading import create_worker

        worker = create_worker(_compute, confusion, change, _progress={"desc": "IoU change"})
        worker.returned.connect(lambda result: self._scored(confusion, result))
        worker.finished.connect(lambda: setattr(self, "_worker", None))
        self._worker = worker
        worker.start()

    def _scored(self, confusion: StoreConfusion, result: ScoreDelta | Failed) -> None:
        if isinstance(result, Failed):
            notify("error", f"IoU change not computed: {result}")
            return
        if confusion is not self._confusion:  # another ground truth: its history starts now
            self.history.clear()
            self._confusion = confusion
        if confusion is not self.panel._confusion:
            return
        self.history.append(result)
        self.show()

    def exclude(self) -> tuple[int, ...]:
        store = self.panel.store
        return (0,) if self.panel.exclude_box.isChecked() and store is not None and len(store.classes) > 1 else ()

    def show(self) -> None:
        """Fill the column and the line from the last delta (empty when there is none)."""
        table = self.panel.table
        last = self.last if self.panel._confusion is self._confusion else None
        changes = last.iou(self.exclude()) if last is not None else None
        for i in range(table.rowCount()):
            text = "" if changes is None or i >= len(changes) else _signed(changes[i])
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(i, COLUMN, item)
        if last is None:
            self.line.setText("")
            return
        self.line.setText(f"Last accept: {last.describe(self.exclude())}")
        self.line.setToolTip("\n".join(d.describe(self.exclude()) for d in reversed(self.history[-HISTORY:])))


def _signed(value: float) -> str:
    if math.isnan(value):
        return "–"
    return "0" if abs(value) < 5e-5 else f"{value:+.4f}"


__all__ = ["DeltaColumn", "ScoreDelta", "score_delta"]
