"""The synthetic scene generator: deterministic, crop-consistent, labelled, written tile by tile."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tifffile
from PIL import Image

from glnet.data.synthetic import SyntheticScene
from glnet.data.synthetic_files import write_scene
from glnet.errors import GLNetError
from glnet.io.labels import read_label

from helpers import REPO

URBAN, AGRICULTURE, RANGELAND, FOREST, WATER, BARREN = range(1, 7)


@pytest.fixture(scope="module")
def default_scene():
    """The default 2448 x 2448 scene (the DeepGlobe tile size), rendered once."""
    scene = SyntheticScene(2448, 2448)
    return scene, *scene.render(0, 0, 2448, 2448)


def test_render_is_deterministic_and_seeded():
    a = SyntheticScene(300, 400, seed=5).render(0, 0, 300, 400)
    b = SyntheticScene(300, 400, seed=5).render(0, 0, 300, 400)
    c = SyntheticScene(300, 400, seed=6).render(0, 0, 300, 400)
    assert a[0].dtype == a[1].dtype == np.uint8
    assert a[0].shape == (300, 400, 3) and a[1].shape == (300, 400)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 1, 1),
        (3, 7, 250, 311),  # odd offsets, crossing many texture lattice cells
        (1199, 1301, 1900, 2448),  # crossing the large-scale lattice, up to the edge
        (2447, 0, 2448, 2448),  # a single row
        (517, 333, 1500, 2100),
    ],
)
def test_region_equals_crop_of_larger_render(default_scene, box):
    scene, rgb, labels = default_scene
    top, left, bottom, right = box
    part_rgb, part_labels = scene.render(top, left, bottom, right)
    assert np.array_equal(part_rgb, rgb[top:bottom, left:right])
    assert np.array_equal(part_labels, labels[top:bottom, left:right])


def test_all_classes_present(default_scene):
    _, _, labels = default_scene
    share = np.bincount(labels.ravel(), minlength=7) / labels.size
    assert share[0] == 0
    assert (share[1:] >= 0.02).all(), share


def test_colours_follow_the_labels(default_scene):
    _, rgb, labels = default_scene
    mean = {c: rgb[labels == c].astype(float).mean(axis=0) for c in range(1, 7)}
    water, forest, barren = mean[WATER], mean[FOREST], mean[BARREN]
    assert water.sum() < mean[RANGELAND].sum() and water[2] > water[0]  # dark, blue-green
    assert forest[1] > forest[0] and forest[1] - forest[0] > barren[1] - barren[0]  # greener than barren
    assert barren.sum() > max(mean[c].sum() for c in (AGRICULTURE, RANGELAND, FOREST, WATER))
    assert rgb[labels == WATER].std() < rgb[labels == URBAN].std()  # calm water, busy towns


def test_pyramidal_tiff_round_trip(tmp_path):
    image, mask = tmp_path / "scene.tif", tmp_path / "scene_mask.tif"
    write_scene(image, 1100, 1300, seed=2, mask_path=mask, tile=256)
    rgb, labels = SyntheticScene(1100, 1300, seed=2).render(0, 0, 1100, 1300)
    with tifffile.TiffFile(image) as tif:
        levels = tif.series[0].levels
        assert tif.pages[0].is_tiled and tif.pages[0].compression != 1
        assert [level.shape for level in levels] == [(1100, 1300, 3), (550, 650, 3), (275, 325, 3)]
        level0, level1 = levels[0].asarray(), levels[1].asarray()
    assert np.array_equal(level0, rgb)
    area_mean = rgb.reshape(550, 2, 650, 2, 3).mean(axis=(1, 3))
    assert np.abs(level1 - area_mean).max() <= 0.5
    assert np.array_equal(read_label(mask), labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", "scene_mask.tif"]  # no temporaries left


def test_png_image_and_colour_mask(tmp_path):
    image, mask = tmp_path / "s_sat.png", tmp_path / "s_mask.png"
    write_scene(image, 300, 500, seed=1, mask_path=mask)
    rgb, labels = SyntheticScene(300, 500, seed=1).render(0, 0, 300, 500)
    assert np.array_equal(np.asarray(Image.open(image)), rgb)
    assert np.array_equal(read_label(mask), labels)


@pytest.mark.parametrize(
    "args",
    [(0, 10), (10, -1), (2.5, 10), (True, 10), (10, 10, -1), ("10", 10)],
)
def test_bad_scene_sizes(args):
    with pytest.raises(GLNetError):
        SyntheticScene(*args)


@pytest.mark.parametrize("box", [(0, 0, 0, 5), (5, 0, 3, 5), (0, 0, 11, 5), (-1, 0, 5, 5), (0, 0, 5, 5.0)])
def test_render_outside_the_scene(box):
    with pytest.raises(GLNetError):
        SyntheticScene(10, 10).render(*box)


def test_write_scene_refusals(tmp_path):
    with pytest.raises(GLNetError, match="too large"):
        write_scene(tmp_path / "big.png", 20000, 20000)
    with pytest.raises(GLNetError, match="too large"):
        write_scene(tmp_path / "big.tif", 20000, 20000, mask_path=tmp_path / "big_mask.png")
    with pytest.raises(GLNetError, match="unsupported"):
        write_scene(tmp_path / "x.bmp", 10, 10)
    with pytest.raises(GLNetError, match="unsupported"):
        write_scene(tmp_path / "x.png", 10, 10, mask_path=tmp_path / "m.jpg")
    with pytest.raises(GLNetError, match="does not exist"):
        write_scene(tmp_path / "missing" / "x.png", 10, 10)
    with pytest.raises(GLNetError):
        write_scene(tmp_path / "x.png", 0, 10)
    assert list(tmp_path.iterdir()) == []


def test_make_sample_script(tmp_path):
    spec = importlib.util.spec_from_file_location("make_sample", REPO / "sample_data" / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(tmp_path), "--size", "256", "--seed", "4", "--format", "png"]) == 0
    labels = read_label(tmp_path / "synthetic_4_mask.png")
    assert np.array_equal(labels, SyntheticScene(256, 256, seed=4).render(0, 0, 256, 256)[1])
    assert np.asarray(Image.open(tmp_path / "synthetic_4_sat.png")).shape == (256, 256, 3)
    assert module.main([str(tmp_path), "--size", "0"]) == 2
