"""The training curves as a PNG beside the CSV log, rewritten every epoch.

Drawn with matplotlib's object API on an Agg canvas, never through pyplot,
so training inside napari (the fine-tune button) neither changes the
process's matplotlib backend nor opens windows.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from glnet.atomic import atomic_write

log = logging.getLogger(__name__)


def _read_rows(log_path: Path) -> list[dict[str, str]]:
    with log_path.open(newline="") as f:
        return list(csv.DictReader(f))


def _number(text: str | None) -> float:
    if text is None:
        return math.nan
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def write_plot(log_path: Path, png_path: Path) -> None:
    """Training loss (left axis) and validation mIoU (right axis) per epoch.

    A plot is a convenience: failing to draw it is logged, never fatal."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        log.warning("matplotlib is not installed: no %s", png_path.name)
        return
    rows = _read_rows(log_path)
    epochs = [int(r["epoch"]) for r in rows]
    loss = [_number(r.get("train_loss")) for r in rows]
    miou = [_number(r.get("val_miou")) for r in rows]
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(epochs, loss, "o-", color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="tab:blue")
    ax.tick_params(axis="y", labelcolor="tab:blue")
    ax.set_title(png_path.name.removesuffix(".log.png"))
    if any(math.isfinite(v) for v in miou):
        ax2 = ax.twinx()
        ax2.plot(epochs, miou, "s-", color="tab:orange", label="validation mIoU")
        ax2.set_ylabel("validation mIoU", color="tab:orange")
        ax2.tick_params(axis="y", labelcolor="tab:orange")
    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # matplotlib's default AutoLocator is one
        locator.set_params(integer=True)
    ax.grid(alpha=0.3)
    try:
        with atomic_write(png_path) as f:
            fig.savefig(f, format="png")
    except OSError as exc:
        log.warning("could not write %s: %s", png_path, exc)


__all__ = ["write_plot"]
