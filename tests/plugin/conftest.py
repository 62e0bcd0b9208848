"""Fixtures of the plugin tests: a tiny real checkpoint, a real image crop,
napari's notifications, the dock widget opened as a user opens it."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.plugin import open_widget, save_tiny_checkpoint, settle


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.glnet.pt")


@pytest.fixture(scope="module")
def scenes_ckpt(tmp_path_factory):
    """The same model trained on 160 px "scenes": a 256 px image is 2 x 2 scenes."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "scenes.glnet.pt", scene_size=160)


@pytest.fixture(scope="module")
def crop(real_image):
    return np.ascontiguousarray(real_image[1000:1256, 1200:1456])


@pytest.fixture
def widget(make_napari_viewer, qtbot, crop, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    w = open_widget(make_napari_viewer(), crop, tiny_ckpt, batch_size=2)
    yield w
    settle(qtbot, w)


@pytest.fixture
def notes():
    """Messages of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def keep(n):
        seen.append(str(n.message))

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)
