"""napari reader: huge images as multiscale image layers, glnet label
stores as multiscale labels layers in their class colours.

Both come from the library (glnet.io.readers, glnet.store.labelstore): the plugin
only turns them into layer data.  A large flat JPEG/PNG is converted once
into a cached pyramid by glnet.io.readers, so napari never holds level 0.
"""

from __future__ import annotations

from pathlib import Path


def get_reader(path):
    """npe2 reader hook: a callable for paths we read, else None."""
    from glnet.io.readers import IMAGE_SUFFIXES
    from glnet.store.labelstore import is_label_store

    if not isinstance(path, str):
        return None
    p = Path(path)
    if is_label_store(p):
        return read_label_store
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return read_image
    return None


def read_image(path: str) -> list[tuple]:
    from glnet.io.readers import open_image

    pyramid = open_image(path)
    levels = pyramid.levels
    meta = {"name": Path(path).name, "rgb": True, "multiscale": len(levels) > 1}
    if pyramid.pixel_size:
        meta["scale"] = pyramid.pixel_size
    return [(levels if len(levels) > 1 else levels[0], meta, "image")]


def label_colormap(classes) -> dict:
    """{class index: RGBA} for napari's Labels (class 0 drawn too: it is a class)."""
    colors = {i: (*(c / 255 for c in info.color), 1.0) for i, info in enumerate(classes.classes)}
    colors[None] = (0.0, 0.0, 0.0, 0.0)
    return colors


def read_label_store(path: str) -> list[tuple]:
    import dask.array as da

    from glnet.store.labelstore import LabelStore

    store = LabelStore.open(path, mode="r")
    state = store.completion
    if not state.complete:  # unwritten blocks read as class 0: say so
        from .workers import notify

        notify("warning", state.describe(path))
    levels = [da.from_zarr(level) for level in store.levels]
    meta = {
        "name": f"{Path(path).stem} {store.name}",
        "multiscale": len(levels) > 1,
        "colormap": label_colormap(store.classes),
        "opacity": 0.5,
        "metadata": {
            "glnet_classes": store.classes.to_list(),
            "glnet_store": str(store.path),
            "glnet_missing_blocks": [list(b) for b in state.missing],
        },
    }
    return [(levels if len(levels) > 1 else levels[0], meta, "labels")]
