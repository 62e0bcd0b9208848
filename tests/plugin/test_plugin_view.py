"""The plugin's inference side with real napari viewers (Xvfb), a real tiny
model saved as a checkpoint file, and real OME-Zarr label stores.

What a user does: open the widget from the plugin menu, press "Segment
view", pan, cancel, right-click the image.  The labels that land in the
store must be the library's labels for exactly the rectangle in view."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint
from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.inference.coarse import CoarseToFine
from glnet.inference.engine import Segmenter
from glnet.inference.scenes import SceneSession
from glnet.inference.spec import ModelSpec
from glnet.model import GLNet
from glnet.store.labelstore import LabelStore

from helpers import tiny_config
from helpers.plugin import PATCH, open_widget, set_view, settle, wait_idle
from helpers.reference import seeded_weights


def _reference(ckpt_path, image, region):
    """The library's own labels for ``region`` (a fresh model, nothing shared with the plugin)."""
    session = SceneSession(Segmenter(load_checkpoint(ckpt_path), device="cpu"), image)
    for _ in session.run(region):
        pass
    return session.result(region).labels


def _expected_view(viewer, shape):
    """The visible rectangle computed here from the camera, independently of the controller."""
    half = np.asarray(viewer.canvas.size, float) / 2 / viewer.scene.camera.zoom
    c = np.asarray(viewer.scene.camera.center[-2:])
    lo, hi = np.floor(c - half).astype(int), np.ceil(c + half).astype(int)
    return (max(0, lo[0]), max(0, lo[1]), min(shape[0], hi[0]), min(shape[1], hi[1]))


# -- discovery ----------------------------------------------------------------------
def test_napari_discovers_the_plugin_and_its_menu_entry(make_napari_viewer):
    from npe2 import PluginManager

    viewer = make_napari_viewer()  # napari discovers the installed plugins when its first viewer starts
    manifest = PluginManager.instance().get_manifest("napari-glnet")
    assert [w.display_name for w in manifest.contributions.widgets] == ["GLNet segmentation"]
    assert any(
        m.command == "napari-glnet.segment_widget" for m in manifest.contributions.menus["napari/layers/segment"]
    )
    _, widget = viewer.window.add_plugin_dock_widget("napari-glnet", "GLNet segmentation")
    assert type(widget).__name__ == "SegmentWidget" and widget.viewer == viewer  # napari hands over a proxy
    assert "Shift-G" in widget.segment_button.tooltip and "Shift-H" in widget.cancel_button.tooltip


# -- segment view ---------------------------------------------------------------------
def test_segment_view_writes_the_engines_labels_for_the_visible_rectangle(widget, qtbot, crop, tiny_ckpt):
    viewer, ctl = widget.viewer, widget.controller
    set_view(viewer, (90, 150), 4.0)  # a known viewport inside the image
    expected_region = _expected_view(viewer, crop.shape[:2])
    assert ctl.visible_region() == expected_region
    assert expected_region[2] - expected_region[0] < 256  # really a part of the image

    widget.start()
    wait_idle(qtbot, ctl)
    store = ctl.session.store
    got = store.read(expected_region)
    np.testing.assert_array_equal(got, _reference(tiny_ckpt, crop, expected_region))
    # the image is one scene: also the core engine's region output
    seg = Segmenter(load_checkpoint(tiny_ckpt), device="cpu")
    np.testing.assert_array_equal(got, seg.segment(crop, expected_region).labels)

    labels = viewer.layers["GLNet labels"]
    assert not labels.editable  # the store is shown read-only (a 256 px store has one level)
    shown = np.asarray(labels.data)
    t, l, b, r = expected_region
    np.testing.assert_array_equal(shown[t:b, l:r], got)
    assert (shown[:t] == ctl.session.no_label).all()  # not segmented yet: transparent, not class 0
    colours = ClassTable.default(5).colors / 255
    for i, rgb in enumerate(colours):
        np.testing.assert_allclose(labels.colormap.map(np.array([i]))[0][:3], rgb, atol=1e-6)
    assert labels.colormap.map(np.array([ctl.session.no_label]))[0][3] == 0
    overview = viewer.layers["GLNet overview"]
    assert overview.data.shape == ctl.session.current_overview().labels.shape
    assert "GLNet labels" in widget.status.value or widget.status.value.startswith("done")


