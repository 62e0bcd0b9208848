"""Fault injection for the crash tests: numbered points where a crash matters.

The label store's journal, the streaming writer and :func:`glnet.atomic.atomic_write`
call :func:`point` at every step whose interruption leaves different files
on disk.  Normally that is one comparison.  A test arms it with
:func:`stop_at` to die (SIGKILL), exit (``os._exit``) or raise an OSError
(a full disk) at the k-th point, and with :func:`recording` to learn how
many points an operation passes, so it can stop at every one of them.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

ACTIONS = ("kill", "exit")  # or an errno name: "ENOSPC", "EACCES", "EROFS", ...
EXIT_CODE = 17  # what the "exit" action exits with

_stop: tuple[int, str, str] | None = None  # (step, action, match)
_count = 0
_names: list[str] | None = None


def point(name: str) -> None:
    """A step boundary named ``name``; does nothing unless a test armed it."""
    global _count
    if _stop is None and _names is None:
        return
    if _names is not None:
        _names.append(name)
    if _stop is None or _stop[2] not in name:
        return
    _count += 1
    if _count == _stop[0]:
        action = _stop[1]
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "exit":
            os._exit(EXIT_CODE)
        code = getattr(errno, action.upper())
        raise OSError(code, f"{os.strerror(code)} (injected at {name})")


def stop_at(step: int, action: str = "kill", match: str = "") -> None:
    """Arm: act at the ``step``-th point from now (1 = the next one) whose
    name contains ``match``: kill the process, exit, or raise the OSError
    of an errno name (``"ENOSPC"``: a full disk)."""
    global _stop, _count
    if action not in ACTIONS and not isinstance(getattr(errno, action.upper(), None), int):
        raise ValueError(f"action must be one of {ACTIONS} or an errno name, got {action!r}")
    _stop, _count = (int(step), action, match), 0


def disarm() -> None:
    global _stop, _names, _count
    _stop, _names, _count = None, None, 0


@contextmanager
def recording() -> Iterator[list[str]]:
    """The names of the points passed inside the block, in order."""
    global _names
    _names = []
    names = _names
    try:
        yield names
    finally:
        _names = None
