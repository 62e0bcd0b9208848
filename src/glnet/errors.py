"""The errors glnet reports to people: one line each, no traceback."""

from __future__ import annotations

import errno
import os


class GLNetError(Exception):
    """An expected problem with the user's input, reported as one line."""


_ADVICE = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded: free space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "it is a folder",
    errno.EIO: "input/output error (a failing disk or network file system?)",
    errno.EMFILE: "too many open files",
    errno.ENAMETOOLONG: "the file name is too long",
}


def os_error_reason(e: OSError) -> str:
    """What went wrong and what to do, without the file names."""
    if e.errno in _ADVICE:
        return _ADVICE[e.errno]
    if e.strerror:
        return e.strerror
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def describe_os_error(e: OSError) -> str:
    """An OSError as one line: on which file, what failed, and what to do."""
    files = [os.fsdecode(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{' -> '.join(files)}: {os_error_reason(e)}" if files else os_error_reason(e)
