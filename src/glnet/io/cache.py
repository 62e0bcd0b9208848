"""The conversion cache: a big flat image (a JPEG/PNG that cannot be read by
region, a TIFF without a pyramid) is converted once into an OME-Zarr pyramid
that later opens read by region."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from glnet.errors import GLNetError
from glnet.io.lazy import ImagePyramid
from glnet.io.omezarr import open_zarr
from glnet.io.pyramid import write_ome_zarr

log = logging.getLogger(__name__)


def cache_dir_default() -> Path:
    """Where converted pyramids live: $GLNET_CACHE_DIR or ~/.cache/napari-glnet."""
    env = os.environ.get("GLNET_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "napari-glnet"


def cache_path(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached pyramid of ``path``: keyed by absolute path, size and mtime,
    so an edited or replaced file is converted again."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return Path(cache_dir or cache_dir_default()) / f"{path.stem}-{key}.ome.zarr"


def open_cached(path: Path, cache_dir, decode: Callable, progress, pixel_size=None, unit=None) -> ImagePyramid:
    out = cache_path(path, cache_dir)
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        log.info("converting %s once into the pyramid cache %s", path, out)
        try:
            write_ome_zarr(decode(), out, pixel_size=pixel_size, unit=unit, progress=progress)
        except GLNetError:
            if not out.exists():  # else another process finished the same conversion first
                raise
    else:
        log.info("using cached pyramid %s for %s", out, path)
    pyramid = open_zarr(out)
    pyramid.source = str(path)
    return pyramid
