"""Export corrected/reviewed regions of a label store as training tiles.

People review and correct the model's labels in napari; those regions are
what is worth retraining on. They are cut into tiles and written in the
DeepGlobe layout (``<id>_sat.jpg`` + ``<id>_mask.png``) that GLNet's training
code already reads, with a ``manifest.json`` recording where each tile came
from and whether it is for training or validation.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from glnet.atomic import atomic_write
from glnet.errors import GLNetError
from glnet.geometry import Region, overlaps_any
from glnet.io.labels import write_label
from glnet.outputs import refuse_overlap
from glnet.store.completion import overlaps_missing, require_complete
from glnet.store.labelstore import LabelStore

log = logging.getLogger(__name__)

FORMAT = "napari-glnet-export"
VERSION = 1
_WHICH = ("reviewed", "corrected", "all")


def _axis_starts(start: int, stop: int, tile: int) -> list[tuple[int, int]]:
    """Tile spans over [start, stop): a grid from ``start``, the last one shifted
    inward so every tile is full size (only a span shorter than ``tile`` is smaller)."""
    if stop - start <= tile:
        return [(start, stop)]
    spans = [(s, s + tile) for s in range(start, stop - tile + 1, tile)]
    if spans[-1][1] < stop:
        spans.append((stop - tile, stop))
    return spans


def tile_regions(regions: list[Region], tile: int) -> list[Region]:
    """Tiles covering ``regions``, in order, without duplicates."""
    out: dict[Region, None] = {}
    for t, l, b, r in regions:
        for top, bottom in _axis_starts(t, b, tile):
            for left, right in _axis_starts(l, r, tile):
                out[(top, left, bottom, right)] = None
    return list(out)


def _split(n: int, val_fraction: float, seed: int) -> list[str]:
    """Deterministic train/val split; at least one val tile when there are 2+ tiles."""
    n_val = round(n * val_fraction)
    if n >= 2 and val_fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = min(n_val, n)
    val = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    return ["val" if i in val else "train" for i in range(n)]


def _regions(store: LabelStore, which: str) -> list[Region]:
    if which not in _WHICH:
        raise GLNetError(f"which must be one of {', '.join(_WHICH)}, got {which!r}")
    if which == "all":
        return [(0, 0, *store.shape)]
    return store.reviewed_regions() if which == "reviewed" else store.corrected_regions()


def export_plan(
    store: LabelStore, which: str = "reviewed", tile: int = 1024, val_fraction: float = 0.2, seed: int = 0
) -> list[tuple[Region, str]]:
    """(tile, "train" or "val") of every tile an export would write, in order:
    what a GUI shows (and asks about) before writing anything."""
    tiles = tile_regions(_regions(store, which), tile)
    state = store.completion
    if not state.complete:  # only tiles inside written blocks can be exported
        tiles = [t for t in tiles if not overlaps_missing(t, state)]
    return list(zip(tiles, _split(len(tiles), val_fraction, seed)))


def holdout_tile(
    store: LabelStore, which: str = "reviewed", tile: int = 1024, val_fraction: float = 0.2, smallest: int = 256
) -> int | None:
    """The largest tile side, at most ``tile`` and halving down to ``smallest``,
    whose export holds at least one tile out for validation (so a fine-tune
    can tell whether it helped); None when even ``smallest`` cannot."""
    while tile >= smallest:
        if any(split == "val" for _, split in export_plan(store, which, tile, val_fraction)):
            return tile
        tile //= 2
    return None


def _crop(image: Any, region: Region) -> np.ndarray:
    t, l, b, r = region
    crop = np.asarray(image[t:b, l:r])
    if crop.shape != (b - t, r - l, 3) or crop.dtype != np.uint8:
        raise GLNetError(
            f"image crop {list(region)} is {crop.dtype} {crop.shape}; expected ({b - t}, {r - l}, 3) uint8"
        )
    return crop


def _prepare_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise GLNetError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise GLNetError(f"{out_dir} is not empty: pass --overwrite to write into it")
    out_dir.mkdir(parents=True, exist_ok=True)


def export_tiles(
    store: LabelStore,
    image: Any,
    out_dir: str | os.PathLike[str],
    *,
    tile: int = 1024,
    which: str = "reviewed",
    mask: str = "color",
    image_format: str = "jpg",
    val_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    source: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    finished_only: bool = False,
) -> dict:
    """Write image/mask tiles of the chosen regions and return the manifest.

    ``which``: "reviewed" (marked in napari), "corrected" (edited) or "all"
    (the whole label image). ``image`` is indexable as ``image[t:b, l:r]`` giving
    (h, w, 3) uint8 (numpy or dask). ``source`` names the image in the manifest
    and tile ids (default: the store's ``source_image`` attr, else its name).
    ``progress(done, total)`` is called after each tile.

    A store whose streaming run never finished holds class 0 where blocks
    were never written, which would train the model on wrong labels: it is
    refused, unless ``finished_only`` (``--finished-only``), which exports
    only the tiles inside written blocks and records in the manifest how
    many blocks were missing.
    """
    if which not in _WHICH:
        raise GLNetError(f"which must be one of {', '.join(_WHICH)}, got {which!r}")
    if mask not in ("color", "index"):
        raise GLNetError(f"mask must be 'color' or 'index', got {mask!r}")
    if image_format not in ("jpg", "png"):
        raise GLNetError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if tile < 1:
        raise GLNetError(f"tile must be a positive number of pixels, got {tile}")
    if not 0 <= val_fraction < 1:
        raise GLNetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if tuple(image.shape[:2]) != store.shape:
        raise GLNetError(
            f"the image is {image.shape[0]} x {image.shape[1]} px but the labels are {store.shape[0]} x {store.shape[1]}"
        )
    reviewed, corrected = store.reviewed_regions(), store.corrected_regions()
    if which == "reviewed" and not reviewed:
        raise GLNetError("no reviewed regions: mark regions reviewed or use --all")
    if which == "corrected" and not corrected:
        raise GLNetError("no corrected regions: edit labels first or use --all")
    state = store.completion
    if not finished_only:
        require_complete(state, store.path, "pass --finished-only to export only the tiles of written blocks")
    out_dir = Path(out_dir)
    image_file = source if source and Path(source).exists() else None
    refuse_overlap({"output folder": out_dir}, {"label store": store.path, "image": image_file})
    _prepare_dir(out_dir, overwrite)

    source = source or str(store.attrs.get("source_image") or store.name)
    stem = Path(source).name.split(".")[0].removesuffix("_sat") or "tile"
    plan = export_plan(store, which, tile, val_fraction, seed)
    if not state.complete:
        if not plan:
            raise GLNetError(f"{store.path}: every tile to export lies in blocks that were never written")
        log.warning("%s; exporting the %d tiles inside written blocks", state.describe(store.path), len(plan))
    splits = [split for _, split in plan]
    entries, ids = [], set()
    for i, (region, split) in enumerate(plan):
        t, l, b, r = region
        tid = f"{stem}_r{t}_c{l}"
        if tid in ids:  # same corner, different size (overlapping regions)
            tid = f"{tid}_h{b - t}_w{r - l}"
        ids.add(tid)
        img_name, mask_name = f"{tid}_sat.{image_format}", f"{tid}_mask.png"
        pixels = Image.fromarray(_crop(image, region))
        with atomic_write(out_dir / img_name) as f:
            if image_format == "jpg":
                pixels.save(f, format="JPEG", quality=95)
            else:
                pixels.save(f, format="PNG")
        write_label(out_dir / mask_name, store.read(region), store.classes, color=mask == "color")
        entries.append(
            {
                "id": tid,
                "image": img_name,
                "mask": mask_name,
                "region": [t, l, b, r],
                "split": split,
                "reviewed": overlaps_any(region, reviewed),
                "corrected": overlaps_any(region, corrected),
            }
        )
        if progress is not None:
            progress(i + 1, len(plan))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "source_image": source,
        "labels_store": str(store.path),
        "classes": store.classes.to_list(),
        "tile": tile,
        "mask": mask,
        "tiles": entries,
    }
    if not state.complete:  # training says so
        manifest["incomplete_store"] = {"blocks_missing": len(state.missing), "blocks": state.blocks}
    with atomic_write(out_dir / "manifest.json") as f:  # last: a folder with a manifest is complete
        f.write(json.dumps(manifest, indent=1).encode())
    log.info("exported %d tiles (%d val) to %s", len(entries), splits.count("val"), out_dir)
    return manifest
