"""Nothing a person painted is lost: closing napari, closing the dock,
removing the edit layer or starting another edit with unaccepted strokes
asks (accept / discard / cancel), and a crash loses at most the stroke in
progress.  Real viewers under Xvfb, real dialogs clicked by a timer, a real
process killed mid-edit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.store.labelstore import LabelStore
from glnet.store.strokes import StrokeJournal
from napari_glnet.review import EDIT_LAYER_NAME

from helpers import REPO
from helpers.plugin import answer_dialog, segmented_widget, settle

EDITED = (0, 0, 128, 128)  # one patch of the tiny model: quick to segment


@pytest.fixture
def editing(make_napari_viewer, qtbot, crop, tiny_ckpt, tmp_path, monkeypatch):
    """A segmented view, an edit layer over it with one stroke not accepted."""
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    viewer = make_napari_viewer(show=True)
    w = segmented_widget(viewer, qtbot, crop, tiny_ckpt, store=tmp_path / "labels.zarr", region=EDITED)
    review = w.review
    layer = review.review.edit(EDITED)
    layer.brush_size = 9
    layer.paint((30, 40), (int(layer.data[30, 40]) + 1) % 5)  # a class it does not have there
    qtbot.wait(10)  # the stroke's deferred clean-up
    assert review.review.dirty
    yield viewer, w, layer
    if w.review.review is not None and w.review.review.dirty:  # a failed test must not leave a question open
        w.review.review.discard()
    settle(qtbot, w)


def _stroke(layer, store):
    """(store labels under the edit layer, the painted pixels) now."""
    t, l, b, r = layer.metadata["glnet_region"]
    return store.read((t, l, b, r)), np.asarray(layer.data)


def test_closing_napari_asks_and_cancel_keeps_the_strokes(editing, qtbot):
    viewer, w, layer = editing
    window = viewer.window._qt_window
    store = w.review.review.store
    painted = np.array(layer.data)
    seen: list[str] = []
    answer_dialog("Cancel", seen)
    assert not window.close()  # what Ctrl+Q and the window's close button end in
    assert window.isVisible() and "not accepted" in seen[0] and "closing napari" in seen[0]
    assert EDIT_LAYER_NAME in viewer.layers  # (the widget holds napari's proxies of the layers)
    np.testing.assert_array_equal(layer.data, painted)
    assert w.review.review.dirty and store.edit_log() == []
    assert "Kept" in w.review.report.text()

    answer_dialog("Accept")
    viewer.close()  # napari's own closing (File > Close Window tears down, then closes the window)
    assert not window.isVisible()
    stored, _ = _stroke(layer, store)
    np.testing.assert_array_equal(stored, painted)  # accepted before the window went
    assert len(LabelStore.open(store.path).edit_log()) == 1
    assert StrokeJournal(store).pending() is None


def test_closing_the_dock_asks_and_cancel_keeps_it_open(editing, qtbot):
    from qtpy.QtCore import Qt

    from napari_glnet.guard import _dock_close_button

    viewer, w, _ = editing
    button = _dock_close_button(w)
    assert button is not None
    answer_dialog("Cancel")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert w.isVisible() and w.review.review.dirty and EDIT_LAYER_NAME in viewer.layers

    store = w.review.review.store
    answer_dialog("Discard")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=5000)
    assert EDIT_LAYER_NAME not in viewer.layers
    assert StrokeJournal(store).pending() is None  # the dock let go of the store: read the journal itself


def test_removing_the_edit_layer_asks_and_cancel_puts_it_back(editing, qtbot):
    viewer, w, layer = editing
    painted = np.array(layer.data)
    answer_dialog("Cancel")
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: EDIT_LAYER_NAME in viewer.layers, timeout=5000)
    assert w.review.review.edit_layer is layer
    np.testing.assert_array_equal(layer.data, painted)
    layers = list(viewer.layers)
    ours = [x.name for x in layers if x.name.startswith("GLNet")]
    assert ours[ours.index("GLNet labels") :] == ["GLNet labels", EDIT_LAYER_NAME]  # its place back, above its labels

    answer_dialog("Accept")
    viewer.layers.remove(layer)
    store = w.review.review.store
    t, l, b, r = layer.metadata["glnet_region"]
    np.testing.assert_array_equal(store.read((t, l, b, r)), painted)
    assert w.review.review.edit_layer is None


def test_a_new_edit_asks_and_discard_drops_only_the_strokes(editing, qtbot):
    viewer, w, layer = editing
    store = w.review.review.store
    before = store.read()
    seen: list[str] = []
    answer_dialog("Cancel", seen)
    w.review.review.edit((0, 0, 64, 64))
    assert "editing another region" in seen[0] and w.review.review.edit_layer is layer
    answer_dialog("Discard")
    w.review.review.edit((0, 0, 64, 64))
    new = viewer.layers[EDIT_LAYER_NAME]
    assert new is not layer and not w.review.review.dirty
    np.testing.assert_array_equal(store.read(), before)
    assert "Discarded" in w.review.report.text() or "Editing" in w.review.report.text()


CRASHING_SESSION = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    os.environ["GLNET_CACHE_DIR"] = {cache!r}
    import napari
    from qtpy.QtWidgets import QApplication
    from helpers.plugin import open_widget

    viewer = napari.Viewer(show=False)
    w = open_widget(viewer, np.load({image!r}), {ckpt!r}, batch_size=2)
    w.store.value = {store!r}
    w.controller.segment_region((0, 0, 128, 128))
    while w.running:
        QApplication.processEvents()
    layer = w.review.review.edit((0, 0, 128, 128))
    layer.brush_size = 7
    layer.paint((20, 25), (int(layer.data[20, 25]) + 1) % 5)
    layer.paint((60, 70), (int(layer.data[60, 70]) + 2) % 5)
    QApplication.processEvents()
    np.save({painted!r}, np.asarray(layer.data))
    os._exit(1)  # killed mid-edit: nothing accepted, nothing closed
    """
)


@pytest.mark.slow
def test_strokes_of_a_killed_session_are_offered_back(make_napari_viewer, qtbot, crop, tiny_ckpt, tmp_path):
    np.save(tmp_path / "image.npy", crop)
    store_path, painted_path = tmp_path / "labels.zarr", tmp_path / "painted.npy"
    script = CRASHING_SESSION.format(
        tests=str(REPO / "tests"),
        cache=str(tmp_path / "cache"),
        image=str(tmp_path / "image.npy"),
        ckpt=str(tiny_ckpt),
        store=str(store_path),
        painted=str(painted_path),
    )
    done = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), capture_output=True, timeout=600)
    assert done.returncode == 1, done.stderr.decode()[-3000:]
    painted = np.load(painted_path)
    assert LabelStore.open(store_path).edit_log() == []  # nothing was accepted before the kill

    viewer = make_napari_viewer(show=True)
    seen: list[str] = []
    answer_dialog("Restore", seen)
    w = segmented_widget(viewer, qtbot, crop, tiny_ckpt, store=store_path, region=EDITED)
    assert "2 unaccepted strokes" in seen[0]
    review = w.review.review
    assert review.dirty
    np.testing.assert_array_equal(review.edit_layer.data, painted)
    assert "Restored 2 unaccepted strokes" in w.review.report.text()
    w.review.accept()
    t, l, b, r = review.region
    np.testing.assert_array_equal(LabelStore.open(store_path).read((t, l, b, r)), painted)
    settle(qtbot, w)
