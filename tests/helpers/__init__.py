"""Helpers the test packages share (imported as ``helpers``; never import
one test module from another)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from glnet.model import GLNet, GLNetConfig

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SHARED_IMAGES = SHARED / "data" / "deepglobe_unlabeled"


def require_shared(path: Path) -> Path:
    """``path`` under ../shared, or a skip that says why; with
    GLNET_REQUIRE_DATA=1 (CI) a missing file fails the test instead."""
    if path.exists():
        return path
    why = f"needs {path} (the real DeepGlobe images in ../shared beside the repository)"
    if os.environ.get("GLNET_REQUIRE_DATA") == "1":
        pytest.fail(why + "; GLNET_REQUIRE_DATA=1 makes its absence a failure")
    pytest.skip(why)


def tiny_config(num_classes: int = 5) -> GLNetConfig:
    return GLNetConfig(num_classes, "resnet18", 32)


def save_authors_layout(model: GLNet, path: Path, prefix: str = "module.") -> Path:
    """A plain state_dict as the authors saved theirs: DataParallel prefix, legacy pickle."""
    sd = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    return path


def structured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An RGB image of 12 px blocks plus noise: varied predictions from seeded weights."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 12 + 1, w // 12 + 1, 3), dtype=np.uint8)
    img = np.kron(base, np.ones((12, 12, 1), dtype=np.uint8))[:h, :w]
    return np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
