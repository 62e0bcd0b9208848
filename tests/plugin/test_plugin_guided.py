"""Guided review in a real napari viewer: the model's confidence as a layer,
Next uncertain region taking the camera to the least confident unreviewed
block, the review's progress, and how much each accept changed the score,
all checked against the library (glnet.store.confidence, glnet.metrics)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.classes import DEEPGLOBE
from glnet.data.synthetic import SyntheticScene
from glnet.metrics import ConfusionMatrix
from glnet.store.confidence import ConfidenceMap, review_progress, uncertain_blocks
from glnet.store.labelstore import LabelStore
from napari_glnet.guided import REVIEWED_NAME, UNCERTAINTY_NAME

from helpers.plugin import segmented_widget, settle

SIZE = 1024
BLOCK = 256  # 4 x 4 blocks


@pytest.fixture
def review_store(tmp_path):
    """A store of a synthetic scene whose confidence is known block by block:
    the least confident block is (512, 256), then (0, 768), then the rest."""
    rgb, truth = SyntheticScene(SIZE, SIZE, seed=5).render(0, 0, SIZE, SIZE)
    store = LabelStore.create(tmp_path / "review.zarr", (SIZE, SIZE), DEEPGLOBE, chunk=128, min_size=64)
    pred = truth.copy()
    pred[512:640, 256:512] = 1  # wrong, where the model was least sure
    store.write((0, 0, SIZE, SIZE), pred, edit=False)
    conf = np.full((SIZE, SIZE), 240, np.uint8)
    conf[512:768, 256:512] = 60
    conf[0:256, 768:1024] = 90
    conf[300:320, 300:320] = 200  # a few less sure pixels elsewhere
    ConfidenceMap.open(store).write((0, 0, SIZE, SIZE), conf)
    return store, rgb, truth, pred, conf


@pytest.fixture
def guided(make_napari_viewer, review_store, qtbot):
    """The dock widget reviewing ``review_store``, as after a segmentation that made it."""
    store, rgb, truth, _, _ = review_store
    viewer = make_napari_viewer()
    viewer.add_image(rgb, name="scene", rgb=True)
    (store_layer,) = viewer.open(str(store.path), plugin="napari-glnet")
    _, w = viewer.window.add_plugin_dock_widget("napari-glnet", "GLNet segmentation")
    w.review.set_store(store, store_layer)
    w.review.guided.block = BLOCK
    truth_layer = viewer.add_labels(truth, name="ground truth", visible=False)
    yield viewer, w, store
    settle(qtbot, w)
    del truth_layer


def _inside(center, region) -> bool:
    t, l, b, r = region
    return t <= center[0] < b and l <= center[1] < r


def test_next_uncertain_region_goes_to_the_least_confident_unreviewed_block(guided, qtbot):
    from qtpy.QtCore import Qt

    viewer, w, store = guided
    worst = uncertain_blocks(store, BLOCK)[0]
    assert worst.region == (512, 256, 768, 512)  # what the library says, from the map written above

    w.review.next_button.click()
    center = viewer.scene.camera.center[-2:]
    assert _inside(center, worst.region)
    assert "mean confidence 24%" in w.review.report.text()
    progress_before = w.review.progress.text()

    # Corrected and checked: mark it reviewed; the next press goes elsewhere, to the next worst.
    assert w.review.mark_reviewed(worst.region) == worst.region
    assert w.review.progress.text() != progress_before
    assert "Reviewed 6.2% of the image" in w.review.progress.text()  # 1 of 16 blocks
    following = uncertain_blocks(store, BLOCK)[0]
    assert following.region == (0, 768, 256, 1024)
    canvas = viewer.window._qt_viewer.canvas.native  # a real key press (NEXT_KEY), the image layer active
    viewer.layers.selection.active = viewer.layers["scene"]
    qtbot.keyClick(canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    center = viewer.scene.camera.center[-2:]
    assert _inside(center, following.region) and not _inside(center, worst.region)
    # Round after round (Next skips what it showed, then starts again), the reviewed block never comes back.
    left = uncertain_blocks(store, BLOCK)
    assert len(left) == 15 and worst.region not in [b.region for b in left]
    for _ in range(len(left) + 2):
        w.review.next_button.click()
        assert not _inside(viewer.scene.camera.center[-2:], worst.region)


def test_progress_follows_mark_reviewed_and_accept(guided, review_store):
    viewer, w, store = guided
    conf = review_store[4]
    start = review_progress(store)
    assert start.reviewed == 0 and start.predicted == 1 and start.corrections == 0
    assert start.remaining_confidence == pytest.approx(conf.mean() / 255, abs=0.005)
    assert "Reviewed 0.0% of the image" in w.review.progress.text()
    assert f"mean confidence {start.remaining_confidence:.0%}" in w.review.progress.text()

    w.review.mark_reviewed((0, 0, 512, 1024))  # the top half: the 90 block is reviewed
    done = review_progress(store)
    assert done.reviewed == pytest.approx(0.5)
    assert done.remaining_confidence == pytest.approx(conf[512:].mean() / 255, abs=0.005)  # the 60 block is left
    assert f"Reviewed {done.reviewed:.1%}" in w.review.progress.text()
    assert f"mean confidence {done.remaining_confidence:.0%}" in w.review.progress.text()

    review = w.review.review
    layer = review.edit((512, 256, 640, 512))
    layer.paint((10, 10), 4)
    review.accept(sync=True)
    assert "1 accepted correction" in w.review.progress.text()
    w.review.mark_reviewed((768, 0, 1024, 256))
    reviewed = viewer.layers[REVIEWED_NAME]
    assert len(reviewed.data) == 2 and reviewed.visible
    assert list(reviewed.edge_width) == [SIZE // 200] * 2  # the second as visible as the first
    np.testing.assert_allclose(reviewed.edge_color[1], reviewed.edge_color[0])
    w.review.reviewed_box.setChecked(False)
    assert not reviewed.visible


@pytest.mark.parametrize("in_worker", [False, True], ids=["gui-thread", "worker"])
def test_the_iou_change_of_an_accept_is_glnet_metrics_before_and_after(
    guided, review_store, qtbot, monkeypatch, in_worker
):
    from napari_glnet import iou_panel

    if in_worker:  # what a large image does
        monkeypatch.setattr(iou_panel, "SYNC_PIXELS", 0)
    viewer, w, _ = guided
    _, _, truth, pred, _ = review_store
    panel = w.review.iou
    assert panel.set_ground_truth(viewer.layers["ground truth"])
    review = w.review.review

    region = (512, 256, 640, 512)
    layer = review.edit(region)
    layer.fill((5, 5), int(truth[517, 261]))  # the wrong block painted back as the truth has it, in part
    layer.paint((100, 200), 6)
    edited = pred.copy()
    edited[512:640, 256:512] = np.array(layer.data)
    review.accept(sync=True)
    qtbot.waitUntil(lambda: len(panel.deltas.history) == 1, timeout=10_000)

    def scores(labels):
        cm = ConfusionMatrix(len(DEEPGLOBE))
        cm.update(truth, labels)
        return cm.scores(exclude=(0,))

    before, after = scores(pred), scores(edited)
    delta = panel.deltas.last
    assert delta is not None and not delta.undo
    np.testing.assert_allclose(delta.iou((0,)), after.iou - before.iou, equal_nan=True)
    assert delta.mean_iou((0,)) == pytest.approx((before.mean_iou, after.mean_iou))
    assert after.mean_iou != before.mean_iou  # the edit changed the score
    shown = [panel.table.item(i, 4).text() for i in range(panel.table.rowCount())]
    for text, value in zip(shown, after.iou - before.iou, strict=True):
        assert text == ("–" if np.isnan(value) else "0" if abs(value) < 5e-5 else f"{value:+.4f}")
    assert f"mIoU {after.mean_iou - before.mean_iou:+.4f}" in panel.deltas.line.text()

    # Undo: the change is the way back.
    review.undo()
    qtbot.waitUntil(lambda: len(panel.deltas.history) == 2, timeout=10_000)
    back = panel.deltas.last
    assert back.undo
    np.testing.assert_allclose(back.iou((0,)), before.iou - after.iou, equal_nan=True)
    qtbot.waitUntil(lambda: panel.deltas._worker is None and panel._worker is None, timeout=10_000)


def test_segmenting_writes_the_confidence_shown_as_a_toggleable_layer(make_napari_viewer, qtbot, crop, tiny_ckpt):
    from qtpy.QtCore import Qt

    from napari_glnet.view_layers import LABELS_NAME

    viewer = make_napari_viewer()
    w = segmented_widget(viewer, qtbot, crop, tiny_ckpt)
    store = w.controller.session.store
    conf = ConfidenceMap.open(store, create=False)
    assert conf is not None
    level0 = conf.read()
    assert (level0 >= 255 // len(store.classes)).all()  # every pixel predicted has its confidence

    layers = viewer.layers
    assert w.image.value == layers["crop"]  # the uncertainty layer is an image, never the one to segment
    assert [name for name, _ in w._image_choices()] == ["crop"]
    names = [layer.name for layer in layers]
    assert names.index(UNCERTAINTY_NAME) == names.index("crop") + 1 < names.index(LABELS_NAME)  # under the labels
    layer = layers[UNCERTAINTY_NAME]
    assert layer.visible and viewer.layers.selection.active == layers["crop"]  # the image keeps its keys
    np.testing.assert_array_equal(np.asarray(layer.data[0] if layer.multiscale else layer.data), level0)

    w.review.uncertainty_box.setChecked(False)
    assert not layer.visible
    viewer.layers.selection.active = layers["crop"]
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_K, Qt.KeyboardModifier.ShiftModifier)
    assert layer.visible
    settle(qtbot, w)
