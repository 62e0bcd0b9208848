"""The files zarr keeps a label level's chunks in, for what zarr does not do:
make a write durable, and clean up after a write that was killed."""

from __future__ import annotations

from pathlib import Path

import zarr
from zarr.storage import LocalStore

from glnet.atomic import fsync_dir, fsync_file
from glnet.geometry import Region


def chunk_files(array: zarr.Array, region: Region) -> list[Path]:
    """The files of the chunks of a local zarr ``array`` that ``region`` touches
    (some may not exist: zarr writes no file for a chunk of fill values)."""
    store = array.store_path.store
    if not isinstance(store, LocalStore):
        raise TypeError(f"chunk files exist only for a local store, not {type(store).__name__}")
    root = Path(store.root) / array.store_path.path
    ch, cw = array.chunks
    t, l, b, r = region
    return [
        root / array.metadata.encode_chunk_key((i, j))
        for i in range(t // ch, (b - 1) // ch + 1)
        for j in range(l // cw, (r - 1) // cw + 1)
    ]


def sync_chunks(array: zarr.Array, region: Region) -> None:
    """fsync the chunk files of ``region`` and their folders."""
    files = chunk_files(array, region)
    for f in files:
        fsync_file(f)
    for folder in {f.parent for f in files}:
        fsync_dir(folder)


def remove_partial_chunks(array: zarr.Array, region: Region) -> None:
    """zarr writes a chunk as ``KEY.<uuid>.partial`` and renames it: a kill in
    between leaves that file in the chunk's folder."""
    for folder in {f.parent for f in chunk_files(array, region)}:
        for f in folder.glob("*.partial"):
            f.unlink(missing_ok=True)
