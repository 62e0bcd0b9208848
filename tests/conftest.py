"""Shared fixtures: deterministic GLNet weights, the authors' file layout, real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from glnet.model import GLNet, GLNetConfig
from glnet.reference import seeded_weights

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "data" / "deepglobe_unlabeled"


def tiny_config(num_classes: int = 5) -> GLNetConfig:
    return GLNetConfig(num_classes, "resnet18", 32)


@pytest.fixture
def tiny_models():
    """(model, fixed global model) with a small backbone, for fast engine tests."""
    return seeded_weights(GLNet(tiny_config()), 1), seeded_weights(GLNet(tiny_config(), global_only=True), 2)


def save_authors_layout(model: GLNet, path: Path, prefix: str = "module.") -> Path:
    """A plain state_dict as the authors saved theirs: DataParallel prefix, legacy pickle."""
    sd = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="session")
def authors_files(tmp_path_factory):
    """Files in the authors' exact layout (ResNet-50, 7 classes, 718 keys):
    a global checkpoint and a global2local/local2global one."""
    d = tmp_path_factory.mktemp("authors")
    g = save_authors_layout(seeded_weights(GLNet(GLNetConfig(7)), 10), d / "fpn_test_global.pth")
    gl = save_authors_layout(seeded_weights(GLNet(GLNetConfig(7)), 11), d / "fpn_test_local.pth")
    return {"global": g, "local": gl}


@pytest.fixture(scope="session")
def real_image_path() -> Path:
    path = SHARED_IMAGES / "118757_sat.jpg"
    assert path.is_file(), f"the tests read real DeepGlobe images from {SHARED_IMAGES}"
    return path


@pytest.fixture(scope="session")
def real_image(real_image_path) -> np.ndarray:
    from glnet.imageio import read_image

    return read_image(real_image_path)


@pytest.fixture
def notes():
    """Messages of the napari notifications shown during the test (needs napari)."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def keep(n):
        seen.append(str(n.message))

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waiting on shared, busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
