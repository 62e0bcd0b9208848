"""The training losses: focal loss on 1/4-scale targets and the feature-map
regularisation of global2local."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

GAMMA = 3.0
EPS = 1e-7
FM_REG_WEIGHT = 0.15  # the reference's lamb_fmreg


def focal_loss(logits: Tensor, target: Tensor, gamma: float = GAMMA, eps: float = EPS) -> Tensor:
    """Mean over pixels of -(1 - p_t)^gamma * log(p_t), p_t = softmax prob of the true class.

    p_t is clamped to [eps, 1 - eps] as in the reference, which keeps the
    loss finite for confidently wrong pixels.  Target pixels outside
    0..C-1 (e.g. an ignore value of 255) are left out of the mean; the
    reference has no such pixels in DeepGlobe.  Computed in float32 so
    autocast does not lose the small probabilities."""
    c = logits.shape[1]
    flat = logits.float().permute(0, 2, 3, 1).reshape(-1, c)
    t = target.reshape(-1).long()
    valid = (t >= 0) & (t < c)
    if not bool(valid.all()):
        flat, t = flat[valid], t[valid]
    if t.numel() == 0:
        return logits.sum() * 0.0  # keeps the graph for backward
    p = F.softmax(flat, dim=1).gather(1, t[:, None])[:, 0].clamp(eps, 1.0 - eps)
    return (-((1.0 - p) ** gamma) * p.log()).mean()


def fm_regularisation(ps3_local: Tensor, ps3_global_crop: Tensor) -> Tensor:
    """MSE between the local ps3 and the global ps3 crop bilinearly resized to it.

    It ties the local branch's features to the (frozen) global ones so that
    the ensemble sees comparable maps (the paper's feature-map regulariser)."""
    g = F.interpolate(
        ps3_global_crop.float(),
        size=ps3_local.shape[-2:],
        mode="bilinear",
        align_corners=False,
    )
    return F.mse_loss(ps3_local.float(), g)


def quarter_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Labels resized with PIL NEAREST to ``size`` (h, w), the reference's
    way of matching the FPN's 1/4-scale logits."""
    img = Image.fromarray(np.ascontiguousarray(labels).astype(np.int32))
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.NEAREST)).astype(np.int64)


__all__ = [
    "FM_REG_WEIGHT",
    "GAMMA",
    "fm_regularisation",
    "focal_loss",
    "quarter_labels",
]
