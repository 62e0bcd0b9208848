"""The whole review loop through the dock widget, as a user clicks it (Xvfb):
segment the view, edit it, accept, watch the IoU table, mark it reviewed,
export, fine-tune on the export."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from glnet.data.dataset import read_export
from glnet.metrics import ConfusionMatrix

from helpers.plugin import open_widget, set_view, settle, wait_idle


@pytest.fixture
def scene():
    from glnet.data.synthetic import SyntheticScene

    return SyntheticScene(512, 512, seed=3).render(0, 0, 512, 512)


def test_segment_edit_accept_score_export_finetune(make_napari_viewer, qtbot, scene, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    image, truth = scene
    truth = np.where(truth < 5, truth, 0).astype(np.uint8)  # the tiny model has 5 classes
    viewer = make_napari_viewer()
    viewer.add_labels(truth, name="ground truth")
    w = open_widget(viewer, image, tiny_ckpt, name="scene", batch_size=4)
    w.image.value = viewer.layers["scene"]
    set_view(viewer, (256, 256), 0.5)  # the whole image in view
    w.start()
    wait_idle(qtbot, w.controller)
    review = w.review
    assert review.review is not None and review.edit_button.isEnabled()  # the store is ready for review
    store = review.review.store
    review.iou.set_ground_truth(viewer.layers["ground truth"])
    review.iou.set_scope("whole image")

    review.edit_view()
    edit = review.review.edit_layer
    t, l, b, r = review.review.region
    edit.data = truth[t:b, l:r].copy()  # a perfect correction, as the brush would paint it
    review.accept()
    np.testing.assert_array_equal(store.read((t, l, b, r)), truth[t:b, l:r])

    def expected_miou():
        cm = ConfusionMatrix(5)
        cm.update(truth, store.read())
        return cm.scores(exclude=[0]).mean_iou

    qtbot.waitUntil(
        lambda: review.iou.scores is not None and abs(review.iou.scores.mean_iou - expected_miou()) < 1e-9,
        timeout=60_000,
    )
    assert review.iou.scores.mean_iou == pytest.approx(1.0) or expected_miou() > 0.99

    review.mark_reviewed((0, 0, 256, 512))  # two regions: two tiles, one held out for validation
    review.mark_reviewed((256, 0, 512, 512))
    out = tmp_path / "export"
    worker = review.export(str(out))
    qtbot.waitUntil(lambda: (out / "manifest.json").is_file(), timeout=60_000)
    qtbot.waitUntil(lambda: not worker.is_running, timeout=60_000)
    tiles = read_export(out)
    assert sum(split == "val" for _, _, split in tiles) == 1, "the reviewed view was exported, one tile held out"

    finetuned = tmp_path / "tuned.pt"
    worker = review.finetune(str(out), str(finetuned))
    with qtbot.waitSignal(worker.finished, timeout=300_000):
        pass
    assert finetuned.is_file()
    assert review.report.text().startswith("Fine-tuned") and "before" in review.report.text()
    settle(qtbot, w)
