"""Export corrected/reviewed regions of a label store as training tiles.

People review and correct the model's labels in napari; those regions are
what is worth retraining on. They are cut into tiles and written in the
DeepGlobe layout (``<id>_sat.jpg`` + ``<id>_mask.png``) that GLNet's training
code already reads, with a ``manifest.json`` recording where each tile came
from and whether it is for training or validation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from glnet.atomic import atomic_write
from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.labels import write_label
from glnet.labelstore import LabelStore, Region

log = logging.getLogger(__name__)

FORMAT = "napari-glnet-export"
VERSION = 1
_WHICH = ("reviewed", "corrected", "all")

EXPORT_EXAMPLES = """examples:
  # regions marked reviewed in napari, 1024 px tiles, colour masks, 20% validation
  glnet export scene_labels.zarr --image scene.tif -o retrain/
  # every corrected region, exact PNG images, index masks
  glnet export scene_labels.zarr --image scene.tif -o retrain/ --corrected --png --index-masks
  # the whole label image (e.g. checked predictions), 512 px tiles, fixed split seed
  glnet export scene_labels.zarr --image scene.tif -o retrain/ --all --tile 512 --seed 3 --overwrite
"""


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


def _overlaps(a: Region, regions: list[Region]) -> bool:
    return any(a[0] < r[2] and r[0] < a[2] and a[1] < r[3] and r[1] < a[3] for r in regions)


def _split(n: int, val_fraction: float, seed: int) -> list[str]:
    """Deterministic train/val split; at least one val tile when there are 2+ tiles."""
    n_val = round(n * val_fraction)
    if n >= 2 and val_fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = min(n_val, n)
    val = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    return ["val" if i in val else "train" for i in range(n)]


def _crop(image: Any, region: Region) -> np.ndarray:
    t, l, b, r = region
    crop = np.asarray(image[t:b, l:r])
    if crop.shape != (b - t, r - l, 3) or crop.dtype != np.uint8:
        raise GLNetError(f"image crop {list(region)} is {crop.dtype} {crop.shape}; expected ({b - t}, {r - l}, 3) uint8")
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
) -> dict:
    """Write image/mask tiles of the chosen regions and return the manifest.

    ``which``: "reviewed" (marked in napari), "corrected" (edited) or "all"
    (the whole label image). ``image`` is indexable as ``image[t:b, l:r]`` giving
    (h, w, 3) uint8 (numpy or dask). ``source`` names the image in the manifest
    and tile ids (default: the store's ``source_image`` attr, else its name).
    ``progress(done, total)`` is called after each tile.
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
        raise GLNetError(f"the image is {image.shape[0]} x {image.shape[1]} px but the labels are {store.shape[0]} x {store.shape[1]}")
    reviewed, corrected = store.reviewed_regions(), store.corrected_regions()
    if which == "all":
        regions: list[Region] = [(0, 0, *store.shape)]
    elif which == "reviewed":
        regions = reviewed
        if not regions:
            raise GLNetError("no reviewed regions: mark regions reviewed or use --all")
    else:
        regions = corrected
        if not regions:
            raise GLNetError("no corrected regions: edit labels first or use --all")
    out_dir = Path(out_dir)
    _prepare_dir(out_dir, overwrite)

    source = source or str(store.attrs.get("source_image") or store.name)
    stem = Path(source).name.split(".")[0].removesuffix("_sat") or "tile"
    tiles = tile_regions(regions, tile)
    splits = _split(len(tiles), val_fraction, seed)
    entries, ids = [], set()
    for i, (region, split) in enumerate(zip(tiles, splits)):
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
        entries.append({
            "id": tid, "image": img_name, "mask": mask_name, "region": [t, l, b, r], "split": split,
            "reviewed": _overlaps(region, reviewed), "corrected": _overlaps(region, corrected),
        })
        if progress is not None:
            progress(i + 1, len(tiles))
    manifest = {
        "format": FORMAT, "version": VERSION, "source_image": source, "labels_store": str(store.path),
        "classes": store.classes.to_list(), "tile": tile, "mask": mask, "tiles": entries,
    }
    with atomic_write(out_dir / "manifest.json") as f:  # last: a folder with a manifest is complete
        f.write(json.dumps(manifest, indent=1).encode())
    log.info("exported %d tiles (%d val) to %s", len(entries), splits.count("val"), out_dir)
    return manifest


def read_export(path: str | os.PathLike[str]) -> list[tuple[Path, Path, str]]:
    """(image, mask, split) of every tile in an export folder, checked.

    A folder with ``manifest.json`` (from :func:`export_tiles`) uses its split;
    a plain DeepGlobe folder (``*_sat.jpg``/``*_sat.png`` + ``*_mask.png``) is all "train".
    """
    folder = Path(path)
    if not folder.is_dir():
        raise GLNetError(f"export folder not found: {folder}")
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return _read_deepglobe(folder)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise GLNetError(f"cannot read {manifest_path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GLNetError(f"{manifest_path} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise GLNetError(f"{manifest_path} has version {manifest.get('version')!r}; this glnet reads version {VERSION}")
    tiles = manifest.get("tiles")
    if not isinstance(tiles, list) or not tiles:
        raise GLNetError(f"{manifest_path} lists no tiles")
    out = []
    for i, t in enumerate(tiles):
        if not isinstance(t, dict) or not {"image", "mask", "split"} <= t.keys():
            raise GLNetError(f"{manifest_path}: tile {i} needs 'image', 'mask' and 'split'")
        if t["split"] not in ("train", "val"):
            raise GLNetError(f"{manifest_path}: tile {i} has split {t['split']!r}; expected 'train' or 'val'")
        image, mask = folder / t["image"], folder / t["mask"]
        for p in (image, mask):
            if not p.is_file():
                raise GLNetError(f"{manifest_path}: tile {i} file {p.name} is missing")
        out.append((image, mask, t["split"]))
    return out


def export_classes(path: str | os.PathLike[str]) -> ClassTable | None:
    """The class table an export's manifest records, or None for a folder
    without one (a DeepGlobe-layout folder says nothing about its classes)."""
    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise GLNetError(f"cannot read {manifest_path}: {exc}") from None
    if not isinstance(manifest, dict) or "classes" not in manifest:
        return None
    return ClassTable.from_list(manifest["classes"])


def _read_deepglobe(folder: Path) -> list[tuple[Path, Path, str]]:
    images = sorted(folder.glob("*_sat.jpg")) + sorted(folder.glob("*_sat.png"))
    if not images:
        raise GLNetError(f"{folder} has no manifest.json and no *_sat.jpg/*_sat.png images")
    out = []
    for image in images:
        mask = image.with_name(image.name[: -len("_sat" + image.suffix)] + "_mask.png")
        if not mask.is_file():
            raise GLNetError(f"{image.name} has no mask {mask.name}")
        out.append((image, mask, "train"))
    return out


# -- command line ----------------------------------------------------------------
def add_parser(sub) -> None:
    """Add ``glnet export`` to the CLI's subparsers."""
    p = sub.add_parser(
        "export",
        help="export reviewed/corrected labels as training tiles",
        description="Cut regions of a label store and its image into DeepGlobe-layout training tiles.",
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("labels", metavar="LABELS.zarr", help="label store written by glnet / napari-glnet")
    p.add_argument("--image", required=True, help="the image the labels belong to")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for tiles and manifest.json")
    p.add_argument("--name", help="label image in the store (default: the first)")
    p.add_argument("--tile", type=int, default=1024, help="tile side in px (default 1024)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--all", dest="which", action="store_const", const="all", help="the whole label image")
    g.add_argument("--corrected", dest="which", action="store_const", const="corrected", help="regions that were edited")
    p.set_defaults(which="reviewed")
    p.add_argument("--index-masks", action="store_true", help="class-index masks instead of colour masks")
    p.add_argument("--png", action="store_true", help="lossless PNG images instead of JPEG")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of tiles for validation (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default 0)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_export)


def _open_image(path: Path):
    try:
        from glnet.readers import open_image
    except ImportError:
        from glnet.imageio import read_image

        return read_image(path)
    return open_image(path).levels[0]


def cmd_export(args) -> int:
    """Run ``glnet export``."""
    from tqdm import tqdm

    store = LabelStore.open(args.labels, args.name, mode="r")
    image_path = Path(args.image)
    image = _open_image(image_path)
    with tqdm(total=None, desc="export", unit="tile", disable=None, leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        manifest = export_tiles(
            store, image, args.output, tile=args.tile, which=args.which,
            mask="index" if args.index_masks else "color", image_format="png" if args.png else "jpg",
            val_fraction=args.val_fraction, seed=args.seed, overwrite=args.overwrite,
            source=str(image_path), progress=progress,
        )
    n_val = sum(t["split"] == "val" for t in manifest["tiles"])
    print(f"wrote {len(manifest['tiles'])} tiles ({n_val} val) to {args.output}")
    return 0