def test_store_is_reused_and_edits_are_never_overwritten(widget, qtbot, crop, tiny_ckpt):
    ctl = widget.controller
    ctl.segment_region((0, 0, 100, 100))
    wait_idle(qtbot, ctl)
    store = ctl.session.store
    path = store.path
    edit = np.full((40, 40), 3, np.uint8)
    store.write((10, 10, 50, 50), edit, edit=True)  # a person's correction
    ctl.segment_region((0, 0, 256, 256))
    wait_idle(qtbot, ctl)
    np.testing.assert_array_equal(store.read((10, 10, 50, 50)), edit)
    outside = _reference(tiny_ckpt, crop, (0, 0, 256, 256))
    got = store.read()
    got[10:50, 10:50] = outside[10:50, 10:50]
    np.testing.assert_array_equal(got, outside)
    # the store is the image's: a new session (same image, same model) finds it with its edit
    assert LabelStore.open(path).edit_log()[0]["region"] == [10, 10, 50, 50]


def test_patch_size_and_coarse_to_fine_come_from_the_form(widget, qtbot, crop, tiny_ckpt):
    ctl, region = widget.controller, (0, 0, 200, 230)
    widget.patch_size.value = 128
    widget.coarse_to_fine.value = True
    ctl.segment_region(region)
    wait_idle(qtbot, ctl)
    seg = ctl.session.seg
    assert (seg.size_p, seg.coarse_to_fine, seg.batch_size) == (128, CoarseToFine(), 2)
    spec = ModelSpec(weights=tiny_ckpt, device="cpu", size_p=128, coarse_to_fine=True)
    expected = SceneSession(spec.load(), crop)
    for _ in expected.run(region):
        pass
    np.testing.assert_array_equal(ctl.session.store.read(region), expected.result(region).labels)


def test_cancel_stops_within_one_patch_batch_and_the_rest_is_reused(widget, qtbot, crop, tiny_ckpt):
    ctl = widget.controller
    widget.batch_size.value = 1  # 9 patches, 9 batches
    seen = {}

    def on_yield(item):
        from napari_glnet.session import RefineProgress

        if isinstance(item, RefineProgress) and item.stage == "local" and "batches" not in seen:
            ctl.cancel()
            seen["batches"] = ctl.session.batches

    ctl.segment_region((0, 0, 256, 256))
    ctl.worker.yielded.connect(on_yield)
    wait_idle(qtbot, ctl)
    assert seen, "the worker never reported a batch"
    stopped_at = ctl.session.batches
    assert stopped_at <= seen["batches"] + 1 < 9
    assert (ctl.session.store.read() == 0).all()  # the only tile was not finished: nothing written

    ctl.segment_region((0, 0, 256, 256))
    wait_idle(qtbot, ctl)
    assert ctl.session.batches == 9  # the finished patches were not computed again
    np.testing.assert_array_equal(ctl.session.store.read(), _reference(tiny_ckpt, crop, (0, 0, 256, 256)))


# -- right-click ------------------------------------------------------------------------
def _mouse(kind, pos, position, button=2):
    from types import SimpleNamespace

    from napari.utils._proxies import ReadOnlyWrapper

    event = SimpleNamespace(
        type=kind,
        pos=np.asarray(pos, float),
        position=tuple(position),
        button=button,
        modifiers=(),
        is_dragging=kind == "mouse_move",
        handled=False,
    )
    return ReadOnlyWrapper(event, exceptions=("handled",))


def _click(viewer, position, drag_to=None):
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    mouse_press_callbacks(viewer, _mouse("mouse_press", (200, 150), position))
    end = (200, 150) if drag_to is None else drag_to
    if drag_to is not None:
        mouse_move_callbacks(viewer, _mouse("mouse_move", end, position))
    mouse_release_callbacks(viewer, _mouse("mouse_release", end, position))


