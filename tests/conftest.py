"""Fixtures both test packages use: deterministic GLNet weights, the
authors' file layout, the real images in ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from glnet.model import GLNet, GLNetConfig

from helpers import SHARED_IMAGES, require_shared, save_authors_layout, tiny_config
from helpers.reference import seeded_weights


@pytest.fixture
def tiny_models():
    """(model, fixed global model) with a small backbone, for fast engine tests."""
    return seeded_weights(GLNet(tiny_config()), 1), seeded_weights(GLNet(tiny_config(), global_only=True), 2)


@pytest.fixture(scope="session")
def authors_files(tmp_path_factory):
    """Files in the authors' exact layout (ResNet-50, 7 classes, 718 keys):
    a global checkpoint and a global2local/local2global one."""
    d = tmp_path_factory.mktemp("authors")
    g = save_authors_layout(seeded_weights(GLNet(GLNetConfig(7)), 10), d / "fpn_test_global.pth")
    gl = save_authors_layout(seeded_weights(GLNet(GLNetConfig(7)), 11), d / "fpn_test_local.pth")
    return {"global": g, "local": gl}


@pytest.fixture(scope="session")
def shared_images() -> Path:
    """The folder of real DeepGlobe images (skips, or fails in CI, without it)."""
    return require_shared(SHARED_IMAGES)


@pytest.fixture(scope="session")
def real_image_path(shared_images) -> Path:
    return require_shared(shared_images / "118757_sat.jpg")


@pytest.fixture(scope="session")
def real_image(real_image_path) -> np.ndarray:
    from glnet.io.imageio import read_image

    return read_image(real_image_path)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waiting on shared, busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
