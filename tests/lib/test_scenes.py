"""Scene tiling: big images as overlapping training-size scenes, blended."""

import itertools

import numpy as np
import pytest

from glnet.checkpoint import GLNetCheckpoint
from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.inference.engine import Segmenter
from glnet.inference.scenes import SceneGrid, SceneSession, scene_origins
from glnet.model import GLNet

from helpers import structured_image, tiny_config
from helpers.reference import seeded_weights

SIZE = 96  # patch and global view
SCENE = 200


def segmenter(mode: str) -> Segmenter:
    """A fresh tiny model each time: a Segmenter converts the model it is given."""
    model = seeded_weights(GLNet(tiny_config(), global_only=mode == "global"), 1)
    fixed = seeded_weights(GLNet(tiny_config(), global_only=True), 2) if mode == "local2global" else None
    ckpt = GLNetCheckpoint(mode, model, ClassTable.default(5), fixed, SIZE, SIZE, scene_size=SCENE)
    return Segmenter(ckpt, device="cpu", batch_size=3)


def run_all(session: SceneSession, region=None):
    for _ in session.run(region):
        pass
    return session.result(region)


def test_scene_origins_cover_the_axis_with_the_overlap():
    for length in (200, 201, 390, 450, 1000, 2449, 20000):
        starts = scene_origins(length, SCENE if length < 2000 else 2448, 25 if length < 2000 else 306)
        size = SCENE if length < 2000 else 2448
        assert starts[0] == 0 and (starts[-1] + size == length or length <= size)
        overlaps = [a + size - b for a, b in itertools.pairwise(starts)]
        assert all(o >= (25 if length < 2000 else 306) for o in overlaps)
        assert all(a < b for a, b in itertools.pairwise(starts))


def test_bad_scene_settings_are_refused():
    with pytest.raises(GLNetError, match="overlap"):
        SceneGrid(1000, 1000, 200, 150)
    with pytest.raises(GLNetError, match="scene size"):
        SceneGrid(1000, 1000, 16, 0)


@pytest.mark.parametrize("mode", ["global", "global2local", "local2global"])
def test_an_image_of_scene_size_gets_the_core_engine_result(mode):
    image = structured_image(SCENE, 170)
    core = segmenter(mode).segment(image)
    scenes = run_all(SceneSession(segmenter(mode), image))
    assert len(SceneSession(segmenter(mode), image).grid) == 1
    np.testing.assert_array_equal(scenes.labels, core.labels)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["global2local", "local2global"])
def test_regions_and_order_do_not_change_the_result(mode):
    image = structured_image(330, 290, seed=3)  # 2 x 2 scenes
    whole = run_all(SceneSession(segmenter(mode), image))
    assert whole.labels.shape == image.shape[:2]
    assert len(np.unique(whole.labels)) > 1

    # a region across scene overlaps, asked first in a fresh session, then the rest in reverse order
    session = SceneSession(segmenter(mode), image)
    region = (110, 100, 250, 230)
    part = run_all(session, region)
    np.testing.assert_array_equal(part.labels, whole.labels[110:250, 100:230])
    np.testing.assert_allclose(part.logits, whole.logits[:, 110:250, 100:230], rtol=1e-5, atol=1e-5)
    for i in reversed(range(len(session.grid))):
        for _ in session.run_scene(i):
            pass
    np.testing.assert_array_equal(session.result().labels, whole.labels)


def _global_passes(seg: Segmenter) -> list[int]:
    """A running count of the global branch's passes (a forward hook on its backbone)."""
    count = [0]
    seg.global_net.resnet_global.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


@pytest.mark.parametrize("keep_bytes", [None, 1])
def test_kept_global_passes_are_reused_within_the_memory_budget(keep_bytes):
    """An overview of every scene then the patches: with room for every scene's
    global context, each global pass runs once; with no room (``keep_bytes``),
    every pass runs again (the one scene kept goes when the next opens).  The
    labels are the same."""
    image = structured_image(330, 290, seed=3)  # 2 x 2 scenes
    whole = run_all(SceneSession(segmenter("global2local"), image))
    seg = segmenter("global2local")
    passes = _global_passes(seg)
    session = SceneSession(seg, image, keep_sessions=9, keep_bytes=keep_bytes)
    rows, cols = np.arange(0, SCENE, 7), np.arange(0, SCENE, 7)
    for i in range(len(session.grid)):
        session.global_labels(i, rows, cols)
    assert passes[0] == 4
    np.testing.assert_array_equal(run_all(session).labels, whole.labels)
    assert passes[0] == (4 if keep_bytes is None else 8)


def test_blending_leaves_no_seam_at_scene_edges():
    """Where two scenes overlap, the result moves linearly from one scene's
    logits to the other's across the overlap."""
    image = structured_image(SCENE, 360, seed=5)
    session = SceneSession(segmenter("global2local"), image)
    grid = session.grid
    (_, l0, _, r0), (_, l1, _, r1) = grid.boxes
    whole = run_all(session)
    a = session.finished[0].result((0, 0, SCENE, r0 - l0))
    b = session.finished[1].result((0, 0, SCENE, r1 - l1))
    for x in (l1, (l1 + r0) // 2, r0 - 1):
        wb = (x + 0.5 - l1) / (r0 - l1)  # 0 at the left end of the overlap, 1 at its right end
        expected = (1 - wb) * a.logits[:, :, x] + wb * b.logits[:, :, x - l1]
        np.testing.assert_allclose(whole.logits[:, :, x], expected, rtol=1e-4, atol=1e-4)
    # outside the overlap each scene alone decides
    np.testing.assert_array_equal(whole.labels[:, :l1], a.labels[:, :l1])
    np.testing.assert_array_equal(whole.labels[:, r0:], b.labels[:, r0 - l1 :])
