"""Export corrected labels for retraining: the widget's "Export for retraining".

A thin client of :func:`glnet.store.export.export_tiles` (what ``glnet export``
runs): the reviewed (or corrected, or all) regions of a label store and the
image under them are cut into DeepGlobe-layout tiles with a ``manifest.json``,
the folder ``glnet train --data DIR`` reads (:func:`glnet.data.dataset.read_export`).

Embedding (the dock widget does this)::

    worker = start_export(store, image_layer, out_dir, which="reviewed",
                          on_done=lambda manifest: ...)   # a napari progress bar ticks per tile

Problems the user can cause (no reviewed regions, a non-empty folder, an image
of another size) end as one napari notification, never a traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from glnet.geometry import Region
from glnet.store.export import export_plan, export_tiles
from glnet.store.labelstore import LabelStore

from .layers import level0
from .workers import Failed, notify, relay

log = logging.getLogger(__name__)


def _source(store: LabelStore, image: Any) -> str | None:
    """What the manifest names as the source image: the store's record, else the layer's file."""
    recorded = store.attrs.get("source_image")
    if recorded:
        return str(recorded)
    path = getattr(getattr(image, "source", None), "path", None)
    return str(path) if path else getattr(image, "name", None)


def tiles_to_export(store: LabelStore, which: str = "reviewed", tile: int = 1024) -> list[Region]:
    """The tiles an export would write (for the progress bar and the button's tooltip)."""
    return [region for region, _ in export_plan(store, which, tile)]


def export_for_retraining(
    store: LabelStore,
    image: Any,
    out_dir: str | os.PathLike[str],
    *,
    which: str = "reviewed",
    tile: int = 1024,
    val_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Export ``which`` regions of ``store`` with ``image`` (an Image layer or an
    (H, W, 3) uint8 array) into ``out_dir``; returns the manifest.

    Colour masks and JPEG tiles, as DeepGlobe ships them and as ``glnet export``
    writes by default.
    """
    return export_tiles(
        store,
        level0(image),
        out_dir,
        tile=tile,
        which=which,
        val_fraction=val_fraction,
        seed=seed,
        overwrite=overwrite,
        source=_source(store, image),
        progress=progress,
    )


def _export_steps(store: LabelStore, image: Any, out_dir: Path, options: dict) -> Generator[int, None, Any]:
    """Generator for a napari worker: yields once per tile written, returns the
    manifest or a :class:`~napari_glnet.workers.Failed` message."""

    def call(report: Callable[..., None], _should_stop: Callable[[], bool]) -> dict:
        return export_for_retraining(store, image, out_dir, progress=lambda done, _total: report(done), **options)

    return (yield from relay(call, "glnet-export"))


def start_export(
    store: LabelStore,
    image: Any,
    out_dir: str | os.PathLike[str],
    *,
    on_done: Callable[[dict], None] | None = None,
    on_failed: Callable[[str], None] | None = None,
    start: bool = True,
    **options: Any,
) -> Any:
    """Run :func:`export_for_retraining` in a napari worker with a progress bar
    (one tick per tile); ``on_done(manifest)`` runs on the GUI thread when it
    succeeds, ``on_failed(message)`` when it cannot (default: one error
    notification).  Returns the worker (started unless ``start=False``)."""
    from napari.qt.threading import create_worker

    which, tile = options.get("which", "reviewed"), options.get("tile", 1024)
    total = len(tiles_to_export(store, which, tile))

    def finished(result: Any) -> None:
        if isinstance(result, Failed):
            (on_failed or (lambda m: notify("error", m)))(f"Export for retraining failed: {result}")
            return
        if on_done is not None:
            on_done(result)
        else:
            notify("info", describe_export(result, out_dir))

    worker = create_worker(
        _export_steps,
        store,
        image,
        Path(out_dir),
        options,
        _progress={"total": total, "desc": "Export for retraining"},
        _start_thread=False,
    )
    worker.returned.connect(finished)
    if start:
        worker.start()
    return worker


def describe_export(manifest: dict, out_dir: str | os.PathLike[str]) -> str:
    """One line: how many tiles went where, and what reads them."""
    tiles = manifest["tiles"]
    n_val = sum(t["split"] == "val" for t in tiles)
    return (
        f"Exported {len(tiles)} tile{'s' * (len(tiles) != 1)} of {manifest['tile']} px "
        f"({n_val} held out for validation) to {out_dir}: Fine-tune… trains on it"
    )
