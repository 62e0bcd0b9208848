"""Reading a whole image into memory, for images up to tens of megapixels.

Huge images are read lazily, by region, through ``glnet.io.readers``; this is
the same reader with everything decoded at once.
"""

from __future__ import annotations

import os

import numpy as np

from glnet.errors import GLNetError
from glnet.io.pil import MAX_PIXELS
from glnet.io.readers import open_image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a JPEG, PNG, TIFF or (OME-)Zarr image,
    with the pixel rules of ``glnet.io.lazy`` (16-bit // 257, alpha dropped,
    grey replicated)."""
    pyramid = open_image(path, flat_limit=MAX_PIXELS)
    try:
        return np.ascontiguousarray(pyramid.levels[0].compute(scheduler="threads"))
    except GLNetError:
        raise
    except Exception as e:  # damaged tile data surfaces only when decoded
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GLNetError(f"{path}: cannot decode image (corrupt or truncated?): {msg}") from None
    finally:
        pyramid.close()
