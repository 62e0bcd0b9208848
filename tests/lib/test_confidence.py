"""The confidence map beside a label store, and what guides review with it:
the least confident unreviewed blocks first, and how far the review is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glnet.classes import DEEPGLOBE
from glnet.store.confidence import (
    ConfidenceMap,
    confidence_from_logits,
    covered,
    review_progress,
    uncertain_blocks,
)
from glnet.store.labelstore import LabelStore


@pytest.fixture
def store(tmp_path):
    return LabelStore.create(tmp_path / "s.zarr", (1000, 700), DEEPGLOBE, chunk=128, min_size=64)


def test_confidence_is_the_top_softmax_probability():
    logits = np.zeros((7, 2, 3), np.float32)
    logits[2, 0, 0] = 50.0  # certain
    got = confidence_from_logits(logits)
    assert got[0, 0] == 255 and got[1, 2] == round(255 / 7)  # all equal: 1/C


def test_coarser_levels_hold_the_mean_of_predicted_pixels(store):
    cmap = ConfidenceMap.open(store)
    assert len(cmap.levels) == len(store.levels) and [a.shape for a in cmap.levels] == [a.shape for a in store.levels]
    values = np.full((256, 256), 200, np.uint8)
    values[:128] = 100
    cmap.write((0, 0, 256, 256), values)
    np.testing.assert_array_equal(cmap.read((0, 0, 256, 256)), values)
    level1 = cmap.read(level=1)
    assert (level1[:64, :128] == 100).all() and (level1[64:128, :128] == 200).all()
    assert (level1[128:] == 0).all()  # not predicted there
    cmap.write((0, 0, 3, 3), np.full((3, 3), 10, np.uint8))  # an odd corner: mixed 2 x 2 cells
    assert cmap.read(level=1)[1, 1] == round((10 + 100 * 3) / 4)


def test_blocks_least_confident_first_and_reviewed_ones_left_out(store, tmp_path):
    assert uncertain_blocks(store) == []  # no confidence map yet: nothing to guide with
    cmap = ConfidenceMap.open(store)
    cmap.write((0, 0, 1000, 700), np.full((1000, 700), 230, np.uint8))
    cmap.write((512, 0, 1000, 512), np.full((488, 512), 90, np.uint8))  # the worst block
    cmap.write((0, 512, 512, 700), np.full((512, 188), 150, np.uint8))
    blocks = uncertain_blocks(store, block=512)
    assert [b.region for b in blocks] == [
        (512, 0, 1000, 512),
        (0, 512, 512, 700),
        (0, 0, 512, 512),
        (512, 512, 1000, 700),
    ]
    assert blocks[0].confidence == pytest.approx(90 / 255) and blocks[0].predicted == 1.0
    store.mark_reviewed((500, 0, 1000, 520))
    assert uncertain_blocks(store, block=512)[0].region == (0, 512, 512, 700)
    reopened = LabelStore.open(store.path)
    assert len(uncertain_blocks(reopened, block=512)) == 3


def test_review_progress_counts_area_once_and_what_is_left(store):
    progress = review_progress(store)
    assert progress.reviewed == 0 and progress.predicted == 0 and math.isnan(progress.remaining_confidence)
    cmap = ConfidenceMap.open(store)
    cmap.write((0, 0, 500, 700), np.full((500, 700), 100, np.uint8))
    cmap.write((500, 0, 1000, 700), np.full((500, 700), 200, np.uint8))
    store.mark_reviewed((0, 0, 500, 700))
    store.mark_reviewed((250, 0, 500, 700))  # overlaps the first
    progress = review_progress(store)
    assert progress.reviewed == pytest.approx(0.5) and progress.predicted == pytest.approx(1.0)
    assert progress.remaining_confidence == pytest.approx(200 / 255, abs=1 / 255)
    assert covered((0, 0, 10, 10), [(0, 0, 5, 10), (0, 5, 10, 10), (2, 2, 3, 3)]) == pytest.approx(0.75)
