"""Coarse-to-fine: patches far from the global prediction's foreground skip
the local branch; with foreground everywhere nothing changes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from glnet.checkpoint import GLNetCheckpoint, save_checkpoint
from glnet.classes import ClassInfo, ClassTable
from glnet.data.synthetic import SyntheticScene
from glnet.inference.coarse import CoarseToFine
from glnet.inference.engine import Segmenter
from glnet.model import GLNet, GLNetConfig
from glnet.train.batches import prepare
from glnet.train.steps import fine_patches, freeze, set_train_mode, train_step

from helpers.reference import seeded_weights

BINARY = ClassTable((ClassInfo("background", (0, 0, 0)), ClassInfo("building", (255, 0, 0))))
SIZE, SIZE_G, SIZE_P = 256, 64, 96  # a 5 x 5 patch grid


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return SyntheticScene(SIZE, SIZE, seed=5).render(0, 0, SIZE, SIZE)[0]


def _checkpoint(mode: str, bias: float = 0.0) -> GLNetCheckpoint:
    """A 2-class model with varied weights; ``bias`` is added to the global
    classifier's "building" score (of the fixed model in local2global), which
    moves the proposed foreground."""
    cfg = GLNetConfig(2, "resnet18", 32, 16)
    model = seeded_weights(GLNet(cfg), 21)
    fixed = seeded_weights(GLNet(cfg, global_only=True), 22) if mode == "local2global" else None
    with torch.no_grad():
        (fixed or model).fpn_global.classify.bias[1] += bias
    return GLNetCheckpoint(mode, model, BINARY, fixed, size_g=SIZE_G, size_p=SIZE_P)


def _segment(ckpt: GLNetCheckpoint, image: np.ndarray, ctf: CoarseToFine | None):
    seg = Segmenter(copy.deepcopy(ckpt), device="cpu", batch_size=4, coarse_to_fine=ctf)
    session = seg.open(image)
    progress = list(session.run())
    return session, session.result(), progress[-1]


def _global_margin(ckpt: GLNetCheckpoint, image: np.ndarray) -> np.ndarray:
    """building - background score of the global prediction, per global cell."""
    session = Segmenter(copy.deepcopy(ckpt), device="cpu").open(image)
    g = session.global_logits().numpy()
    return g[1] - g[0]


def test_near_foreground_geometry():
    ctf = CoarseToFine(margin=9)
    fg = np.zeros((100, 100), bool)
    fg[50, 50] = True  # full resolution, one pixel
    origins = [(0, 0), (0, 60), (60, 0), (60, 60), (30, 30)]
    assert ctf.near(fg, (100, 100), origins, 40) == [False, False, False, False, True]
    assert CoarseToFine(margin=15).near(fg, (100, 100), origins, 40) == [True, True, True, True, True]
    coarse = np.zeros((10, 10), bool)  # a 1/10-scale map of the same image: cell (9, 9) = pixels 90..99
    coarse[9, 9] = True
    assert CoarseToFine(margin=0).near(coarse, (100, 100), origins, 40) == [False, False, False, True, False]


@pytest.mark.parametrize("mode", ["global2local", "local2global"])
def test_foreground_everywhere_gives_exactly_the_normal_result(image, mode):
    ckpt = _checkpoint(mode, bias=1e4)  # the global branch says "building" everywhere
    _, normal, _ = _segment(ckpt, image, None)
    session, fine, _last = _segment(ckpt, image, CoarseToFine(margin=0))
    assert session.patches_skipped == 0 and fine.patches_skipped == 0
    assert np.array_equal(fine.labels, normal.labels)
    assert np.array_equal(fine.logits, normal.logits)


@pytest.mark.parametrize("mode", ["global2local", "local2global"])
def test_background_everywhere_skips_the_local_branch(image, mode):
    ckpt = _checkpoint(mode, bias=-1e4)
    session, result, last = _segment(ckpt, image, CoarseToFine(margin=32))
    n = len(session.origins)
    assert n == 25 and session.patches_skipped == n and result.patches_skipped == n
    assert last.total == 0 and session.complete  # no patch went through the local branch
    assert not result.labels.any()  # the global prediction: all background


def test_skipped_patches_take_the_global_prediction(image):
    """A proposal covering part of the image: fine patches keep exactly their
    normal logits, skipped ones the global prediction."""
    diff = _global_margin(_checkpoint("global2local"), image)
    for q in np.linspace(0.5, 0.99, 12):  # a foreground share that leaves some patches out
        ckpt = _checkpoint("global2local", bias=-float(np.quantile(diff, q)))
        session, result, last = _segment(ckpt, image, CoarseToFine(margin=0))
        if 0 < session.patches_skipped < len(session.origins):
            break
    else:
        pytest.fail("no threshold gave a partial proposal")
    fine = session.fine_patches()
    assert last.total == len(fine) and result.patches_skipped == len(session.origins) - len(fine)
    normal = _segment(ckpt, image, None)[0]
    p = SIZE_P
    for i in range(len(session.origins)):
        ours = session._patch_logits(i)
        if i in fine:  # (batched with other patches: equal up to float rounding)
            torch.testing.assert_close(ours, normal._patch_logits(i), rtol=1e-5, atol=1e-5)
        else:  # the global logits, nearest-sampled
            g = session.global_logits()
            assert set(np.unique(ours.numpy())) <= set(np.unique(g.numpy()))
    covered_by_skipped_only = np.ones((SIZE, SIZE), bool)
    for i in fine:
        t, l = session.origins[i]
        covered_by_skipped_only[t : t + p, l : l + p] = False
    assert covered_by_skipped_only.any()
    assert not result.labels[covered_by_skipped_only].any()  # no foreground proposed there, margin 0


@pytest.mark.parametrize("mode", ["global2local", "local2global"])
def test_training_uses_only_patches_near_foreground(image, mode):
    labels = np.zeros((SIZE, SIZE), np.int64)
    labels[:20, :20] = 1  # true foreground in one corner
    im = prepare(image, labels, SIZE_G, SIZE_P, torch.device("cpu"))
    no_proposal = torch.zeros(1, 2, 16, 16)
    no_proposal[:, 0] = 1.0
    kept = fine_patches(im, no_proposal, CoarseToFine(margin=0))
    assert kept.origins == [(0, 0)]  # only the patch over the true foreground
    ckpt = _checkpoint(mode, bias=-1e4)  # proposes nothing
    model = ckpt.model
    set_train_mode(model, mode)
    global_model = freeze(ckpt.global_model) if mode == "local2global" else None
    loss = train_step(mode, model, [im], 4, global_model, coarse_to_fine=CoarseToFine(margin=0))
    assert np.isfinite(loss) and loss > 0
    grads = [p.grad for p in model.ensemble_conv.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    model.zero_grad()
    background = prepare(image, np.zeros((SIZE, SIZE), np.int64), SIZE_G, SIZE_P, torch.device("cpu"))
    loss = train_step(mode, model, [background], 4, global_model, coarse_to_fine=CoarseToFine(margin=0))
    assert np.isfinite(loss)  # no patch at all: global2local has no loss, local2global only the global one


def test_cli_segment_reports_skipped_patches(image, tmp_path, capsys):
    from glnet.cli import main

    save_checkpoint(_checkpoint("global2local", bias=-1e4), tmp_path / "m.pt")
    Image.fromarray(image).save(tmp_path / "scene.png")
    argv = [
        "segment",
        str(tmp_path / "scene.png"),
        "-o",
        str(tmp_path / "pred.png"),
        "--weights",
        str(tmp_path / "m.pt"),
        "--device",
        "cpu",
        "--coarse-to-fine",
        "--ctf-margin",
        "16",
    ]
    assert main(argv) == 0
    assert "coarse-to-fine: 25 patch(es) skipped" in capsys.readouterr().out
