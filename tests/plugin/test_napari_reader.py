"""The napari reader with a real viewer: huge images open as multiscale
image layers, glnet label stores as multiscale labels in class colours."""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

from glnet.classes import DEEPGLOBE
from glnet.data.synthetic import SyntheticScene
from glnet.data.synthetic_files import write_scene
from glnet.store.labelstore import LabelStore


def test_a_pyramidal_tiff_opens_as_a_multiscale_image(make_napari_viewer, tmp_path):
    path = tmp_path / "scene.tif"
    write_scene(path, 1100, 1300, seed=2, tile=256)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-glnet")
    assert layer.multiscale and layer.rgb
    assert layer.data[0].shape == (1100, 1300, 3) and layer.data[1].shape[:2] == (550, 650)
    rgb, _ = SyntheticScene(1100, 1300, seed=2).render(300, 400, 364, 464)
    np.testing.assert_array_equal(np.asarray(layer.data[0][300:364, 400:464]), rgb)


def test_a_label_store_opens_as_multiscale_labels_in_class_colours(make_napari_viewer, tmp_path):
    path = tmp_path / "pred.zarr"
    store = LabelStore.create(path, (1200, 1000), DEEPGLOBE, chunk=256, min_size=128)
    labels = np.zeros((1200, 1000), np.uint8)
    labels[100:600, 200:900] = 5  # water
    store.write((0, 0, 1200, 1000), labels, edit=False)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-glnet")
    assert layer.__class__.__name__ == "Labels" and layer.multiscale
    assert len(layer.data) == len(store.levels) > 1
    np.testing.assert_array_equal(np.asarray(layer.data[0]), labels)
    np.testing.assert_allclose(layer.colormap.map(5)[..., :3].ravel(), [0, 0, 1])  # DeepGlobe water is blue
