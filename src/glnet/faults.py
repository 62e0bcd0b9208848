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

ACTIONS = ("kill", "exit", "enospc")
EXIT_CODE = 17  # what the "exit" action exits with

_stop: tuple[int, str] | None = None  # (step, action)
_count = 0
_names: list[str] | None = None


def point(name: str) -> None:
    """A step boundary named ``name``; does nothing unless a test armed it."""
    global _count
    if _stop is None and _names is None:
        return
    _count += 1
    if _names is not None:
        _names.append(name)
    if _stop is not None and _count == _stop[0]:
        action = _stop[1]
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "exit":
            os._exit(EXIT_CODE)
        raise OSError(errno.ENOSPC, f"No space left on device (injected at step {_count}: {name})")


def stop_at(step: int, action: str = "kill") -> None:
    """Arm: act at the ``step``-th point from now (1 = the next one)."""
    global _stop, _count
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    _stop, _count = (int(step), action), 0


def disarm() -> None:
    global _stop, _names, _count
    _stop, _names, _count = None, None, 0


@contextmanager
def recording() -> Iterator[list[str]]:
    """The names of the points passed inside the block, in order."""
    global _names, _count
    _names, _count = [], 0
    names = _names
    try:
        yield names
    finally:
        _names = None
