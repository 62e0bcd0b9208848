"""The plugin's side of reliability in a real viewer: a store another program
writes is refused with who holds it, an incomplete store says which blocks
are missing, and the writer never writes over or inside the layer's store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.classes import ClassTable
from glnet.store.labelstore import LabelStore
from napari_glnet._writer import write_label_store

from helpers import REPO
from helpers.plugin import wait_idle

HOLDER = textwrap.dedent(
    """
    import sys, time
    from glnet.store.labelstore import LabelStore
    store = LabelStore.open(sys.argv[1])
    print("holding", flush=True)
    time.sleep(120)
    """
)


def test_a_store_another_program_writes_is_refused_with_its_holder(widget, qtbot, tmp_path, notes):
    path = tmp_path / "busy.zarr"
    LabelStore.create(path, (256, 256), ClassTable.default(5)).close()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        widget.store.value = str(path)
        widget.start()
        wait_idle(qtbot, widget.controller)
        assert any(f"opened for writing by PID {holder.pid}" in n for n in notes), notes
        assert LabelStore.open(path, mode="r").read().max() == 0  # nothing written into it
    finally:
        holder.kill()
        holder.wait()


def test_an_incomplete_store_opens_with_a_warning_naming_the_missing_blocks(make_napari_viewer, tmp_path, notes):
    store = LabelStore.create(
        tmp_path / "run.zarr",
        (600, 500),
        ClassTable.default(3),
        chunk=128,
        attrs={"run": {"chunk": 128}, "block": 256, "blocks_done": [[0, 0, 256, 256]], "complete": False},
    )
    store.write((0, 0, 256, 256), np.ones((256, 256), np.uint8), edit=False)
    store.close()
    (layer,) = make_napari_viewer().open(str(store.path), plugin="napari-glnet")
    assert any(
        "incomplete: 5 of 6 blocks were never written" in n and "rows 0-256, columns 256-500" in n for n in notes
    )
    assert len(layer.metadata["glnet_missing_blocks"]) == 5


def test_the_writer_refuses_to_write_inside_the_layers_own_store(tmp_path):
    from glnet.errors import GLNetError

    own = LabelStore.create(tmp_path / "own.zarr", (40, 40), ClassTable.default(3))
    own.close()
    before = sorted((p, p.read_bytes()) for p in own.path.rglob("*") if p.is_file())
    meta = {"metadata": {"glnet_store": str(own.path)}}
    with pytest.raises(GLNetError, match="is inside the layer's label store"):
        write_label_store(own.path / "labels" / "copy.zarr", np.zeros((40, 40), np.uint8), meta)
    link = tmp_path / "link.zarr"
    link.symlink_to(own.path)
    assert write_label_store(link, np.zeros((40, 40), np.uint8), meta) == [str(link)]  # its own store: a no-op
    assert sorted((p, p.read_bytes()) for p in own.path.rglob("*") if p.is_file()) == before
