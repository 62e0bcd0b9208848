"""TIFF and BigTIFF: tiles or strips read on demand (uncompressed data through
a memory map), pyramids stored in the file (SubIFDs, OME-TIFF levels) used as
they are, a big flat TIFF converted once into the cache."""

from __future__ import annotations

import logging
from pathlib import Path

import dask.array as da
import numpy as np

from glnet.errors import GLNetError
from glnet.io.cache import open_cached
from glnet.io.lazy import DASK_CHUNK, ImagePyramid, extend_levels, lazy_levels, read_error, to_rgb8

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
BIG_NATIVE_CHUNK = 16_000_000  # px: a TIFF strip this big is decoded whole anyway
_UNITS = {
    "µm": "micrometer",
    "um": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
}
_UNITS.update({v: v for v in _UNITS.values()})


def _tiff_pixel_size(tif, page) -> tuple[tuple[float, float] | None, str | None]:
    if tif.is_ome and tif.ome_metadata:
        import xml.etree.ElementTree as ET

        try:
            for el in ET.fromstring(tif.ome_metadata).iter():
                size_x = el.get("PhysicalSizeX")
                if el.tag.rsplit("}", 1)[-1] == "Pixels" and size_x:
                    sx, sy = float(size_x), float(el.get("PhysicalSizeY", size_x))
                    return (sy, sx), _UNITS.get(el.get("PhysicalSizeXUnit", "µm"))
        except (ET.ParseError, ValueError):
            log.warning("ignoring unreadable OME metadata in %s", tif.filehandle.path)
    per_um = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}.get(int(page.resolutionunit or 1))  # inch, cm, mm, µm
    xres, yres = page.resolution
    if per_um is None or not xres or not yres:
        return None, None
    return (per_um / yres, per_um / xres), "micrometer"


def _check_complete(tif, series, path: Path) -> None:
    size = tif.filehandle.size
    for level in series.levels:
        for page in level.pages:
            if page is None:
                continue
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
            if ends and max(ends) > size:
                raise GLNetError(f"{path}: truncated TIFF (pixel data runs past the end of the {size}-byte file)")


def _squeeze_leading(x: da.Array, source) -> da.Array:
    while x.ndim > 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim > 3:  # e.g. a time series or a z-stack
        raise GLNetError(f"{source}: cannot read an image of shape {tuple(x.shape)} as RGB")
    return x


def _tiff_level(tif, series, i: int) -> tuple[da.Array, tuple[int, ...]]:
    """Level ``i`` as a dask array (chunks a few native tiles/strips wide) and
    the file's native chunk shape."""
    import tifffile
    import zarr

    try:  # uncompressed, contiguous: the OS reads any region of a memory map
        mapped = tifffile.memmap(tif.filehandle.path, series=0, level=i, mode="r")
    except (ValueError, OSError):
        stored = zarr.open_array(series.aszarr(level=i), mode="r")
        native = tuple(stored.chunks)
        return da.from_zarr(stored, chunks=_dask_chunks(stored.shape, native)), native
    native = (1,) * mapped.ndim  # any region is cheap to read
    return da.from_array(mapped, chunks=_dask_chunks(mapped.shape, native), asarray=False, lock=False), native


def _dask_chunks(shape: tuple[int, ...], native: tuple[int, ...]) -> tuple[int, ...]:
    """A few native tiles/strips per dask chunk, about DASK_CHUNK px a side."""
    return tuple(n if n <= 4 else min(n, c * max(1, round(DASK_CHUNK / c))) for n, c in zip(shape, native))


def open_tiff(path: Path, cache_dir, flat_limit: int, progress) -> ImagePyramid:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as e:
        raise read_error(path, "not a readable TIFF", e) from None
    try:
        series = tif.series[0]
        _check_complete(tif, series, path)
        pixel_size, unit = _tiff_pixel_size(tif, series.pages[0] if series.pages else tif.pages[0])
        levels, natives = [], []
        for i in range(len(series.levels)):
            x, native = _tiff_level(tif, series, i)
            levels.append(to_rgb8(_squeeze_leading(x, path), path))
            natives.append(native)
    except GLNetError:
        tif.close()
        raise
    except Exception as e:
        tif.close()
        raise read_error(path, "cannot read TIFF", e) from None
    src = str(path)
    if len(levels) > 1:
        log.info("%s: pyramidal TIFF with %d levels", path, len(levels))
        return ImagePyramid(extend_levels(levels), pixel_size, unit, src, [tif])
    h, w = levels[0].shape[:2]
    if h * w <= flat_limit:
        return ImagePyramid(lazy_levels(levels[0]), pixel_size, unit, src, [tif])
    # big and flat: build the pyramid once, streaming level 0 (see open_image)
    huge_chunk = int(np.prod(natives[0])) > BIG_NATIVE_CHUNK

    def decode():
        return levels[0].compute() if huge_chunk else levels[0]

    try:
        return open_cached(path, cache_dir, decode, progress, pixel_size, unit)
    finally:
        tif.close()
