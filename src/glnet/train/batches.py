"""Training data: (image, index labels) pairs from an export or DeepGlobe
folder, with the reference's augmentation and a seed-determined order.

Randomness is a pure function of (seed, epoch, index): the same epoch gives
the same order and the same flips however the run was interrupted, which is
what makes ``--resume`` continue identically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.inference.grid import PatchGrid
from glnet.io.imageio import read_image
from glnet.io.labels import read_label
from glnet.train.losses import quarter_labels

log = logging.getLogger(__name__)

Entry = tuple[Path, Path, str]  # image, mask, split


def split_entries(entries: list[Entry], val_fraction: float, seed: int) -> tuple[list[Entry], list[Entry]]:
    """(train, val): the entries' own split when any is "val", else a seeded
    random ``val_fraction`` of them (at least one image stays for training)."""
    train = [e for e in entries if e[2] == "train"]
    val = [e for e in entries if e[2] == "val"]
    if val or val_fraction <= 0:
        return train, val
    if not 0 < val_fraction < 1:
        raise GLNetError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    n_val = min(len(train) - 1, max(1, round(len(train) * val_fraction)))
    if n_val < 1:
        log.warning("only one training image: no validation split")
        return train, []
    order = np.random.default_rng([seed, 7]).permutation(len(train))
    chosen = set(order[:n_val].tolist())
    return [e for i, e in enumerate(train) if i not in chosen], [e for i, e in enumerate(train) if i in chosen]


def augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip with p=0.5, then with p=0.5 a rotation by 90, 180 or 270
    degrees (counter-clockwise, as PIL's rotate), identical for image and labels.

    Unlike PIL's rotate without expand, a rectangular image is rotated whole
    (its shape swaps) rather than cropped."""
    if rng.random() > 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if rng.random() > 0.5:
        k = int(rng.integers(1, 4))
        image, labels = np.rot90(image, k), np.rot90(labels, k)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


class SegmentationData:
    """Images and index labels of a list of entries, read on demand."""

    def __init__(
        self,
        entries: list[Entry],
        classes: ClassTable,
        seed: int = 0,
        augment: bool = True,
    ):
        if not entries:
            raise GLNetError("no training images")
        self.entries = list(entries)
        self.classes = classes
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path, _ = self.entries[index]
        image = read_image(image_path)
        labels = read_label(mask_path, self.classes)
        if labels.shape != image.shape[:2]:
            raise GLNetError(
                f"{mask_path.name} is {labels.shape[1]}x{labels.shape[0]}, its image {image_path.name} "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return image, labels.astype(np.int64)

    def sample(self, index: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        image, labels = self.read(index)
        if self.augment:
            image, labels = augment(image, labels, np.random.default_rng([self.seed, epoch, index]))
        return image, labels

    def batches(self, epoch: int, batch_size: int) -> list[list[int]]:
        """This epoch's shuffled indices in batches (the last may be shorter)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self)).tolist()
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def to_tensor(pixels: np.ndarray, device: torch.device) -> Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1] (the reference's ToTensor, no mean/std)."""
    x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).to(device)  # a writable copy
    return x.permute(0, 3, 1, 2).float().div_(255.0)


@dataclass
class PreparedImage:
    """One training image cut the way the model sees it."""

    image_g: Tensor  # (1, 3, size_g, size_g)
    labels_g: Tensor  # (1, size_g//4, size_g//4)
    size: tuple[int, int]  # (padded) image height, width
    origins: list[tuple[int, int]]
    pixels: np.ndarray  # (H, W, 3) uint8, for cutting patches lazily
    labels: np.ndarray  # (H, W) int64
    size_p: int

    def patches(self, start: int, stop: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Patches [start, stop) and their 1/4-scale labels."""
        p, q = self.size_p, self.size_p // 4
        origins = self.origins[start:stop]
        pix = np.stack([self.pixels[t : t + p, l : l + p] for t, l in origins])
        lab = np.stack([quarter_labels(self.labels[t : t + p, l : l + p], (q, q)) for t, l in origins])
        return to_tensor(pix, device), torch.from_numpy(lab).to(device)


def prepare(
    image: np.ndarray,
    labels: np.ndarray,
    size_g: int,
    size_p: int,
    device: torch.device,
) -> PreparedImage:
    """Global view (PIL bilinear to size_g, as the engine), its labels
    (NEAREST to size_g//4) and the patch grid.  Axes shorter than a patch are
    mirror-padded, labels too, as the engine pads at inference."""
    pad_h, pad_w = max(0, size_p - image.shape[0]), max(0, size_p - image.shape[1])
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
        labels = np.pad(labels, ((0, pad_h), (0, pad_w)), mode="symmetric")
    small = np.asarray(Image.fromarray(image).resize((size_g, size_g), Image.Resampling.BILINEAR))
    q = size_g // 4
    labels_g = torch.from_numpy(quarter_labels(labels, (q, q))[None]).to(device)
    origins = PatchGrid(image.shape[0], image.shape[1], size_p).origins
    return PreparedImage(
        to_tensor(small[None], device),
        labels_g,
        image.shape[:2],
        origins,
        image,
        labels,
        size_p,
    )


__all__ = [
    "PreparedImage",
    "SegmentationData",
    "augment",
    "prepare",
    "split_entries",
    "to_tensor",
]
