"""TIFF and BigTIFF: tiles or strips read on demand (uncompressed data through
a memory map), pyramids stored in the file (SubIFDs, OME-TIFF levels) used as
they are, a big flat TIFF converted once into the cache.  A strip or tile
larger than the memory budget (a flat image stored as one strip, or a header
that lies about its size) is refused before decoding, and the series' axes
say where the samples are."""

from __future__ import annotations

import logging
from pathlib import Path

import dask.array as da
import numpy as np

from glnet.errors import GLNetError
from glnet.io.budget import check_chunk, check_decode, checked_array
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


def _squeeze_leading(x: da.Array, source, axes: str = "") -> tuple[da.Array, str]:
    axes = axes[-x.ndim :] if len(axes) >= x.ndim else ""
    while x.ndim > 3 and x.shape[0] == 1:
        x, axes = x[0], axes[1:]
    if x.ndim > 3:  # e.g. a time series or a z-stack
        raise GLNetError(f"{source}: cannot read an image of shape {tuple(x.shape)} as RGB")
    return x, axes


def _channel_axis(x: da.Array, axes: str, source) -> int | str | None:
    """Where tifffile's axes put the samples (S) or channels (C)."""
    if x.ndim == 2:
        return None
    for name in "SC":
        if name in axes:
            axis = axes.index(name)
            if axis not in (0, 2):
                raise GLNetError(f"{source}: channels on axis {axis} of {axes} {tuple(x.shape)} cannot be read as RGB")
            return axis
    return "auto"  # the file does not say


def _tiff_level(tif, series, i: int) -> tuple[da.Array, tuple[int, ...]]:
    """Level ``i`` as a dask array (chunks a few native tiles/strips wide) and
    the file's native chunk shape."""
    import tifffile
    import zarr

    path = tif.filehandle.path
    try:  # uncompressed, contiguous: the OS reads any region of a memory map
        mapped = tifffile.memmap(path, series=0, level=i, mode="r")
    except (ValueError, OSError):
        stored = zarr.open_array(series.aszarr(level=i), mode="r")
        native = tuple(stored.chunks)
        return checked_array(stored, path, _dask_chunks(stored.shape, native)), native
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
            if any(n > 1 for n in native):  # decoded strip by strip or tile by tile
                check_chunk(path, native, x.dtype, "TIFF strip or tile")
            x, axes = _squeeze_leading(x, path, series.levels[i].axes)
            levels.append(to_rgb8(x, path, channel_axis=_channel_axis(x, axes, path)))
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
    huge_chunk = int(np.prod(natives[0])) > BIG_NATIVE_CHUNK
    if huge_chunk:  # one strip covers most of the image: decoded whole, once (read by regions, every region decodes it)
        check_decode(path, 2 * h * w * 3, f"the whole {w} x {h} px image (stored as one strip)")
    if h * w <= flat_limit:
        level0 = levels[0]
        if huge_chunk:
            level0 = da.from_array(level0.compute(), chunks=(DASK_CHUNK, DASK_CHUNK, 3))
        return ImagePyramid(lazy_levels(level0), pixel_size, unit, src, [tif])
    # big and flat: build the pyramid once, streaming level 0 (see open_image)

    def decode():
        return levels[0].compute() if huge_chunk else levels[0]

    try:
        return open_cached(path, cache_dir, decode, progress, pixel_size, unit)
    finally:
        tif.close()
