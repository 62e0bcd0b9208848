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
    try:
        qtbot.waitUntil(lambda: not widget._preload_timer.isActive(), timeout=10_000)  # the model's load has begun
    except RuntimeError:  # the widget is gone with its viewer (the test closed napari): nothing left to wait for
        return
    widget.controller.cancel()
    qtbot.waitUntil(lambda: not widget.running and widget._classes_worker is None, timeout=120_000)


def wait_idle(qtbot, ctl, timeout: int = 240_000) -> None:
    qtbot.waitUntil(lambda: not ctl.running, timeout=timeout)


def set_view(viewer, center, zoom) -> None:
    viewer.scene.camera.center = center
    viewer.scene.camera.zoom = zoom


def answer_dialog(choice: str, seen: list[str] | None = None, polls: int = 4800) -> None:
    """Click ``choice`` on the next modal message box, as a user would: a
    timer looks for it while the code under test waits in ``exec()``.
    ``seen`` collects the question asked."""
    answer_dialogs([choice], seen, polls)


def answer_dialogs(choices: list[str], seen: list[str] | None = None, polls: int = 4800) -> None:
    """Click ``choices`` in order on the next message boxes, one per box
    (looking for them for up to 2 minutes: a loaded machine is slow to ask)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication, QMessageBox

    left_to_click = list(choices)
    answered: list[object] = []  # the boxes themselves: a closed box's id() can be reused by the next

    def poll(left: int) -> None:
        boxes = [
            w
            for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.isVisible() and not any(w is a for a in answered)
        ]
        if boxes:
            box = boxes[-1]
            answered.append(box)
            if seen is not None:
                seen.append(box.text())
            choice = left_to_click.pop(0)
            (button,) = [b for b in box.buttons() if b.text().replace("&", "") == choice]
            button.click()
        if left_to_click and left:
            QTimer.singleShot(25, lambda: poll(left - 1))

    QTimer.singleShot(0, lambda: poll(polls))


def segmented_widget(viewer, qtbot, image, ckpt, store=None, name: str = "crop", region=None):
    """The widget after "Segment view" on ``image`` (or segmenting ``region``)
    has finished, optionally into ``store``."""
    w = open_widget(viewer, image, ckpt, name=name, batch_size=2)
    if store is not None:
        w.store.value = store
    if region is None:
        w.start()
    else:
        w.controller.segment_region(region)
    wait_idle(qtbot, w.controller)
    return w
