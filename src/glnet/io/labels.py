"""Label masks: converting between colour and index masks, reading and writing label files.

An *index mask* holds one class index per pixel (what models and metrics use);
a *colour mask* draws each class in its table colour (what DeepGlobe ships and
what people look at). Only lossless formats are accepted: PNG and TIFF.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from glnet.atomic import atomic_write
from glnet.classes import DEEPGLOBE, ClassTable
from glnet.errors import GLNetError

log = logging.getLogger(__name__)

_PNG = (".png",)
_TIFF = (".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")


def _index_dtype(table: ClassTable) -> type[np.unsignedinteger]:
    return np.uint8 if len(table) <= 256 else np.uint16


def _is_binary(colors: np.ndarray) -> bool:
    return bool(np.isin(colors, (0, 255)).all())


def colors_to_index(rgb: np.ndarray, table: ClassTable = DEEPGLOBE) -> np.ndarray:
    """Decode an (H, W, 3) uint8 colour mask into an (H, W) index mask.

    When every table colour is 0 or 255 per channel (DeepGlobe), each channel
    is thresholded at 128 first, so JPEG-ish noise such as (250, 3, 251) still
    decodes. Other tables have no such safe threshold, so colours must match
    exactly. Pixels whose colour is not in the table become class 0, with one
    warning per call. The result is uint8, or uint16 for tables over 256 classes.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise GLNetError(f"a colour mask must have shape (H, W, 3), got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise GLNetError(f"a colour mask must be uint8, got {rgb.dtype}")
    colors = table.colors
    dtype = _index_dtype(table)
    if _is_binary(colors):
        # The top bit of each channel is the thresholded value: code = rgb bits, 0..7.
        code = (rgb[..., 0] >> 7) << 2 | (rgb[..., 1] >> 7) << 1 | (rgb[..., 2] >> 7)
        lut = np.zeros(8, dtype=dtype)
        known_lut = np.zeros(8, dtype=bool)
        table_codes = (colors[:, 0] >> 7) << 2 | (colors[:, 1] >> 7) << 1 | (colors[:, 2] >> 7)
        lut[table_codes] = np.arange(len(table), dtype=dtype)
        known_lut[table_codes] = True
        index, known = lut[code], known_lut[code]
    else:
        # A lookup table over all 2**24 colours (16-64 MB) is much faster than searching.
        code = rgb[..., 0].astype(np.uint32) << 16 | rgb[..., 1].astype(np.uint32) << 8 | rgb[..., 2]
        table_codes = colors[:, 0].astype(np.uint32) << 16 | colors[:, 1].astype(np.uint32) << 8 | colors[:, 2]
        lut_dtype = np.uint8 if len(table) < 255 else np.uint16 if len(table) < 65535 else np.uint32
        missing = np.iinfo(lut_dtype).max
        lut = np.full(1 << 24, missing, dtype=lut_dtype)
        lut[table_codes] = np.arange(len(table))
        index = lut[code]
        known = index != missing
        index[~known] = 0
        index = index.astype(dtype, copy=False)
    unknown = known.size - int(np.count_nonzero(known))
    if unknown:
        log.warning(
            "%d of %d pixels (%.2f%%) have colours not in the class table; they were set to class 0 (%s)",
            unknown,
            known.size,
            100.0 * unknown / known.size,
            table.names[0],
        )
    return index


def index_to_colors(index: np.ndarray, table: ClassTable = DEEPGLOBE) -> np.ndarray:
    """Draw an index mask in the table colours, giving an (H, W, 3) uint8 image."""
    index = np.asarray(index)
    _check_range(index, table)
    return table.colors[index]


def _check_range(index: np.ndarray, table: ClassTable) -> None:
    if index.dtype.kind not in "iu":
        raise GLNetError(f"an index mask must hold integers, got {index.dtype}")
    if index.size == 0:
        return
    low, high = int(index.min()), int(index.max())
    if low < 0:
        raise GLNetError(f"the index mask holds the negative value {low}; class indices start at 0")
    if high >= len(table):
        n = len(table)
        raise GLNetError(f"the index mask holds the value {high}, but the class table has {n} classes (0..{n - 1})")


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _JPEG:
        raise GLNetError(f"{path}: JPEG is lossy and corrupts class colours; use PNG or TIFF for label masks")
    if suffix not in _PNG + _TIFF:
        raise GLNetError(f"{path}: unsupported label file type {path.suffix!r}; use .png, .tif or .tiff")
    return suffix


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        if img.mode in ("P", "PA"):
            # Palette indices are arbitrary; the colours are what the author meant.
            return np.asarray(img.convert("RGB"))
        return np.asarray(img)


def read_label(path: str | os.PathLike[str], table: ClassTable = DEEPGLOBE) -> np.ndarray:
    """Read a label file as an (H, W) index mask (uint8, or uint16 when values need it).

    A single-channel file is an index mask and is returned unchanged (values
    beyond the table, such as an ignore value of 255, are kept). An RGB or RGBA
    file is a colour mask, decoded with :func:`colors_to_index`; palette PNGs
    are decoded through their colours.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.is_file():
        raise GLNetError(f"label file not found: {path}")
    try:
        array = _read_png(path) if suffix in _PNG else tifffile.imread(path)
    # imagecodecs (TIFF decompression) raises RuntimeError subclasses; PIL raises the others.
    except (OSError, ValueError, SyntaxError, EOFError, RuntimeError, Image.DecompressionBombError) as exc:
        raise GLNetError(f"cannot read label file {path}: {_first_line(exc)}") from exc
    if array.size == 0:
        raise GLNetError(f"cannot read label file {path}: it holds no pixels (is it damaged?)")

    if array.ndim == 3 and array.shape[2] in (1, 2):  # gray, or gray + alpha
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        rgb = array[..., :3]
        if rgb.dtype == np.uint16:
            rgb = (rgb >> 8).astype(np.uint8)
        if rgb.dtype != np.uint8:
            raise GLNetError(f"{path}: colour masks must be 8- or 16-bit, got {rgb.dtype}")
        return colors_to_index(np.ascontiguousarray(rgb), table)
    if array.ndim != 2:
        raise GLNetError(f"{path}: expected a single-channel or RGB image, got an array of shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind not in "iu":
        raise GLNetError(f"{path}: pixels are {array.dtype}; an index mask needs integer class indices")
    if array.dtype in (np.uint8, np.uint16):
        return array
    if array.min() < 0 or array.max() > 65535:
        raise GLNetError(f"{path}: pixel values outside 0..65535 cannot be class indices")
    return array.astype(np.uint8 if array.max() <= 255 else np.uint16)


def write_label(
    path: str | os.PathLike[str],
    index: np.ndarray,
    table: ClassTable = DEEPGLOBE,
    color: bool = False,
) -> None:
    """Write an (H, W) index mask as PNG or TIFF (chosen by the suffix).

    ``color=False`` stores class indices in one channel (uint8, or uint16 for
    tables over 256 classes); ``color=True`` stores the table colours as RGB.
    The file is written under a temporary name in the same directory and then
    renamed, so an interrupted write never leaves a truncated label file behind.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    index = np.asarray(index)
    if index.ndim != 2:
        raise GLNetError(f"an index mask must have shape (H, W), got {index.shape}")
    if color:
        array = index_to_colors(index, table)
    else:
        _check_range(index, table)
        array = index.astype(_index_dtype(table), copy=False)
    if not path.parent.is_dir():
        raise GLNetError(f"cannot write {path}: the folder {path.parent} does not exist")

    try:
        with atomic_write(path) as f:
            if suffix in _PNG:
                Image.fromarray(array).save(f, format="PNG")
            else:
                tifffile.imwrite(f, array, photometric="rgb" if color else "minisblack", compression="zlib")
    except OSError as exc:
        raise GLNetError(f"cannot write label file {path}: {_first_line(exc)}") from exc
    log.debug("wrote %s label %s (%dx%d)", "colour" if color else "index", path, array.shape[1], array.shape[0])
