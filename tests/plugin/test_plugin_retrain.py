"""Export and fine-tune from the dock that cannot waste a user's time: an
export that would hold nothing out offers smaller tiles, a fine-tune without
held-out tiles does not start, a fine-tune shows epoch and batch, can be
cancelled and writes only the checkpoint asked for.  A real viewer under
Xvfb, real dialogs clicked by a timer, a real store, the real tiny model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.classes import ClassTable
from glnet.data.dataset import read_export
from glnet.store.labelstore import LabelStore
from napari_glnet._retrain_widget import RetrainBox
from napari_glnet.guard import ask_with_dialog

from helpers.plugin import answer_dialog, answer_dialogs

SIZE = 512


@pytest.fixture
def box(make_napari_viewer, real_image, tiny_ckpt, tmp_path, qtbot):
    """The retraining box over a store whose whole 512 px image is reviewed."""
    viewer = make_napari_viewer()
    rgb = np.ascontiguousarray(real_image[800:1312, 1000:1512])
    image = viewer.add_image(rgb, name="scene", rgb=True)
    store = LabelStore.create(tmp_path / "labels.zarr", (SIZE, SIZE), ClassTable.default(5), chunk=128)
    store.write((0, 0, SIZE, SIZE), (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) // 7 % 5).astype(np.uint8), edit=True)
    store.mark_reviewed((0, 0, SIZE, SIZE))
    said: list[str] = []
    b = RetrainBox(lambda: store, lambda: image, lambda: str(tiny_ckpt), None, lambda _path: None)
    b._ask = ask_with_dialog(b)
    b.said.connect(said.append)
    b.set_enabled(True)
    yield b, said
    if b.worker is not None and getattr(b.worker, "is_running", False):
        b.worker.quit()
        qtbot.waitUntil(lambda: not b.worker.is_running, timeout=60_000)


def _export(b, said, qtbot, folder, answer: str) -> list[str]:
    seen: list[str] = []
    answer_dialog(answer, seen)
    b.export(str(folder))
    qtbot.waitUntil(lambda: said and said[-1].startswith("Exported"), timeout=60_000)
    return seen


def test_an_export_that_holds_nothing_out_offers_smaller_tiles(box, qtbot, tmp_path):
    b, said = box
    seen = _export(b, said, qtbot, tmp_path / "split", "Use 256 px tiles")
    assert "none can be held out" in seen[0] and "With 256 px tiles there are 4, 1 of them held out" in seen[0]
    splits = [split for _, _, split in read_export(tmp_path / "split")]
    assert len(splits) == 4 and splits.count("val") == 1
    assert "(1 held out for validation)" in said[-1]


def test_a_finetune_without_held_out_tiles_does_not_start(box, qtbot, tmp_path):
    b, said = box
    _export(b, said, qtbot, tmp_path / "all", "Export without held-out tiles")
    assert "(0 held out" in said[-1]
    out = tmp_path / "out" / "new.pt"
    out.parent.mkdir()
    seen: list[str] = []
    answer_dialog("OK", seen)
    assert b.finetune(str(tmp_path / "all"), str(out)) is None
    assert "no held-out tiles" in seen[0] and said[-1].startswith("Fine-tuning not started")
    assert not any(out.parent.iterdir())  # nothing trained, nothing written


def test_a_finetune_shows_its_batches_can_be_cancelled_and_writes_only_its_output(box, qtbot, tmp_path):
    b, said = box
    _export(b, said, qtbot, tmp_path / "split", "Use 256 px tiles")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    progress: list[str] = []
    worker = b.finetune(str(tmp_path / "split"), str(out_dir / "new.pt"))
    worker.yielded.connect(lambda _item: progress.append(b.progress.text()))
    assert not b.cancel_button.isHidden() and not b.bar.isHidden()
    qtbot.waitUntil(lambda: said[-1].startswith(("Fine-tuned", "Fine-tuning failed")), timeout=300_000)
    assert said[-1].startswith("Fine-tuned 5 epochs"), said[-1]
    assert any(p.startswith("Fine-tuning: epoch 1/5, batch 1/") for p in progress), progress
    values = [int(p.split("epoch ")[1].split("/")[0]) for p in progress if p.startswith("Fine-tuning: epoch")]
    assert values == sorted(values) and values[-1] == 5
    assert sorted(p.name for p in out_dir.iterdir()) == ["new.pt"]  # no .last.pt, no logs
    assert b.cancel_button.isHidden()

    stopped: list[str] = []

    def cancel_once(_item):
        if not stopped:
            stopped.append(b.progress.text())
            b.cancel()

    worker = b.finetune(str(tmp_path / "split"), str(out_dir / "again.pt"))
    worker.yielded.connect(cancel_once)
    qtbot.waitUntil(lambda: said[-1].startswith("Fine-tuning cancelled"), timeout=120_000)
    assert "nothing was written" in said[-1] and not (out_dir / "again.pt").exists()
    assert sorted(p.name for p in out_dir.iterdir()) == ["new.pt"]


def test_a_folder_that_is_not_empty_is_asked_about_in_gui_words(box, qtbot, tmp_path):
    b, said = box
    folder = tmp_path / "used"
    folder.mkdir()
    (folder / "notes.txt").write_text("someone's file\n")
    seen: list[str] = []
    answer_dialogs(["Use 256 px tiles", "Cancel"], seen)  # the held-out question comes first
    assert b.export(str(folder)) is None
    assert "is not empty" in seen[-1] and "--" not in seen[-1]  # no command-line flags in a dialog
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # nothing written

    answer_dialogs(["Use 256 px tiles", "Overwrite"])
    b.export(str(folder))
    qtbot.waitUntil(lambda: said and said[-1].startswith("Exported"), timeout=60_000)
    assert (folder / "notes.txt").exists() and len(read_export(folder)) == 4
