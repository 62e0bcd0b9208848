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

from dataclasses import dataclass

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


def _compose_1d(b: Tensor, a: Tensor) -> Tensor:
    """Kernel of conv1d(b) after conv1d(a), both of length 3: length 5."""
    c, _, kb = b.shape
    _, cin, ka = a.shape
    out = torch.zeros(c, cin, ka + kb - 1, dtype=torch.float64)
    for j in range(kb):
        out[:, :, j : j + ka] += torch.einsum("cm,mik->cik", b[:, :, j], a)
    return out


@dataclass(frozen=True)
class _Edge:
    """The border correction of one output edge, composed in float64 from
    ``smooth``'s kernel row that reaches past the edge (a) and the
    ensemble kernel row that reads that ring of ps3 (b): ring(line) =
    conv1d(pad(line, 2), a) + b1 and correction = conv1d(ring, b) become one
    conv1d with C outputs, a 7 x 1024 x 5 kernel instead of 512 x 1024 x 3."""

    kernel: Tensor  # (C, Cin, 5)
    bias: Tensor  # (C,): b applied to smooth's bias
    # left/right edges: the ring's two corner cells belong to the top/bottom rows; what they add
    # (first, first_bias, last, last_bias): (C, Cin) from line[0] at output 0, (C,), and likewise line[-1]
    corners: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    @classmethod
    def compose(cls, a: Tensor, b: Tensor, b1: Tensor, corners: bool, dtype: torch.dtype) -> _Edge:
        a, b, b1 = a.double(), b.double(), b1.double()
        kernel, bias = _compose_1d(b, a).to(dtype), (b.sum(-1) @ b1).to(dtype)
        if not corners:
            return cls(kernel, bias)
        # ring[0] = a[..., 2] @ line[0] + b1 reaches output 0 through b[..., 0]; ring[-1] likewise
        first, first_bias = b[:, :, 0] @ a[:, :, 2], b[:, :, 0] @ b1
        last, last_bias = b[:, :, 2] @ a[:, :, 0], b[:, :, 2] @ b1
        return cls(kernel, bias, (first.to(dtype), first_bias.to(dtype), last.to(dtype), last_bias.to(dtype)))

    def __call__(self, line: Tensor) -> Tensor:
        """(B, C, n) correction along the edge from the input's border ``line`` (B, Cin, n)."""
        # the conv1d as five (C, Cin) matmuls: conv1d itself runs at ~1 GFLOP/s with C = 7 outputs
        n, kernel, padded = line.shape[-1], self.kernel.to(line.dtype), F.pad(line, (2, 2))
        out = self.bias.to(line.dtype).view(1, -1, 1).expand(line.shape[0], -1, n).clone()
        for t in range(kernel.shape[-1]):
            out += kernel[:, :, t] @ padded[:, :, t : t + n]
        if self.corners is not None:
            first, first_bias, last, last_bias = (t.to(line.dtype) for t in self.corners)
            out[:, :, 0] -= line[:, :, 0] @ first.T + first_bias
            out[:, :, -1] -= line[:, :, -1] @ last.T + last_bias
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
            w1, b1 = smooth.weight.detach(), smooth.bias.detach()
            w2 = ens.weight.detach()[:, :m]
            self.w2_global = ens.weight.detach()[:, m:]
            self.w_comp = _compose(w2, w1).to(dtype)
            b = ens.bias.detach().double() + torch.einsum("cmkl,m->c", w2.double(), b1.double())
            self.b_comp = b.to(dtype)
            # ps3 just outside each edge: smooth's kernel row/column that reaches past it, read by ensemble's
            self.edges = (
                _Edge.compose(w1[:, :, 2, :], w2[:, :, 0, :], b1, False, dtype),  # top
                _Edge.compose(w1[:, :, 0, :], w2[:, :, 2, :], b1, False, dtype),  # bottom
                _Edge.compose(w1[:, :, :, 2], w2[:, :, :, 0], b1, True, dtype),  # left
                _Edge.compose(w1[:, :, :, 0], w2[:, :, :, 2], b1, True, dtype),  # right
            )

    def local_part(self, parts: list[Part]) -> Tensor:
        """Local half of ensemble_conv(smooth(cat(parts))) plus both biases."""
        out = conv_over_concat(self.w_comp, self.b_comp, parts, padding=2)
        self._subtract_border_correction(out, parts)
        return out

    def global_part(self, ps3_crop: Tensor, size: tuple[int, ...]) -> Tensor:
        return conv_of_upsampled(ps3_crop, self.w2_global.to(ps3_crop.dtype), (size,))

    def _subtract_border_correction(self, out: Tensor, parts: list[Part]) -> None:
        """Subtract what the composite adds on the output border by extending
        ps3 past the edge (the chain pads ps3 with zeros there)."""
        lines = [border_lines(p) for p in parts]
        top, bottom, left, right = (torch.cat([ln[i] for ln in lines], dim=1).to(out.dtype) for i in range(4))
        out[:, :, 0, :] -= self.edges[0](top)
        out[:, :, -1, :] -= self.edges[1](bottom)
        out[:, :, :, 0] -= self.edges[2](left)
        out[:, :, :, -1] -= self.edges[3](right)


__all__ = ["EnsembleHead"]
