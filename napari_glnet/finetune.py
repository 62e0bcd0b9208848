"""The widget's "Fine-tune…": :func:`glnet.train.finetune` in a napari worker.

The library call blocks for minutes and reports progress through callbacks
from its own thread, so a generator worker relays them: it yields one
progress tick per batch (the activity dock's bar) and its Cancel reaches the
library's ``should_stop`` between batches.  The result (validation mIoU
before and after on the export's held-out tiles) is one notification.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from .workers import Failed, notify, relay


def finetune_steps(source: str, data: str, output: str, options: dict) -> Generator[Any, None, Any]:
    """Run the fine-tune in a thread; yield ``(epoch, done, total, loss)`` per batch,
    return the :class:`~glnet.train.finetune.FinetuneResult` (or a failure message)."""
    from glnet.train.finetune import FinetuneConfig, finetune

    def call(report: Callable[..., None], should_stop: Callable[[], bool]) -> Any:
        return finetune(FinetuneConfig(Path(source), Path(data), Path(output), **options), report, should_stop)

    return (yield from relay(call, "glnet-finetune"))


def start_finetune(
    source: str, data: str, output: str, *, on_done: Callable[[Any], None] | None = None, **options: Any
) -> Any:
    """Start fine-tuning in a worker with a progress bar; ``on_done(result)``
    runs on the GUI thread after a successful run.  Returns the worker."""
    from napari.qt.threading import create_worker

    def finished(result: Any) -> None:
        if result is None:  # cancelled before the library returned
            notify("info", "Fine-tuning cancelled")
            return
        if isinstance(result, Failed):
            notify("error", f"Fine-tuning failed: {result}")
            return
        verdict = "better" if result.improved else "NOT better: keep the old checkpoint"
        notify(
            "info",
            f"Fine-tuned {result.epochs} epoch(s) -> {result.output}: held-out mIoU "
            f"{result.miou_before:.3f} before, {result.miou_after:.3f} after ({verdict})",
        )
        if on_done is not None:
            on_done(result)

    worker = create_worker(finetune_steps, source, data, output, options, _progress={"desc": "Fine-tuning GLNet"})
    worker.returned.connect(finished)
    worker.start()
    return worker
