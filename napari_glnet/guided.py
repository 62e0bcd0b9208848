"""Guided review: where the model was unsure, what is reviewed, what is left.

The library keeps the model's confidence beside the labels
(:mod:`glnet.store.confidence`) and ranks blocks by it; this module shows it
in napari:

* "GLNet uncertainty": an image layer of the confidence, drawn strongest
  where the model was least sure and transparent where it was sure (or
  never predicted), toggled with ``UNCERTAINTY_KEY``;
* "GLNet reviewed": the reviewed regions as outlined rectangles;
* **Next uncertain region** (``NEXT_KEY``): the camera jumps to the least
  confident block nobody reviewed yet, then to the next one on each press;
* the review's progress (reviewed area, mean confidence of what is left).

No Qt here; napari only through the viewer and its layers.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from glnet.geometry import Region
from glnet.store.confidence import Block, ConfidenceMap, ReviewProgress, review_progress, uncertain_blocks
from glnet.store.labelstore import LabelStore

from .layers import camera

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

UNCERTAINTY_NAME = "GLNet uncertainty"
REVIEWED_NAME = "GLNet reviewed"
NEXT_KEY = "Shift+R"
"""Jump to the least confident unreviewed block (free in napari 0.9.2)."""
UNCERTAINTY_KEY = "Shift+K"
"""Show or hide the uncertainty layer (free in napari 0.9.2)."""
BLOCK = 512
"""Side (level-0 px) of the blocks ranked by confidence: about one screen at full resolution."""


def uncertainty_colormap():
    """Confidence 0..255 -> colour: transparent where nothing was predicted (0)
    or the model was sure, red where it was least sure."""
    from napari.utils.colormaps import Colormap

    controls = [0.0, 0.5 / 255, 1.5 / 255, 0.45, 0.7, 0.9, 1.0]
    colors = [
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0.9, 0.0, 0.1, 0.9],  # the least sure
        [1.0, 0.4, 0.0, 0.7],
        [1.0, 0.9, 0.0, 0.35],
        [1.0, 1.0, 0.6, 0.0],  # sure: transparent
        [1.0, 1.0, 1.0, 0.0],
    ]
    return Colormap(colors=colors, controls=controls, name="glnet_uncertainty", interpolation="linear")


def describe_progress(progress: ReviewProgress) -> str:
    """One line: reviewed area, what is left and how sure the model was about it."""
    text = f"Reviewed {progress.reviewed:.1%} of the image"
    if progress.predicted:
        text += f" ({progress.predicted:.0%} segmented)"
    if not math.isnan(progress.remaining_confidence):
        text += f"; left to review: mean confidence {progress.remaining_confidence:.0%}"
    return text + f"; {progress.corrections} accepted correction{'s' * (progress.corrections != 1)}"


class GuidedReview:
    """The guided-review layers and camera moves for ``store`` shown by ``store_layer``."""

    said = Signal(str)
    """What the last action did, in one line."""
    changed = Signal(object)
    """Emitted with the :class:`ReviewProgress` after every update."""

    def __init__(self, viewer: napari.Viewer, store: LabelStore, store_layer: Any = None, block: int = BLOCK) -> None:
        self.viewer = viewer
        self.store = store
        self.store_layer = store_layer
        self.block = block
        self.visited: list[Region] = []  # blocks "Next uncertain region" showed, in order
        self._keys: list[str] = []
        self.show_uncertainty = True
        self.show_reviewed = True

    # -- layers ----------------------------------------------------------------------
    def _placement(self) -> dict:
        layer = self.store_layer
        if layer is None:
            return {}
        return {"scale": tuple(layer.scale[-2:]), "translate": tuple(layer.translate[-2:])}

    def refresh(self) -> ReviewProgress:
        """Show the store's confidence and reviewed regions as they are now."""
        selection = self.viewer.layers.selection
        active = selection.active  # a layer added here must not take the image's keys and mode
        self._show_uncertainty()
        self._show_reviewed()
        if active is not None and active in self.viewer.layers and selection.active is not active:
            selection.active = active
        progress = review_progress(self.store)
        self.changed.emit(progress)
        return progress

    def _show_uncertainty(self) -> None:
        import dask.array as da

        cmap = ConfidenceMap.open(self.store, create=False)
        if cmap is None:
            return
        token = uuid.uuid4().hex[:8]  # napari's dask cache must not serve chunks read before a write
        levels = [da.from_zarr(z, name=f"glnet-confidence-{k}-{token}") for k, z in enumerate(cmap.levels)]
        data = levels if len(levels) > 1 else levels[0]
        layers = self.viewer.layers
        if UNCERTAINTY_NAME in layers:
            layer = layers[UNCERTAINTY_NAME]
            layer.data = data
        else:
            layer = self.viewer.add_image(
                data,
                name=UNCERTAINTY_NAME,
                multiscale=len(levels) > 1,
                colormap=uncertainty_colormap(),
                contrast_limits=(0, 255),
                opacity=0.8,
                blending="translucent",
                metadata={"glnet_confidence_of": str(self.store.path)},
                **self._placement(),
            )
        for key, value in self._placement().items():
            setattr(layer, key, value)
        layer.visible = self.show_uncertainty

    def _show_reviewed(self) -> None:
        rects = [np.array([[t, l], [t, r], [b, r], [b, l]], float) for t, l, b, r in self.store.reviewed_regions()]
        style = {
            "edge_color": "#40ff80",
            "face_color": [0.25, 1.0, 0.5, 0.2],
            "edge_width": max(2, max(self.store.shape) // 200),  # a few screen px with the whole image in view
        }
        layers = self.viewer.layers
        if REVIEWED_NAME in layers:
            layer = layers[REVIEWED_NAME]
            layer.data = rects
            layer.shape_type = "rectangle"
            for key, value in style.items():  # shapes added through .data get the layer's defaults
                setattr(layer, key, value)
        elif rects:
            layer = self.viewer.add_shapes(
                rects,
                shape_type="rectangle",
                name=REVIEWED_NAME,
                metadata={"glnet_reviewed_of": str(self.store.path)},
                **style,
                **self._placement(),
            )
        else:
            return
        layer.visible = self.show_reviewed

    def set_uncertainty_visible(self, visible: bool) -> None:
        self.show_uncertainty = bool(visible)
        if UNCERTAINTY_NAME in self.viewer.layers:
            self.viewer.layers[UNCERTAINTY_NAME].visible = self.show_uncertainty
        elif visible:
            self._show_uncertainty()

    def set_reviewed_visible(self, visible: bool) -> None:
        self.show_reviewed = bool(visible)
        if REVIEWED_NAME in self.viewer.layers:
            self.viewer.layers[REVIEWED_NAME].visible = self.show_reviewed

    def toggle_uncertainty(self) -> bool:
        self.set_uncertainty_visible(not self.show_uncertainty)
        self.said.emit(f"Uncertainty layer {'shown' if self.show_uncertainty else 'hidden'} ({UNCERTAINTY_KEY})")
        return self.show_uncertainty

    # -- the next uncertain region ---------------------------------------------------------
    def next_uncertain(self) -> Block | None:
        """Move the camera to the least confident unreviewed block not shown
        yet (after the last one, start again); None when none is left."""
        blocks = uncertain_blocks(self.store, self.block)
        if not blocks:
            self.said.emit(
                "Nothing left to guide: every segmented block is reviewed"
                if ConfidenceMap.open(self.store, create=False) is not None
                else "No confidence yet: segment the image first"
            )
            return None
        fresh = [b for b in blocks if b.region not in self.visited]
        if not fresh:  # every one was shown: round again, least confident first
            self.visited.clear()
            fresh = blocks
        block = fresh[0]
        self.visited.append(block.region)
        self.look_at(block.region)
        t, l, b, r = block.region
        self.said.emit(
            f"Least confident unreviewed block: rows {t}-{b}, columns {l}-{r}, mean confidence "
            f"{block.confidence:.0%} (1 of {len(blocks)} left): correct it, then Mark reviewed"
        )
        return block

    def look_at(self, region: Region) -> None:
        """Centre the camera on ``region`` and zoom so that it fills most of the canvas."""
        t, l, b, r = region
        centre = np.array([(t + b) / 2, (l + r) / 2])
        scale = np.ones(2)
        if self.store_layer is not None:
            scale = np.asarray(self.store_layer.scale[-2:], float)
            centre = np.asarray(self.store_layer.data_to_world(centre))[-2:]
        cam = camera(self.viewer)
        cam.center = tuple(centre)
        canvas = getattr(self.viewer, "canvas", None)
        if canvas is not None:
            size = np.asarray(canvas.size, float)
            extent = np.array([b - t, r - l], float) * scale
            cam.zoom = float(0.9 * np.min(size / np.maximum(extent, 1)))

    # -- keys and the end ----------------------------------------------------------------
    def bind_keys(self) -> None:
        for key, action in ((NEXT_KEY, self.next_uncertain), (UNCERTAINTY_KEY, self.toggle_uncertainty)):
            self.viewer.bind_key(key, lambda _viewer, action=action: action(), overwrite=True)
            self._keys.append(key)

    def close(self) -> None:
        for key in self._keys:
            self.viewer.bind_key(key, None)
        self._keys.clear()


__all__ = [
    "BLOCK",
    "NEXT_KEY",
    "REVIEWED_NAME",
    "UNCERTAINTY_KEY",
    "UNCERTAINTY_NAME",
    "GuidedReview",
    "describe_progress",
    "uncertainty_colormap",
]
