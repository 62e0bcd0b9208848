"""Running out of memory without losing the run: halve the batch, then go to the CPU.

A batch of full-resolution patches is what fills a GPU; results do not
depend on the batch size, so the work goes on with half the batch, down to
one patch, and then on the CPU.  The command line and the napari plugin both
run their work through :func:`with_memory_fallback`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch

from glnet.inference.engine import Segmenter

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_out_of_memory(error: BaseException) -> bool:
    """A MemoryError, or torch's out-of-memory (CUDA's OutOfMemoryError, the CPU allocator's RuntimeError)."""
    return isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


@dataclass(frozen=True)
class Fallback:
    """Yielded when the work starts again on ``segmenter`` (smaller batches or the CPU)."""

    segmenter: Segmenter
    message: str


def with_memory_fallback(segmenter: Segmenter, work: Callable[[Segmenter], Iterator[T]]) -> Iterator[T | Fallback]:
    """Yield what ``work(segmenter)`` yields; when it runs out of memory, say
    so with a :class:`Fallback` and run ``work`` again on a Segmenter with half
    the batch, and at one patch per batch, on the CPU.  Out of memory on the
    CPU with one patch per batch is raised.

    ``work`` is called with the Segmenter to use each time: it is the
    caller's to keep what the failed attempt finished (a ViewSession keeps its
    finished scenes, ``ViewSession.set_segmenter``)."""
    while True:
        try:
            yield from work(segmenter)
            return
        except (MemoryError, RuntimeError) as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(e) or (segmenter.batch_size == 1 and segmenter.device.type == "cpu"):
                raise
            if segmenter.device.type == "cuda":
                torch.cuda.empty_cache()
            where = "GPU" if segmenter.device.type == "cuda" else "CPU"
            if segmenter.batch_size > 1:
                segmenter = segmenter.replace(batch_size=segmenter.batch_size // 2)
                message = f"out of {where} memory: retrying with batch size {segmenter.batch_size}"
            else:
                segmenter = segmenter.replace(device="cpu")
                message = "out of GPU memory even with batch size 1: continuing on the CPU (slower)"
            log.warning("%s", message)
            yield Fallback(segmenter, message)


__all__ = ["Fallback", "is_out_of_memory", "with_memory_fallback"]
