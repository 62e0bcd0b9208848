"""Writing synthetic scenes to files: JPEG/PNG in memory, TIFF tile by tile
(with a pyramid) at any size, and their ground-truth masks."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from glnet.atomic import atomic_write
from glnet.data.synthetic import SyntheticScene, check_int
from glnet.errors import GLNetError
from glnet.geometry import level_shapes
from glnet.io.labels import write_label
from glnet.io.pyramid import halve

log = logging.getLogger(__name__)

MAX_IN_MEMORY_PIXELS = 100_000_000
"""PNG and JPEG files (and PNG masks) are built whole in memory; beyond this, use TIFF."""

TIFF_TILE = 256


def _tiles(strips: Iterator[np.ndarray], on_strip: Callable[[np.ndarray], None] | None = None) -> Iterator[np.ndarray]:
    """TIFF tiles in file order from strips whose heights are multiples of TIFF_TILE (but the last)."""
    for strip in strips:
        if on_strip is not None:
            on_strip(strip)
        for r in range(0, strip.shape[0], TIFF_TILE):
            for c in range(0, strip.shape[1], TIFF_TILE):
                yield strip[r : r + TIFF_TILE, c : c + TIFF_TILE]


def _raw_strips(path: Path, shape: tuple[int, ...], rows: int) -> Iterator[np.ndarray]:
    """Read a raw row-major uint8 array back from disk ``rows`` rows at a time."""
    row_items = int(np.prod(shape[1:]))
    with open(path, "rb") as f:
        for top in range(0, shape[0], rows):
            n = min(rows, shape[0] - top)
            yield np.fromfile(f, np.uint8, n * row_items).reshape(n, *shape[1:])


def _render_strips(scene: SyntheticScene, block: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The scene as full-width (RGB, labels) strips of ``block`` rows, rendered ``block`` x ``block`` at a time."""
    for top in range(0, scene.height, block):
        bottom = min(top + block, scene.height)
        rgb = np.empty((bottom - top, scene.width, 3), np.uint8)
        lab = np.empty((bottom - top, scene.width), np.uint8)
        for left in range(0, scene.width, block):
            right = min(left + block, scene.width)
            rgb[:, left:right], lab[:, left:right] = scene.render(top, left, bottom, right)
        log.debug("rendered rows %d..%d of %d", top, bottom, scene.height)
        yield rgb, lab


