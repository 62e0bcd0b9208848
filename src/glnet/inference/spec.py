"""From settings to a Segmenter, one way for every caller.

The command line, the streaming writer (and its dask workers), the napari
plugin, the demo and training's validation all describe the model the same
way: a :class:`ModelSpec`.  It is small, frozen and picklable (a dask worker
loads the model from it once), hashable (the plugin keeps a loaded
Segmenter per spec) and keyword-only (ten settings read badly by position).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint
from glnet.constants import Mode, Precision
from glnet.errors import GLNetError
from glnet.inference.coarse import CoarseToFine, as_coarse_to_fine
from glnet.inference.engine import Segmenter
from glnet.runtime import set_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Which checkpoint, and how to run it.

    ``mode`` and ``global_weights`` are for the authors' files, which do not
    record their mode (their local2global also needs their global file);
    ours record both, and a ``mode`` that differs from the file's is an
    error.  ``size_g``/``size_p`` None: the checkpoint's.  ``threads`` None:
    every CPU this process may use.  ``weights`` may be None for a spec that
    only places a checkpoint already in memory (:meth:`place`)."""

    weights: str | None = None
    mode: Mode | None = None
    global_weights: str | None = None
    device: str = "auto"
    precision: Precision = Precision.FP32
    batch_size: int = 4
    size_g: int | None = None
    size_p: int | None = None
    threads: int | None = None
    coarse_to_fine: CoarseToFine | None = None

    def __post_init__(self) -> None:
        # plain strings and enums in, so equal specs compare and hash equal
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        for name in ("weights", "global_weights"):
            value = getattr(self, name)
            if value is not None:
                put(name, os.fspath(value))
        if self.mode is not None:
            put("mode", Mode.parse(self.mode))
        put("precision", Precision.parse(self.precision))
        put("coarse_to_fine", as_coarse_to_fine(self.coarse_to_fine))
        if self.batch_size < 1:
            raise GLNetError(f"batch size must be at least 1, got {self.batch_size}")

    def replace(self, **changes: Any) -> ModelSpec:
        """This spec with some settings changed."""
        return dataclasses.replace(self, **changes)

    def checkpoint(self) -> GLNetCheckpoint:
        """Load the checkpoint file (one read, ours or the authors')."""
        if self.weights is None:
            raise GLNetError("no checkpoint file given (weights)")
        return load_checkpoint(self.weights, mode=self.mode, global_path=self.global_weights)

    def place(self, checkpoint: GLNetCheckpoint) -> Segmenter:
        """A Segmenter of ``checkpoint`` with these settings (it takes the
        checkpoint's models over: pass a copy of one you keep training)."""
        return Segmenter(
            checkpoint,
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size,
            size_g=self.size_g,
            size_p=self.size_p,
            coarse_to_fine=self.coarse_to_fine,
        )

    def load(self) -> Segmenter:
        """Set torch's threads, load the checkpoint and place it (seconds: off
        a GUI thread)."""
        set_threads(self.threads)
        seg = self.place(self.checkpoint())
        if seg.device.type == "cpu":
            log.info("running on the CPU")
        return seg


__all__ = ["ModelSpec"]
