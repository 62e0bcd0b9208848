"""GLNet's layers over one image: made, reused, kept in place, refreshed.

The controller decides what to segment; this decides how the result shows:
the overview and the store's labels as two Labels layers, reused for the
next session (removing a napari layer triggers a full ``gc.collect``:
seconds in a process holding a model), and GLNet's layers kept directly
above their image whatever the user adds or moves.  Main thread only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._reader import label_colormap
from .guided import REVIEWED_NAME, UNCERTAINTY_NAME
from .review import EDIT_LAYER_NAME
from .session import Overview, ViewSession, overview_placement

if TYPE_CHECKING:
    import napari

LABELS_NAME = "GLNet labels"
OVERVIEW_NAME = "GLNet overview"
# GLNet's layers, bottom to top, kept directly above their image
OWN_LAYERS = (UNCERTAINTY_NAME, OVERVIEW_NAME, LABELS_NAME, EDIT_LAYER_NAME, REVIEWED_NAME)


class ViewLayers:
    """The overview and labels layers of the session on screen, and the order
    of all of GLNet's layers above ``image``.

    ``on_shown(session)`` is called once both layers show a session;
    ``status`` receives what the user should read (the image was closed)."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        on_shown: Callable[[ViewSession], Any],
        status: Callable[[str], Any],
    ):
        self.viewer = viewer
        self.on_shown = on_shown
        self.status = status
        self.image = None  # the image layer GLNet's layers belong to
        self.session: ViewSession | None = None  # the session the layers show
        self.placement: dict = {"scale": (1.0, 1.0), "translate": (0.0, 0.0)}  # the image's, for the labels
        self._restacking = False
        self._told: ViewSession | None = None  # the session on_shown was called for
        for name in ("inserted", "moved", "reordered"):
            getattr(viewer.layers.events, name).connect(self.restack)
        viewer.layers.events.removed.connect(self._on_layer_removed)

    def close(self) -> None:
        for name in ("inserted", "moved", "reordered"):
            getattr(self.viewer.layers.events, name).disconnect(self.restack)
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)

    def shows(self, session: ViewSession) -> bool:
        """Whether both layers show ``session`` now."""
        layers = self.viewer.layers
        return self.session is session and LABELS_NAME in layers and OVERVIEW_NAME in layers

    def show(self, session: ViewSession, image) -> None:
        """Show ``session``'s overview and store over ``image``, reusing our
        layers where they fit.

        Making a napari layer freezes the GUI thread 0.4-0.8 s (Qt controls,
        vispy visuals), and so does the review side when told (it adds its
        own layer), so each happens in an event-loop turn of its own, after
        the overview is drawn: a labels layer still to be made is made after
        the first overview shown (:meth:`show_overview`), or at once by
        :meth:`refresh` when labels are written first."""
        self.session, self.image = session, image
        overview = session.current_overview()
        place = overview_placement(overview.step, self.placement["scale"], self.placement["translate"])
        self._put(OVERVIEW_NAME, overview.labels, False, place)
        if self._reusable(LABELS_NAME, len(session.store.levels) > 1) is not None:
            self._show_labels()
        else:
            self.restack()

    def _show_labels(self, tell_later: bool = False) -> None:
        """Put the store's labels into the labels layer (made if missing), then
        tell ``on_shown`` (``tell_later``: in the next event-loop turn)."""
        from qtpy.QtCore import QTimer

        session = self.session
        levels = session.display_levels(_token())
        if LABELS_NAME not in self.viewer.layers:
            self._told = None  # a new layer: the review side must be given it
        self._put(LABELS_NAME, _layer_data(levels), len(levels) > 1, self.placement)
        self.restack()
        if tell_later:
            QTimer.singleShot(0, lambda: self.session is session and self._tell())
        else:
            self._tell()

    def _tell(self) -> None:
        """``on_shown`` once per session shown in a labels layer."""
        if self._told is not self.session:
            self._told = self.session
            self.on_shown(self.session)

    def _put(self, name: str, data, multiscale: bool, place: dict) -> None:
        """Our layer ``name`` showing ``data`` at ``place``: reused where it can be, else made."""
        session = self.session
        colormap = label_colormap(session.classes)
        features = {"index": np.arange(len(session.classes)), "class": list(session.classes.names)}
        metadata = {"glnet_classes": session.classes.to_list(), "glnet_store": str(session.store.path)}
        layer = self._reusable(name, multiscale)
        if layer is None:
            layer = self.viewer.add_labels(
                data,
                name=name,
                multiscale=multiscale,
                colormap=colormap,
                features=features,
                opacity=0.5,
                metadata=metadata,
                **place,
            )
        else:
            layer.data, layer.colormap, layer.features, layer.metadata = data, colormap, features, metadata
            layer.scale, layer.translate = place["scale"], place["translate"]
        layer.editable = False  # views of the store and of the model: corrections go through the review layer
        layer.visible = True

    def hide(self) -> None:
        """Hide GLNet's layers (their store was set aside or their image closed);
        they are reused by the next session."""
        self.session = None
        self._hide_own()

    def _hide_own(self) -> None:
        for layer in self.viewer.layers:
            if layer.name in OWN_LAYERS:
                layer.visible = False

    def refresh(self) -> None:
        """Re-read the store into the labels layer (after a write; made if it
        is still missing), and hide the overview where labels now are."""
        if self.session is None:
            return
        if LABELS_NAME not in self.viewer.layers:
            self._show_labels()
        else:
            layer = self.viewer.layers[LABELS_NAME]
            layer.data = _layer_data(self.session.display_levels(_token()))
            layer.editable = False  # a single-level store is not multiscale, and napari would let it be painted
            self._tell()
        self.show_overview(self.session.current_overview())

    def show_overview(self, overview: Overview) -> None:
        """Draw ``overview``; the first time, make the labels layer if it is
        missing (in the next event-loop turn: the overview is painted first)."""
        from qtpy.QtCore import QTimer

        if OVERVIEW_NAME in self.viewer.layers:
            layer = self.viewer.layers[OVERVIEW_NAME]
            layer.data = overview.labels
            layer.editable = False
        session = self.session
        if session is not None and LABELS_NAME not in self.viewer.layers:
            QTimer.singleShot(
                0,
                lambda: self.session is session and LABELS_NAME not in self.viewer.layers and self._show_labels(True),
            )

    def restack(self, _event=None) -> None:
        """Keep GLNet's layers directly above their image, in the order
        the model's confidence (under the labels being reviewed), overview,
        labels, then the review's (edit, reviewed regions): a layer added
        later (another image) never covers them."""
        if self._restacking or self.image is None:
            return
        layers = self.viewer.layers
        ours = [layer for layer in layers if layer.name in OWN_LAYERS]
        image = _index(layers, self.image)
        if image is None or not ours:
            return
        ours.sort(key=lambda layer: OWN_LAYERS.index(layer.name))
        own = {id(layer) for layer in ours}
        wanted = [layer for layer in layers if id(layer) not in own]
        at = wanted.index(layers[image]) + 1
        wanted[at:at] = ours
        if [id(x) for x in wanted] == [id(x) for x in layers]:
            return
        self._restacking = True
        try:
            for target, layer in enumerate(wanted):
                current = _index(layers, layer)
                if current != target:
                    layers.move(current, target)
        finally:
            self._restacking = False

    def _on_layer_removed(self, event) -> None:
        """The image went: its GLNet layers are hidden (and reused for the next image)."""
        if self.image is None or event.value != self.image:
            return
        self.image = None
        self._hide_own()
        self.status("the image was closed: its GLNet layers are hidden (its labels stay in the label store)")

    def _reusable(self, name: str, multiscale: bool):
        """Our layer ``name`` if it can take the new data in place, else None (removed if it cannot)."""
        from napari.layers import Labels

        layers = self.viewer.layers
        if name not in layers:
            return None
        layer = layers[name]
        if isinstance(layer, Labels) and bool(layer.multiscale) == multiscale:
            return layer
        layers.remove(name)
        return None


def _token() -> str:
    """A name never used before for the store's dask graph: napari's dask
    cache must not serve chunks read before a write."""
    return uuid.uuid4().hex


def _index(layers, layer) -> int | None:
    """Position of ``layer`` (compared with ==: napari's proxies are not the layers themselves)."""
    return next((i for i, x in enumerate(layers) if x == layer), None)


def _layer_data(levels: list):
    return levels if len(levels) > 1 else levels[0]
