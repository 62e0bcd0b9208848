"""Lazy multiscale readers: any supported image as a pyramid of dask arrays.

napari and the tiled engine only ever look at a screenful or a patch at a
time, so these readers never decode a whole big image if the format lets
them avoid it: TIFF tiles/strips and zarr chunks are read on demand.

Pixel rules (the same for every format, applied lazily per block):
RGBA drops alpha; greyscale (and grey + alpha) is replicated to RGB;
16-bit becomes 8-bit as ``value // 257`` (so 65535 -> 255, 257 -> 1);
floats are taken as [0, 1] and become ``round(v * 255)`` clipped to 0..255;
channel-first (C, H, W) and channel-last (H, W, C) are told apart by the
channel axis having 1-4 entries while both other axes are larger.
Anything else is a GLNetError naming the shape or dtype.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dask.array as da
import numpy as np

from glnet.errors import GLNetError
from glnet.geometry import OVERVIEW_SIDE, level_shapes
from glnet.io.pyramid import halve, write_ome_zarr

log = logging.getLogger(__name__)

PIL_SUFFIXES = (".jpg", ".jpeg", ".png")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
DASK_CHUNK = 1024  # target dask chunk side for lazily read levels
MAX_PIXELS = 1_000_000_000  # PIL's bomb guard stops at 179 Mpx; our users open bigger scenes
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


def _fail(path, what: str, e: Exception) -> GLNetError:
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
    return x.map_blocks(_rgb8_block, dtype=np.uint8, chunks=(*x.chunks[:2], (3,)))


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
    values :func:`glnet.pyramid.write_ome_zarr` writes), for images that
    carry no pyramid of their own."""
    levels = [level0]
    x = level0
    for _ in level_shapes(level0.shape[:2], overview)[1:]:
        x = _even_chunks(x)
        half = tuple(tuple(-(-c // 2) for c in x.chunks[ax]) for ax in (0, 1))
        x = x.map_blocks(halve, dtype=np.uint8, chunks=(*half, x.chunks[2]))
        regroup = {ax: DASK_CHUNK for ax in (0, 1) if len(half[ax]) > 1 and max(half[ax]) < DASK_CHUNK // 2}
        if regroup:  # keep chunks screen-sized rather than ever smaller
            x = x.rechunk(regroup)
        levels.append(x)
    return levels


def _extend(levels: list[da.Array]) -> list[da.Array]:
    """Stored levels, plus lazy ones if the smallest is still bigger than a screen."""
    return levels + lazy_levels(levels[-1])[1:]


# -- JPEG / PNG ----------------------------------------------------------------
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
                    im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
                a = np.asarray(im)
    except Exception as e:  # PIL raises many types for truncated/corrupt files
        raise _fail(path, "cannot decode image (corrupt or truncated?)", e) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if a.dtype.kind in "iu" and a.dtype != np.uint8:  # 16-bit PNGs come as I;16 or int32 "I"
        if a.min() < 0 or a.max() > 65535:
            raise GLNetError(f"{path}: {a.dtype} pixels outside 0..65535 are not supported")
        a = a.astype(np.uint16)
    return a


def _open_pil(path: Path, cache_dir, flat_limit: int, progress) -> ImagePyramid:
    try:
        with _pil_open(path) as im:
            w, h = im.size
    except Exception as e:
        raise _fail(path, "not a readable JPEG/PNG", e) from None
    if h * w > flat_limit:

        def decode():
            return to_rgb8(da.from_array(_pil_decode(path), chunks=-1), path).compute()

        return _open_cached(path, cache_dir, decode, progress)
    a = _pil_decode(path)
    level0 = to_rgb8(da.from_array(a, chunks=(DASK_CHUNK, DASK_CHUNK, *a.shape[2:])), path)
    return ImagePyramid(lazy_levels(level0), source=str(path))


# -- the conversion cache ------------------------------------------------------
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


def _open_cached(path: Path, cache_dir, decode: Callable, progress, pixel_size=None, unit=None) -> ImagePyramid:
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
    pyramid = _open_zarr(out)
    pyramid.source = str(path)
    return pyramid


# -- TIFF ----------------------------------------------------------------------
def _tiff_pixel_size(tif, page) -> tuple[tuple[float, float] | None, str | None]:
    if tif.is_ome and tif.ome_metadata:
        import xml.etree.ElementTree as ET

        try:
            for el in ET.fromstring(tif.ome_metadata).iter():
                if el.tag.rsplit("}", 1)[-1] == "Pixels" and el.get("PhysicalSizeX"):
                    sx, sy = float(el.get("PhysicalSizeX")), float(el.get("PhysicalSizeY", el.get("PhysicalSizeX")))
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
        a = tifffile.memmap(tif.filehandle.path, series=0, level=i, mode="r")
        native = (1,) * a.ndim  # any region is cheap to read
    except (ValueError, OSError):
        a = zarr.open(series.aszarr(level=i), mode="r")
        native = a.chunks
    chunks = tuple(n if n <= 4 else min(n, c * max(1, round(DASK_CHUNK / c))) for n, c in zip(a.shape, native))
    if isinstance(a, np.ndarray):
        return da.from_array(a, chunks=chunks, asarray=False, lock=False), tuple(native)
    return da.from_zarr(a, chunks=chunks), tuple(native)


def _open_tiff(path: Path, cache_dir, flat_limit: int, progress) -> ImagePyramid:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as e:
        raise _fail(path, "not a readable TIFF", e) from None
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
        raise _fail(path, "cannot read TIFF", e) from None
    src = str(path)
    if len(levels) > 1:
        log.info("%s: pyramidal TIFF with %d levels", path, len(levels))
        return ImagePyramid(_extend(levels), pixel_size, unit, src, [tif])
    h, w = levels[0].shape[:2]
    if h * w <= flat_limit:
        return ImagePyramid(lazy_levels(levels[0]), pixel_size, unit, src, [tif])
    # big and flat: build the pyramid once, streaming level 0 (see open_image)
    huge_chunk = int(np.prod(natives[0])) > BIG_NATIVE_CHUNK

    def decode():
        return levels[0].compute() if huge_chunk else levels[0]

    try:
        return _open_cached(path, cache_dir, decode, progress, pixel_size, unit)
    finally:
        tif.close()


# -- zarr / OME-Zarr -------------------------------------------------------------
def _multiscales(attrs) -> list | None:
    ms = attrs.get("ome", {}).get("multiscales") if isinstance(attrs.get("ome"), dict) else None
    return ms or attrs.get("multiscales")


def _axis_names(ms: dict, ndim: int) -> list[str]:
    axes = ms.get("axes")
    if axes is None:  # NGFF 0.1/0.2: always tczyx
        return list("tczyx")[-ndim:]
    return [(a["name"] if isinstance(a, dict) else a).lower() for a in axes]


def _ome_level(arr, names: list[str], source) -> da.Array:
    x = da.from_zarr(arr)
    if "y" not in names or "x" not in names or len(names) != x.ndim:
        raise GLNetError(f"{source}: OME-Zarr axes {names} do not match an image of shape {x.shape}")
    channel = "c" if "c" in names else None
    index = []
    for name, n in zip(names, x.shape):
        if name in ("y", "x", channel):
            index.append(slice(None))
        elif n == 1:
            index.append(0)
        else:
            raise GLNetError(f"{source}: OME-Zarr axis {name!r} has {n} entries; only single images can be read")
    x = x[tuple(index)]
    kept = [nm for nm, i in zip(names, index) if not isinstance(i, int)]
    order = [kept.index("y"), kept.index("x")] + ([kept.index(channel)] if channel else [])
    x = x.transpose(order)
    return to_rgb8(x, source, channel_axis=2 if channel else None)


def _ome_pixel_size(ms: dict, names: list[str]) -> tuple[tuple[float, float] | None, str | None]:
    scale = [1.0] * len(names)
    for transforms in (ms["datasets"][0].get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale" and len(t.get("scale", [])) == len(names):
                scale = [a * b for a, b in zip(scale, t["scale"])]
    axes = {(a["name"] if isinstance(a, dict) else a).lower(): a for a in ms.get("axes") or []}
    unit = axes.get("y", {}).get("unit") if isinstance(axes.get("y"), dict) else None
    sy, sx = scale[names.index("y")], scale[names.index("x")]
    if unit is None and sy == 1.0 and sx == 1.0:  # nothing said, only the default
        return None, None
    return (float(sy), float(sx)), unit


def _open_zarr(path: Path) -> ImagePyramid:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:
        raise _fail(path, "not a readable zarr store", e) from None
    try:
        if isinstance(node, zarr.Array):
            return ImagePyramid(lazy_levels(to_rgb8(da.from_zarr(node), path)), source=str(path))
        ms = _multiscales(node.attrs)
        if not ms and "0" in node and isinstance(node["0"], zarr.Group):  # bioformats2raw layout
            node = node["0"]
            ms = _multiscales(node.attrs)
        if not ms:
            arrays = [a for _, a in node.arrays()]
            if len(arrays) != 1:
                raise GLNetError(f"{path}: a zarr group with {len(arrays)} arrays and no OME multiscales metadata")
            return ImagePyramid(lazy_levels(to_rgb8(da.from_zarr(arrays[0]), path)), source=str(path))
        ms = ms[0]
        arrays = [node[d["path"]] for d in ms["datasets"]]
        names = _axis_names(ms, arrays[0].ndim)
        levels = [_ome_level(a, names, path) for a in arrays]
        pixel_size, unit = _ome_pixel_size(ms, names)
    except GLNetError:
        raise
    except Exception as e:
        raise _fail(path, "cannot read zarr image", e) from None
    return ImagePyramid(_extend(levels), pixel_size, unit, str(path))


def _is_zarr_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))


# -- entry point ---------------------------------------------------------------
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
        if not _is_zarr_dir(path):
            raise GLNetError(f"{path}: a folder that is not a zarr store")
        return _open_zarr(path)
    if suffix in TIFF_SUFFIXES:
        return _open_tiff(path, cache_dir, flat_limit, progress)
    if suffix in PIL_SUFFIXES:
        return _open_pil(path, cache_dir, flat_limit, progress)
    known = ", ".join(PIL_SUFFIXES + TIFF_SUFFIXES + (".zarr",))
    raise GLNetError(f"{path}: unsupported image type {suffix!r} (use {known})")
