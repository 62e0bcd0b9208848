"""Writing files so an interrupted write never leaves a half-written file,
and so a finished write survives a power cut."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from glnet.faults import point

TMP_SUFFIX = ".tmp"  # hidden ``.NAME.<random>.tmp`` files: what a killed write leaves


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or unlink in folder ``path`` durable (a no-op where the
    file system cannot sync folders)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file someone else wrote (zarr's chunks) to disk; missing is fine."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_tmp_name(name: str) -> bool:
    """A temporary file :func:`atomic_write` makes (left behind only by a kill)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


@contextmanager
def synced_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A new file at ``path``, flushed to disk when the block succeeds.

    Not atomic, and its folder is not synced: for files that count only once
    a later :func:`atomic_write` in the same folder says so (a journal's data
    before its marker), which saves a rename and a folder sync per file. Sync
    the folder once (:func:`fsync_dir`) before that atomic write."""
    path = Path(path)
    with open(path, "xb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    point(f"written {path.name}")


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A hidden temporary file beside ``path``, flushed to disk and renamed
    over ``path`` only when the block succeeds; removed otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        point(f"written {tmp.name}")
        os.replace(tmp, path)
        fsync_dir(path.parent)
        point(f"renamed {path.name}")
    finally:
        tmp.unlink(missing_ok=True)
