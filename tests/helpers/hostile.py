"""A corpus of hostile inputs the project generates itself: decompression
bombs, headers that lie, thin strips, truncated files, malicious pickles,
crafted checkpoints, unreadable masks.

Every file is small on disk and made in milliseconds; the bombs are bombs
against a decode budget the corpus test sets ($GLNET_DECODE_BUDGET=64M), so
they need not be gigabytes to be refused for the right reason.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint, save_checkpoint
from glnet.classes import ClassTable
from glnet.model import GLNet, GLNetConfig

from helpers.reference import seeded_weights

BUDGET = "64M"  # the decode budget the corpus is made against
BOMB_SIDE = 8000  # 8000^2 px: 64 MB grey, 192 MB RGB decoded; a few KB on disk


def small_checkpoint(path: Path) -> Path:
    """A real checkpoint of a narrow ResNet-18 GLNet (under 2 MB, fast on a CPU)."""
    model = seeded_weights(GLNet(GLNetConfig(5, "resnet18", 16, 8)), 1)
    save_checkpoint(GLNetCheckpoint("global2local", model, ClassTable.default(5), None, 64, 64, scene_size=256), path)
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes (symlinks as their target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = os.readlink(p).encode()
        elif p.is_file():
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def png_bomb(path: Path, side: int = BOMB_SIDE) -> Path:
    """A grey PNG of ``side`` x ``side`` zeros, compressed row by row (never held whole)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def single_strip_tiff(path: Path, side: int = BOMB_SIDE // 2) -> Path:
    """A flat RGB TIFF stored as one deflated strip (decodes whole or not at all)."""
    tifffile.imwrite(
        path, np.zeros((side, side, 3), np.uint8), photometric="rgb", compression="zlib", rowsperstrip=side
    )
    return path


def lying_tiff(path: Path, width: int, height: int) -> Path:
    """A 64 x 64 single-strip TIFF whose header claims ``width`` x ``height``."""
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    tifffile.imwrite(path, rgb, photometric="rgb", compression="zlib", rowsperstrip=64, metadata=None)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        for code, value in ((256, width), (257, height), (278, height)):
            struct.pack_into("<I" if tags[code].dtype == 4 else "<H", data, tags[code].valueoffset, value)
    path.write_bytes(bytes(data))
    return path


def truncated(source: Path, path: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def rgb_png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)).save(path)
    return path


def zarr_bomb(path: Path, side: int = BOMB_SIDE) -> Path:
    """A plain zarr image whose one chunk is the whole (empty) image: tiny on disk."""
    import zarr

    zarr.create_array(str(path), shape=(side, side, 3), chunks=(side, side, 3), dtype="uint8", fill_value=0)
    return path


class _Payload:
    """Unpickling this runs a shell command: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": _Payload(marker)}, path)
    return path


def crafted_checkpoint(good: Path, path: Path, **fields) -> Path:
    """Our checkpoint ``good`` with some fields replaced (e.g. size_p='abc')."""
    obj = torch.load(good, map_location="cpu", weights_only=True)
    obj.update(fields)
    torch.save(obj, path)
    return path


def nan_checkpoint(good: Path, path: Path) -> Path:
    ckpt = load_checkpoint(good)
    with torch.no_grad():
        next(iter(ckpt.model.parameters())).fill_(float("nan"))
    save_checkpoint(ckpt, path)
    return path
