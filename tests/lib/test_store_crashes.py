"""Kill tests: an edit, an undo and a streaming run, each killed (SIGKILL) at
every step where a crash leaves different files (every ``glnet.faults``
point), and every one of those stores reopened: it holds the labels before
or after the operation, never a mix; every coarser level is derived from the
one below; every logged edit can be undone; nothing is left behind; and a
killed streaming run resumes to the bytes of an uninterrupted one.
An injected full disk (ENOSPC) at every step rolls back in the process."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from glnet import faults
from glnet.checkpoint import GLNetCheckpoint, save_checkpoint
from glnet.classes import DEEPGLOBE, ClassTable
from glnet.errors import GLNetError
from glnet.inference.stream import ModelSpec, segment_to_store
from glnet.model import GLNet, GLNetConfig
from glnet.store.labelstore import UNDO_KEEP, LabelStore

from helpers import structured_image
from helpers.crashes import EDIT_REGION, coarser, edit_labels, edit_op, kill_at_every_step, leftovers, undo_op
from helpers.reference import seeded_weights


def memory_dir(fallback: Path) -> Path:
    """A folder in memory (/dev/shm) when there is one: these tests kill
    writes, they do not cut power, and the disk's fsyncs would be most of
    their time."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="glnet-crashes-", dir=shm))
    return fallback


@pytest.fixture
def work(tmp_path):
    folder = memory_dir(tmp_path)
    yield folder
    if folder != tmp_path:
        shutil.rmtree(folder, ignore_errors=True)


