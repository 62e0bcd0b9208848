"""The plugin stays interactive: the model is loaded before it is needed,
off the GUI thread, and what is drawn is what the engine computed.

Real napari viewers (Xvfb), a real tiny checkpoint file, real label
stores; how fast is benchmarks/bench_plugin.py's business, not these tests'."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("napari")

from glnet.checkpoint import load_checkpoint
from glnet.inference.engine import Segmenter
from glnet.inference.scenes import SceneSession

from helpers.plugin import open_widget, set_view, settle, wait_idle

LOADED = "running on the CPU"  # what glnet.inference.spec logs once per model loaded on the CPU


def _engine_labels(ckpt_path, image, region):
    session = SceneSession(Segmenter(load_checkpoint(ckpt_path), device="cpu"), image)
    for _ in session.run(region):
        pass
    return session.result(region).labels


def _loads(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "glnet.inference.spec" and r.getMessage() == LOADED]


@pytest.fixture
def viewer(make_napari_viewer, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="glnet.inference.spec")
    return make_napari_viewer()


def test_choosing_a_checkpoint_loads_its_model_in_the_background(viewer, qtbot, crop, tiny_ckpt, caplog):
    w = open_widget(viewer, crop, tiny_ckpt, batch_size=2)
    try:
        qtbot.waitUntil(lambda: "ready to segment" in w.status.value, timeout=60_000)
        (load,) = _loads(caplog)
        assert load.threadName != "MainThread"
        assert w.controller.session is None  # loaded, nothing segmented yet
        w.batch_size.value = 3  # another setting: that model is loaded in turn
        qtbot.waitUntil(lambda: len(_loads(caplog)) == 2 and not w.running, timeout=60_000)
        assert all(r.threadName != "MainThread" for r in _loads(caplog))
    finally:
        settle(qtbot, w)


def test_segment_view_pressed_while_the_model_loads_waits_for_it(viewer, qtbot, crop, tiny_ckpt, caplog):
    w = open_widget(viewer, crop, tiny_ckpt, batch_size=2)
    ctl = w.controller
    try:
        qtbot.waitUntil(lambda: ctl.running, timeout=10_000)  # the model is loading
        set_view(viewer, (90, 150), 4.0)
        region = ctl.visible_region()
        w.start()
        wait_idle(qtbot, ctl)
        assert len(_loads(caplog)) == 1  # the request used the model loaded in the background
        assert w.status.value.startswith("done")
        got = ctl.session.store.read(region)
        np.testing.assert_array_equal(got, _engine_labels(tiny_ckpt, crop, region))
        t, l, b, r = region
        shown = np.asarray(viewer.layers["GLNet labels"].data)
        np.testing.assert_array_equal(shown[t:b, l:r], got)  # drawn: the engine's labels
    finally:
        settle(qtbot, w)


def _window_movies():
    from qtpy.QtWidgets import QApplication, QLabel

    labels = [label for window in QApplication.topLevelWidgets() for label in window.findChildren(QLabel)]
    return [label.movie() for label in labels if label.movie() is not None]


def test_the_window_is_still_while_glnet_segments(viewer, qtbot, crop, tiny_ckpt):
    """napari's activity indicator is a GIF: each of its frames recomposes the
    whole window, which on a display without a GPU took a third of a 2-core
    machine from the model.  While GLNet works it stays shown but still."""
    from qtpy.QtGui import QMovie

    w = open_widget(viewer, crop, tiny_ckpt, batch_size=2)
    ctl = w.controller
    try:
        qtbot.waitUntil(lambda: "ready to segment" in w.status.value, timeout=60_000)
        set_view(viewer, (90, 150), 4.0)
        w.start()
        assert ctl.running
        states = [movie.state() for movie in _window_movies()]
        assert QMovie.MovieState.Paused in states  # napari started its indicator with our progress bar
        assert QMovie.MovieState.Running not in states
        wait_idle(qtbot, ctl)
        assert w.status.value.startswith("done")
        assert QMovie.MovieState.Paused not in [movie.state() for movie in _window_movies()]
    finally:
        settle(qtbot, w)
