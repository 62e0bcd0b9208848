"""The engine against the literal restatement of the authors' evaluation."""

import numpy as np
import pytest
import torch

from glnet.checkpoint import GLNetCheckpoint
from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.inference.engine import Segmenter
from glnet.inference.grid import PatchGrid

from helpers.reference import evaluate

SIZE = 96


def make_segmenter(models, mode, batch_size=4, **kw):
    model, fixed = models
    if mode == "global":
        model = _global_only(model)
    ckpt = GLNetCheckpoint(mode, model, ClassTable.default(5), fixed if mode == "local2global" else None, SIZE, SIZE)
    return Segmenter(ckpt, device="cpu", batch_size=batch_size, **kw)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (25, 22, 3), dtype=np.uint8)
    # structure at several scales, not just noise
    img = np.kron(base, np.ones((10, 10, 1), dtype=np.uint8))[:250, :213]
    return np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["global", "global2local", "local2global"])
def test_engine_reproduces_the_reference_pipeline(tiny_models, image, mode):
    model, fixed = tiny_models
    # the oracle runs first: a Segmenter converts the models it is given for inference
    scores = evaluate(_global_only(model) if mode == "global" else model, image, mode, SIZE, SIZE, fixed)
    out = make_segmenter(tiny_models, mode).segment(image)
    if mode == "global":
        np.testing.assert_allclose(out.logits, scores, atol=1e-4)
        assert out.labels.shape == image.shape[:2]
        return
    grid = PatchGrid(*image.shape[:2], SIZE)
    count = np.outer(grid.coverage(0, 0, image.shape[0]), grid.coverage(1, 0, image.shape[1]))
    np.testing.assert_allclose(out.logits * count, scores, atol=1e-4 * np.abs(scores).max())
    assert (out.labels == scores.argmax(0)).mean() > 0.9999
    assert len(np.unique(out.labels)) > 1, "weights should give a non-trivial segmentation"


def _global_only(model):
    from glnet.model import GLNet

    g = GLNet(model.config, global_only=True)
    g.load_state_dict(model.state_dict(), strict=False)
    return g.eval()


@pytest.mark.parametrize("mode", ["global2local", "local2global"])
def test_region_equals_whole_image_inside_the_region(tiny_models, image, mode):
    import copy

    whole = make_segmenter(copy.deepcopy(tiny_models), mode).segment(image)
    region = (60, 30, 140, 170)
    part = make_segmenter(tiny_models, mode).segment(image, region)
    t, l, b, r = region
    np.testing.assert_array_equal(part.labels, whole.labels[t:b, l:r])
    np.testing.assert_allclose(part.logits, whole.logits[:, t:b, l:r], atol=1e-5)


def test_region_runs_only_the_patches_it_needs(tiny_models, image):
    session = make_segmenter(tiny_models, "global2local").open(image)
    progress = list(session.run((0, 0, 10, 10)))
    assert progress[-1].total == 1
    assert len(session.grid) > 1
    # asking again costs nothing, a neighbouring region only its new patches
    assert list(session.run((0, 0, 10, 10)))[-1].total == 0
    needed = set(session.patches_for((0, 0, 10, 120))) - {0}
    assert list(session.run((0, 0, 10, 120)))[-1].total == len(needed)


def test_stopping_between_batches_keeps_work_and_resumes(tiny_models, image):
    import copy

    expected = make_segmenter(copy.deepcopy(tiny_models), "local2global", batch_size=2).segment(image)
    session = make_segmenter(tiny_models, "local2global", batch_size=2).open(image)
    run = session.run()
    next(run), next(run)  # the global pass and one batch of two patches
    run.close()  # a user pressed Cancel
    with pytest.raises(GLNetError, match="not been computed"):
        session.result()
    steps = list(session.run())
    assert steps[0].total == len(session.grid) - 2
    np.testing.assert_array_equal(session.result().labels, expected.labels)


def test_images_smaller_than_a_patch_are_padded(tiny_models):
    img = np.random.default_rng(1).integers(0, 255, (60, 130, 3), dtype=np.uint8)
    out = make_segmenter(tiny_models, "global2local").segment(img)
    assert out.labels.shape == (60, 130)
    assert out.logits.shape == (5, 60, 130)


def test_bad_inputs_give_clear_errors(tiny_models, image):
    seg = make_segmenter(tiny_models, "global2local")
    with pytest.raises(GLNetError, match=r"\(H, W, 3\)"):
        seg.open(image[:, :, 0])
    with pytest.raises(GLNetError, match="8-bit"):
        seg.open(image.astype(np.float32))
    with pytest.raises(GLNetError, match="does not overlap"):
        seg.segment(image, (300, 0, 400, 10))
    with pytest.raises(GLNetError, match="batch size"):
        make_segmenter(tiny_models, "global2local", batch_size=0)


def test_bf16_runs_and_returns_float32(tiny_models, image):
    out = make_segmenter(tiny_models, "global2local", precision="bf16").segment(image[:120, :120])
    assert out.logits.dtype == np.float32 and out.labels.shape == (120, 120)


def test_batch_size_does_not_change_results(tiny_models, image):
    import copy

    a = make_segmenter(copy.deepcopy(tiny_models), "global2local", batch_size=1).segment(image)
    b = make_segmenter(tiny_models, "global2local", batch_size=5).segment(image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert torch.get_num_threads() >= 1
