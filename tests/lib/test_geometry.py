"""Regions and pyramid levels: one definition the engine, the readers, the
label store and the plugin share."""

import numpy as np
import pytest
from PIL import Image

from glnet.classes import DEEPGLOBE
from glnet.errors import GLNetError
from glnet.geometry import clip, enclosing, intersect, level_region, level_shapes, shift
from glnet.io.readers import open_image
from glnet.store.labelstore import LabelStore


def test_intersect_shift_and_clip():
    assert intersect((0, 0, 10, 10), (5, 5, 20, 20)) == (5, 5, 10, 10)
    assert intersect((0, 0, 10, 10), (10, 0, 20, 10)) is None  # half-open: touching is not overlapping
    assert shift((5, 5, 10, 10), -5, 2) == (0, 7, 5, 12)
    assert clip(None, (30, 40)) == (0, 0, 30, 40)
    assert clip((-5, 10, 50, 20), (30, 40)) == (0, 10, 30, 20)
    with pytest.raises(GLNetError, match="does not overlap the 30x40 image"):
        clip((30, 0, 40, 10), (30, 40))
    with pytest.raises(GLNetError, match="four integers"):
        clip((1, 2, 3), (30, 40))


def test_enclosing_floors_and_ceils_fractional_corners():
    assert enclosing([(1.5, 2.2), (9.1, 7.0)], (30, 40)) == (1, 2, 10, 7)
    assert enclosing([(9.1, -3.0), (-1.0, 80.0)], (30, 40)) == (0, 0, 10, 40)  # any corner order, cut to the image
    assert enclosing([(-9.0, -9.0), (-1.0, -1.0)], (30, 40)) is None


def test_level_shapes_halve_until_under_the_overview_size():
    assert level_shapes((2448, 2448)) == [(2448, 2448), (1224, 1224), (612, 612), (306, 306)]
    assert level_shapes((1024, 300)) == [(1024, 300), (512, 150), (256, 75)]
    assert level_shapes((100, 300)) == [(100, 300)]
    assert level_region((3, 5, 9, 10), 1) == (1, 2, 5, 5)


def test_image_levels_and_label_store_levels_line_up(tmp_path):
    """A labels layer over an image layer: both pyramids halve to the same sizes
    (1024 px is where the three old rules disagreed)."""
    path = tmp_path / "scene.png"
    Image.fromarray(np.zeros((1024, 600, 3), np.uint8)).save(path)
    image = [tuple(level.shape[:2]) for level in open_image(path).levels]
    store = LabelStore.create(tmp_path / "labels.zarr", (1024, 600), DEEPGLOBE)
    assert image == [tuple(level.shape) for level in store.levels] == level_shapes((1024, 600))
