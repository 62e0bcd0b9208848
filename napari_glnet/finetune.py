"""The widget's "Fine-tune…": :func:`glnet.train.finetune` in a napari worker.

The library call blocks for minutes and reports progress through callbacks
from its own thread, so a generator worker relays them: it yields one
progress tick per batch (the activity dock's bar) and its Cancel reaches the
library's ``should_stop`` between batches.  The result (validation mIoU
before and after on the export's held-out tiles) is one notification.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from glnet.errors import GLNetError


class _Failed(str):
    """A worker's failure as a message (superqt re-raises returned exceptions)."""


def finetune_steps(source: str, data: str, output: str, options: dict) -> Iterator[Any]:
    """Run the fine-tune in a thread; yield ``(epoch, done, total, loss)`` per batch,
    return the :class:`~glnet.train.finetune.FinetuneResult` (or a failure message)."""
    from glnet.train.finetune import FinetuneConfig, finetune

    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            config = FinetuneConfig(Path(source), Path(data), Path(output), **options)
            outcome["result"] = finetune(config, lambda *batch: events.put(batch), stop.is_set)
        except GLNetError as e:
            outcome["result"] = _Failed(str(e))
        except Exception as e:  # an unexpected failure still ends as a message
            outcome["result"] = _Failed(f"{type(e).__name__}: {e}")
        finally:
            events.put(None)

    thread = threading.Thread(target=run, name="glnet-finetune", daemon=True)
    thread.start()
    try:
        while (item := events.get()) is not None:
            yield item
    finally:  # also when the worker is quit: stop after the batch in progress
        stop.set()
        thread.join()
    return outcome.get("result")


def start_finetune(
    source: str, data: str, output: str, *, on_done: Callable[[Any], None] | None = None, **options: Any
) -> Any:
    """Start fine-tuning in a worker with a progress bar; ``on_done(result)``
    runs on the GUI thread after a successful run.  Returns the worker."""
    from napari.qt.threading import create_worker
    from napari.utils.notifications import show_error, show_info

    def finished(result: Any) -> None:
        if result is None:  # cancelled before the library returned
            show_info("Fine-tuning cancelled")
            return
        if isinstance(result, _Failed):
            show_error(f"Fine-tuning failed: {result}")
            return
        verdict = "better" if result.improved else "NOT better: keep the old checkpoint"
        show_info(
            f"Fine-tuned {result.epochs} epoch(s) -> {result.output}: held-out mIoU "
            f"{result.miou_before:.3f} before, {result.miou_after:.3f} after ({verdict})"
        )
        if on_done is not None:
            on_done(result)

    worker = create_worker(finetune_steps, source, data, output, options, _progress={"desc": "Fine-tuning GLNet"})
    worker.returned.connect(finished)
    worker.start()
    return worker
