"""The widget's "Fine-tune…": :func:`glnet.train.finetune` in a napari worker.

The library call blocks for minutes and reports progress through callbacks
from its own thread, so a generator worker relays them: it yields one
progress tick per batch (the activity dock's bar) and its Cancel reaches the
library's ``should_stop`` between batches.  The result (validation mIoU
before and after on the export's held-out tiles) is one notification.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from .workers import Failed, notify, relay


def finetune_steps(
    source: str, data: str, output: str, options: dict, stop: threading.Event | None = None
) -> Generator[Any, None, Any]:
    """Run the fine-tune in a thread; yield ``(epoch, done, total, loss)`` per batch,
    return the :class:`~glnet.train.finetune.FinetuneResult` (or a failure message)."""
    from glnet.train.finetune import FinetuneConfig, finetune

    def call(report: Callable[..., None], should_stop: Callable[[], bool]) -> Any:
        return finetune(FinetuneConfig(Path(source), Path(data), Path(output), **options), report, should_stop)

    return (yield from relay(call, "glnet-finetune", stop))


def start_finetune(
    source: str,
    data: str,
    output: str,
    *,
    on_done: Callable[[Any], None] | None = None,
    on_progress: Callable[[Any], None] | None = None,
    start: bool = True,
    stop: threading.Event | None = None,
    **options: Any,
) -> Any:
    """Fine-tuning in a worker with a progress bar; ``on_progress((epoch,
    batch, batches, loss))`` after every batch and ``on_done(result or
    Failed)`` on the GUI thread when it ends, also after ``stop`` was set
    (cancel: it ends after the batch in progress, with what it kept).
    Returns the worker (started unless ``start=False``)."""
    from napari.qt.threading import create_worker

    def finished(result: Any) -> None:
        if on_done is not None:
            on_done(result)
        else:
            notify("error" if isinstance(result, Failed) else "info", describe_finetune(result))

    worker = create_worker(
        finetune_steps,
        source,
        data,
        output,
        options,
        stop,
        _progress={"desc": "Fine-tuning GLNet"},
        _start_thread=False,
    )
    worker.returned.connect(finished)
    if on_progress is not None:
        worker.yielded.connect(on_progress)
    if start:
        worker.start()
    return worker


def describe_finetune(result: Any) -> str:
    """One line: what fine-tuning did, or why it could not."""
    if isinstance(result, Failed):
        return f"Fine-tuning failed: {result}"
    if result.output is None:
        return "Fine-tuning stopped before its first epoch ended: nothing was written"
    verdict = "better" if result.improved else "NOT better: keep the old checkpoint"
    stopped = " (stopped early)" if result.stopped else ""
    return (
        f"Fine-tuned {result.epochs} epoch{'s' * (result.epochs != 1)}{stopped} -> {result.output}: held-out mIoU "
        f"{result.miou_before:.3f} before, {result.miou_after:.3f} after on {result.val_tiles} tile"
        f"{'s' * (result.val_tiles != 1)} ({verdict})"
    )
