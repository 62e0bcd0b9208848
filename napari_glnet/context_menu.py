"""The canvas's right-click menu.

napari has no context menu on its canvas, so a right press and release
without a drag (``viewer.mouse_drag_callbacks``) opens one; a right-drag
(napari's zoom) and any press while a Labels layer paints open nothing.
What the menu offers is its owner's business (``actions``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import napari

CLICK_TOLERANCE_PX = 4  # a right press and release closer than this is a click, not a drag
# (text, callback or None when disabled, tooltip)
Action = tuple[str, Callable[[], Any] | None, str]


class RightClickMenu:
    """Pops up ``actions(world_position)`` on a right-click of ``viewer``'s canvas."""

    def __init__(self, viewer: napari.viewer.Viewer, actions: Callable[[Any], list[Action]]):
        self.viewer = viewer
        self.actions = actions
        self.last = None  # the last menu opened (tests trigger its actions)
        viewer.mouse_drag_callbacks.append(self._on_mouse_drag)

    def close(self) -> None:
        if self._on_mouse_drag in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse_drag)

    def open(self, world_position):
        """Build the menu for a click at ``world_position`` and pop it up at the cursor."""
        from qtpy.QtGui import QCursor

        self.last = build_menu(self.actions(world_position))
        self.last.popup(QCursor.pos())
        return self.last

    def _painting(self) -> bool:
        from napari.layers import Labels

        active = self.viewer.layers.selection.active
        return isinstance(active, Labels) and str(active.mode) not in ("pan_zoom", "transform")

    def _on_mouse_drag(self, _viewer, event):
        """Right-click without drag (and not while painting) opens the menu."""
        if event.button != 2 or self._painting():
            return
        start = np.asarray(event.pos, float)
        position = tuple(event.position)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = moved or float(np.hypot(*(np.asarray(event.pos, float) - start))) > CLICK_TOLERANCE_PX
            yield
        if not moved:
            self.open(position)


def build_menu(actions: list[Action], parent=None):
    """A QMenu with one action per entry (disabled where the callback is None);
    showing it is the caller's business."""
    from qtpy.QtWidgets import QMenu

    menu = QMenu(parent)
    menu.setToolTipsVisible(True)
    for text, callback, tip in actions:
        action = menu.addAction(text)
        action.setToolTip(tip)
        action.setEnabled(callback is not None)
        if callback is not None:
            action.triggered.connect(lambda _checked=False, cb=callback: cb())
    return menu
