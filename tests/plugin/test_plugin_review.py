"""Reviewing a label store in a real napari viewer: edit a region on the
editable layer, accept it into the OME-Zarr store, undo it, and watch the
per-class IoU table follow, checked against glnet.metrics on numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.classes import DEEPGLOBE
from glnet.data.synthetic import SyntheticScene
from glnet.io.labels import write_label
from glnet.metrics import ConfusionMatrix
from glnet.store.labelstore import LabelStore, downsample_mode
from napari_glnet import iou_panel
from napari_glnet.iou_panel import IoUPanel
from napari_glnet.layers import visible_region
from napari_glnet.review import (
    ACCEPT_KEY,
    EDIT_LAYER_NAME,
    NEXT_CLASS_KEY,
    ReviewController,
)

SIZE = 512
REGION = (96, 160, 288, 400)  # top, left, bottom, right (level-0 px)


@pytest.fixture(scope="module")
def scene():
    """(rgb, ground truth, prediction): the prediction is the truth with some blocks wrong."""
    rgb, truth = SyntheticScene(SIZE, SIZE, seed=3).render(0, 0, SIZE, SIZE)
    pred = truth.copy()
    rng = np.random.default_rng(0)
    for _ in range(12):
        t, l = rng.integers(0, SIZE - 64, 2)
        pred[t : t + 64, l : l + 64] = rng.integers(0, len(DEEPGLOBE))
    return rgb, truth, pred


@pytest.fixture
def store(tmp_path, scene):
    s = LabelStore.create(tmp_path / "pred.zarr", (SIZE, SIZE), DEEPGLOBE, chunk=128, min_size=64)
    s.write((0, 0, SIZE, SIZE), scene[2], edit=False)
    return s


@pytest.fixture
def session(make_napari_viewer, store, scene):
    """A viewer with the store (through our reader), the ground truth, the review controller and the panel."""
    viewer = make_napari_viewer()
    (store_layer,) = viewer.open(str(store.path), plugin="napari-glnet")
    truth = viewer.add_labels(scene[1].copy(), name="ground truth")  # painted by some tests
    review = ReviewController(viewer, store)
    panel = IoUPanel(viewer, store, review=review)
    assert panel.set_ground_truth(truth)
    panel.set_scope("whole image")
    panel.refresh_now()
    yield viewer, store_layer, review, panel
    panel.close_panel()
    review.close()


def expected_iou(truth: np.ndarray, pred: np.ndarray, exclude=(0,)):
    cm = ConfusionMatrix(len(DEEPGLOBE))
    cm.update(truth, pred)
    return cm.scores(exclude=exclude)


def table_ious(panel: IoUPanel) -> list[float]:
    """The IoU column as the user reads it ('–' for a class seen nowhere)."""
    texts = [panel.table.item(i, 2).text() for i in range(panel.table.rowCount())]
    return [float("nan") if t == "–" else float(t) for t in texts]


def assert_table_shows(panel: IoUPanel, expected) -> None:
    np.testing.assert_allclose(table_ious(panel), np.round(expected.iou, 4), atol=1e-4)
    np.testing.assert_allclose(panel.scores.iou, expected.iou)
    assert panel.scores.mean_iou == pytest.approx(expected.mean_iou)
    assert f"mIoU {expected.mean_iou:.4f}" in panel.summary.text()
    gt_pixels = [int(panel.table.item(i, 3).text().replace(",", "")) for i in range(panel.table.rowCount())]
    assert gt_pixels == expected.support.tolist()


def shown(layer, level: int) -> np.ndarray:
    """What napari draws for a 2D multiscale layer at ``level`` (its sliced data)."""
    layer.locked_data_level = level
    layer.refresh()
    assert layer.data_level == level
    return np.asarray(layer._slice.image.raw)


def test_paint_accept_undo_updates_store_and_iou(session, store, scene, qtbot):
    viewer, store_layer, review, panel = session
    _, truth, pred = scene
    assert_table_shows(panel, expected_iou(truth, pred))
    assert panel.table.item(5, 1).text() == "5 water"
    assert panel.table.item(5, 0).background().color().getRgb()[:3] == (0, 0, 255)

    # Edit: an editable in-memory layer laid over the region, in class colours.
    layer = review.edit(REGION)
    assert layer is viewer.layers[EDIT_LAYER_NAME] and viewer.layers.selection.active is layer
    assert layer.editable and not layer.multiscale and layer.mode == "paint"
    assert tuple(layer.translate) == REGION[:2] and tuple(layer.scale) == (1, 1)
    np.testing.assert_array_equal(layer.data, pred[96:288, 160:400])
    np.testing.assert_allclose(layer.colormap.map(np.array([4]))[0, :3], [0, 1, 0])  # forest is green

    # Paint as napari's brush does, then a fill: the table follows before accepting.
    layer.brush_size = 20
    layer.paint((50, 60), 6)
    layer.paint((60, 70), 6)
    layer.fill((150, 200), 2)
    painted = np.array(layer.data)
    assert review.dirty and (painted == 6).sum() > 300
    edited = pred.copy()
    edited[96:288, 160:400] = painted
    qtbot.waitUntil(
        lambda: np.allclose(panel.scores.iou, expected_iou(truth, edited).iou, equal_nan=True), timeout=3000
    )
    assert_table_shows(panel, expected_iou(truth, edited))
    assert store.edit_log() == []  # nothing written before accepting

    # Accept: level 0 and the coarser levels are on disk, the store layer shows them.
    with qtbot.waitSignal(panel.updated, timeout=3000):
        entry = review.accept()
    assert entry is not None and entry["region"] == list(REGION) and not review.dirty
    reopened = LabelStore.open(store.path, mode="r")
    np.testing.assert_array_equal(reopened.read(), edited)
    level1 = downsample_mode(edited)
    np.testing.assert_array_equal(reopened.read(level=1), level1)
    np.testing.assert_array_equal(reopened.read(level=2), downsample_mode(level1))
    assert_table_shows(panel, expected_iou(truth, edited))
    np.testing.assert_array_equal(shown(store_layer, 1), level1)

    # Undo: the store and the table are back where they were.
    with qtbot.waitSignal(panel.updated, timeout=3000):
        assert review.undo()["id"] == entry["id"]
    np.testing.assert_array_equal(LabelStore.open(store.path, mode="r").read(), pred)
    np.testing.assert_array_equal(
        LabelStore.open(store.path, mode="r").read(level=2), downsample_mode(downsample_mode(pred))
    )
    np.testing.assert_array_equal(viewer.layers[EDIT_LAYER_NAME].data, pred[96:288, 160:400])
    np.testing.assert_array_equal(shown(store_layer, 1), downsample_mode(pred))
    assert_table_shows(panel, expected_iou(truth, pred))


def _score_a_part_in_view(viewer, panel) -> tuple[int, int, int, int]:
    """Zoom in on a part of the image and score the current view: the region in view."""
    panel.set_scope("current view")
    viewer.scene.camera.center = (0, 200, 300)
    viewer.scene.camera.zoom = 8
    panel.refresh_now()
    return visible_region(viewer, viewer.layers[0], (SIZE, SIZE))


def test_current_view_scope_and_exclude_toggle(session, scene, qtbot):
    viewer, _, _, panel = session
    _, truth, pred = scene
    t, l, b, r = _score_a_part_in_view(viewer, panel)
    assert 0 < b - t < SIZE and 0 < r - l < SIZE
    assert t <= 200 <= b and l <= 300 <= r
    assert_table_shows(panel, expected_iou(truth[t:b, l:r], pred[t:b, l:r]))
    panel.exclude_box.setChecked(False)
    assert panel.scores.mean_iou == pytest.approx(expected_iou(truth[t:b, l:r], pred[t:b, l:r], exclude=()).mean_iou)
    dialog = panel.show_confusion_matrix()
    table = dialog.findChild(iou_panel.QTableWidget)
    cm = ConfusionMatrix(len(DEEPGLOBE))
    cm.update(truth[t:b, l:r], pred[t:b, l:r])
    assert int(table.item(4, 4).text().replace(",", "")) == cm.matrix[4, 4]
    dialog.close()


def test_whole_image_counts_in_a_worker(session, scene, qtbot, monkeypatch):
    """Past SYNC_PIXELS the count runs in a worker thread; the result is the same."""
    _viewer, _, review, panel = session
    _, truth, pred = scene
    monkeypatch.setattr(iou_panel, "SYNC_PIXELS", 0)
    review.edit((0, 0, 64, 64))
    review.edit_layer.fill((10, 10), 1)
    edited = pred.copy()
    edited[:64, :64] = review.edit_layer.data
    with qtbot.waitSignal(panel.updated, timeout=10000):
        panel.refresh_now()
        assert panel._worker is not None, "the count went to a worker thread, not the GUI thread"
    assert_table_shows(panel, expected_iou(truth, edited))


def test_a_scope_being_counted_never_shows_another_scopes_numbers(session, scene, qtbot, monkeypatch):
    """Switching to "whole image" while its count runs in a worker: the view's numbers
    are not left under the new scope; the panel says it is counting, then shows the image's."""
    viewer, _, _, panel = session
    _, truth, pred = scene
    t, l, b, r = _score_a_part_in_view(viewer, panel)
    assert_table_shows(panel, expected_iou(truth[t:b, l:r], pred[t:b, l:r]))
    monkeypatch.setattr(iou_panel, "SYNC_PIXELS", -1)  # every count in a worker, as on a huge image
    panel.set_scope("whole image")
    panel.refresh_now()
    assert panel._worker is not None
    assert panel.summary.text() == "counting the whole image…"
    assert panel.scores is None
    assert {panel.table.item(i, 2).text() for i in range(panel.table.rowCount())} == {""}
    qtbot.waitUntil(lambda: panel.scores is not None, timeout=10000)
    assert_table_shows(panel, expected_iou(truth, pred))


