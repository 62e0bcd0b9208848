"""npe2 writer: a Labels layer → a glnet label store (OME-Zarr, NGFF 0.5).

The store is :class:`glnet.store.labelstore.LabelStore`, so the file opens again in
napari through our reader, in ome-zarr tools as an OME-Zarr label image, and
in ``glnet export`` for retraining.  Level 0 is copied in strips of whole
store chunks, so a multiscale (dask/zarr) layer of any size is never held in
memory; the coarser levels are the store's own mode-downsampled ones.

Never loses data: the new store is written beside the target and swapped in
only when complete; an existing path is replaced only if it is a glnet label
store (never an arbitrary folder); saving a store layer onto its own store is
a no-op (its accepted edits are already on disk, with their edit log).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.store.labelstore import LabelStore

from .layers import level0
from .workers import notify

log = logging.getLogger(__name__)

CHUNK = 512
MIN_SIZE = 256


def _strips(shape: tuple[int, int], rows: int):
    for top in range(0, shape[0], rows):
        yield top, min(top + rows, shape[0])


def _classes(level0: Any, meta: dict) -> ClassTable:
    """The layer's glnet class table, else generic classes up to its largest label."""
    listed = (meta.get("metadata") or {}).get("glnet_classes")
    if listed:
        return ClassTable.from_list(listed)
    high = 0
    for top, bottom in _strips(level0.shape, CHUNK):
        strip = np.asarray(level0[top:bottom])
        if strip.size and strip.min() < 0:
            raise GLNetError("labels hold negative values; a label store holds class indices 0, 1, ...")
        high = max(high, int(strip.max()) if strip.size else 0)
    return ClassTable.default(high + 1)


def _is_glnet_store(path: Path) -> bool:
    try:
        LabelStore.open(path, mode="r")
    except GLNetError:
        return False
    return True


def write_label_store(path: str | os.PathLike[str], data: Any, meta: dict) -> list[str]:
    """Write a 2D labels layer's data (array or multiscale list) as a label store.

    Raises GLNetError for what the user can fix (not 2D, not integers, a path
    that exists and is not a glnet store).
    """
    path = Path(path)
    if path.suffix != ".zarr":
        path = path.with_name(path.name + ".zarr")
    labels = level0(data)
    if len(labels.shape) != 2:
        raise GLNetError(f"only 2D labels can be saved as a label store; this layer is {len(labels.shape)}D")
    if np.dtype(labels.dtype).kind not in "iub":
        raise GLNetError(f"labels must be integers, got {labels.dtype}")
    metadata = meta.get("metadata") or {}
    own = metadata.get("glnet_store")
    if own and path.exists() and Path(own).resolve() == path.resolve():
        log.info("%s is this layer's own store: its accepted edits are already saved", path)
        return [str(path)]
    if path.exists() and not _is_glnet_store(path):
        raise GLNetError(f"{path} exists and is not a glnet label store: choose another name")
    attrs = {}
    if own and Path(own).is_dir():  # keep where the labels came from (export needs the image)
        with contextlib.suppress(GLNetError):
            attrs = LabelStore.open(own, mode="r").attrs
    classes = _classes(labels, meta)
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        store = LabelStore.create(tmp, tuple(labels.shape), classes, chunk=CHUNK, min_size=MIN_SIZE, attrs=attrs)
        for top, bottom in _strips(store.shape, CHUNK):
            store.write((top, 0, bottom, store.shape[1]), np.asarray(labels[top:bottom]), edit=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, path)
    log.info("saved labels %s (%d x %d, %d classes) to %s", meta.get("name", ""), *store.shape, len(classes), path)
    return [str(path)]


def _swap_in(new: Path, target: Path) -> None:
    """Replace ``target`` (if any) by ``new``, the old one removed only after the rename."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer hook: problems become one napari notification."""
    try:
        return write_label_store(path, data, meta)
    except GLNetError as exc:
        notify("error", f"Labels not saved: {exc}")
        return []
