"""The plugin follows what the user looks at and says what it did: a second
image becomes the target with its labels directly above it, the store
chooser's empty folder becomes the store, progress only moves forward in
tiles, Cancel and a second Segment view say what happened, every review
action reports in the widget, and a file that is not a checkpoint is one
message.  Real viewers under Xvfb, the real tiny model, real stores."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.store.labelstore import LabelStore

from helpers.plugin import segmented_widget, wait_idle

TILE = (0, 0, 128, 128)  # one patch of the tiny model


def _names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


# -- the plugin follows the image ---------------------------------------------------------
def test_a_second_image_becomes_the_target_with_its_labels_above_it(widget, qtbot, crop, tmp_path):
    import tifffile

    viewer, ctl = widget.viewer, widget.controller
    ctl.segment_region(TILE)
    wait_idle(qtbot, ctl)
    first_store = ctl.session.store.path

    path = tmp_path / "second.tif"
    tifffile.imwrite(path, np.ascontiguousarray(crop[::-1]), photometric="rgb")
    (second,) = viewer.open(str(path), plugin="napari-glnet")  # File > Open, drag and drop: the reader
    assert widget.image.value == second  # the image just opened is the one to segment
    names = _names(viewer)  # the first image's labels stay on it, under the new image
    assert names[-1] == second.name and names.index("GLNet labels") == names.index("crop") + 2

    ctl.segment_region(TILE)
    wait_idle(qtbot, ctl)
    names = _names(viewer)
    at = names.index(second.name)
    assert names[at + 1 : at + 3] == ["GLNet overview", "GLNet labels"]  # directly above it, not under it
    assert viewer.layers["GLNet labels"].visible
    assert ctl.session.store.path != first_store  # its own store
    assert viewer.layers["GLNet labels"].metadata["glnet_store"] == str(ctl.session.store.path)

    viewer.layers.selection.active = viewer.layers["crop"]  # the selected image layer wins
    assert widget.image.value == viewer.layers["crop"]
    viewer.layers.remove(second)  # the image goes: its layers are hidden with it
    assert not viewer.layers["GLNet labels"].visible


def test_the_store_chooser_makes_a_store_in_an_empty_folder(make_napari_viewer, qtbot, crop, tiny_ckpt, tmp_path):
    folder = tmp_path / "new store"
    folder.mkdir()  # what Qt's folder dialog returns: an existing, empty folder
    w = segmented_widget(make_napari_viewer(), qtbot, crop, tiny_ckpt, store=folder, region=TILE)
    assert w.controller.session.store.path == folder
    assert LabelStore.open(folder).read(TILE).any() or w.status.value.startswith("done")
    assert w.review.review is not None and w.review.review.store.path == folder


# -- progress, cancel, again -------------------------------------------------------------
def test_progress_is_monotonic_in_tiles_and_cancel_says_what_was_kept(widget, qtbot):
    ctl = widget.controller
    widget.batch_size.value = 1
    seen: list[tuple[int, int]] = []
    ctl.progress.connect(lambda done, total: seen.append((done, total)))
    ctl.segment_region((0, 0, 256, 256))
    wait_idle(qtbot, ctl)
    assert seen and seen[-1][0] == seen[-1][1]
    assert len({total for _, total in seen}) == 1  # one unit: the region's tiles
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert widget.status.value.startswith("done: refined rows 0-256")

    ctl.segment_region((0, 0, 256, 256))  # the same view again: nothing to recompute, and it says so
    wait_idle(qtbot, ctl)
    assert widget.status.value.startswith("already refined")

    widget.store.value = widget.controller.session.store.path.parent / "other.zarr"
    stopped = []

    def cancel_once(done, _total):
        if not stopped:
            stopped.append(done)
            ctl.cancel()

    ctl.progress.connect(cancel_once)
    ctl.segment_region((0, 0, 256, 256))
    wait_idle(qtbot, ctl)
    assert widget.status.value.startswith("cancelled:"), widget.status.value
    assert "kept" in widget.status.value
    assert not widget.cancel_button.enabled


# -- every action reports in the widget ----------------------------------------------------
def test_every_review_action_reports_in_the_widget(make_napari_viewer, qtbot, crop, tiny_ckpt, tmp_path):
    from helpers.plugin import answer_dialog

    viewer = make_napari_viewer()
    w = segmented_widget(viewer, qtbot, crop, tiny_ckpt, store=tmp_path / "s.zarr", region=TILE)
    review, report = w.review, w.review.report
    layer = review.review.edit(TILE)
    assert report.text().startswith("Editing rows 0-128")
    before = int(layer.data[10, 10])
    layer.paint((10, 10), (before + 1) % 5)
    qtbot.wait(10)
    review.accept()
    assert report.text().startswith("Accepted edit #") and "px changed" in report.text()
    assert "→" in report.text()  # which classes changed
    review.undo()
    assert report.text().startswith("Undid edit #")
    review.mark_reviewed(TILE)
    assert report.text().startswith("Marked rows 0-128, columns 0-128 reviewed")
    overlay = viewer.layers["GLNet reviewed"]  # the reviewed regions, drawn
    assert overlay.visible and len(overlay.data) == 1
    review.reviewed_box.setChecked(False)
    assert not overlay.visible
    review.reviewed_box.setChecked(True)
    assert overlay.visible

    answer_dialog("Export without held-out tiles")
    worker = review.export(str(tmp_path / "export"))
    qtbot.waitUntil(lambda: report.text().startswith("Exported"), timeout=60_000)
    assert "1 tile" in report.text() and str(tmp_path / "export") in report.text()
    assert worker is not None


# -- a file that is not a checkpoint ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["text file", "folder", "device"])
def test_a_file_that_is_not_a_checkpoint_is_one_message(widget, qtbot, tmp_path, notes, kind):
    if kind == "text file":
        path = tmp_path / "weights.pt"
        path.write_text("these are not weights\n")
    elif kind == "folder":
        path = tmp_path / "weights.pt"
        path.mkdir()
    else:
        path = "/dev/null"
    widget.set_checkpoint(path)
    qtbot.waitUntil(lambda: widget._classes_worker is None and "reading" not in widget.classes.value)
    assert "not" in widget.classes.value and "Traceback" not in widget.classes.value  # the card says what it is
    widget.start()
    wait_idle(qtbot, widget.controller)
    errors = [n for n in notes if "pop from" in n or "Traceback" in n]
    assert not errors
    assert len([n for n in notes if "checkpoint" in n]) == 1, notes
    assert widget.status.value.startswith("failed:")
    assert "GLNet labels" not in widget.viewer.layers
