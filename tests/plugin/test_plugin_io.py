"""The plugin's file side in a real viewer: the labels writer (OME-Zarr label
store), the sample data, and "Export for retraining" read back by the
training command's reader."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.classes import DEEPGLOBE, ClassTable
from glnet.data.dataset import read_export
from glnet.data.synthetic import SyntheticScene
from glnet.io.labels import read_label
from glnet.store.labelstore import LabelStore, downsample_mode
from napari_glnet._writer import write_label_store
from napari_glnet.retrain import export_for_retraining, start_export, tiles_to_export
from napari_glnet.review import ReviewController


def blocky(shape, n=7, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n, (shape[0] // 10 + 1, shape[1] // 10 + 1), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 10, 0), 10, 1)[: shape[0], : shape[1]]


# -- the writer ---------------------------------------------------------------------
def test_labels_layer_round_trips_through_the_writer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    labels = blocky((700, 600))
    layer = viewer.add_labels(labels, name="truth", metadata={"glnet_classes": DEEPGLOBE.to_list()})
    (written,) = viewer.layers.save(str(tmp_path / "truth.zarr"), selected=False, plugin="napari-glnet") or [None]
    assert written == str(tmp_path / "truth.zarr")
    store = LabelStore.open(written, mode="r")
    assert store.classes == DEEPGLOBE and store.shape == (700, 600) and len(store.levels) == 2
    np.testing.assert_array_equal(store.read(), labels)
    np.testing.assert_array_equal(store.read(level=1), downsample_mode(labels))
    (back,) = viewer.open(written, plugin="napari-glnet")  # our reader opens it as labels again
    np.testing.assert_array_equal(np.asarray(back.data[0]), labels)
    assert layer.name == "truth" and back.multiscale


def test_multiscale_layer_is_written_strip_by_strip(make_napari_viewer, tmp_path):
    source = LabelStore.create(
        tmp_path / "a.zarr", (1500, 1100), DEEPGLOBE, chunk=256, min_size=128, attrs={"source_image": "/data/scene.tif"}
    )
    labels = blocky((1500, 1100), seed=1)
    source.write((0, 0, 1500, 1100), labels, edit=False)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(source.path), plugin="napari-glnet")
    assert layer.multiscale
    layer.save(str(tmp_path / "b.zarr"), plugin="napari-glnet")
    copy = LabelStore.open(tmp_path / "b.zarr", mode="r")
    np.testing.assert_array_equal(copy.read(), labels)
    assert copy.attrs == {"source_image": "/data/scene.tif"}  # export still finds the image

    class Spy:  # level 0 as an array that records the largest read
        shape, dtype, ndim = labels.shape, labels.dtype, 2
        largest = 0

        def __getitem__(self, key):
            out = labels[key]
            Spy.largest = max(Spy.largest, out.size)
            return out

    write_label_store(
        tmp_path / "c.zarr", [Spy(), labels[::2, ::2]], {"metadata": {"glnet_classes": DEEPGLOBE.to_list()}}
    )
    assert Spy.largest <= 512 * 1100  # one strip of store chunks, never the whole level
    np.testing.assert_array_equal(LabelStore.open(tmp_path / "c.zarr", mode="r").read(), labels)


def test_writer_never_destroys_what_is_not_ours(make_napari_viewer, tmp_path, notes):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(blocky((300, 200), n=10), name="ten classes")  # no class table
    keep = tmp_path / "photos.zarr"
    keep.mkdir()
    (keep / "holiday.jpg").write_bytes(b"precious")
    assert not layer.save(str(keep), plugin="napari-glnet")
    assert (keep / "holiday.jpg").read_bytes() == b"precious"
    assert any("not a glnet label store" in n for n in notes)

    target = tmp_path / "ten.zarr"
    layer.save(str(target), plugin="napari-glnet")
    assert LabelStore.open(target).classes == ClassTable.default(10)
    layer.data = replaced = blocky((300, 200), n=10, seed=5)
    layer.save(str(target), plugin="napari-glnet")  # our own store: replaced
    np.testing.assert_array_equal(LabelStore.open(target).read(), replaced)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.zarr", "ten.zarr"]  # no temporaries left

    # Saving a store layer onto its own store keeps it (and its edit log) as is.
    store = LabelStore.open(target)
    store.write((0, 0, 10, 10), np.full((10, 10), 3, np.uint8))
    (own,) = viewer.open(str(target), plugin="napari-glnet")
    assert own.save(str(target), plugin="napari-glnet")
    assert len(LabelStore.open(target).edit_log()) == 1
    assert not viewer.add_labels(np.zeros((2, 3, 4), np.uint8)).save(str(tmp_path / "3d.zarr"), plugin="napari-glnet")
    assert any("only 2D labels" in n for n in notes)


# -- sample data -------------------------------------------------------------------------
def test_sample_scene_opens_with_its_ground_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-glnet", "synthetic_scene")
    image, truth = viewer.layers
    assert image.rgb and image.data.shape == (1024, 1024, 3)
    assert truth.__class__.__name__ == "Labels" and truth.name == "ground truth" and truth.data.shape == (1024, 1024)
    rgb, labels = SyntheticScene(1024, 1024, seed=0).render(500, 600, 564, 664)
    np.testing.assert_array_equal(image.data[500:564, 600:664], rgb)
    np.testing.assert_array_equal(truth.data[500:564, 600:664], labels)
    assert truth.metadata["glnet_classes"] == DEEPGLOBE.to_list()
    np.testing.assert_allclose(truth.colormap.map(np.array([5]))[0, :3], [0, 0, 1])
    demo = image.metadata["glnet_demo_checkpoint"]
    assert demo.endswith("napari_glnet/data/demo.glnet.pt")  # shipped inside the package


# -- export for retraining -------------------------------------------------------------------
def test_export_for_retraining_writes_what_training_reads(make_napari_viewer, tmp_path, qtbot, notes):
    rgb, truth = SyntheticScene(400, 360, seed=4).render(0, 0, 400, 360)
    store = LabelStore.create(
        tmp_path / "pred.zarr",
        (400, 360),
        DEEPGLOBE,
        chunk=128,
        min_size=64,
        attrs={"source_image": str(tmp_path / "scene_sat.png")},
    )
    store.write((0, 0, 400, 360), np.zeros((400, 360), np.uint8), edit=False)  # a useless prediction
    viewer = make_napari_viewer()
    viewer.open(str(store.path), plugin="napari-glnet")
    image = viewer.add_image(rgb, name="scene", rgb=True)
    review = ReviewController(viewer, store)
    layer = review.edit((40, 50, 240, 300))
    layer.data = truth[40:240, 50:300]  # the reviewer fixes the region
    review.accept()
    review.mark_reviewed()
    assert len(tiles_to_export(store, "reviewed", 128)) == 4

    out = tmp_path / "retrain"
    worker = start_export(store, image, out, tile=128, val_fraction=0.2, start=False)
    with qtbot.waitSignal(worker.finished, timeout=20000):
        worker.start()
    tiles = read_export(out)
    assert len(tiles) == 4 and sum(split == "val" for _, _, split in tiles) == 1
    for img_path, mask_path, _ in tiles:
        t, c = (int(v[1:]) for v in img_path.name.split("_")[1:3])
        mask = read_label(mask_path, DEEPGLOBE)
        np.testing.assert_array_equal(mask, truth[t : t + mask.shape[0], c : c + mask.shape[1]])
    assert any("Exported 4 tiles of 128 px (1 held out for validation)" in n for n in notes), notes

    # Again into the same folder: refused with one message, the export kept.
    worker = start_export(store, image, out, tile=128, start=False)
    with qtbot.waitSignal(worker.finished, timeout=20000):
        worker.start()
    assert any("is not empty" in n for n in notes) and len(read_export(out)) == 4
    manifest = export_for_retraining(store, image, tmp_path / "all", which="all", tile=256)
    assert manifest["source_image"].endswith("scene_sat.png") and len(manifest["tiles"]) == 4