def test_keys_accept_and_cycle_classes(session, store, scene, qtbot):
    """Real key presses on the canvas, with the edit layer active (layer keymaps
    win over viewer keymaps, so the keys must be free in the Labels keymap too)."""
    from qtpy.QtCore import Qt

    viewer, _, review, _ = session
    layer = review.edit(REGION)
    canvas = viewer.window._qt_viewer.canvas.native  # the widget napari reads keys from
    start = layer.selected_label
    qtbot.keyClick(canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)  # NEXT_CLASS_KEY
    assert layer.selected_label == (start + 1) % len(DEEPGLOBE)
    for _ in range(len(DEEPGLOBE) - 1):
        qtbot.keyClick(canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert layer.selected_label == start
    layer.paint((5, 5), 5)
    painted = np.array(layer.data)
    qtbot.keyClick(canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)  # ACCEPT_KEY
    np.testing.assert_array_equal(store.read(REGION), painted)
    assert len(store.edit_log()) == 1
    assert (NEXT_CLASS_KEY, ACCEPT_KEY) == ("Shift+N", "Shift+Enter")  # what the tooltips and README say


def test_unaccepted_edits_are_not_dropped_silently(session, store, scene, notes):
    """Without a dialog to ask (a script), nothing painted is dropped: another
    edit or an undo is refused, a removed edit layer's strokes stay in the
    journal and come back on the next edit."""
    viewer, _, review, _ = session
    layer = review.edit(REGION)
    layer.paint((20, 20), 5)
    assert review.edit((0, 0, 50, 50)) is None  # refused: the paint would be lost
    assert viewer.layers[EDIT_LAYER_NAME] is layer and review.region == REGION
    assert any("not accepted yet" in n for n in notes)
    assert review.undo() is None  # also refused while dirty
    assert review.edit((0, 0, 50, 50), discard=True) is not None
    assert review.region == (0, 0, 50, 50) and len(viewer.layers) == 3
    np.testing.assert_array_equal(store.read(), scene[2])  # the discarded paint never reached the store
    viewer.layers[EDIT_LAYER_NAME].paint((5, 5), 3)
    painted = np.array(viewer.layers[EDIT_LAYER_NAME].data)
    viewer.layers.remove(EDIT_LAYER_NAME)
    assert review.edit_layer is None
    assert any("kept in the store's stroke journal" in n for n in notes)
    assert review.edit(REGION) is None  # the kept strokes come back first
    assert review.region == (0, 0, 50, 50) and review.dirty
    np.testing.assert_array_equal(review.edit_layer.data, painted)


def test_user_errors_are_one_notification(session, store, notes):
    _viewer, _, review, _panel = session
    assert review.accept() is None and any("Nothing to accept" in n for n in notes)
    assert review.edit((0, 0, SIZE + 10, 40)) is None and any("outside the label image" in n for n in notes)
    layer = review.edit(REGION)
    layer.data[0, 0] = 9  # a label beyond the 7 classes (napari lets one pick any)
    assert review.accept() is None and any("outside 0..6" in n for n in notes)
    assert store.edit_log() == []
    assert review.undo() is None and any("before undoing" in n for n in notes)


def test_ground_truth_that_does_not_fit(session, store, tmp_path, notes, scene):
    viewer, _, _review, panel = session
    small = tmp_path / "small_mask.png"
    write_label(small, scene[1][:100, :120], DEEPGLOBE, color=True)
    assert panel.load_ground_truth(small) is None
    assert any("100 x 120" in n and "512 x 512" in n for n in notes)
    wrong = viewer.add_labels(np.zeros((40, 40), np.uint8), name="other image")
    assert not panel.set_ground_truth(wrong)
    assert any("40 x 40" in n for n in notes)
    assert panel.truth_combo.currentText() == "(none)" and panel.scores is None
    many = scene[1].astype(np.uint8).copy()
    many[:10, :10] = 12  # a class the 7-class labels do not have
    panel.set_ground_truth(viewer.add_labels(many, name="twelve classes"))
    assert panel.scores is not None and any("outside 0..6" in n for n in notes)


def test_ground_truth_from_a_colour_mask_file(session, scene, tmp_path):
    viewer, _, _, panel = session
    _, truth, pred = scene
    path = tmp_path / "scene_mask.png"
    write_label(path, truth, DEEPGLOBE, color=True)
    layer = panel.load_ground_truth(path)
    assert layer is not None and panel.truth_combo.currentText() == layer.name
    np.testing.assert_array_equal(layer.data, truth)
    assert_table_shows(panel, expected_iou(truth, pred))
    viewer.layers.remove(layer)  # the panel lets go of a removed ground truth
    assert panel.truth_combo.currentText() == "(none)" and panel.scores is None


def test_painting_the_ground_truth_recounts_only_what_changed(session, scene, qtbot):
    viewer, _, _, panel = session
    _, truth, pred = scene
    gt = viewer.layers["ground truth"]
    gt.brush_size = 30
    gt.paint((400, 50), 5)  # napari >= 0.8 reports a masked atom with its bounding box
    assert iou_panel.painted_box(type("E", (), {"value": gt._undo_history[-1]})()) is not None
    legacy = type("E", (), {"value": [((np.array([3, 9]), np.array([4, 7])), np.array([0, 0]), 2)]})()
    assert iou_panel.painted_box(legacy) == (3, 4, 10, 8)  # the older (indices, old, new) form
    qtbot.waitUntil(
        lambda: np.allclose(panel.scores.iou, expected_iou(np.asarray(gt.data), pred).iou, equal_nan=True), timeout=3000
    )
    assert not np.array_equal(np.asarray(gt.data), truth)


def test_edit_layer_sits_over_a_scaled_store_layer(session):
    _viewer, store_layer, review, _ = session
    store_layer.scale = (0.5, 0.5)
    store_layer.translate = (10, 20)
    layer = review.edit(REGION)
    assert tuple(layer.scale) == (0.5, 0.5)
    assert tuple(layer.translate) == (10 + REGION[0] * 0.5, 20 + REGION[1] * 0.5)
    np.testing.assert_allclose(layer.data_to_world((0, 0)), store_layer.data_to_world(REGION[:2]))
    assert review.mark_reviewed() == REGION
    assert review.store.reviewed_regions() == [REGION]


def test_accept_keeps_what_the_segmenter_wrote_meanwhile(session, store, scene):
    """Refinement may write predictions into the region being edited: accepting
    writes only the painted pixels, so the newer predictions elsewhere stay."""
    viewer, _, review, _ = session
    layer = review.edit(REGION)
    store.write((96, 160, 128, 192), np.full((32, 32), 4, np.uint8), edit=False)  # the segmenter, meanwhile
    fix = (np.asarray(layer.data[150:160, 200:210]) + 1) % len(DEEPGLOBE)
    layer.data[150:160, 200:210] = fix
    layer.refresh()
    assert review.accept() is not None
    after = store.read(REGION)
    assert (after[:32, :32] == 4).all()
    np.testing.assert_array_equal(after[150:160, 200:210], fix)
    np.testing.assert_array_equal(viewer.layers[EDIT_LAYER_NAME].data, after)
    assert not review.dirty


# -- editing that fits correction work ----------------------------------------------------
def test_the_eraser_restores_the_prediction_and_class_0_stays_paintable(widget, qtbot):
    """In the dock as a user has it: the model's labels, napari's eraser over a stroke."""
    from helpers.plugin import wait_idle

    tile = (0, 0, 128, 128)
    widget.controller.segment_region(tile)
    wait_idle(qtbot, widget.controller)
    review = widget.review.review
    pred = review.store.read(tile)
    layer = review.edit(tile)
    layer.brush_size = 5
    layer.paint((40, 40), (int(pred[40, 40]) + 1) % 5)
    qtbot.wait(50)
    assert review.dirty
    layer.mode = "erase"  # napari's eraser paints the layer's background value
    layer.paint((40, 40), layer.colormap.background_value)
    qtbot.wait(50)  # the stroke's deferred clean-up
    np.testing.assert_array_equal(layer.data, pred)  # the prediction is back, not class 0
    assert not review.dirty

    layer.mode = "paint"
    layer.paint((60, 60), 0)  # class 0, "unknown", on purpose
    qtbot.wait(50)
    assert review.accept() is not None
    assert review.store.read((60, 60, 61, 61))[0, 0] == 0


def test_the_edit_layer_is_readable_and_outlines_toggle_with_a_key(session, qtbot):
    from qtpy.QtCore import Qt

    from napari_glnet.edit_layer import OPACITY

    viewer, _, review, _ = session
    layer = review.edit(REGION)
    assert layer.opacity == OPACITY < 1 and layer.contour == 0
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, Qt.Key.Key_O, Qt.KeyboardModifier.ShiftModifier)  # OUTLINE_KEY
    assert layer.contour > 0
    qtbot.keyClick(canvas, Qt.Key.Key_O, Qt.KeyboardModifier.ShiftModifier)
    assert layer.contour == 0


def test_a_large_accept_runs_off_the_gui_thread(session, store, scene, qtbot, monkeypatch):
    from napari_glnet import review as review_module

    _, _, review, _ = session
    monkeypatch.setattr(review_module, "SYNC_ACCEPT_PIXELS", 100)  # REGION is "large" now
    said: list[str] = []
    review.said.connect(said.append)
    layer = review.edit(REGION)
    layer.data[10:20, 10:20] = (np.asarray(layer.data[10:20, 10:20]) + 1) % len(DEEPGLOBE)
    layer.refresh()
    painted = np.array(layer.data)
    assert review.accept() is None  # returned at once: a worker writes it
    assert review.busy and not layer.editable
    assert said[-1].startswith("Accepting")
    qtbot.waitUntil(lambda: not review.busy, timeout=60_000)
    np.testing.assert_array_equal(store.read(REGION), painted)
    assert said[-1].startswith("Accepted edit #") and layer.editable
