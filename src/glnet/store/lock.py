"""One writer per label store: an advisory lock taken when a store is opened
for writing.

Two editors (napari and ``glnet segment --resume``, or two napari windows)
writing the same store would interleave their journals.  A store opened for
writing holds ``flock`` on ``PATH/.glnet/writer.lock``, and the file says
who holds it (PID, host, start time), so a second writer is told
"opened for writing by PID N on HOST since T" and can open the store
read-only instead.  The kernel drops the lock when its process dies, however
it dies (SIGKILL, power cut of a client), so a lock left by a killed
process is taken over by the next writer without anyone deleting files.

Within one process the lock is shared: the plugin may hold the same store
through several objects, and they are serialised by one re-entrant lock.
On file systems without ``flock`` (some network mounts) the file alone is
the lock, and a holder that is a dead process on this host is stale.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from glnet.errors import GLNetError

log = logging.getLogger(__name__)

LOCK_FILE = "writer.lock"  # in PATH/.glnet/
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class StoreLocked(GLNetError):
    """Another process has the store open for writing."""


@dataclass
class _Held:
    fd: int
    count: int = 0
    flock: bool = True
    mutex: threading.RLock = field(default_factory=threading.RLock)


_held: dict[str, _Held] = {}
_registry = threading.Lock()


def lock_path(store: Path) -> Path:
    return Path(store) / ".glnet" / LOCK_FILE


def _key(store: Path) -> str:
    return os.path.realpath(store)


def _me() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def holder(store: Path) -> dict | None:
    """Who last took the lock (PID, host, since), or None; it may be stale."""
    try:
        info = json.loads(lock_path(store).read_text() or "null")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "pid" in info else None


def _who(info: dict | None) -> str:
    return f"PID {info.get('pid')} on {info.get('host')} since {info.get('since')}" if info else "another program"


def describe(store: Path, info: dict | None) -> str:
    """The refusal a second writer gets."""
    return f"{store} is opened for writing by {_who(info)}: open it read-only, or close it there first"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_info(fd: int) -> None:
    data = json.dumps(_me()).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _take(store: Path) -> _Held:
    path = lock_path(store)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise GLNetError(f"cannot open {store} for writing ({e.strerror}): open it read-only") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        flock = True
    except BlockingIOError:
        os.close(fd)
        raise StoreLocked(describe(store, holder(store))) from None
    except OSError as e:
        if e.errno not in _UNSUPPORTED:
            os.close(fd)
            raise
        flock = False  # the file alone is the lock
        info = holder(store)
        if info and info.get("pid") != os.getpid():
            stale = info.get("host") == socket.gethostname() and not _alive(int(info["pid"]))
            if not stale:
                os.close(fd)
                raise StoreLocked(describe(store, info)) from None
    previous = holder(store)  # a clean release empties the file: a name left here died holding it
    if previous and previous.get("pid") != os.getpid():
        log.info("%s: taking over the writer lock of %s (that process is gone)", store, _who(previous))
    _write_info(fd)
    return _Held(fd, flock=flock)


def acquire(store: Path) -> threading.RLock:
    """Take (or share, within this process) the writer lock of ``store``;
    returns the mutex that serialises this process's writers.  Raises
    :class:`StoreLocked` naming the holder when another process has it."""
    key = _key(store)
    with _registry:
        held = _held.get(key)
        if held is None:
            held = _held[key] = _take(Path(store))
        held.count += 1
        return held.mutex


def release(store: Path) -> None:
    """Give back one :func:`acquire`; the last one frees the lock."""
    key = _key(store)
    with _registry:
        held = _held.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _held[key]
        with contextlib.suppress(OSError):
            os.ftruncate(held.fd, 0)  # released cleanly: nobody holds it
        os.close(held.fd)  # closing drops the flock


def renew(store: Path) -> None:
    """Lock the lock file again after the store folder was replaced
    (``LabelStore.create(..., overwrite=True)`` while holding the old one)."""
    key = _key(store)
    with _registry:
        held = _held.get(key)
        if held is None:
            return
        fresh = _take(Path(store))
        os.close(held.fd)
        held.fd, held.flock = fresh.fd, fresh.flock
