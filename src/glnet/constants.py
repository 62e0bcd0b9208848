"""The names that files, flags and forms spell out: GLNet's modes and the
precisions it runs in.

They are ``StrEnum``s, so a member *is* its string: checkpoints, command-line
flags, JSON records and widget choices keep saying ``"global2local"`` and
``"fp32"``, and a plain string from any of them compares equal to the member.
Only plain values are written to files (``member.value``): our checkpoints
load with ``torch.load(weights_only=True)``, which refuses enum objects.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from glnet.errors import GLNetError


class _Named(StrEnum):
    @classmethod
    def parse(cls, value: str, what: str = "") -> Self:
        """``value`` as a member, or a one-line GLNetError naming the choices."""
        try:
            return cls(value)
        except ValueError:
            raise GLNetError(f"unknown {what or cls.__name__.lower()} {value!r}: use one of {', '.join(cls)}") from None

    @classmethod
    def choices(cls) -> list[str]:
        """The plain strings, for argparse ``choices`` and widget combo boxes."""
        return [m.value for m in cls]


class Mode(_Named):
    """GLNet's three modes, one per training stage of the paper."""

    GLOBAL = "global"  # the global branch alone, on the downsampled image
    GLOBAL2LOCAL = "global2local"  # full-resolution patches with the global branch's context
    LOCAL2GLOBAL = "local2global"  # and a global branch refined with the patches' features


class Precision(_Named):
    """What the convolutions run in (autocast); fp32 is the reference."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


__all__ = ["Mode", "Precision"]
