"""JPEG and PNG through PIL, which decodes whole images only: up to a limit
they are decoded in memory with lazy levels, above it once into the cache.
The decoded size (from the header) is checked against the memory budget
first, and the layout is PIL's (H x W x C): never guessed."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as da
import numpy as np

from glnet.errors import GLNetError
from glnet.io.budget import check_decode
from glnet.io.cache import open_cached
from glnet.io.lazy import DASK_CHUNK, ImagePyramid, lazy_levels, read_error, to_rgb8

PIL_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_PIXELS = 1_000_000_000  # PIL's bomb guard stops at 179 Mpx; our users open bigger scenes


def _pil_open(path: Path):
    from PIL import Image

    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = old


def header_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header, nothing decoded."""
    with _pil_open(path) as im:
        w, h = im.size
    return h, w


def _pil_bytes(im) -> int:
    """What decoding ``im`` whole takes at its peak: PIL's copy and NumPy's."""
    w, h = im.size
    per_band = 2 if "16" in im.mode else 4 if im.mode in ("I", "F", "RGBX", "CMYK") else 1
    return 2 * w * h * max(len(im.getbands()), 3 if im.mode == "P" else 1) * per_band


def _pil_decode(path: Path) -> np.ndarray:
    from PIL import Image

    with _pil_open(path) as header:  # the header alone: size and mode
        w, h = header.size
        check_decode(path, _pil_bytes(header), f"the whole {w} x {h} px {header.format or 'image'}")
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                    a = np.asarray(im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB"))
                else:
                    a = np.asarray(im)
    except Exception as e:  # PIL raises many types for truncated/corrupt files
        raise read_error(path, "cannot decode image (corrupt or truncated?)", e) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if a.dtype.kind in "iu" and a.dtype != np.uint8:  # 16-bit PNGs come as I;16 or int32 "I"
        if a.min() < 0 or a.max() > 65535:
            raise GLNetError(f"{path}: {a.dtype} pixels outside 0..65535 are not supported")
        a = a.astype(np.uint16)
    return a


def open_pil(path: Path, cache_dir, flat_limit: int, progress) -> ImagePyramid:
    try:
        with _pil_open(path) as im:
            w, h = im.size
    except Exception as e:
        raise read_error(path, "not a readable JPEG/PNG", e) from None
    if h * w > flat_limit:

        def decode():
            a = _pil_decode(path)
            return to_rgb8(da.from_array(a, chunks=-1), path, channel_axis=2 if a.ndim == 3 else None).compute()

        return open_cached(path, cache_dir, decode, progress)
    a = _pil_decode(path)
    channels = 2 if a.ndim == 3 else None  # PIL images are H x W (x C): never guessed
    level0 = to_rgb8(da.from_array(a, chunks=(DASK_CHUNK, DASK_CHUNK, *a.shape[2:])), path, channel_axis=channels)
    return ImagePyramid(lazy_levels(level0), source=str(path))
