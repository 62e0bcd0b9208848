import itertools

import numpy as np
import pytest

from glnet.inference.grid import PatchGrid, axis_origins


def test_deepglobe_grid_matches_the_reference():
    assert axis_origins(2448, 508) == [0, 388, 776, 1164, 1552, 1940]
    assert len(PatchGrid(2448, 2448, 508)) == 36


def test_5000_has_11_patches_per_axis_with_50px_overlap():
    origins = axis_origins(5000, 508)
    assert len(origins) == 11
    assert origins[-1] == 5000 - 508
    assert min(b - a for a, b in itertools.pairwise(origins)) <= 508 - 50


def test_rectangular_images_have_independent_axes():
    grid = PatchGrid(1000, 2448, 508)
    assert grid.rows == [0, 246, 492]  # two patches would overlap by only 16 px
    assert grid.cols == axis_origins(2448, 508)
    assert grid.origins[:2] == [(0, 0), (0, 388)]
    assert len(grid) == 18


def test_one_patch_axis_and_too_short_axis():
    assert axis_origins(508, 508) == [0]
    with pytest.raises(ValueError, match="shorter"):
        axis_origins(400, 508)


def test_region_selects_only_intersecting_patches():
    grid = PatchGrid(2448, 2448, 508)
    assert grid.intersecting(0, 0, 10, 10) == [0]
    # pixels 388..507 are covered by the first two patches of each axis
    assert grid.intersecting(400, 400, 410, 410) == [0, 1, 6, 7]
    assert len(grid.intersecting(0, 0, 2448, 2448)) == 36


def test_coverage_counts_overlaps():
    grid = PatchGrid(2448, 2448, 508)
    cov = grid.coverage(0, 0, 2448)
    assert cov[0] == 1 and cov[400] == 2 and cov[-1] == 1
    assert cov.sum() == 6 * 508
    np.testing.assert_array_equal(grid.coverage(1, 380, 400), cov[380:400])
