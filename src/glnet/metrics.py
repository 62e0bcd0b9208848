"""Segmentation metrics from a confusion matrix accumulated over a whole data set.

Scores are computed once from the summed matrix rather than averaged per
image: that is the DeepGlobe protocol, and it keeps small images from
weighing as much as large ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glnet.errors import GLNetError


class ConfusionMatrix:
    """Counts of (ground truth, prediction) pixel pairs; rows are ground truth, columns prediction."""

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
            raise GLNetError(f"number of classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self._matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, target: np.ndarray, pred: np.ndarray) -> None:
        """Add one image (or a batch) of ground truth and prediction, both of the same shape.

        Ground-truth pixels equal to ``ignore_index`` or outside 0..C-1 are not
        counted (unlabelled areas are normal); a prediction outside 0..C-1 is a
        bug in the caller and raises.
        """
        target, pred = np.asarray(target), np.asarray(pred)
        if target.shape != pred.shape:
            raise GLNetError(f"target shape {target.shape} and prediction shape {pred.shape} differ")
        for name, array in (("target", target), ("prediction", pred)):
            if array.dtype.kind not in "iub":
                raise GLNetError(f"{name} must hold integer class indices, got {array.dtype}")
        c = self.num_classes
        target, pred = target.ravel(), pred.ravel()
        if pred.size:
            low, high = int(pred.min()), int(pred.max())
            if low < 0 or high >= c:
                raise GLNetError(f"prediction holds class {low if low < 0 else high}, outside 0..{c - 1}")
        valid = (target >= 0) & (target < c)
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        if not valid.all():
            target, pred = target[valid], pred[valid]
        codes = target.astype(np.int64) * c + pred.astype(np.int64)
        self._matrix += np.bincount(codes, minlength=c * c).reshape(c, c)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add the counts of another matrix, e.g. one filled by a parallel worker."""
        if other.num_classes != self.num_classes:
            raise GLNetError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self._matrix += other._matrix

    @property
    def matrix(self) -> np.ndarray:
        """A copy of the (C, C) int64 counts."""
        return self._matrix.copy()

    def reset(self) -> None:
        """Set all counts to zero."""
        self._matrix[:] = 0

    def scores(self, exclude: Iterable[int] = ()) -> Scores:
        """Per-class and mean scores; classes in ``exclude`` are left out of the means.

        For DeepGlobe pass ``exclude=(0,)``: the 'unknown' class is not scored.
        A class absent from both ground truth and prediction has NaN scores and
        is skipped in the means; one that appears on only one side scores 0.
        """
        c = self.num_classes
        excluded = tuple(sorted({int(i) for i in exclude}))
        for i in excluded:
            if not 0 <= i < c:
                raise GLNetError(f"cannot exclude class {i}: classes are 0..{c - 1}")
        m = self._matrix.astype(np.float64)
        tp = np.diag(m)
        support = m.sum(axis=1)  # ground-truth pixels per class
        predicted = m.sum(axis=0)
        fp, fn = predicted - tp, support - tp
        present = (support + predicted) > 0

        def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
            out = np.zeros(c)
            np.divide(num, den, out=out, where=den > 0)
            out[~present] = np.nan
            return out

        iou = ratio(tp, tp + fp + fn)
        f1 = ratio(2 * tp, 2 * tp + fp + fn)
        included = np.ones(c, dtype=bool)
        included[list(excluded)] = False
        total = m.sum()
        return Scores(
            iou=iou,
            f1=f1,
            precision=ratio(tp, tp + fp),
            recall=ratio(tp, tp + fn),
            pixel_accuracy=float(tp.sum() / total) if total else math.nan,
            mean_iou=_mean(iou[included]),
            mean_f1=_mean(f1[included]),
            support=self._matrix.sum(axis=1),
            excluded=excluded,
        )


def _mean(values: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without a warning) when there are none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass
class Scores:
    """Segmentation scores; per-class arrays are NaN for classes seen in neither target nor prediction."""

    iou: np.ndarray
    f1: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    pixel_accuracy: float
    mean_iou: float
    mean_f1: float
    support: np.ndarray
    excluded: tuple[int, ...] = ()

    def to_dict(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """A JSON-friendly dict (NaN becomes None), for reports and the CLI's --json output."""
        names = _check_names(names, len(self.iou))
        return {
            "pixel_accuracy": _json(self.pixel_accuracy),
            "mean_iou": _json(self.mean_iou),
            "mean_f1": _json(self.mean_f1),
            "excluded": list(self.excluded),
            "classes": [
                {
                    "id": i,
                    "name": names[i],
                    "iou": _json(self.iou[i]),
                    "f1": _json(self.f1[i]),
                    "precision": _json(self.precision[i]),
                    "recall": _json(self.recall[i]),
                    "support": int(self.support[i]),
                }
                for i in range(len(self.iou))
            ],
        }


def _check_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"class {i}" for i in range(n)]
    names = list(names)
    if len(names) != n:
        raise GLNetError(f"got {len(names)} class names for {n} classes")
    return names


def format_table(scores: Scores, names: Sequence[str] | None = None) -> str:
    """A plain-text table of per-class IoU, F1 and support, followed by the means."""
    names = _check_names(names, len(scores.iou))

    def num(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.4f}"

    width = max([len("class")] + [len(n) for n in names])
    lines = [f"{'id':>3}  {'class':<{width}}  {'IoU':>6}  {'F1':>6}  {'support':>12}"]
    for i, name in enumerate(names):
        iou, f1, support = num(scores.iou[i]), num(scores.f1[i]), int(scores.support[i])
        note = "  (excluded)" if i in scores.excluded else ""
        lines.append(f"{i:>3}  {name:<{width}}  {iou:>6}  {f1:>6}  {support:>12}{note}")
    lines.append(
        f"mIoU {num(scores.mean_iou)}   mean F1 {num(scores.mean_f1)}   pixel accuracy {num(scores.pixel_accuracy)}"
    )
    return "\n".join(lines)
