"""Writing OME-Zarr multiscale pyramids (what ``glnet convert`` runs).

A pyramid lets napari (and our readers) show a gigapixel scene at any zoom
while reading only the tiles on screen.  The writer streams: level 0 goes to
the store one block row at a time, and each smaller level is computed from
the level *already written* (read back block row by block row), so memory
stays at a few block rows whatever the image size.

Format decisions: OME-NGFF 0.5 (zarr v3), the default of ome-zarr-py 0.18,
whose Reader and napari-ome-zarr read it; axes ``cyx`` (channel-first is
what NGFF tools expect), chunks ``(3, chunk, chunk)``, zarr's default zstd
compression; levels halve by a 2x2 area mean (sizes round up; an odd last
row or column is averaged with itself), and each level carries the scale and
half-pixel translation that area averaging implies.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from glnet.errors import GLNetError
from glnet.geometry import OVERVIEW_SIDE, level_shapes

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def halve(a: np.ndarray) -> np.ndarray:
    """2x area-mean downsample of an (H, W, C) uint8 block, rounding to nearest.

    Sizes round up (an odd last row/column is replicated before averaging),
    so every source pixel contributes and block-wise results tile exactly
    when blocks have even sizes.  Shared by the writer and the lazy readers
    so both build the same pyramid.
    """
    h, w = a.shape[:2]
    if h % 2 or w % 2:
        a = np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    s = a[0::2, 0::2].astype(np.uint16)
    s += a[1::2, 0::2]
    s += a[0::2, 1::2]
    s += a[1::2, 1::2]
    s += 2
    s //= 4
    return s.astype(np.uint8)


def _check_image(image) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise GLNetError(f"write_ome_zarr wants (H, W, 3) uint8 pixels, got {tuple(image.shape)} {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise GLNetError(f"cannot write an empty image of shape {tuple(image.shape)}")


def _datasets(n_levels: int, pixel_size: tuple[float, float] | None) -> list[dict]:
    sy, sx = pixel_size if pixel_size is not None else (1.0, 1.0)
    out = []
    for i in range(n_levels):
        f = 2**i
        out.append(
            {
                "path": str(i),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, sy * f, sx * f]},
                    # the centre of an f x f average sits (f - 1) / 2 level-0 pixels in
                    {"type": "translation", "translation": [0.0, sy * (f - 1) / 2, sx * (f - 1) / 2]},
                ],
            }
        )
    return out


def _axes(unit: str | None) -> list[dict]:
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    if unit:
        for a in axes[1:]:
            a["unit"] = unit
    return axes


def _band(image, r0: int, r1: int) -> np.ndarray:
    band = image[r0:r1]
    if hasattr(band, "compute"):  # dask: this computes only the chunks of these rows
        band = band.compute()
    return np.asarray(band)


def _halved_band(prev, r0: int, r1: int) -> np.ndarray:
    src = prev[:, 2 * r0 : min(2 * r1, prev.shape[1]), :]
    return halve(np.moveaxis(src, 0, -1))


def _band_rows(image, chunk: int) -> int:
    """Rows per level-0 band: a multiple of ``chunk`` that covers whole dask
    row chunks when it can, so no source tile or strip is decoded twice."""
    rows = getattr(image, "chunks", None)
    if not rows or len(rows[0]) < 2:
        return chunk
    return chunk * max(1, math.ceil(max(rows[0]) / chunk))


def _prefetched(read: Callable[[int, int], np.ndarray], spans: list[tuple[int, int]]) -> Iterator:
    """(r0, read(r0, r1)) for each span, reading the next band in a thread
    while the caller compresses and writes this one (two bands in memory)."""
    if not spans:
        return
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(read, *spans[0])
        for k, (r0, _) in enumerate(spans):
            band = nxt.result()
            if k + 1 < len(spans):
                nxt = pool.submit(read, *spans[k + 1])
            yield r0, band


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished store to its final name; replace an old one only now."""
    if out.exists():
        if not overwrite:
            raise GLNetError(f"{out} appeared while converting: not replacing it")
        old = out.with_name(f"{out.name}.old-{secrets.token_hex(4)}")
        os.replace(out, old)
        os.replace(tmp, out)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, out)


def write_ome_zarr(
    image,
    out: str | os.PathLike,
    *,
    chunk: int = 512,
    overview: int = OVERVIEW_SIDE,
    overwrite: bool = False,
    pixel_size: tuple[float, float] | None = None,
    unit: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write (H, W, 3) uint8 pixels (NumPy or dask) as an OME-Zarr pyramid at ``out``.

    Streams block row by block row (level 0 from ``image``, every other level
    from the previous level already in the store), so a gigapixel dask image
    is never held in memory.  The store is built as ``out.partial-<random>``
    beside ``out`` and renamed at the end: a killed conversion never leaves a
    half store under the final name.  ``pixel_size`` is (y, x) in ``unit``
    (an NGFF unit name such as "micrometer").  ``progress(done, total)`` is
    called as blocks (chunk x chunk tiles, all levels) are written.
    """
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    out = Path(out)
    _check_image(image)
    if chunk < 16:
        raise GLNetError(f"chunk must be at least 16 pixels, got {chunk}")
    if out.exists() and not overwrite:
        raise GLNetError(f"{out} exists: pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise GLNetError(f"output folder {out.parent} does not exist")

    shapes = level_shapes(image.shape[:2], overview)
    total = sum(math.ceil(h / chunk) * math.ceil(w / chunk) for h, w in shapes)
    done = 0
    tmp = out.with_name(f"{out.name}.partial-{secrets.token_hex(4)}")
    log.info("writing %s: %d levels, %d blocks of %d px", out, len(shapes), total, chunk)
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        prev = None
        for i, (h, w) in enumerate(shapes):
            arr = root.create_array(
                name=str(i),
                shape=(3, h, w),
                chunks=(3, min(chunk, h), min(chunk, w)),
                dtype="uint8",
                dimension_names=("c", "y", "x"),
            )
            if prev is None:
                step = _band_rows(image, chunk)
                read = functools.partial(_band, image)
            else:  # rows 2*r0 .. 2*r1 of the level just written
                step, read = chunk, functools.partial(_halved_band, prev)
            for r0, band in _prefetched(read, [(r, min(r + step, h)) for r in range(0, h, step)]):
                arr[:, r0 : r0 + band.shape[0], :] = np.moveaxis(band, -1, 0)
                done += math.ceil(band.shape[0] / chunk) * math.ceil(w / chunk)
                if progress is not None:
                    progress(done, total)
            prev = arr
        write_multiscales_metadata(
            root,
            _datasets(len(shapes), pixel_size),
            fmt=FormatV05(),
            axes=_axes(unit if pixel_size else None),
            name=out.name.removesuffix(".zarr").removesuffix(".ome"),
        )
        _publish(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
