"""Reading whole images (up to a few tens of megapixels) as 8-bit RGB.

Huge images go through lazy pyramid readers instead; this is the simple
path for the engine and the CLI.  Rules, so results never depend on luck:
RGBA drops alpha, greyscale is replicated to RGB, 16-bit is scaled to 8-bit
by keeping the high byte (x >> 8), TIFF may be channel-first or -last.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import GLNetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
MAX_PIXELS = 1_000_000_000  # PIL's bomb guard stops at 179 Mpx; our users open bigger scenes


def _to_rgb8(a: np.ndarray, path) -> np.ndarray:
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise GLNetError(f"{path}: {a.dtype} pixels are not supported (8- or 16-bit integers only)")
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channel-first TIFF
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise GLNetError(f"{path}: cannot read an image of shape {a.shape} as RGB")
    if a.shape[2] in (1, 2):  # grey, grey + alpha
        a = np.repeat(a[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a JPEG, PNG or TIFF file."""
    path = Path(path)
    if not path.is_file():
        raise GLNetError(f"image not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise GLNetError(f"{path}: unsupported image type {suffix!r} (use {', '.join(IMAGE_SUFFIXES)})")
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            a = tifffile.imread(path)
        else:
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(path) as im:
                        im.load()
                        if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                            im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
                        a = np.asarray(im)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except GLNetError:
        raise
    except Exception as e:  # decoders raise many types for truncated/corrupt files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GLNetError(f"{path}: cannot decode image (corrupt or truncated?): {msg}") from None
    return _to_rgb8(a, path)
