"""A store whose streaming run never finished holds class 0 where blocks were
never written: readers say so, export refuses it (or takes only written
blocks when told), and stores written before the completion record still
open with the same meaning."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from glnet.classes import DEEPGLOBE
from glnet.cli import main
from glnet.data.dataset import read_export
from glnet.store.completion import completion
from glnet.store.labelstore import LabelStore

H, W = 300, 340  # blocks of 128 px: 3 x 3


@pytest.fixture
def run_store(tmp_path):
    """A store as ``glnet segment -o X.zarr`` leaves it after being killed
    with 4 of its 9 blocks written."""
    done = [[0, 0, 128, 128], [0, 128, 128, 256], [128, 0, 256, 128], [128, 128, 256, 256]]
    attrs = {"run": {"chunk": 64}, "block": 128, "blocks_done": done, "complete": False}
    store = LabelStore.create(tmp_path / "run.zarr", (H, W), DEEPGLOBE, chunk=64, min_size=64, attrs=attrs)
    store.write((0, 0, 256, 256), np.random.default_rng(1).integers(1, 7, (256, 256), dtype=np.uint8), edit=False)
    store.close()
    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(image)
    return store.path, image


def test_completion_records_old_and_new():
    old = {"run": {"chunk": 64}, "blocks_done": [[0, 0, 128, 128]], "complete": False}  # glnet 0.1's record
    state = completion(old, (H, W))
    assert not state.complete and state.blocks == 9 and len(state.missing) == 8
    assert state.missing[0] == (0, 128, 128, 256)
    assert "8 of 9 blocks were never written (rows 0-128, columns 128-256;" in state.describe("x.zarr")
    assert completion({**old, "complete": True}, (H, W)).complete
    assert completion({}, (H, W)).complete  # the plugin's and the writer's stores are never filled by a run
    assert completion({"complete": False}, (H, W)).missing == ((0, 0, H, W),)  # nothing known to be written


def test_export_refuses_an_incomplete_store_unless_told_to_take_finished_blocks(run_store, tmp_path, capsys, caplog):
    path, image = run_store
    out = tmp_path / "tiles"
    args = ["export", str(path), "--image", str(image), "-o", str(out), "--all", "--tile", "128", "--png"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("glnet: error:") and "\n" not in err, err
    assert "incomplete: 5 of 9 blocks were never written" in err and "--finished-only" in err
    assert not out.exists()

    assert main([*args, "--finished-only"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    regions = [tuple(t["region"]) for t in manifest["tiles"]]
    assert sorted(regions) == [(0, 0, 128, 128), (0, 128, 128, 256), (128, 0, 256, 128), (128, 128, 256, 256)]
    assert manifest["incomplete_store"] == {"blocks_missing": 5, "blocks": 9}
    with caplog.at_level(logging.WARNING):
        assert len(read_export(out)) == 4
    assert "exported from an incomplete label store (5 of 9 blocks never written)" in caplog.text


def test_a_killed_creation_is_named_and_resume_starts_it_afresh(tmp_path):
    """A store killed before its state file was written holds nothing: opening
    says so in one line (``segment --resume`` recreates it: test_store_crashes kills a run there)."""
    from glnet.errors import GLNetError

    store = LabelStore.create(tmp_path / "s.zarr", (20, 20), DEEPGLOBE)
    store.close()
    (store.path / ".glnet" / "glnet" / "state.json").unlink()
    with pytest.raises(GLNetError, match="unfinished label store .its creation was interrupted.: write it again"):
        LabelStore.open(store.path)
