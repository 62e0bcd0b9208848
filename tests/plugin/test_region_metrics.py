"""Block-cached confusion matrices of a label store against a ground truth (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from glnet.classes import DEEPGLOBE
from glnet.errors import GLNetError
from glnet.metrics import ConfusionMatrix
from glnet.store.labelstore import LabelStore
from napari_glnet.region_metrics import StoreConfusion

H, W = 700, 600


def direct(truth, pred) -> np.ndarray:
    cm = ConfusionMatrix(len(DEEPGLOBE))
    cm.update(truth, pred)
    return cm.matrix


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 7, (H, W), dtype=np.uint8)
    pred = np.where(rng.random((H, W)) < 0.7, truth, rng.integers(0, 7, (H, W), dtype=np.uint8)).astype(np.uint8)
    store = LabelStore.create(tmp_path / "p.zarr", (H, W), DEEPGLOBE, chunk=128, min_size=64)
    store.write((0, 0, H, W), pred, edit=False)
    return store, truth, pred


def test_regions_cache_and_invalidation(data):
    store, truth, pred = data
    conf = StoreConfusion(store, truth)
    assert conf.block == 512  # whole 128-px chunks, at least 512 px
    np.testing.assert_array_equal(conf.matrix().matrix, direct(truth, pred))
    assert conf.pending_pixels((0, 0, H, W)) == 0  # every block cached
    part = (30, 500, 650, 590)  # cuts blocks: counted fresh, never cached
    np.testing.assert_array_equal(conf.matrix(part).matrix, direct(truth[30:650, 500:590], pred[30:650, 500:590]))

    new = pred.copy()
    new[600:650, 10:80] = 5
    store.write((600, 10, 650, 80), new[600:650, 10:80])
    conf.invalidate((600, 10, 650, 80))
    assert conf.pending_pixels((0, 0, H, W)) == 512 * (H - 512)  # just the one block below-left
    np.testing.assert_array_equal(conf.matrix().matrix, direct(truth, new))


def test_overlay_replaces_the_store_and_is_not_cached(data):
    store, truth, pred = data
    conf = StoreConfusion(store, truth)
    conf.matrix()
    painted = np.full((100, 50), 2, np.uint8)
    edited = pred.copy()
    edited[200:300, 550:600] = painted
    overlay = ((200, 550, 300, 600), painted)
    np.testing.assert_array_equal(conf.matrix(overlay=overlay).matrix, direct(truth, edited))
    np.testing.assert_array_equal(conf.matrix().matrix, direct(truth, pred))  # the store is unchanged


def test_ground_truth_must_fit(data):
    store, truth, _ = data
    with pytest.raises(GLNetError, match="100 x 600 px but the labels are 700 x 600"):
        StoreConfusion(store, truth[:100])
    wrong = truth.copy()
    wrong[:3, :4] = 9
    conf = StoreConfusion(store, wrong)
    conf.matrix()
    assert conf.out_of_range == 12
    assert conf.matrix(None, cancelled=lambda: True) is None
