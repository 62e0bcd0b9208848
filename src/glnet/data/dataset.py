"""What training reads: the tiles of an export (its manifest, its split,
its class table) or a plain DeepGlobe-layout folder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.store.export import FORMAT, VERSION

log = logging.getLogger(__name__)


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
    partial = manifest.get("incomplete_store")
    if isinstance(partial, dict):
        log.warning(
            "%s was exported from an incomplete label store (%s of %s blocks never written): "
            "it holds only the tiles of written blocks",
            folder,
            partial.get("blocks_missing"),
            partial.get("blocks"),
        )
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
