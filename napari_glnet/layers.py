"""What the plugin reads off napari layers: level 0 and the part in view."""

from __future__ import annotations

from typing import Any

import numpy as np

from glnet.geometry import Region, enclosing


def level0(layer: Any) -> Any:
    """Level 0 (full resolution) of a layer, multiscale or not; also of a
    layer's data as a writer hook gets it (a list of levels), or of an array."""
    if hasattr(layer, "multiscale"):  # a napari layer (an array's .data is its buffer)
        return layer.data[0] if layer.multiscale else layer.data
    if isinstance(layer, list | tuple) or type(layer).__name__ == "MultiScaleData":
        return layer[0]
    return layer


def camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def to_data(viewer: Any, layer: Any, world_yx: Any) -> np.ndarray:
    """World (y, x) on the current slice -> the layer's data (y, x)."""
    point = list(viewer.dims.point)
    point[-2:] = world_yx
    return np.asarray(layer.world_to_data(point))[-2:]


def visible_region(viewer: Any, layer: Any, shape: tuple[int, int]) -> Region | None:
    """The level-0 pixels of ``layer`` in view: camera.center +- canvas size /
    2 / zoom (``layer.corner_pixels`` is a lazily refreshed superset), mapped
    into the layer's data and cut to ``shape``; None when none is in view.
    Without a canvas (a ViewerModel) the whole image; without a layer, world
    coordinates are taken as pixels."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is None:
        return (0, 0, int(shape[0]), int(shape[1]))
    cam = camera(viewer)
    half = np.asarray(canvas.size, float) / 2 / cam.zoom
    center = np.asarray(cam.center[-2:], float)
    corners = [center - half, center + half]
    if layer is not None:
        corners = [to_data(viewer, layer, c) for c in corners]
    return enclosing(corners, shape)


__all__ = ["camera", "level0", "to_data", "visible_region"]
