"""Checked types for numeric options: a wrong number fails at once, in one
line, before any file is read or model loaded.

``--workers -1`` used to hang, ``--size-p 100000`` to ask for 28 GB and
``--seed -1`` to end in a NumPy traceback after minutes of work.  Every
numeric option of every command parses through :func:`integer`,
:func:`real` or :func:`id_list`, whose bounds say what the engine can do.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

# What the engine can run: a patch or global view of 4096 px is already
# ~16x the authors' 508 and takes GBs of activations per image.
MAX_VIEW = 4096
MAX_SCENE = 1 << 20
MAX_THREADS = 4096
MAX_BATCH = 4096


def integer(low: int | None = None, high: int | None = None, what: str = "") -> Callable[[str], int]:
    """An argparse ``type`` for an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{_range(low, high)}{what}, got {value}")
        return value

    return parse


def real(low: float, high: float, *, include_low: bool = True, include_high: bool = True) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number in the interval given."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants a number, got {text!r}") from None
        too_low = value < low or (value == low and not include_low)
        too_high = value > high or (value == high and not include_high)
        if not math.isfinite(value) or too_low or too_high:
            lo, hi = "[" if include_low else "(", "]" if include_high else ")"
            raise argparse.ArgumentTypeError(f"must be in {lo}{low:g}, {high:g}{hi}, got {text}")
        return value

    return parse


def id_list(text: str) -> tuple[int, ...]:
    """``"0,5"`` -> (0, 5): class ids, each a whole number from 0."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise argparse.ArgumentTypeError(f"wants class ids like 0 or 0,5, got {text!r}")
        values.append(int(part))
    return tuple(values)


def _range(low: int | None, high: int | None) -> str:
    if high is None:
        return f"must be at least {low}"
    if low is None:
        return f"must be at most {high}"
    return f"must be between {low} and {high}"


# the options several commands share
view_size = integer(32, MAX_VIEW, " px")
batch_size = integer(1, MAX_BATCH)
threads = integer(1, MAX_THREADS)
seed = integer(0, 2**32 - 1)
fraction = real(0.0, 1.0, include_high=False)
learning_rate = real(0.0, 10.0, include_low=False)