def test_right_drag_opens_no_menu_and_a_click_segments_the_block_there(
    make_napari_viewer, qtbot, crop, scenes_ckpt, tmp_path, monkeypatch
):
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    widget = open_widget(viewer, crop, scenes_ckpt)
    ctl = widget.controller

    _click(viewer, (200, 40), drag_to=(260, 190))  # a right-drag zooms in napari: no menu
    assert ctl.last_menu is None
    viewer.layers.selection.active = viewer.layers["crop"]
    _click(viewer, (200, 40))
    menu = ctl.last_menu
    assert menu is not None and menu.isVisible()
    actions = {a.text(): a for a in menu.actions()}
    assert set(actions) == {
        "Segment region here",
        "Segment visible view",
        "Segment selected rectangle",
        "Mark region reviewed",
    }
    assert not actions["Segment selected rectangle"].isEnabled()  # no Shapes layer
    menu.close()

    actions["Segment region here"].trigger()
    wait_idle(qtbot, ctl)
    session = ctl.session
    block = session.block_at(200, 40)
    t, l, b, r = block
    assert t <= 200 < b and l <= 40 < r and (b - t, r - l) == (PATCH, PATCH)
    assert len(session.grid) == 4  # the block spans scene overlaps: blended labels
    np.testing.assert_array_equal(session.store.read(block), _reference(scenes_ckpt, crop, block))
    outside = np.ones(crop.shape[:2], bool)
    outside[t:b, l:r] = False
    assert (np.asarray(viewer.layers["GLNet labels"].data)[outside] == session.no_label).all()

    # with a session, "Mark region reviewed" records the view in the store
    _click(viewer, (100, 100))
    {a.text(): a for a in ctl.last_menu.actions()}["Mark region reviewed"].trigger()
    assert session.store.reviewed_regions() == [ctl.visible_region()]
    settle(qtbot, widget)


def test_a_rectangle_of_a_shapes_layer_is_a_region_to_segment(widget, qtbot, crop, tiny_ckpt):
    viewer, ctl = widget.viewer, widget.controller
    viewer.add_shapes([[[20, 30], [20, 90], [70, 90], [70, 30]]], shape_type="rectangle", name="roi")
    assert ctl.rectangle_region() == (20, 30, 70, 90)
    _click(viewer, (50, 50))
    {a.text(): a for a in ctl.last_menu.actions()}["Segment selected rectangle"].trigger()
    wait_idle(qtbot, ctl)
    np.testing.assert_array_equal(
        ctl.session.store.read((20, 30, 70, 90)), _reference(tiny_ckpt, crop, (20, 30, 70, 90))
    )


# -- errors and the form ------------------------------------------------------------------
def test_a_bad_checkpoint_is_one_notification(widget, qtbot, tmp_path):
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    bad = tmp_path / "not_a_checkpoint.pt"
    bad.write_bytes(b"garbage")
    widget.set_checkpoint(bad)
    widget.start()
    wait_idle(qtbot, widget.controller)
    assert any("not_a_checkpoint" in str(n.message) for n in seen), [str(n.message) for n in seen]
    assert "GLNet labels" not in widget.viewer.layers


def test_the_class_table_is_shown_in_colour(widget, qtbot):
    qtbot.waitUntil(lambda: "class 4" in widget.classes.value, timeout=60_000)
    r, g, b = ClassTable.default(5).colors[1]
    assert f"rgb({r},{g},{b})" in widget.classes.value


def test_a_store_with_edits_for_another_image_is_not_replaced(tmp_path):
    from napari_glnet.session import open_store

    table = ClassTable.default(5)
    store = LabelStore.create(tmp_path / "s.zarr", (100, 100), table)
    store.write((0, 0, 10, 10), np.ones((10, 10), np.uint8), edit=True)
    with pytest.raises(GLNetError, match="left untouched"):
        open_store(tmp_path / "s.zarr", (200, 200), table)
    assert LabelStore.open(tmp_path / "s.zarr").shape == (100, 100)
    fresh = LabelStore.create(tmp_path / "t.zarr", (100, 100), table)
    del fresh
    assert open_store(tmp_path / "t.zarr", (200, 200), table).shape == (200, 200)  # nothing to lose: replaced


# -- following the view -------------------------------------------------------------------
def test_panning_with_auto_refine_retargets_the_work_to_the_new_view(widget, qtbot, crop, tiny_ckpt):
    viewer, ctl = widget.viewer, widget.controller
    widget.auto.value = True
    assert ctl.auto_refine
    set_view(viewer, (60, 60), 6.0)
    qtbot.waitUntil(lambda: ctl.running, timeout=5_000)  # debounced, then started by the camera alone
    set_view(viewer, (200, 190), 6.0)  # moved on before the first view was done
    qtbot.waitUntil(lambda: ctl.session is not None and ctl.session.store.path.exists(), timeout=120_000)
    final = _expected_view(viewer, crop.shape[:2])
    qtbot.waitUntil(lambda: not ctl.running and final in ctl.session.shown_regions(), timeout=240_000)
    np.testing.assert_array_equal(ctl.session.store.read(final), _reference(tiny_ckpt, crop, final))
    widget.auto.value = False
    set_view(viewer, (120, 120), 6.0)
    qtbot.wait(600)
    assert not ctl.running  # auto-refine off: the camera alone starts nothing


