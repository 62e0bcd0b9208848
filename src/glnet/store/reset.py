"""Starting a label store afresh without destroying anyone's work.

A reset never deletes: the store is renamed beside itself
(``labels.zarr`` -> ``labels.reset-20260101-120000.zarr``), so a person's
corrections, reviewed regions and unaccepted strokes can still be opened
(or deleted by hand); the next segmentation creates an empty store at the
old path.  :func:`work_in` says what a reset would set aside, for asking first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from glnet.errors import GLNetError
from glnet.store.labelstore import LabelStore
from glnet.store.lock import acquire, release
from glnet.store.strokes import StrokeJournal


@dataclass(frozen=True)
class StoreWork:
    """What people did in a store."""

    corrections: int  # accepted edits
    reviewed: int  # regions marked reviewed
    strokes: int  # unaccepted strokes left in the journal

    def __bool__(self) -> bool:
        return bool(self.corrections or self.reviewed or self.strokes)

    def __str__(self) -> str:
        parts = [(self.corrections, "accepted correction"), (self.reviewed, "reviewed region")]
        parts.append((self.strokes, "unaccepted stroke"))
        return ", ".join(f"{n} {what}{'s' * (n != 1)}" for n, what in parts if n) or "no corrections"


def work_in(store: LabelStore) -> StoreWork:
    pending = StrokeJournal(store).pending()
    return StoreWork(len(store.edit_log()), len(store.reviewed_regions()), pending.strokes if pending else 0)


def set_aside(path: str | os.PathLike) -> Path:
    """Rename the store at ``path`` beside itself; returns its new path.

    Close the store first: a store this process still holds for writing
    keeps its lock after the rename, until it is closed."""
    path = Path(path)
    if not (path / ".glnet").is_dir():
        raise GLNetError(f"{path} is not a glnet label store: nothing to reset")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = path.name.removesuffix(".zarr")
    target = path.with_name(f"{stem}.reset-{stamp}.zarr")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{stem}.reset-{stamp}-{n}.zarr")
    acquire(path)  # never under another program that is writing it (StoreLocked names it)
    try:
        os.replace(path, target)
    finally:
        release(path)  # the last hold of this process: the set-aside store opens unlocked
    return target


__all__ = ["StoreWork", "set_aside", "work_in"]
