"""The stroke journal: unaccepted strokes survive a crash, a torn last
record (the crash happened while writing it) loses only that stroke."""

from __future__ import annotations

import numpy as np

from glnet.classes import DEEPGLOBE
from glnet.store.labelstore import LabelStore
from glnet.store.strokes import StrokeJournal


def test_strokes_come_back_and_a_torn_last_record_loses_only_that_stroke(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (300, 200), DEEPGLOBE, chunk=64, min_size=32)
    journal = StrokeJournal(store)
    assert journal.pending() is None
    journal.begin((100, 50, 160, 150))
    assert journal.pending() is None  # an edit without strokes has nothing to offer
    first = np.full((10, 20), 4, np.uint8)
    journal.record((5, 5, 15, 25), first, np.ones((10, 20), bool))
    second = np.full((4, 4), 2, np.uint8)
    journal.record((8, 8, 12, 12), second, np.ones((4, 4), bool))  # paints over part of the first
    size = journal.path.stat().st_size
    journal.record((40, 60, 50, 90), np.full((10, 30), 6, np.uint8), np.ones((10, 30), bool))

    pending = StrokeJournal(LabelStore.open(store.path)).pending()  # another process, after a crash
    assert pending.region == (100, 50, 160, 150) and pending.strokes == 3
    restored = pending.apply(store.read(pending.region))
    assert (restored[5:15, 5:25][pending.painted[5:15, 5:25]] != 0).all()
    assert (restored[8:12, 8:12] == 2).all() and (restored[5, 5] == 4) and (restored[45, 70] == 6)

    with open(journal.path, "r+b") as f:  # killed while the third stroke was being written
        f.truncate(journal.path.stat().st_size - 7)
    pending = StrokeJournal(store).pending()
    assert pending.strokes == 2 and not pending.painted[40:50, 60:90].any()
    assert journal.path.stat().st_size > size

    journal.clear()
    assert journal.pending() is None and not journal.path.exists()


def test_unpainted_pixels_of_a_stroke_box_keep_the_stores_labels(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (64, 64), DEEPGLOBE, chunk=32, min_size=16)
    store.write((0, 0, 64, 64), np.full((64, 64), 3, np.uint8), edit=False)
    journal = StrokeJournal(store)
    journal.begin((0, 0, 32, 32))
    painted = np.zeros((8, 8), bool)
    painted[2:4, 2:4] = True
    journal.record((0, 0, 8, 8), np.where(painted, 5, 3).astype(np.uint8), painted)
    store.write((0, 0, 64, 64), np.full((64, 64), 1, np.uint8), edit=False)  # the model refined meanwhile
    restored = journal.pending().apply(store.read((0, 0, 32, 32)))
    assert (restored[2:4, 2:4] == 5).all() and restored.sum() == 4 * 5 + (32 * 32 - 4) * 1
