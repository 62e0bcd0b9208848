"""How much memory one decode may take: the guard against decompression
bombs and headers that lie.

The engine streams an image scene by scene and the readers decode TIFF
strips/tiles and zarr chunks on demand, so memory is bounded by the largest
piece that must be decoded *at once*: a whole JPEG/PNG (PIL cannot decode
part of one), one TIFF strip or tile (a flat TIFF stored as a single strip
is one piece), one zarr chunk, or a mask file read whole.  Every reader asks
:func:`check_decode` with the decoded size its header states *before* it
decodes, so an 875 KB PNG that decodes to 30000^2 px, or a 2 MB TIFF whose
single strip decodes to 7 GB, is a one-line error instead of a process
killed for memory.

The budget is half the memory available to this process (the machine's
available memory, or the cgroup limit of a container, whichever is lower),
or ``$GLNET_DECODE_BUDGET`` (bytes; suffixes K, M, G, T).  Arrays read on
demand are wrapped by :func:`checked_array`, so a read that fails when the
pixels are finally decoded, deep inside the engine, is a one-line error
naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from glnet.errors import GLNetError

ENV = "GLNET_DECODE_BUDGET"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

# what to do with an image too big to decode at once
CONVERT_HINT = (
    "convert it to a tiled pyramid with a streaming converter, e.g. "
    "`vips tiffsave IN OUT.tif --tile --pyramid --bigtiff` (libvips) or "
    "`gdal_translate -co TILED=YES -co BIGTIFF=YES IN OUT.tif`, and open OUT.tif"
)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """Room left under a container's memory limit (cgroup v2, then v1)."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - usage)
    return None


def memory_available() -> int:
    """Bytes this process may still allocate (a best estimate)."""
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(found) if found else 4 << 30


def parse_size(text: str) -> int:
    """``"512M"`` -> bytes (K, M, G, T are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise GLNetError(f"{ENV}={text!r} is not a size in bytes (e.g. 2G, 512M, 1000000)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def decode_budget() -> int:
    """The most bytes one decode may produce: ``$GLNET_DECODE_BUDGET`` or
    half the memory available now."""
    text = os.environ.get(ENV)
    if text:
        return parse_size(text)
    return memory_available() // 2


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_decode(path, nbytes: int, what: str, hint: str = CONVERT_HINT) -> None:
    """Refuse (one line) to decode ``nbytes`` at once when over the budget.

    ``what`` says what would be decoded, e.g. "the whole 30000 x 30000 px
    PNG"; ``hint`` what the user can do instead."""
    budget = decode_budget()
    if nbytes > budget:
        raise GLNetError(
            f"{path}: decoding {what} takes {human(nbytes)}, more than this process may use at once "
            f"({human(budget)}; ${ENV} sets it): {hint}"
        )


class _Checked:
    """An on-demand array (TIFF strips/tiles, zarr chunks) whose failing
    reads are one-line GLNetErrors naming the file: pixels are decoded long
    after opening, inside the engine, where a decoder's own error would be
    a traceback."""

    def __init__(self, array, path) -> None:
        self.array, self.path = array, path
        self.shape, self.dtype, self.ndim = tuple(array.shape), array.dtype, len(array.shape)

    def __getitem__(self, key):
        try:
            return np.asarray(self.array[key])
        except GLNetError:
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GLNetError(
                f"{self.path}: cannot decode its pixels (truncated, corrupt, or a header that lies): {msg}"
            ) from None


def checked_array(array, path, chunks):
    """``array`` (read on demand) as a dask array whose failing reads name the file."""
    import dask.array as da

    return da.from_array(_Checked(array, path), chunks=chunks, asarray=False, lock=False, name=False)


def check_chunk(path, chunks, dtype, what: str) -> None:
    """Each on-demand read decodes at least one whole stored chunk: it must fit."""
    nbytes = int(np.prod([int(c) for c in chunks], dtype=np.float64)) * np.dtype(dtype).itemsize
    check_decode(path, nbytes, f"one {what} of {' x '.join(str(int(c)) for c in chunks)}")
