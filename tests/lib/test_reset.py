"""Resetting a label store never destroys work: it is renamed beside itself,
with what it held said first."""

from __future__ import annotations

import numpy as np
import pytest

from glnet.classes import DEEPGLOBE
from glnet.errors import GLNetError
from glnet.store.labelstore import LabelStore
from glnet.store.reset import set_aside, work_in


def test_a_reset_renames_the_store_with_everything_in_it(tmp_path):
    path = tmp_path / "labels.zarr"
    store = LabelStore.create(path, (64, 64), DEEPGLOBE, chunk=32)
    assert not work_in(store) and str(work_in(store)) == "no corrections"
    store.write((0, 0, 8, 8), np.full((8, 8), 3, np.uint8), edit=True)
    store.mark_reviewed((0, 0, 32, 32))
    assert str(work_in(store)) == "1 accepted correction, 1 reviewed region"

    store.close()
    kept = set_aside(path)
    again = LabelStore.create(path, (64, 64), DEEPGLOBE, chunk=32)  # the next segmentation starts empty
    assert not work_in(again)
    assert kept.parent == tmp_path and kept.name.startswith("labels.reset-") and kept.suffix == ".zarr"
    old = LabelStore.open(kept)
    assert len(old.edit_log()) == 1 and old.reviewed_regions() and (old.read((0, 0, 8, 8)) == 3).all()
    assert set_aside(path) != kept  # a second reset in the same second keeps both


def test_only_a_label_store_is_reset(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(GLNetError, match="not a glnet label store"):
        set_aside(tmp_path / "photos")
    assert (tmp_path / "photos").is_dir()
