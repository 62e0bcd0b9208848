"""JPEG and PNG through PIL, which decodes whole images only: up to a limit
they are decoded in memory with lazy levels, above it once into the cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as da
import numpy as np

from glnet.errors import GLNetError
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


def _pil_decode(path: Path) -> np.ndarray:
    from PIL import Image

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
            return to_rgb8(da.from_array(_pil_decode(path), chunks=-1), path).compute()

        return open_cached(path, cache_dir, decode, progress)
    a = _pil_decode(path)
    level0 = to_rgb8(da.from_array(a, chunks=(DASK_CHUNK, DASK_CHUNK, *a.shape[2:])), path)
    return ImagePyramid(lazy_levels(level0), source=str(path))