def test_keys_are_bound_free_in_napari_and_documented(widget, tmp_path):
    from app_model.types import KeyBinding
    from napari.utils.shortcuts import default_shortcuts

    from napari_glnet.controller import GUIDED_KEYS, KEYS, RESERVED_KEYS
    from napari_glnet.review import ReviewController

    napari_keys = {str(k) for keys in default_shortcuts.values() for k in keys}
    ours = [k.replace("-", "+") for k in (*KEYS.values(), *RESERVED_KEYS.values(), *GUIDED_KEYS.values())]
    assert not napari_keys & set(ours) and len(set(ours)) == len(ours)
    viewer = widget.viewer
    for key in KEYS.values():
        assert KeyBinding.from_str(key.replace("-", "+")) in viewer.keymap
    before = set(viewer.keymap)
    review = ReviewController(viewer, LabelStore.create(tmp_path / "s.zarr", (64, 64), ClassTable.default(5)))
    bound = set(viewer.keymap) - before
    assert bound == {KeyBinding.from_str(k.replace("-", "+")) for k in RESERVED_KEYS.values()}
    review.close()
    assert KEYS["segment_view"] in widget.segment_button.tooltip and KEYS["cancel"] in widget.cancel_button.tooltip
    assert "CPU" in widget.note.value and not widget.note.native.isHidden()  # the CPU warning is on show


def test_a_pyramidal_tiff_is_segmented_in_view_into_a_multiscale_store(
    make_napari_viewer, qtbot, tiny_ckpt, tmp_path, monkeypatch
):
    from glnet.data.synthetic_files import write_scene
    from glnet.io.readers import open_image

    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "scene.tif"
    write_scene(path, 1100, 1300, seed=2, tile=256)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-glnet")
    assert layer.multiscale
    _, widget = viewer.window.add_plugin_dock_widget("napari-glnet", "GLNet segmentation")
    widget.set_checkpoint(tiny_ckpt)
    widget.device.value = "cpu"
    ctl = widget.controller
    set_view(viewer, (700, 500), 5.0)
    region = _expected_view(viewer, (1100, 1300))
    widget.start()
    wait_idle(qtbot, ctl)
    image = np.asarray(open_image(path).levels[0])
    np.testing.assert_array_equal(ctl.session.store.read(region), _reference(tiny_ckpt, image, region))
    labels = viewer.layers["GLNet labels"]
    assert labels.multiscale and len(labels.data) == len(ctl.session.store.levels) > 1
    assert not labels.editable
    overview = viewer.layers["GLNet overview"]
    assert overview.data.shape[0] * ctl.session.overview_step >= 1100
    settle(qtbot, widget)


# -- the session alone (no viewer) ----------------------------------------------------------
@pytest.mark.slow
def test_session_tiles_across_scenes_equal_the_scene_session_in_local2global(tmp_path, crop):
    """local2global (every patch of a scene once, a refined global pass) over
    two blended scenes, written in several tiles: the store holds SceneSession's labels."""
    from napari_glnet.session import ViewSession, open_store

    def segmenter():
        model = seeded_weights(GLNet(tiny_config()), 1)
        fixed = seeded_weights(GLNet(tiny_config(), global_only=True), 2)
        ckpt = GLNetCheckpoint("local2global", model, ClassTable.default(5), fixed, PATCH, PATCH, scene_size=160)
        return Segmenter(ckpt, device="cpu", batch_size=3)

    image = crop[:150, :250]  # 1 x 2 scenes of 4 patches
    seg = segmenter()
    session = ViewSession(seg, image, open_store(tmp_path / "s.zarr", image.shape[:2], seg.checkpoint.classes), tile=64)
    region = (30, 41, 150, 230)
    assert len(session.tiles(region)) > 4 and len(session.grid.covering(region)) == 2
    overview = session.overview(region)
    assert (overview.labels != session.no_label).all()  # every scene in view is on the overview
    got = session.segment(region)
    reference = SceneSession(segmenter(), image)
    for _ in reference.run(region):
        pass
    np.testing.assert_array_equal(got, reference.result(region).labels)
    assert (session.current_overview().labels == session.no_label).any()  # hidden where labels are now