def small_edit(i: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    return (i * 10, 200, i * 10 + 5, 240), np.full((5, 40), i % 6 + 1, np.uint8)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A store with base labels and UNDO_KEEP edits (so one more prunes the
    oldest undo data), and level 0 after each stage."""
    root = memory_dir(tmp_path_factory.mktemp("pristine"))
    store = LabelStore.create(root / "s.zarr", (300, 250), DEEPGLOBE, chunk=64, min_size=32)
    rng = np.random.default_rng(3)
    base = np.repeat(np.repeat(rng.integers(0, 7, (75, 63), dtype=np.uint8), 4, 0), 4, 1)[:300, :250]
    store.write((0, 0, 300, 250), base, edit=False)
    states = [base]
    for i in range(UNDO_KEEP):
        store.write(*small_edit(i))
        states.append(store.read())
    store.close()
    yield root, states
    if "glnet-crashes-" in root.name:
        shutil.rmtree(root, ignore_errors=True)


def check_levels(store: LabelStore) -> None:
    below = store.read()
    for k in range(1, len(store.levels)):
        level = store.read(level=k)
        np.testing.assert_array_equal(level, coarser(below), err_msg=f"level {k} is not derived from level {k - 1}")
        below = level


def undo_all(store: LabelStore) -> np.ndarray:
    """Undo every edit that keeps undo data; level 0 afterwards."""
    for _ in range(min(UNDO_KEEP, len(store.edit_log()))):
        assert store.undo() is not None
    if store.edit_log():
        with pytest.raises(GLNetError, match="can no longer be undone"):
            store.undo()
    return store.read()


@pytest.mark.slow  # two dozen kills, each reopened and undone 20 times
def test_an_edit_killed_at_any_step_reopens_before_or_after_it(pristine, work):
    root, states = pristine
    before = states[-1]
    after = before.copy()
    t, l, b, r = EDIT_REGION
    after[t:b, l:r] = edit_labels()
    log_before = LabelStore.open(root / "s.zarr", mode="r").edit_log()

    with faults.recording() as names:
        edit_op(_copy(root, work / "recorded"), None)
    steps = list(range(1, len(names) + 1))
    runs = kill_at_every_step("helpers.crashes:edit_op", work / "kills", steps, pristine=root)

    outcome = []
    for k, work in runs.items():
        store = LabelStore.open(work / "s.zarr")  # the killed writer's lock is taken over
        level0, edits = store.read(), store.edit_log()
        if np.array_equal(level0, after):
            outcome.append("after")
            assert edits[:-1] == log_before and edits[-1]["region"] == list(EDIT_REGION), k
        else:
            outcome.append("before")
            np.testing.assert_array_equal(level0, before, err_msg=f"killed at step {k} ({names[k - 1]})")
            assert edits == log_before, k
        check_levels(store)
        assert leftovers(work / "s.zarr") == [], (k, names[k - 1])
        undo_files = sorted(int(p.stem) for p in (store._dir / "undo").iterdir())
        assert undo_files == [e["id"] for e in edits[-UNDO_KEEP:]], (k, names[k - 1])
        # undoing every logged edit that keeps undo data reaches the labels before them
        np.testing.assert_array_equal(undo_all(store), states[0] if outcome[-1] == "before" else states[1])
        store.close()
    commit = outcome.index("after")  # one commit point, then never back
    assert outcome == ["before"] * commit + ["after"] * (len(steps) - commit)
    assert names[commit] == "committed", "the edit is committed when its journal's marker is removed"


@pytest.mark.slow
def test_an_undo_killed_at_any_step_reopens_before_or_after_it(pristine, work):
    root, states = pristine
    with faults.recording() as names:
        undo_op(_copy(root, work / "recorded"), None)
    runs = kill_at_every_step("helpers.crashes:undo_op", work / "kills", list(range(1, len(names) + 1)), pristine=root)
    seen = set()
    for k, work in runs.items():
        store = LabelStore.open(work / "s.zarr")
        n = len(store.edit_log())
        assert n in (UNDO_KEEP, UNDO_KEEP - 1), k
        np.testing.assert_array_equal(store.read(), states[n], err_msg=f"killed at step {k} ({names[k - 1]})")
        seen.add(n)
        check_levels(store)
        assert leftovers(work / "s.zarr") == []
        assert len(list((store._dir / "undo").iterdir())) == n
        np.testing.assert_array_equal(undo_all(store), states[0])
        store.close()
    assert seen == {UNDO_KEEP, UNDO_KEEP - 1}


@pytest.mark.parametrize("op", ["edit", "undo"])
def test_a_full_disk_at_any_step_leaves_the_store_as_it_was(pristine, work, op):
    """ENOSPC raised at each step: the write fails with it, and the store in
    the same process (and reopened) holds exactly what it held before."""
    root, states = pristine
    with faults.recording() as names:
        (edit_op if op == "edit" else undo_op)(_copy(root, work / "recorded"), None)
    committed = names.index("committed") + 1
    for k in range(1, committed):
        store = LabelStore.open(_copy(root, work / f"k{k}") / "s.zarr")
        faults.stop_at(k, "enospc")
        try:
            with pytest.raises(OSError, match="No space left"):
                store.write(EDIT_REGION, edit_labels()) if op == "edit" else store.undo()
        finally:
            faults.disarm()
        np.testing.assert_array_equal(store.read(), states[-1], err_msg=f"step {k} ({names[k - 1]})")
        assert len(store.edit_log()) == UNDO_KEEP
        check_levels(store)
        assert leftovers(store.path) == [], (k, names[k - 1])
        store.close()


def _copy(root, dest):
    shutil.copytree(root, dest)
    return dest


# -- streaming ------------------------------------------------------------------
STREAM = {"overlap": 32, "chunk": 128, "scene_size": 256}


@pytest.fixture(scope="module")
def stream_setup(tmp_path_factory):
    """A small, fast model (a narrow ResNet-18) and a 520 x 100 image: 3 scenes,
    3 blocks, 2 store levels."""
    d = tmp_path_factory.mktemp("stream")
    model = seeded_weights(GLNet(GLNetConfig(5, "resnet18", 16, 8)), 1)
    ckpt = d / "tiny.glnet.pt"
    save_checkpoint(GLNetCheckpoint("global2local", model, ClassTable.default(5), None, 64, 64, scene_size=128), ckpt)
    image = d / "image.tif"
    tifffile.imwrite(image, structured_image(520, 100, seed=5), tile=(128, 128), photometric="rgb")
    spec = {"weights": str(ckpt), "device": "cpu", "batch_size": 32, "threads": 1}
    reference = segment_to_store(ModelSpec(**spec), image, d / "reference.zarr", **STREAM)
    levels = [np.asarray(a[...]) for a in reference.levels]
    reference.close()
    return d, spec, image, levels


@pytest.mark.slow  # sixty runs of a small model
def test_a_streaming_run_killed_at_any_step_resumes_to_the_same_bytes(stream_setup, work, one_torch_thread):
    _, spec, image, expected = stream_setup
    kw = {"image": str(image), **STREAM}
    (work / "kills").mkdir()
    (work / "kills" / "stream.json").write_text(json.dumps(kw))
    with faults.recording() as names:
        segment_to_store(ModelSpec(**spec), image, work / "recorded.zarr", **STREAM).close()
    assert len(expected) == 2
    runs = kill_at_every_step(
        "helpers.crashes:stream_op",
        work / "kills",
        list(range(1, len(names) + 1)),
        prepare="helpers.crashes:stream_prepare",
        spec=spec,
    )
    for k, work in runs.items():
        out = work / "out.zarr"
        if (out / ".glnet" / "glnet" / "state.json").is_file():
            store = LabelStore.open(out)
            check_levels(store)
            state = store.completion
            assert state.complete == (k >= names.index("run-finished")), (k, names[k - 1])
            for t, l, b, r in store.attrs["blocks_done"]:  # a block recorded as written holds its final labels
                np.testing.assert_array_equal(store.read((t, l, b, r)), expected[0][t:b, l:r], err_msg=str(k))
            assert leftovers(out) == []
            store.close()
        resumed = segment_to_store(ModelSpec(**spec), image, out, resume=True, **STREAM)
        assert resumed.completion.complete
        for level, want in zip(resumed.levels, expected):
            np.testing.assert_array_equal(np.asarray(level[...]), want, err_msg=f"killed at step {k}")
        resumed.close()
