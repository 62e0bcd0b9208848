"""Lazy multiscale readers: any supported image as a pyramid of dask arrays.

``open_image`` picks the reader by the file: ``glnet.io.tiff``,
``glnet.io.pil`` (JPEG/PNG), ``glnet.io.omezarr``; each returns an
``ImagePyramid`` (``glnet.io.lazy``, with the pixel rules every format
follows) and never decodes a whole big image if the format lets it avoid
that.  A new format is one more module with an ``open_...(path, ...) ->
ImagePyramid`` and one more branch here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from glnet.errors import GLNetError
from glnet.io.cache import cache_dir_default, cache_path
from glnet.io.lazy import ImagePyramid, lazy_levels, to_rgb8, to_uint8
from glnet.io.omezarr import is_zarr_dir, open_zarr
from glnet.io.pil import MAX_PIXELS, PIL_SUFFIXES, open_pil
from glnet.io.tiff import TIFF_SUFFIXES, open_tiff

IMAGE_SUFFIXES = (*PIL_SUFFIXES, *TIFF_SUFFIXES, ".zarr")  # what open_image reads (a .zarr is a folder)


def open_image(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    flat_limit: int = 64_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> ImagePyramid:
    """Open an image as a lazy pyramid of (H, W, 3) uint8 RGB dask arrays.

    - TIFF/BigTIFF: tiles/strips are read on demand (uncompressed data via a
      memory map); pyramids stored in the file (SubIFDs, OME-TIFF levels) are
      used as they are.  A TIFF without a pyramid gets lazily halved levels
      when ``H * W <= flat_limit``; a bigger one is converted once, streaming
      level 0 block row by block row, into the OME-Zarr cache (computing the
      overview of a gigapixel TIFF on every pan would read the whole file).
    - OME-Zarr (NGFF 0.4 / zarr v2 and 0.5 / zarr v3) and plain zarr arrays:
      read chunk by chunk; a single level gets lazily halved levels.
    - JPEG/PNG cannot be read by region (PIL decodes whole images), so up to
      ``flat_limit`` pixels they are decoded in memory with lazy levels, and
      above it decoded ONCE into a cached OME-Zarr pyramid in ``cache_dir``
      (default $GLNET_CACHE_DIR or ~/.cache/napari-glnet) keyed by absolute
      path, size and mtime; later opens read the cache.

    ``progress(done, total)`` reports blocks written during such a conversion.
    Pixels follow the module's rules (alpha dropped, grey to RGB, 16-bit as
    value // 257, float [0, 1] times 255).  Raises GLNetError, one line
    naming the file, for missing, unknown, corrupt or unsupported images.
    """
    path = Path(path)
    if not path.exists():
        raise GLNetError(f"image not found: {path}")
    suffix = path.suffix.lower()
    if path.is_dir():
        if not is_zarr_dir(path):
            raise GLNetError(f"{path}: a folder that is not a zarr store")
        return open_zarr(path)
    if suffix in TIFF_SUFFIXES:
        return open_tiff(path, cache_dir, flat_limit, progress)
    if suffix in PIL_SUFFIXES:
        return open_pil(path, cache_dir, flat_limit, progress)
    known = ", ".join(IMAGE_SUFFIXES)
    raise GLNetError(f"{path}: unsupported image type {suffix!r} (use {known})")


__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ImagePyramid",
    "cache_dir_default",
    "cache_path",
    "lazy_levels",
    "open_image",
    "to_rgb8",
    "to_uint8",
]
