"""The local branch's final conv and the ensemble conv, fused for inference.

At inference nothing needs the local ``ps3`` (512 x 127 x 127 per patch)
except ``ensemble_conv``, which is linear in its two inputs.  So
``ensemble_conv(cat(smooth(X), G))`` splits into a local part, a 5x5
composite of ``smooth`` and the local half of ``ensemble_conv`` with only
C outputs, and a global part over the global crop.  The composite equals the
two-conv chain except on the one-pixel output border, where the chain's
zero padding of ps3 differs from extending it; that difference is computed
from the input's border lines and subtracted, so the result is exact.

The local part of a patch needs nothing from the global branch's second
pass, so local2global keeps only C x 127 x 127 per patch instead of ps3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from glnet.model.glnet import GLNet
from glnet.model.upsampled_conv import Part, border_lines, conv_of_upsampled, conv_over_concat


def _compose(w2: Tensor, w1: Tensor) -> Tensor:
    """Kernel of conv(w2) after conv(w1), both 3x3: a 5x5 kernel."""
    c, _, k2, _ = w2.shape
    _, cin, k1, _ = w1.shape
    out = torch.zeros(c, cin, k1 + k2 - 1, k1 + k2 - 1, dtype=torch.float64)
    w1, w2 = w1.double(), w2.double()
    for by in range(k2):
        for bx in range(k2):
            out[:, :, by : by + k1, bx : bx + k1] += torch.einsum("cm,mikl->cikl", w2[:, :, by, bx], w1)
    return out


class EnsembleHead:
    """Inference-only: the ensemble logits of a patch batch without ps3."""

    def __init__(self, model: GLNet):
        smooth, ens = model.fpn_local.smooth, model.ensemble_conv
        m = smooth.out_channels
        dtype = smooth.weight.dtype
        if smooth.bias is None or ens.bias is None:
            raise ValueError("GLNet's smooth and ensemble convs have biases")
        with torch.no_grad():
            self.w1, self.b1 = smooth.weight.detach(), smooth.bias.detach()
            self.w2 = ens.weight.detach()[:, :m]
            self.w2_global = ens.weight.detach()[:, m:]
            self.w_comp = _compose(self.w2, self.w1).to(dtype)
            b = ens.bias.detach().double() + torch.einsum("cmkl,m->c", self.w2.double(), self.b1.double())
            self.b_comp = b.to(dtype)

    def local_part(self, parts: list[Part]) -> Tensor:
        """Local half of ensemble_conv(smooth(cat(parts))) plus both biases."""
        out = conv_over_concat(self.w_comp, self.b_comp, parts, padding=2)
        return out - self._border_correction(parts, out.dtype)

    def global_part(self, ps3_crop: Tensor, size: tuple[int, ...]) -> Tensor:
        return conv_of_upsampled(ps3_crop, self.w2_global.to(ps3_crop.dtype), (size,))

    def _border_correction(self, parts: list[Part], dtype: torch.dtype) -> Tensor:
        """What the composite adds on the output border by extending ps3 past
        the edge (the chain pads ps3 with zeros there)."""
        lines = [border_lines(p) for p in parts]
        top, bottom, left, right = (torch.cat([ln[i] for ln in lines], dim=1) for i in range(4))
        w1, w2 = self.w1.to(dtype), self.w2.to(dtype)
        b1 = self.b1.to(dtype).view(1, -1, 1)

        def ring(line: Tensor, kernel: Tensor) -> Tensor:  # ps3 just outside one edge
            return F.conv1d(F.pad(line, (2, 2)), kernel) + b1

        r_top, r_bottom = ring(top, w1[:, :, 2, :]), ring(bottom, w1[:, :, 0, :])
        r_left, r_right = ring(left, w1[:, :, :, 2]), ring(right, w1[:, :, :, 0])
        for r in (r_left, r_right):  # corners already belong to the top/bottom rows
            r[..., 0] = 0
            r[..., -1] = 0
        b, c = top.shape[0], w2.shape[0]
        h, w = left.shape[-1], top.shape[-1]
        corr = torch.zeros(b, c, h, w, dtype=dtype, device=top.device)
        corr[:, :, 0, :] += F.conv1d(r_top, w2[:, :, 0, :])
        corr[:, :, -1, :] += F.conv1d(r_bottom, w2[:, :, 2, :])
        corr[:, :, :, 0] += F.conv1d(r_left, w2[:, :, :, 0])
        corr[:, :, :, -1] += F.conv1d(r_right, w2[:, :, :, 2])
        return corr


__all__ = ["EnsembleHead"]
