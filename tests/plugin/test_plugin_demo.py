"""The demo as ``./run.sh`` opens it, in a real viewer under Xvfb: no error
at launch, the demo model says what it was trained on and where real models
are, an earlier run's work is asked about (and a visible Reset sets a store
aside, never deleting it)."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.classes import DEEPGLOBE
from glnet.data.synthetic import SyntheticScene
from glnet.store.labelstore import LabelStore
from napari_glnet import demo
from napari_glnet.session import default_store_path, image_identity

from helpers.plugin import answer_dialog, settle, wait_idle

SIZE = 256
NAME = "synthetic_scene_demo_test"


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(SIZE, SIZE, seed=5).render(0, 0, SIZE, SIZE)


def _args(**kw) -> Namespace:
    return Namespace(image=None, mode=None, global_weights=None, device="cpu", batch_size=4, **kw)


def _open(viewer, scene, start: bool = False):
    image, truth = scene
    weights = demo.demo_weights()
    assert weights is not None and weights.is_file()  # it ships in the package
    return demo.open_demo(viewer, Path(NAME), image, weights, _args(), truth, start=start)


def test_the_demo_opens_without_an_error_and_says_what_its_model_is(
    make_napari_viewer, qtbot, scene, tmp_path, monkeypatch, notes
):
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    w = _open(make_napari_viewer(), scene, start=True)
    try:
        wait_idle(qtbot, w.controller)
        assert not [n for n in notes if "ground truth" in n or "rror" in n], notes
        assert w.status.value.startswith(("done", "overview only")), w.status.value
        qtbot.waitUntil(lambda: "Trained on" in w.classes.value, timeout=60_000)
        card = w.classes.value
        assert "synthetic land-cover scenes only" in card  # from the checkpoint's metadata
        assert "fpn_deepglobe_global2local.pth" in card  # and where real models are
        qtbot.waitUntil(lambda: w.review.iou.scores is not None, timeout=60_000)  # scored against the truth
    finally:
        settle(qtbot, w)


def test_a_fresh_demo_asks_about_an_earlier_runs_work_and_reset_sets_a_store_aside(
    make_napari_viewer, qtbot, scene, tmp_path, monkeypatch
):
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    image, _ = scene
    path = default_store_path(image_identity(None, image, NAME), NAME)
    old = LabelStore.create(path, (SIZE, SIZE), DEEPGLOBE, chunk=128)
    old.write((0, 0, 8, 8), np.full((8, 8), 2, np.uint8), edit=True)  # a user's correction of an earlier run

    seen: list[str] = []
    answer_dialog("Start fresh", seen)
    w = _open(make_napari_viewer(), scene)
    try:
        assert seen and "1 accepted correction" in seen[0]
        assert not path.exists()  # the next segmentation starts an empty store
        kept = [p for p in path.parent.iterdir() if p.name.startswith(path.name.removesuffix(".zarr") + ".reset-")]
        assert len(kept) == 1 and LabelStore.open(kept[0], mode="r").edit_log()  # nothing deleted
        assert "Started fresh" in w.review.report.text()

        w.controller.segment_region((0, 0, 64, 64))
        wait_idle(qtbot, w.controller)
        assert w.controller.session.store.path == path and not w.controller.session.store.edit_log()
        assert w.review.reset_button.isEnabled() and not w.review.reset_button.isHidden()
        answer_dialog("Reset")
        assert w.review.reset_store()
        assert not path.exists() and "label store reset" in w.review.report.text()
    finally:
        settle(qtbot, w)
