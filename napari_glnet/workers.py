"""What a background job reports and how the user hears about it.

napari shows a worker's exception with its traceback, and superqt even
raises an exception a worker *returns*; so a job that fails for a reason
the user can fix returns a :class:`Failed` message instead, shown as one
notification.  Library calls that block for minutes and report progress
through callbacks (export, fine-tuning) run through :func:`relay`, which
turns the callbacks into a generator a napari worker can drive, with
Cancel reaching the call between its steps.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Generator
from typing import Any

from glnet.errors import GLNetError

log = logging.getLogger(__name__)

_END = object()


class Failed(str):
    """A job's failure as its one-line message (returned by a worker, not raised)."""


def notify(kind: str, message: str) -> None:
    """One napari notification: kind is "error", "warning" or "info"."""
    from napari.utils import notifications

    show = {"error": notifications.show_error, "warning": notifications.show_warning}
    show.get(kind, notifications.show_info)(message)


def relay(
    call: Callable[[Callable[..., None], Callable[[], bool]], Any], name: str, stop: threading.Event | None = None
) -> Generator[Any, None, Any]:
    """Run ``call(report, should_stop)`` in a thread of its own and yield
    whatever it reports (``report(x)`` yields x, ``report(a, b)`` the tuple);
    return its result, or a :class:`Failed` message when it raised.

    Setting ``stop`` (or closing the generator) turns ``should_stop()``
    True: the call stops after the step in progress and the generator still
    returns its result.  Cancel through ``stop``, not by quitting the napari
    worker: a quit worker leaves the generator unclosed, and the call would
    go on (and write) after the user was told it stopped.  A GLNetError ends as its message; anything else as its type
    and message, with the traceback in the log."""
    events: queue.Queue = queue.Queue()
    stop = stop if stop is not None else threading.Event()
    outcome: dict[str, Any] = {}

    def report(*item: Any) -> None:
        events.put(item[0] if len(item) == 1 else item)

    def run() -> None:
        try:
            outcome["result"] = call(report, stop.is_set)
        except GLNetError as e:
            outcome["result"] = Failed(e)
        except Exception as e:  # a bug: one line for the user, the traceback for the log
            log.exception("%s failed", name)
            outcome["result"] = Failed(f"{type(e).__name__}: {e}")
        finally:
            events.put(_END)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while (item := events.get()) is not _END:
            yield item
    finally:  # also when the worker is quit: stop after the step in progress
        stop.set()
        thread.join()
    return outcome.get("result")


__all__ = ["Failed", "notify", "relay"]