def write_scene(
    image_path: str | os.PathLike[str],
    height: int,
    width: int,
    seed: int = 0,
    mask_path: str | os.PathLike[str] | None = None,
    tile: int = 1024,
    pyramid: bool = True,
    compression: str = "zlib",
) -> None:
    """Write a synthetic scene (and optionally its ground truth) to disk.

    ``.tif``/``.tiff`` images are written tile by tile (256 px TIFF tiles,
    BigTIFF when large) with, if ``pyramid``, 2x-downsampled SubIFD levels down
    to below 512 px, built from the level above through temporary raw files, so
    memory stays bounded (about ``tile`` rows of the full width) at any size.
    ``.png``/``.jpg`` images are built whole in memory, so they are refused
    above 100 Mpx.  ``mask_path`` gets the labels: ``.png`` as a DeepGlobe
    colour mask (in-memory sizes), ``.tif``/``.tiff`` as a tiled single-channel
    uint8 index mask (any size).  ``tile`` is the side of the rendered blocks,
    rounded up to a multiple of 256.  ``compression`` is any tifffile codec
    name (``"zlib"`` is lossless; ``"jpeg"`` is smaller and lossy).
    """
    scene = SyntheticScene(height, width, seed)
    tile = check_int(tile, "tile", 1)
    block = -(-tile // TIFF_TILE) * TIFF_TILE
    image_path = Path(image_path)
    suffix = image_path.suffix.lower()
    if suffix not in (".tif", ".tiff", ".png", ".jpg", ".jpeg"):
        raise GLNetError(f"{image_path}: unsupported image type {image_path.suffix!r}; use .tif, .tiff, .png or .jpg")
    mask_path = None if mask_path is None else Path(mask_path)
    mask_suffix = None if mask_path is None else mask_path.suffix.lower()
    if mask_path is not None and mask_suffix not in (".png", ".tif", ".tiff"):
        raise GLNetError(f"{mask_path}: unsupported mask type {mask_path.suffix!r}; use .png (colour) or .tif (index)")
    pixels = height * width
    in_memory = suffix not in (".tif", ".tiff")
    for path, needs_memory in ((image_path, in_memory), (mask_path, mask_suffix == ".png")):
        if path is not None and needs_memory and pixels > MAX_IN_MEMORY_PIXELS:
            raise GLNetError(
                f"{path}: a {height} x {width} scene is too large to build in memory "
                f"(over {MAX_IN_MEMORY_PIXELS // 1_000_000} Mpx); write .tif files instead"
            )
        if path is not None and not path.parent.is_dir():
            raise GLNetError(f"cannot write {path}: the folder {path.parent} does not exist")

    start = time.perf_counter()
    # Temporaries (labels, pyramid levels) live beside the output: same disk, removed at the end.
    with tempfile.TemporaryDirectory(prefix=".synthetic-", dir=image_path.parent) as tmp:
        workdir = Path(tmp)
        labels_full = np.empty((height, width), np.uint8) if mask_suffix == ".png" else None
        with open(workdir / "labels.raw", "wb") as labels_raw:

            def rgb_strips() -> Iterator[np.ndarray]:
                """Rendered strips, with their labels kept aside for the mask."""
                top = 0
                for rgb, lab in _render_strips(scene, block):
                    if labels_full is not None:
                        labels_full[top : top + lab.shape[0]] = lab
                    elif mask_path is not None:
                        labels_raw.write(lab.tobytes())
                    top += lab.shape[0]
                    yield rgb

            strips = rgb_strips()
            if in_memory:
                rgb = np.empty((height, width, 3), np.uint8)
                for top, strip in zip(range(0, height, block), strips):
                    rgb[top : top + strip.shape[0]] = strip
                _write_flat(image_path, rgb)
            else:
                _write_pyramid(
                    image_path,
                    strips,
                    level_shapes((height, width)) if pyramid else [(height, width)],
                    compression,
                    workdir,
                )
        if labels_full is not None and mask_path is not None:
            write_label(mask_path, labels_full, color=True)
        elif mask_path is not None:
            strips = _raw_strips(workdir / "labels.raw", (height, width), TIFF_TILE)
            with atomic_write(mask_path) as f, tifffile.TiffWriter(f, bigtiff=pixels > 2**31) as tw:
                tw.write(
                    _tiles(strips),
                    shape=(height, width),
                    dtype=np.uint8,
                    tile=(TIFF_TILE, TIFF_TILE),
                    photometric="minisblack",
                    compression="zlib",
                )
    log.info(
        "wrote a %d x %d synthetic scene (seed %d) to %s in %.1f s",
        height,
        width,
        seed,
        image_path,
        time.perf_counter() - start,
    )


def _write_flat(path: Path, rgb: np.ndarray) -> None:
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    options = {"quality": 92} if fmt == "JPEG" else {}
    try:
        with atomic_write(path) as f:
            Image.fromarray(rgb).save(f, format=fmt, **options)
    except (OSError, ValueError) as exc:  # e.g. JPEG's 65500 px limit
        raise GLNetError(f"cannot write {path}: {exc}") from exc


def _write_pyramid(
    path: Path, strips: Iterator[np.ndarray], shapes: list[tuple[int, int]], compression: str, workdir: Path
) -> None:
    """Write level 0 from ``strips``, then each level from the raw file the level above left behind."""
    h, w = shapes[0]
    try:
        with atomic_write(path) as f, tifffile.TiffWriter(f, bigtiff=h * w * 3 > 2**31) as tw:
            for level, shape in enumerate(shapes):
                last = level + 1 == len(shapes)
                with open(workdir / f"level{level + 1}.raw", "wb") as sink:
                    on_strip = None if last else (lambda s, sink=sink: sink.write(halve(s).tobytes()))
                    if level > 0:
                        strips = _raw_strips(workdir / f"level{level}.raw", (*shape, 3), 2 * TIFF_TILE)
                    tw.write(
                        _tiles(strips, on_strip),
                        shape=(*shape, 3),
                        tile=(TIFF_TILE, TIFF_TILE),
                        dtype=np.uint8,
                        photometric="rgb",
                        compression=compression,
                        subifds=len(shapes) - 1 if level == 0 else None,  # level 0 holds the others
                        subfiletype=1 if level > 0 else None,  # a reduced-resolution image
                    )
                if level > 0:
                    (workdir / f"level{level}.raw").unlink()
    except (ValueError, KeyError) as exc:  # e.g. an unknown codec name
        raise GLNetError(f"cannot write {path}: {exc}") from exc
