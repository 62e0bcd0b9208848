"""An image as a lazy pyramid, and the pixel rules every reader applies.

napari and the tiled engine only ever look at a screenful or a patch at a
time, so the readers (``glnet.io.readers.open_image``) hand out levels of
dask arrays that decode a block when it is asked for.

Pixel rules (the same for every format, applied lazily per block):
RGBA drops alpha; greyscale (and grey + alpha) is replicated to RGB;
16-bit becomes 8-bit as ``value // 257`` (so 65535 -> 255, 257 -> 1);
floats are taken as [0, 1] and become ``round(v * 255)`` clipped to 0..255;
channel-first (C, H, W) and channel-last (H, W, C) are told apart by the
channel axis having 1-4 entries while both other axes are larger.
Anything else is a GLNetError naming the shape or dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from glnet.errors import GLNetError
from glnet.geometry import OVERVIEW_SIDE, level_shapes
from glnet.io.pyramid import halve

DASK_CHUNK = 1024  # target dask chunk side for lazily read levels


@dataclass
class ImagePyramid:
    """An image as levels of (H, W, 3) uint8 RGB dask arrays, level 0 first,
    each about half the size of the one before."""

    levels: list[da.Array]
    pixel_size: tuple[float, float] | None = None  # (y, x) in ``unit``, only when the file says so
    unit: str | None = None
    source: str = ""
    _handles: list = field(default_factory=list, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of level 0."""
        return int(self.levels[0].shape[0]), int(self.levels[0].shape[1])

    def close(self) -> None:
        """Close open files (TIFF) now instead of when garbage collected."""
        for h in self._handles:
            h.close()
        self._handles.clear()


def read_error(path, what: str, e: Exception) -> GLNetError:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return GLNetError(f"{path}: {what}: {msg}")


# -- pixel normalisation (lazy) ------------------------------------------------
def to_uint8(a: np.ndarray) -> np.ndarray:
    """The one pixel rule: uint16 // 257 (65535 -> 255), float [0, 1] x 255, bool x 255."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a // 257).astype(np.uint8)
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    a = np.nan_to_num(a.astype(np.float32, copy=False))  # float: [0, 1]
    return np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)


def _rgb8_block(a: np.ndarray) -> np.ndarray:
    a = to_uint8(a)
    if a.shape[2] in (1, 2):  # grey, grey + alpha
        return np.repeat(a[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _channel_axis(shape: tuple[int, ...], source) -> int | None:
    if len(shape) == 2:
        return None
    if len(shape) == 3:
        if shape[2] <= 4 and shape[0] > shape[2] and shape[1] > shape[2]:
            return 2
        if shape[0] <= 4 and shape[1] > shape[0] and shape[2] > shape[0]:
            return 0
    raise GLNetError(f"{source}: cannot read an image of shape {tuple(shape)} as RGB (want H x W with 1-4 channels)")


def to_rgb8(x: da.Array, source, channel_axis: int | str | None = "auto") -> da.Array:
    """(H, W, 3) uint8 view of a 2-D or 3-D dask array, computed per block."""
    if x.dtype not in (np.uint8, np.uint16, bool) and x.dtype.kind != "f":
        raise GLNetError(f"{source}: {x.dtype} pixels are not supported (8-/16-bit unsigned or float in [0, 1])")
    if channel_axis == "auto":
        channel_axis = _channel_axis(x.shape, source)
    if channel_axis is None:
        x = x[:, :, None]
    elif channel_axis == 0:
        x = da.moveaxis(x, 0, -1)
    if x.shape[2] not in (1, 2, 3, 4):
        raise GLNetError(f"{source}: {x.shape[2]} channels cannot be read as RGB (1-4 only)")
    if x.dtype == np.uint8 and x.shape[2] == 3 and x.numblocks[2] == 1:
        return x
    x = x.rechunk({2: -1})
    return da.map_blocks(_rgb8_block, x, dtype=np.uint8, chunks=(*x.chunks[:2], (3,)))


# -- lazy levels ---------------------------------------------------------------
def _even_chunks(x: da.Array) -> da.Array:
    """Rechunk so every chunk but the last is even along y and x: then
    block-wise halving tiles exactly."""
    new = {}
    for ax in (0, 1):
        if any(c % 2 for c in x.chunks[ax][:-1]):
            size = max(x.chunks[ax])
            new[ax] = max(2, size + size % 2)
    return x.rechunk(new) if new else x


def lazy_levels(level0: da.Array, overview: int = OVERVIEW_SIDE) -> list[da.Array]:
    """``level0`` plus lazily computed 2x area-mean levels (the same sizes and
    values :func:`glnet.io.pyramid.write_ome_zarr` writes), for images that
    carry no pyramid of their own."""
    levels = [level0]
    x = level0
    for _ in level_shapes(level0.shape[:2], overview)[1:]:
        x = _even_chunks(x)
        half = tuple(tuple(-(-c // 2) for c in x.chunks[ax]) for ax in (0, 1))
        x = da.map_blocks(halve, x, dtype=np.uint8, chunks=(*half, x.chunks[2]))
        regroup = {ax: DASK_CHUNK for ax in (0, 1) if len(half[ax]) > 1 and max(half[ax]) < DASK_CHUNK // 2}
        if regroup:  # keep chunks screen-sized rather than ever smaller
            x = x.rechunk(regroup)
        levels.append(x)
    return levels


def extend_levels(levels: list[da.Array]) -> list[da.Array]:
    """Stored levels, plus lazy ones if the smallest is still bigger than a screen."""
    return levels + lazy_levels(levels[-1])[1:]
