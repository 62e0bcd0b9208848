"""Reaching a dask cluster: fail in seconds and in one line when the
scheduler's address is wrong, unreachable, or not a dask scheduler."""

from __future__ import annotations

from glnet.errors import GLNetError


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, in one line, when the scheduler cannot be reached
    (dask's own client waits 30 s and raises a traceback)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if parts.scheme not in ("tcp", "tls") or not host or not port:
        raise GLNetError(f"--scheduler {address!r} is not a dask scheduler address like tcp://host:8786")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise GLNetError(f"cannot reach the dask scheduler at {address}: {reason}") from None
    connect(address, timeout).close()  # something answers there: is it a dask scheduler?


def connect(address: str, timeout: float = 10.0):
    """A dask client of the scheduler at ``address``; any failure is one line
    (a server that is not a scheduler can make dask fail in odd ways, e.g.
    a MemoryError from a garbage frame length)."""
    from dask.distributed import Client

    try:
        return Client(address, timeout=f"{timeout}s")
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GLNetError(f"{address} does not answer as a dask scheduler: {reason}") from None
