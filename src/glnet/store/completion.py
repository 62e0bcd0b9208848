"""Whether a label store holds a whole result, and which blocks it lacks.

``glnet segment -o OUT.zarr`` fills a store block by block (2 x 2 chunks).
Until its last block is written the unwritten pixels read as class 0, which
looks like a result.  The store's state therefore says ``complete: false``
from its creation on, lists the blocks written (``blocks_done``, and the
block size in ``block``), and says ``complete: true`` only in the very last
write of the run.  A store killed, failed or out of disk space anywhere
before that stays incomplete, and readers say which blocks are missing.

Stores written before ``block`` was recorded (glnet 0.1) kept the same
``complete`` and ``blocks_done`` records; their block is ``2 * chunk`` of
the run record.  Stores without a ``complete`` record (made by the plugin
or the napari writer) are complete: they are never filled by a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glnet.errors import GLNetError
from glnet.geometry import Region, overlaps_any

BLOCK_CHUNKS = 2  # a block of a streaming run is 2 x 2 store chunks


def blocks(shape: tuple[int, int], block: int) -> list[Region]:
    """The blocks of a run over an image of ``shape``, row by row."""
    h, w = shape
    return [(t, l, min(t + block, h), min(l + block, w)) for t in range(0, h, block) for l in range(0, w, block)]


@dataclass(frozen=True)
class Completion:
    """What a store's completion record says."""

    complete: bool
    missing: tuple[Region, ...] = ()  # level-0 blocks never written
    blocks: int = 0  # blocks of the run (0 when the store is not a run's)

    def describe(self, path: Any) -> str:
        """One line: how much is missing and where (the first few blocks)."""
        if self.complete:
            return f"{path} is complete"
        shown = "; ".join(f"rows {t}-{b}, columns {l}-{r}" for t, l, b, r in self.missing[:3])
        more = f" and {len(self.missing) - 3} more" if len(self.missing) > 3 else ""
        return (
            f"{path} is incomplete: {len(self.missing)} of {self.blocks} blocks were never written "
            f"({shown}{more}); its run was interrupted or failed: finish it with glnet segment ... --resume"
        )


def completion(attrs: dict, shape: tuple[int, int]) -> Completion:
    """The completion of a store with glnet ``attrs`` and level-0 ``shape``."""
    if attrs.get("complete", True) is not False:
        return Completion(True)
    try:
        block = int(attrs.get("block") or BLOCK_CHUNKS * int(attrs["run"]["chunk"]))
        done = {tuple(int(v) for v in b) for b in attrs.get("blocks_done", [])}
    except (KeyError, TypeError, ValueError):  # no usable record: nothing is known to be written
        return Completion(False, ((0, 0, *shape),), 1)
    grid = blocks(shape, block)
    return Completion(False, tuple(b for b in grid if b not in done), len(grid))


def overlaps_missing(region: Region, state: Completion) -> bool:
    return overlaps_any(region, state.missing)


def require_complete(state: Completion, path: Any, hint: str) -> None:
    """Refuse (GLNetError) to use an incomplete store; ``hint`` says how to proceed anyway."""
    if not state.complete:
        raise GLNetError(f"{state.describe(path)}; {hint}")
