"""Two writers: a label store open for writing in one process is refused to
another (which is told who holds it and may read), and a lock left by a
killed process is taken over."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from glnet.classes import DEEPGLOBE
from glnet.cli import main
from glnet.store import lock
from glnet.store.labelstore import LabelStore
from glnet.store.lock import StoreLocked

from helpers import REPO

HOLDER = textwrap.dedent(
    """
    import sys, time
    from glnet.store.labelstore import LabelStore
    store = LabelStore.open(sys.argv[1])
    print("holding", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def store_path(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (64, 64), DEEPGLOBE, chunk=32, min_size=16)
    store.write((0, 0, 8, 8), np.full((8, 8), 3, np.uint8))
    store.close()
    return store.path


@pytest.fixture
def holder(store_path):
    """Another process with the store open for writing."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(store_path)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_writer_is_told_who_holds_the_store_and_may_read_it(store_path, holder, capsys):
    with pytest.raises(StoreLocked) as info:
        LabelStore.open(store_path)
    message = str(info.value)
    assert f"opened for writing by PID {holder.pid} on {socket.gethostname()} since " in message
    assert "read-only" in message and "\n" not in message
    reader = LabelStore.open(store_path, mode="r")  # reading is never refused
    assert reader.read((0, 0, 8, 8)).max() == 3 and len(reader.edit_log()) == 1
    with pytest.raises(StoreLocked):  # nor is a replacement allowed under the writer
        LabelStore.create(store_path, (10, 10), DEEPGLOBE, overwrite=True)
    assert LabelStore.open(store_path, mode="r").shape == (64, 64)

    holder.send_signal(signal.SIGKILL)  # the writer dies without closing anything
    holder.wait()
    store = LabelStore.open(store_path)  # the kernel dropped its lock: taken over
    assert store.write((8, 8, 16, 16), np.full((8, 8), 2, np.uint8))["id"] == 2
    assert json.loads(lock.lock_path(store_path).read_text())["pid"] == os.getpid()
    store.close()
    assert lock.lock_path(store_path).read_text() == ""  # a clean close leaves no name behind


def test_segment_resume_into_a_store_being_edited_is_one_line(store_path, holder, tmp_path, capsys):
    from PIL import Image

    from helpers.plugin import save_tiny_checkpoint

    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.glnet.pt")
    before = sorted((p, p.read_bytes()) for p in store_path.rglob("*") if p.is_file() and p.name != "writer.lock")
    code = main(["segment", str(image), "-o", str(store_path), "--weights", str(ckpt), "--device", "cpu", "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("glnet: error:") and "\n" not in err, err
    assert f"opened for writing by PID {holder.pid}" in err
    after = sorted((p, p.read_bytes()) for p in store_path.rglob("*") if p.is_file() and p.name != "writer.lock")
    assert after == before


def test_writers_in_one_process_share_the_lock_and_a_close_frees_it(store_path):
    first = LabelStore.open(store_path)
    second = LabelStore.open(store_path)  # the plugin holds a store through several objects
    second.write((0, 0, 2, 2), np.ones((2, 2), np.uint8))
    first.close()
    assert json.loads(lock.lock_path(store_path).read_text())["pid"] == os.getpid()  # still held by `second`
    second.close()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    code = "import sys; from glnet.store.labelstore import LabelStore; LabelStore.open(sys.argv[1]).close()"
    subprocess.run([sys.executable, "-c", code, str(store_path)], env=env, check=True)


def test_without_flock_the_lock_file_decides_and_a_dead_holder_is_stale(store_path, monkeypatch):
    """Some network file systems have no flock: the file's PID and host decide."""
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = {"pid": alive.pid, "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00"}
        lock.lock_path(store_path).write_text(json.dumps(info))
        with pytest.raises(StoreLocked, match=f"PID {alive.pid} on"):
            LabelStore.open(store_path)
    finally:
        alive.kill()
        alive.wait()
    LabelStore.open(store_path).close()  # its holder is gone: stale, taken over
