"""What the plugin tests do the way a user does it: open the dock widget,
move the camera, wait for the work to end."""

from __future__ import annotations

from pathlib import Path

from glnet.checkpoint import GLNetCheckpoint, save_checkpoint
from glnet.classes import ClassTable
from glnet.model import GLNet

from helpers import tiny_config
from helpers.reference import seeded_weights

PATCH = 128  # patch and global view of the tiny model: 9 patches on a 256 px image


def save_tiny_checkpoint(path: Path, scene_size: int = 2448) -> Path:
    model = seeded_weights(GLNet(tiny_config()), 1)
    ckpt = GLNetCheckpoint("global2local", model, ClassTable.default(5), None, PATCH, PATCH, scene_size=scene_size)
    save_checkpoint(ckpt, path)
    return path


def open_widget(viewer, image, ckpt, name: str = "crop", batch_size: int | None = None):
    """The user's first steps: an RGB image in the viewer, the dock widget
    from the plugin menu, a checkpoint chosen, the CPU."""
    viewer.add_image(image, name=name, rgb=True)
    _, w = viewer.window.add_plugin_dock_widget("napari-glnet", "GLNet segmentation")
    w.set_checkpoint(ckpt)
    w.device.value = "cpu"
    if batch_size is not None:
        w.batch_size.value = batch_size
    return w


def settle(qtbot, widget) -> None:
    """No worker may outlive the test's viewer."""
    widget.controller.cancel()
    qtbot.waitUntil(lambda: not widget.running and widget._classes_worker is None, timeout=120_000)


def wait_idle(qtbot, ctl, timeout: int = 240_000) -> None:
    qtbot.waitUntil(lambda: not ctl.running, timeout=timeout)


def set_view(viewer, center, zoom) -> None:
    viewer.scene.camera.center = center
    viewer.scene.camera.zoom = zoom
