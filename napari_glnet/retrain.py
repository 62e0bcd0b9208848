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
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from glnet.errors import GLNetError
from glnet.geometry import Region
from glnet.store.export import export_tiles, tile_regions
from glnet.store.labelstore import LabelStore

log = logging.getLogger(__name__)

WHICH = ("reviewed", "corrected", "all")


def image_data(image: Any) -> Any:
    """Level 0 of a napari Image layer (multiscale or not), or ``image`` itself."""
    data = getattr(image, "data", image)
    if getattr(image, "multiscale", False):
        return data[0]
    return data


def _source(store: LabelStore, image: Any) -> str | None:
    """What the manifest names as the source image: the store's record, else the layer's file."""
    recorded = store.attrs.get("source_image")
    if recorded:
        return str(recorded)
    path = getattr(getattr(image, "source", None), "path", None)
    return str(path) if path else getattr(image, "name", None)


def tiles_to_export(store: LabelStore, which: str = "reviewed", tile: int = 1024) -> list[Region]:
    """The tiles an export would write (for the progress bar and the button's tooltip)."""
    if which == "all":
        regions: list[Region] = [(0, 0, *store.shape)]
    elif which == "corrected":
        regions = store.corrected_regions()
    else:
        regions = store.reviewed_regions()
    return tile_regions(regions, tile)


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
        image_data(image),
        out_dir,
        tile=tile,
        which=which,
        val_fraction=val_fraction,
        seed=seed,
        overwrite=overwrite,
        source=_source(store, image),
        progress=progress,
    )


class Failed(str):
    """A user-caused failure's message, returned by a worker rather than raised
    (napari shows a worker's exception with its traceback; superqt even raises
    an exception that is *returned*, hence not the GLNetError itself)."""


def _export_steps(store: LabelStore, image: Any, out_dir: Path, options: dict) -> Iterator[int]:
    """Generator for a napari worker: yields once per tile written, returns the
    manifest or a :class:`Failed` message."""
    ticks: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["manifest"] = export_for_retraining(
                store, image, out_dir, progress=lambda done, total: ticks.put(done), **options
            )
        except GLNetError as exc:
            outcome["manifest"] = Failed(exc)
        except BaseException as exc:  # a bug: re-raised in the worker, so napari reports it
            outcome["bug"] = exc
        finally:
            ticks.put(None)

    thread = threading.Thread(target=run, name="glnet-export", daemon=True)
    thread.start()
    while (done := ticks.get()) is not None:
        yield done
    thread.join()
    if "bug" in outcome:
        raise outcome["bug"]
    return outcome["manifest"]


def start_export(
    store: LabelStore,
    image: Any,
    out_dir: str | os.PathLike[str],
    *,
    on_done: Callable[[dict], None] | None = None,
    **options: Any,
) -> Any:
    """Run :func:`export_for_retraining` in a napari worker with a progress bar
    (one tick per tile); ``on_done(manifest)`` runs on the GUI thread when it
    succeeds, a failure is one error notification.  Returns the started worker."""
    from napari.qt.threading import create_worker
    from napari.utils.notifications import show_error, show_info

    which, tile = options.get("which", "reviewed"), options.get("tile", 1024)
    total = len(tiles_to_export(store, which, tile))

    def finished(result: Any) -> None:
        if isinstance(result, Failed):
            show_error(f"Export for retraining failed: {result}")
            return
        n_val = sum(t["split"] == "val" for t in result["tiles"])
        show_info(
            f"Exported {len(result['tiles'])} tiles ({n_val} for validation) to {out_dir}: "
            f"train with  glnet train --data {out_dir}"
        )
        if on_done is not None:
            on_done(result)

    worker = create_worker(
        _export_steps,
        store,
        image,
        Path(out_dir),
        options,
        _progress={"total": total, "desc": "Export for retraining"},
    )
    worker.returned.connect(finished)
    worker.start()
    return worker
