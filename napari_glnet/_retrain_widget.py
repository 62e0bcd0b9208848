"""The dock widget's retraining box: Export for retraining…, Fine-tune…, their progress and Cancel.

Layout and the questions a user answers (in GUI words: "Overwrite / Choose
another folder", "Use 512 px tiles"); the work is the library's, through
:func:`~napari_glnet.retrain.start_export` and
:func:`~napari_glnet.finetune.start_finetune`.  Neither can waste a user's
time: an export that would hold nothing out says so and offers smaller
tiles; a fine-tune without held-out tiles does not start; a fine-tune shows
epoch and batch, can be cancelled, and writes only the checkpoint asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from glnet.errors import GLNetError

from .workers import Failed

EXPORT_TILE = 1024
WHICH = "reviewed"


class RetrainBox(QWidget):
    """``store()`` gives the label store under review (or None), ``image()`` its
    image layer, ``checkpoint()`` the form's checkpoint file (GLNetError when
    none); ``ask(question, choices)`` asks; ``on_new_model(path)`` switches
    to a better fine-tuned checkpoint.  :attr:`said` reports each outcome."""

    said = Signal(str)

    def __init__(
        self,
        store: Callable[[], Any],
        image: Callable[[], Any],
        checkpoint: Callable[[], str],
        ask: Callable[[str, Sequence[str]], str],
        on_new_model: Callable[[str], None],
    ) -> None:
        super().__init__()
        self._store, self._image, self._checkpoint = store, image, checkpoint
        self._ask, self._on_new_model = ask, on_new_model
        self.worker: Any = None
        self._stop: threading.Event | None = None  # a fine-tune's cancel (None while exporting)
        self.export_button = QPushButton("Export for retraining…")
        self.export_button.setToolTip(
            "Write the reviewed regions as DeepGlobe-layout tiles (some held out for validation) for Fine-tune…"
        )
        self.export_button.clicked.connect(lambda _=False: self.export())
        self.export_button.setEnabled(False)
        self.finetune_button = QPushButton("Fine-tune…")
        self.finetune_button.setToolTip(
            "Fine-tune the checkpoint on an export in the background; held-out mIoU before and after"
        )
        self.finetune_button.clicked.connect(lambda _=False: self.finetune())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop fine-tuning after the batch in progress")
        self.cancel_button.clicked.connect(lambda _=False: self.cancel())
        self.bar = QProgressBar()
        self.progress = QLabel("")
        self.progress.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for row in ((self.export_button, self.finetune_button), (self.bar, self.cancel_button)):
            line = QHBoxLayout()
            for widget in row:
                line.addWidget(widget, 1 if widget is self.bar else 0)
            layout.addLayout(line)
        layout.addWidget(self.progress)
        self._running(False)
        self._epochs = 0
        self._last: tuple | None = None
        self._output: Path | None = None

    def set_enabled(self, enabled: bool) -> None:
        self.export_button.setEnabled(enabled)

    def _running(self, running: bool) -> None:
        for w in (self.bar, self.cancel_button):
            w.setVisible(running)
        self.finetune_button.setEnabled(not running)

    # -- export ----------------------------------------------------------------------
    def export(self, out_dir: str | None = None) -> Any:
        """Export the reviewed regions (asking for a folder unless given); returns the worker."""
        from glnet.store.export import export_plan, holdout_tile

        from .retrain import describe_export, start_export

        store = self._store()
        if store is None:
            return None
        if not store.reviewed_regions():
            self.said.emit("Nothing is marked reviewed yet: check a region, press Mark reviewed, then export")
            return None
        tile = EXPORT_TILE
        plan = export_plan(store, WHICH, tile)
        if not any(split == "val" for _, split in plan):
            tile = self._ask_for_holdout(store, tile, len(plan), holdout_tile(store, WHICH, tile))
            if tile is None:
                return None
        target = self._export_folder(out_dir)
        if target is None:
            return None
        folder, overwrite = target
        self._stop = None
        self.worker = start_export(
            store,
            self._image(),
            folder,
            which=WHICH,
            tile=tile,
            overwrite=overwrite,
            on_done=lambda manifest: self.said.emit(describe_export(manifest, folder)),
            on_failed=self.said.emit,
            start=False,
        )
        self.said.emit(f"Exporting {len(export_plan(store, WHICH, tile))} tiles to {folder}...")
        self.worker.start()
        return self.worker

    def _ask_for_holdout(self, store, tile: int, n: int, smaller: int | None) -> int | None:
        """No tile would be held out: offer smaller tiles (or none).  The tile size, or None to cancel."""
        question = (
            f"The reviewed regions make {n} tile{'s' * (n != 1)} of {tile} px, so none can be held out for "
            "validation: a fine-tune on this export could not tell whether it helped."
        )
        choices = ["Export without held-out tiles", "Cancel"]
        if smaller is not None:
            from glnet.store.export import export_plan

            plan = export_plan(store, WHICH, smaller)
            n_val = sum(split == "val" for _, split in plan)
            question += f"\n\nWith {smaller} px tiles there are {len(plan)}, {n_val} of them held out."
            choices.insert(0, f"Use {smaller} px tiles")
        else:
            question += "\n\nMark more regions reviewed to get more tiles."
        choice = self._ask(question, choices)
        if choice.startswith("Use "):
            return smaller
        return tile if choice.startswith("Export without") else None

    def _export_folder(self, out_dir: str | None) -> tuple[str, bool] | None:
        """(folder, overwrite): a chosen folder, asking what to do when it is not empty."""
        folder = out_dir or QFileDialog.getExistingDirectory(self, "Export for retraining into (an empty folder)")
        while folder:
            path = Path(folder)
            if not (path.is_dir() and any(path.iterdir())):
                return folder, False
            choice = self._ask(
                f"The folder {path} is not empty.\n\nWrite the export into it anyway (files of the same name are "
                "replaced), or choose another folder?",
                ("Overwrite", "Choose another folder", "Cancel"),
            )
            if choice == "Overwrite":
                return folder, True
            if choice != "Choose another folder":
                return None
            folder = QFileDialog.getExistingDirectory(self, "Export for retraining into (an empty folder)")
        return None

    # -- fine-tune --------------------------------------------------------------------------
    def finetune(self, data: str | None = None, output: str | None = None) -> Any:
        """Fine-tune the form's checkpoint on an export folder; returns the worker."""
        from glnet.train.finetune import FINETUNE_EPOCHS, held_out_tiles, no_held_out_message

        from .finetune import start_finetune

        try:
            source = self._checkpoint()
        except GLNetError as e:
            self.said.emit(f"Fine-tune: {e}")
            return None
        data = data or QFileDialog.getExistingDirectory(self, "Export folder to fine-tune on")
        if not data:
            return None
        try:
            n_train, n_val = held_out_tiles(Path(data))
        except GLNetError as e:
            self.said.emit(f"Cannot fine-tune on {data}: {e}")
            return None
        if not n_val:  # it would train for minutes and could not say whether it helped
            self._ask(no_held_out_message(Path(data), n_train), ("OK",))
            self.said.emit(f"Fine-tuning not started: {data} has no held-out tiles")
            return None
        if output is None:
            stem = Path(source)
            output, _ = QFileDialog.getSaveFileName(
                self,
                "Save the fine-tuned checkpoint as",
                str(stem.with_name(stem.stem + ".finetuned.pt")),
                "Checkpoints (*.pt)",
            )  # Qt's dialog asks before replacing a file
        if not output:
            return None
        self._epochs, self._last, self._output = FINETUNE_EPOCHS, None, Path(output)
        self._stop = threading.Event()
        self.worker = start_finetune(
            source,
            data,
            output,
            on_done=self._finetuned,
            on_progress=self._batch,
            start=False,
            stop=self._stop,
            epochs=FINETUNE_EPOCHS,
            side_files=False,  # only the checkpoint asked for: no .last.pt, no logs
            overwrite=Path(output).exists(),
        )
        self.worker.finished.connect(lambda: self._running(False))
        self.bar.setRange(0, 0)  # busy until the first batch says how many there are
        self.progress.setText(f"Fine-tuning on {n_train} tiles ({n_val} held out): scoring the checkpoint first...")
        self._running(True)
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        if self.worker is not None and getattr(self.worker, "is_running", False):
            self.progress.setText("Cancelling after the batch in progress...")
            if self._stop is not None:
                self._stop.set()  # the training ends after this batch and returns what it kept
            else:
                self.worker.quit()

    def _batch(self, item: Any) -> None:
        if not isinstance(item, tuple) or len(item) != 4:
            return
        epoch, done, total, loss = item
        self._last = item
        self.bar.setRange(0, self._epochs * total)
        self.bar.setValue(epoch * total + done)
        self.progress.setText(f"Fine-tuning: epoch {epoch + 1}/{self._epochs}, batch {done}/{total}, loss {loss:.3f}")

    def _finetuned(self, result: Any) -> None:
        from .finetune import describe_finetune

        if (
            self._stop is not None
            and self._stop.is_set()
            and not isinstance(result, Failed)
            and (result.output is None or result.stopped)
        ):
            self._cancelled()
            return
        text = describe_finetune(result)
        self.progress.setText(text)
        self.said.emit(text)
        if not isinstance(result, Failed) and result.output is not None and result.improved:
            self._on_new_model(str(result.output))

    def _cancelled(self) -> None:
        epochs = self._last[0] if self._last else 0  # the epoch in progress was not finished
        kept = (
            f"{self._output} holds the best of the {epochs} finished epoch{'s' * (epochs != 1)}"
            if epochs and self._output is not None and self._output.is_file()
            else "nothing was written"
        )
        text = f"Fine-tuning cancelled: {kept}"
        self.progress.setText(text)
        self.said.emit(text)


__all__ = ["EXPORT_TILE", "RetrainBox"]
