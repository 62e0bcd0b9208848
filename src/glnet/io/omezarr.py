"""OME-Zarr: reading images (NGFF 0.4 / zarr v2 and 0.5 / zarr v3, and plain
zarr arrays) chunk by chunk, and the one parser of their ``multiscales``
metadata, which the label store reads too."""

from __future__ import annotations

from pathlib import Path

import dask.array as da

from glnet.errors import GLNetError
from glnet.io.lazy import ImagePyramid, extend_levels, lazy_levels, read_error, to_rgb8


def multiscales(attrs) -> dict | None:
    """The first ``multiscales`` entry of a zarr group's attributes (NGFF 0.5
    keeps it under "ome", 0.4 and older at the top), or None when there is
    none with datasets."""
    ome = attrs.get("ome")
    ms = ome.get("multiscales") if isinstance(ome, dict) else None
    ms = ms or attrs.get("multiscales")
    if not ms or not isinstance(ms, list) or not isinstance(ms[0], dict) or not ms[0].get("datasets"):
        return None
    return ms[0]


def _array(group, key: str):
    """The array ``key`` of a zarr group (a multiscales dataset)."""
    import zarr

    node = group[key]
    if not isinstance(node, zarr.Array):
        raise GLNetError(f"{key!r} in the multiscales metadata is not an array")
    return node


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
    index: list[slice | int] = []
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


def open_zarr(path: Path) -> ImagePyramid:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:
        raise read_error(path, "not a readable zarr store", e) from None
    try:
        if isinstance(node, zarr.Array):
            return ImagePyramid(lazy_levels(to_rgb8(da.from_zarr(node), path)), source=str(path))
        ms = multiscales(node.attrs)
        if not ms and "0" in node and isinstance(node["0"], zarr.Group):  # bioformats2raw layout
            node = node["0"]
            ms = multiscales(node.attrs)
        if not ms:
            arrays = [a for _, a in node.arrays()]
            if len(arrays) != 1:
                raise GLNetError(f"{path}: a zarr group with {len(arrays)} arrays and no OME multiscales metadata")
            return ImagePyramid(lazy_levels(to_rgb8(da.from_zarr(arrays[0]), path)), source=str(path))
        arrays = [_array(node, d["path"]) for d in ms["datasets"]]
        names = _axis_names(ms, arrays[0].ndim)
        levels = [_ome_level(a, names, path) for a in arrays]
        pixel_size, unit = _ome_pixel_size(ms, names)
    except GLNetError:
        raise
    except Exception as e:
        raise read_error(path, "cannot read zarr image", e) from None
    return ImagePyramid(extend_levels(levels), pixel_size, unit, str(path))


def is_zarr_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))
