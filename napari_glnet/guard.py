"""Asking before unaccepted strokes could be lost: the dialogs and where they hook in.

The decisions live in :class:`~napari_glnet.review.ReviewController`
(``resolve``: accept, discard or cancel); this module is the Qt side:

* :func:`ask_with_dialog` — a question as a message box whose buttons are
  the choices, in GUI words ("Accept", "Discard", "Cancel");
* :func:`later` — run a callable once the current event is handled;
* :class:`CloseGuard` — an event filter on napari's main window (its close
  button, File › Close Window, Quit/Ctrl+Q all end in a Close event) and on
  the dock's close button: with unaccepted strokes it asks first, and Cancel
  keeps the window or the dock open.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QAbstractButton, QMessageBox, QWidget

ROLES = {
    "Accept": QMessageBox.ButtonRole.AcceptRole,
    "Restore": QMessageBox.ButtonRole.AcceptRole,
    "Overwrite": QMessageBox.ButtonRole.DestructiveRole,
    "Discard": QMessageBox.ButtonRole.DestructiveRole,
    "Start fresh": QMessageBox.ButtonRole.DestructiveRole,
    "Reset": QMessageBox.ButtonRole.DestructiveRole,
    "Continue": QMessageBox.ButtonRole.AcceptRole,
    "OK": QMessageBox.ButtonRole.AcceptRole,
    "Cancel": QMessageBox.ButtonRole.RejectRole,
}


def ask_with_dialog(parent: QWidget | None, title: str = "GLNet") -> Callable[[str, Sequence[str]], str]:
    """``ask(question, choices) -> choice``: a modal message box, one button per
    choice (the first is the default; Escape picks "Cancel", else the last)."""

    def ask(question: str, choices: Sequence[str]) -> str:
        box = QMessageBox(parent)
        box.setWindowTitle(title)
        box.setIcon(QMessageBox.Icon.Question)
        box.setText(question)
        buttons = {}
        for choice in choices:
            buttons[box.addButton(choice, ROLES.get(choice, QMessageBox.ButtonRole.ActionRole))] = choice
        first = next(iter(buttons))
        box.setDefaultButton(first)
        escape = next((b for b, c in buttons.items() if c == "Cancel"), list(buttons)[-1])
        box.setEscapeButton(escape)
        box.exec()
        return buttons.get(box.clickedButton(), buttons[escape])

    return ask


def later(call: Callable[[], Any]) -> None:
    """Run ``call`` on the GUI thread after the event being handled."""
    QTimer.singleShot(0, call)


class CloseGuard(QObject):
    """Asks ``may_close(doing)`` before napari's window closes or the dock's
    close button acts; False cancels (the event is swallowed).

    ``watch(widget)`` is called once the widget is docked (its window and
    dock exist then)."""

    def __init__(self, may_close: Callable[[str], bool], on_dock_closed: Callable[[], None]) -> None:
        super().__init__()
        self._may_close = may_close
        self._on_dock_closed = on_dock_closed
        self._watched: list[weakref.ref] = []  # weak: the guard must not keep napari's window alive

    def watch(self, widget: QWidget) -> None:
        targets = [widget.window(), _dock_close_button(widget)]
        targets = [t for t in targets if t is not None and t is not widget]
        if [t for t in targets] == [ref() for ref in self._watched]:
            return
        self.release()
        for target in targets:
            target.installEventFilter(self)
            self._watched.append(weakref.ref(target))

    def release(self) -> None:
        for ref in self._watched:
            target = ref()
            if target is not None:
                target.removeEventFilter(self)
        self._watched = []

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Close and isinstance(obj, QWidget) and obj.isWindow():
            if not self._may_close("closing napari"):
                event.ignore()
                return True
        elif (
            isinstance(obj, QAbstractButton)
            and event.type() == QEvent.Type.MouseButtonRelease
            and event.button() == Qt.MouseButton.LeftButton
            and obj.rect().contains(event.position().toPoint())
        ):
            if not self._may_close("closing the GLNet panel"):
                obj.setDown(False)
                return True
            self._on_dock_closed()
        return False


def _dock_close_button(widget: QWidget) -> QWidget | None:
    """The close button of the napari dock holding ``widget`` (its title bar's), if any."""
    from qtpy.QtWidgets import QDockWidget

    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    if parent is None:
        return None
    bar = parent.titleBarWidget()
    return getattr(bar, "close_button", None)


__all__ = ["CloseGuard", "ask_with_dialog", "later"]
